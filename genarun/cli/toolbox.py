"""`genarun convert` (PANIC-TDA configs), `doctor`, `cluster`, `dynamics` and `embed`: the
researcher's toolbox over stored trajectories."""

from __future__ import annotations

from pathlib import Path

import click

from genarun.cli.common import handle_errors


@click.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the tree to this file instead of printing it.",
)
@handle_errors
def convert(config: Path, out: Path | None) -> None:
    """Print the genarun tree equivalent to a PANIC-TDA experiment config (JSON with
    networks, seeds, prompts, embedding_models and max_length); `genarun run CONFIG` runs it
    as it is."""
    from genarun.errors import UserError
    from genarun.tree.load import load_document
    from genarun.tree.panic_config import is_panic_config, panic_tree, panic_tree_yaml
    from genarun.tree.validate import validate_document

    doc = load_document(config)
    if not is_panic_config(doc.data):
        raise UserError(
            f"{config} is not a PANIC-TDA experiment config: it has none of networks, seeds, "
            "prompts, embedding_models, max_length"
            + (
                " (it is a genarun tree already)"
                if isinstance(doc.data, dict) and "genarun" in doc.data
                else ""
            )
        )
    validate_document(panic_tree(doc))  # the converted tree is a valid tree, or says why
    text = panic_tree_yaml(doc)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {out}")


def register(main: click.Group) -> None:
    main.add_command(convert)
