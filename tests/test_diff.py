"""`genarun diff RUN_A RUN_B`: per node and item, same / changed / only in one run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.helpers import query


def _run_ids(db: Path) -> list[str]:
    return [r["id"] for r in query(db, "SELECT id FROM runs ORDER BY started, rowid")]


def test_diff_after_a_rerun(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    assert cli("run", tree("rerun_blog.yaml")).exit_code == 0
    assert cli("rerun", _run_ids(db)[0], "--node", "article[2]").exit_code == 0
    a, b = _run_ids(db)
    text = cli("diff", a, b)
    assert text.exit_code == 0, text.output
    assert "changed  article[2]" in text.output
    assert f"--- {a[:8]} article[2]" in text.output and f"+++ {b[:8]} article[2]" in text.output
    assert "changed  cover[2]  image sha256" in text.output
    assert "6 same, 3 changed, 0 only in A, 0 only in B" in text.output
    assert "article[0]" not in text.output  # unchanged executions are listed with --all only
    assert "same     article[0]" in cli("diff", a, b, "--all").output

    data = json.loads(cli("diff", a, b, "--json").output)
    assert data["a"] == a and data["summary"] == {"same": 6, "changed": 3, "only_a": 0, "only_b": 0}
    by_label = {e["node"] + "".join(f"[{i}]" for i in e["index"]): e for e in data["executions"]}
    assert by_label["article[2]"]["status"] == "changed" and by_label["article[2]"][
        "diff"
    ].startswith("---")
    assert by_label["cover[0]"]["status"] == "same"  # copied image, same sha256


def test_diff_nodes_only_in_one_run(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    path = tree("rerun_blog.yaml")
    assert cli("run", path).exit_code == 0
    path.write_text(path.read_text() + "  - id: footer\n    kind: template\n    text: the end\n")
    assert cli("run", path, "--skip", "contents").exit_code == 0
    a, b = _run_ids(db)
    data = json.loads(cli("diff", a, b, "--json").output)
    statuses = {e["node"]: e["status"] for e in data["executions"]}
    assert statuses["footer"] == "only_b"
    assert statuses["contents"] == "changed"  # done in A, skipped in B
    assert statuses["plan"] == "same"
    bad = cli("diff", a, "ffff0000ffff")
    assert bad.exit_code == 2
