"""`genarun search`: nearest stored outputs (and documents) to a text or an image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from genarun.cli.common import NumberRange, WholeNumber, db_option, handle_errors


@click.command("search")
@click.argument("query")
@click.option(
    "--model", "-m", required=True, help="The embedding model the vectors were made with."
)
@click.option(
    "--tree", "tree", help="Runs of this tree (a name, or a tree file: its documents too)."
)
@click.option("--run", "run", help="One run or experiment (id, prefix or latest).")
@click.option("--node", "nodes", multiple=True, help="Only outputs of this node (repeatable).")
@click.option(
    "-k", "k", type=WholeNumber(min=1), default=5, show_default=True, help="Matches shown."
)
@click.option(
    "--diversity",
    type=NumberRange(0, 1),
    default=0.0,
    show_default=True,
    help="0: the closest matches; towards 1: matches unlike each other too (MMR).",
)
@click.option("--json", "as_json", is_flag=True, help="The matches as JSON.")
@db_option
@handle_errors
def search(
    query: str,
    model: str,
    tree: str | None,
    run: str | None,
    nodes: tuple[str, ...],
    k: int,
    diversity: float,
    as_json: bool,
    db: Path | None,
) -> None:
    """The stored outputs closest to QUERY (a text, or an image file) by cosine similarity."""
    from genarun.errors import UserError
    from genarun.retrieval.command import search_command
    from genarun.store.db import Store

    if tree and run:
        raise UserError("give --tree or --run, not both")
    store = Store.existing(db)
    outcome = search_command(
        store, query, model, tree=tree, run=run, nodes=list(nodes) or None, k=k, diversity=diversity
    )
    rows = []
    for m in outcome.matches:
        row: dict[str, Any] = {"id": m.key, "score": round(m.score, 6), "modality": m.modality}
        if m.chunk is not None:
            row["source"] = {"document": m.chunk.source, "chunk": m.chunk.index}
            row["content"] = m.chunk.text if m.chunk.text is not None else m.chunk.source
        else:
            info = m.row
            assert info is not None  # a match is a document chunk or a stored row
            row["source"] = {"run": info.run_id, "node": info.node_id, "item": list(info.path)}
            row["content"] = (
                str(Path(outcome.runs.get(info.run_id, "")) / info.source)
                if m.modality == "image"
                else info.source
            )
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(f"no matches among {outcome.searched} stored vectors")
        return
    for row in rows:
        source = row["source"]
        where = (
            f"{source['document']}#{source['chunk']}"
            if "document" in source
            else f"run {source['run'][:8]} {source['node']}{''.join(f'[{i}]' for i in source['item'])}"
        )
        text = " ".join(str(row["content"]).split())
        click.echo(f"{row['score']:.3f}  {where}  {text[:100]}")


def register(main: click.Group) -> None:
    main.add_command(search)
