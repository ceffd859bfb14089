"""`genarun search`: the retrieve node's search from the command line, over stored runs (and a
tree's documents, whose vectors are read from the store, never computed here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.errors import UserError
from genarun.models.base import Invocation
from genarun.retrieval.search import Match, Pool, search
from genarun.retrieval.stored import (
    RunSelector,
    document_vectors_for,
    model_identity,
    stored_matrix,
)

if TYPE_CHECKING:
    from genarun.store.db import Store


@dataclass
class SearchOutcome:
    matches: list[Match]
    searched: int
    runs: dict[str, str]  # run id -> its output folder, to show image paths


def search_command(
    store: Store,
    query: str,
    model_ref: str,
    *,
    tree: str | None = None,
    run: str | None = None,
    nodes: list[str] | None = None,
    k: int = 5,
    diversity: float = 0.0,
) -> SearchOutcome:
    """Search the stored vectors of `model_ref`: every run, the runs of a tree (a name, or a
    tree file: then its documents too), or one run or experiment."""
    from sqlalchemy import select

    from genarun.models.cache import model_cache
    from genarun.models.catalog import resolve_model
    from genarun.store.db import runs
    from genarun.store.trajectories import run_or_experiment_runs

    aliases: dict[str, Any] = {}
    chunks: list[Any] = []
    tree_name = tree
    if tree is not None and Path(tree).is_file():
        from genarun.retrieval.documents import documents_spec, load_chunks
        from genarun.tree.validate import read_tree

        loaded = read_tree(tree)
        tree_name, aliases = loaded.spec.name, dict(loaded.spec.models)
        documents = documents_spec(loaded.spec.documents)
        if documents is not None:
            try:
                chunks = load_chunks(loaded.path.parent.resolve(), documents)
            except ValueError as exc:
                raise UserError(f"{loaded.path}: {exc}") from None
    spec = resolve_model(model_ref, aliases)
    image = _image_query(query)
    task = "embed_image" if image is not None else "embed_text"
    if task not in spec.tasks:
        what = "an image" if image is not None else "a text"
        raise UserError(f"model '{spec.label()}' cannot embed {what} (the query is one)")
    if run is not None:
        selector = RunSelector(
            "ids", ids=tuple(r["id"] for r in run_or_experiment_runs(store, run))
        )
    elif tree_name is not None:
        selector = RunSelector("tree", tree=tree_name)
        known = store.conn.execute(select(runs.c.id).where(runs.c.name == tree_name)).first()
        if known is None and not chunks:
            if Path(tree_name).suffix in (".yaml", ".yml", ".json") or "/" in tree_name:
                # Meant as a file (the README's --tree examples/rag-blog/tree.yaml).
                raise UserError(
                    f"--tree {tree_name}: no such tree file (give an existing tree file, or the"
                    f" name: of a tree with runs in {store.path})"
                )
            raise UserError(f"no runs of a tree named '{tree_name}' in {store.path}")
    else:
        selector = RunSelector("all")
    identity = model_identity(spec)
    pool = Pool()
    if chunks:
        pool.chunks = chunks
        pool.chunk_vectors = document_vectors_for(store, identity, [c.content_hash for c in chunks])
    matrix = stored_matrix(store, identity, selector, nodes)
    pool.stored.append((matrix, None))
    if pool.size() == 0 and not pool.chunk_vectors:
        where = f"run {run}" if run else f"tree '{tree_name}'" if tree_name else str(store.path)
        raise UserError(
            f"nothing embedded with '{spec.label()}' ({identity}) in {where}: search with the "
            "model the vectors were made with (`genarun runs show RUN` lists a run's models)"
        )
    loaded_model = model_cache().get(spec)
    (vector,) = loaded_model.run(task, [Invocation(task, image if image is not None else query, 0)])
    matches = search(pool, vector, k=k, diversity=diversity, approximate=True)
    run_ids = sorted({m.row.run_id for m in matches if m.row is not None})
    folders = {
        row.id: row.out_dir or ""
        for row in store.conn.execute(
            select(runs.c.id, runs.c.out_dir).where(runs.c.id.in_(run_ids))
        )
    }
    return SearchOutcome(matches, pool.size(), folders)


def _image_query(query: str) -> Any:
    """The query as an image when it names an image file."""
    from genarun.retrieval.chunking import IMAGE_SUFFIXES

    path = Path(query)
    if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
        return None
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")
