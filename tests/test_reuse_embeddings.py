"""A reused execution brings the vectors its output names: the new run owns its embeddings."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.helpers import query


def test_rerun_copies_the_embeddings_a_reused_output_names(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    path = tree("rerun_embed.yaml")
    assert cli("run", path).exit_code == 0
    db = workdir / "genarun.db"
    source = query(db, "SELECT id FROM runs")[0]["id"]
    before = [dict(r) for r in query(db, "SELECT * FROM embeddings ORDER BY id")]
    result = cli("rerun", source, "--node", "note")
    assert result.exit_code == 0, result.output
    new = query(db, "SELECT id FROM runs WHERE id != ?", source)[0]["id"]
    output = json.loads(
        query(db, "SELECT output FROM executions WHERE run_id = ? AND node_id = 'vectors'", new)[0][
            "output"
        ]
    )
    ids = [ref["$embedding"] for ref in output]
    copies = {
        r["id"]: dict(r)
        for r in query(
            db, f"SELECT * FROM embeddings WHERE id IN ({','.join('?' * len(ids))})", *ids
        )
    }
    assert {c["run_id"] for c in copies.values()} == {new}  # the new run's own rows
    by_source = {b["source"]: b for b in before}
    for ref in output:
        copy = copies[ref["$embedding"]]
        assert copy["vector"] == by_source[copy["source"]]["vector"] and copy["dim"] == ref["dim"]
    # The source run's rows are untouched.
    assert [
        dict(r) for r in query(db, "SELECT * FROM embeddings WHERE run_id = ? ORDER BY id", source)
    ] == before
    # A rerun of the rerun copies them once more, to its own run: 3 rows per run.
    assert cli("rerun", new, "--node", "note").exit_code == 0
    assert len(query(db, "SELECT id FROM embeddings")) == 9
