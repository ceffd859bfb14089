"""`genarun convert` (PANIC-TDA configs), `doctor`, `cluster`, `dynamics` and `embed`: the
researcher's toolbox over stored trajectories."""

from __future__ import annotations

from pathlib import Path

import click

from genarun.cli.common import db_option, handle_errors


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


@click.command()
@db_option
@click.option("--fix", is_flag=True, help="Repair what can be repaired, and say what was done.")
@click.option("--json", "as_json", is_flag=True, help="Findings (and repairs) as JSON.")
@handle_errors
def doctor(db: Path | None, fix: bool, as_json: bool) -> None:
    """Check the store and the run folders: gaps in trajectories, steps without embeddings,
    NaN/zero vectors, missing diagrams, orphan rows, missing or corrupt images (sha256), runs
    left running by a dead process. Exit 1 when anything is wrong (after --fix: when anything
    is still wrong)."""
    import json
    import sys

    from genarun.experiments.doctor import examine
    from genarun.experiments.doctor_fix import fix as repair
    from genarun.store.db import Store

    store = Store.existing(db)
    findings = examine(store)
    repairs: list[str] = []
    if fix and findings:
        store.close()
        store = Store(store.path, writing=True)
        repairs = repair(store, findings, say=(lambda _: None) if as_json else click.echo)
        before, findings = findings, examine(store)
    if as_json:
        body: dict[str, object] = {"database": str(store.path), "ok": not findings}
        body["findings"] = [f.to_json() for f in findings]
        if fix:
            body["repairs"] = repairs
        click.echo(json.dumps(body, indent=2))
    else:
        if fix and repairs:
            click.echo(
                f"{len(repairs)} repair{'s' if len(repairs) != 1 else ''} made ({len(before)} finding{'s' if len(before) != 1 else ''})"
            )
        for f in findings:
            click.echo(
                f"{f.check:<18} {f.where}: {f.message}"
                + ("" if f.fixable else " (not fixable here)")
            )
        if findings:
            hint = "" if fix else "; `genarun doctor --fix` repairs what can be repaired"
            click.echo(
                f"{len(findings)} problem{'s' if len(findings) != 1 else ''} in {store.path}{hint}"
            )
        else:
            click.echo(f"ok: no problems in {store.path}")
    sys.stdout.flush()
    if findings:
        sys.exit(1)


def register(main: click.Group) -> None:
    main.add_command(convert)
    main.add_command(doctor)
