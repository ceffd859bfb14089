"""`genarun rerun` and `genarun run --only/--skip`: re-execute what was asked (and what depends
on it, and what changed in the tree), reuse everything else from the source run."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.helpers import query


def _runs(db: Path) -> list:
    return query(db, "SELECT * FROM runs ORDER BY started, rowid")


def _executions(db: Path, run_id: str) -> dict[str, dict]:
    rows = query(db, "SELECT * FROM executions WHERE run_id = ? ORDER BY id", run_id)
    return {r["node_id"] + "".join(f"[{i}]" for i in json.loads(r["path"])): dict(r) for r in rows}


def _row_counts(db: Path) -> dict[str, int]:
    tables = ("runs", "experiments", "executions", "logs")
    return {t: query(db, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in tables}


def test_rerun_one_item_reuses_the_rest(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    assert cli("run", tree("rerun_blog.yaml")).exit_code == 0
    source = _runs(db)[0]
    result = cli("rerun", source["id"][:8], "--node", "article[1]")
    assert result.exit_code == 0, result.output
    new = _runs(db)[-1]
    assert new["source_run_id"] == source["id"] and new["out_dir"] != source["out_dir"]
    before, after = _executions(db, source["id"]), _executions(db, new["id"])
    ran = {label for label, e in after.items() if e["reused_from"] is None}
    # The item, its child, and the nodes that use all articles (transitively).
    assert ran == {"article[1]", "cover[1]", "summary", "contents"}
    for label, e in after.items():
        if label not in ran:
            assert e["reused_from"] == before[label]["id"]
            assert e["output"] == before[label]["output"]
    assert after["article[1]"]["seed"] != before["article[1]"]["seed"]  # new seed by default
    assert "seeds: article[1]=" in result.output
    assert json.loads(new["summary"])["reused"] == 5
    # Reused images are copied: the new folder is self-contained.
    for label in ("cover[0]", "cover[2]"):
        image = json.loads(after[label]["output"])
        file = Path(new["out_dir"]) / image["$image"]
        assert hashlib.sha256(file.read_bytes()).hexdigest() == image["sha256"]


def test_rerun_same_seed_gives_the_same_output(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    assert cli("run", tree("rerun_blog.yaml")).exit_code == 0
    source = _runs(db)[0]
    result = cli("rerun", source["id"], "--node", "article", "--same-seed")
    assert result.exit_code == 0, result.output
    new = _runs(db)[-1]
    before, after = _executions(db, source["id"]), _executions(db, new["id"])
    for label in ("article[0]", "article[1]", "article[2]"):
        assert after[label]["reused_from"] is None  # executed again, not served by the cache
        assert after[label]["seed"] == before[label]["seed"]
        assert after[label]["output"] == before[label]["output"]


def test_rerun_nested_item(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    assert cli("run", tree("rerun_nested.yaml")).exit_code == 0
    source = _runs(db)[0]
    result = cli("rerun", source["id"], "--node", "para[1][2]")
    assert result.exit_code == 0, result.output
    after = _executions(db, _runs(db)[-1]["id"])
    assert {label for label, e in after.items() if e["reused_from"] is None} == {"para[1][2]"}
    assert len(after) == 2 + 6 + 1


def test_rerun_after_editing_the_tree(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    path = tree("rerun_blog.yaml")
    assert cli("run", path).exit_code == 0
    source = _runs(db)[0]
    path.write_text(
        path.read_text().replace("Cover for {{ title }}", "A bold cover for {{ title }}")
    )
    result = cli("rerun", source["id"], "--node", "plan")
    assert result.exit_code == 0, result.output
    assert "node 'cover': field prompt changed" in result.output
    new = _runs(db)[-1]
    assert "A bold cover" in new["tree_text"]
    after = _executions(db, new["id"])
    assert all(e["reused_from"] is None for e in after.values())  # plan is upstream of all

    # Only the edit: the edited node re-executes with its usual seeds, the rest is reused.
    second = cli("rerun", source["id"], "--node", "contents")
    assert second.exit_code == 0, second.output
    before, latest = _executions(db, source["id"]), _executions(db, _runs(db)[-1]["id"])
    ran = {label for label, e in latest.items() if e["reused_from"] is None}
    assert ran == {"cover[0]", "cover[1]", "cover[2]", "contents"}
    assert latest["cover[0]"]["seed"] == before["cover[0]"]["seed"]


def test_rerun_bad_input_changes_nothing(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    assert cli("run", tree("rerun_blog.yaml")).exit_code == 0
    run_id = _runs(db)[0]["id"]
    before = _row_counts(db)
    cases = {
        ("--node", "covr"): "did you mean 'cover'?",
        ("--node", "cover[7]"): "item out of range; run",
        ("--node", "cover[0][1]"): "takes at most 1 index",
        ("--node", "plan[0]"): "takes at most 0 indexes",
        ("--node", "cover(1)"): "expected a node id",
    }
    for args, message in cases.items():
        result = cli("rerun", run_id, *args)
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert "Traceback" not in result.output
    unknown = cli("rerun", "0000ff", "--node", "plan")
    assert unknown.exit_code == 2 and "no run matches" in unknown.output
    assert _row_counts(db) == before


def test_only_takes_what_it_needs_from_the_latest_run(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    path = tree("rerun_only.yaml")
    before = _row_counts(db) if db.exists() else None
    missing = cli("run", path, "--only", "article")
    assert missing.exit_code == 2 and "run the whole tree first" in missing.output
    assert (before is None and not db.exists()) or _row_counts(db) == before
    assert cli("run", path).exit_code == 0
    source = _runs(db)[0]
    result = cli("run", path, "--only", "article", "--no-cache")
    assert result.exit_code == 0, result.output
    new = _runs(db)[-1]
    assert new["source_run_id"] == source["id"]
    after = _executions(db, new["id"])
    assert after["plan"]["reused_from"] is not None
    assert after["article[0]"]["reused_from"] is None and after["article[1]"]["reused_from"] is None
    assert (
        after["tagline"]["status"] == "skipped"
        and after["tagline"]["error"] == "not selected (--only)"
    )
    assert after["draft"]["error"] == "disabled (enabled: false)"
    assert after["notes"]["error"] == "depends on 'draft', which is not run"
    output = json.loads((Path(new["out_dir"]) / "output.json").read_text())
    assert set(output) == {"plan"} and len(output["plan"]["article"]) == 2

    typo = cli("run", path, "--only", "artcle")
    assert typo.exit_code == 2 and "did you mean 'article'?" in typo.output
    runs = len(_runs(workdir / "genarun.db"))
    skip_typo = cli("run", path, "--skip", "artcle")  # a typo must not run the node
    assert skip_typo.exit_code == 2, skip_typo.output
    assert "--skip artcle: the tree has no node 'artcle' (did you mean 'article'?)" in (
        skip_typo.output
    )
    assert len(_runs(workdir / "genarun.db")) == runs
    lonely = cli("run", path, "--from", source["id"])
    assert lonely.exit_code == 2 and "goes with --only" in lonely.output


def test_only_says_what_the_source_run_is_missing(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    path = tree("rerun_only.yaml")
    assert cli("run", path, "--skip", "plan").exit_code == 0
    source = _runs(db)[0]
    result = cli("run", path, "--only", "article", "--from", source["id"][:8])
    assert result.exit_code == 0, result.output  # plan was skipped by choice: it is not needed
    # A failed needed node is reported by name.
    failing = tree("resume_failing.yaml")
    assert cli("run", failing).exit_code == 1
    counts = _row_counts(db)
    result = cli("run", failing, "--only", "outro")
    assert result.exit_code == 2
    assert "describe (failed:" in result.output
    assert _row_counts(db) == counts


def test_rerun_latest_of_a_matrix_experiment_reruns_every_run_and_says_so(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    assert cli("run", tree("matrix.yaml")).exit_code == 0
    sources = {Path(r["out_dir"]).name: r for r in _runs(db)}
    assert len(sources) == 4
    result = cli("rerun", "latest", "--node", "caption")
    assert result.exit_code == 0, result.output
    new = [r for r in _runs(db) if r["source_run_id"]]
    experiment = new[0]["experiment_id"]
    assert (
        f"rerun of all 4 runs of experiment {sources['01_style-watercolor_animal-gecko']['experiment_id'][:8]}"
        in result.output
    )
    assert len(new) == 4 and {r["experiment_id"] for r in new} == {experiment}
    for run in new:  # each run again from its own source, into a folder named like it
        label = Path(run["out_dir"]).name
        assert run["source_run_id"] == sources[label]["id"]
        assert json.loads(run["bindings"]) == json.loads(sources[label]["bindings"])
        assert f"{label} ({sources[label]['id'][:8]} -> {run['id'][:8]})" in result.output
    folder = Path(new[0]["out_dir"]).parent
    recorded = json.loads((folder / "experiment.json").read_text())
    assert recorded["experiment"] == experiment and len(recorded["runs"]) == 4
    latest = workdir / "matrix" / "latest"
    assert json.loads((latest / "experiment.json").read_text())["experiment"] == experiment

    # --run picks one run of the (now rerun) experiment; latest/ becomes that one run.
    result = cli("rerun", "latest", "--node", "caption", "--run", "2")
    assert result.exit_code == 0, result.output
    one = _runs(db)[-1]
    picked = next(r for r in new if Path(r["out_dir"]).name.startswith("02_"))
    assert one["source_run_id"] == picked["id"]
    assert (
        f"rerun of run {picked['id'][:8]} (02_style-watercolor_animal-bearded-dragon, 1 of the 4 runs"
        in result.output
    )
    assert json.loads((latest / "run.json").read_text())["run"] == one["id"]
    assert not (latest / "experiment.json").exists()

    # A run named by its id is that run, said so, and also becomes latest/.
    target = sources["03_style-photo_animal-gecko"]
    result = cli("rerun", target["id"][:8], "--node", "caption")
    assert result.exit_code == 0, result.output
    assert "03_style-photo_animal-gecko, 1 of the 4 runs" in result.output
    assert json.loads((latest / "run.json").read_text())["run"] == _runs(db)[-1]["id"]
    # ... and how to rerun them all, by the experiment's folder.
    hint = re.search(r"to rerun them all: genarun rerun (\S+) --node", result.output)
    assert hint is not None, result.output
    again = cli("rerun", hint.group(1), "--node", "caption")
    assert again.exit_code == 0, again.output
    assert "rerun of all 4 runs of experiment" in again.output

    before = _row_counts(db)
    result = cli("rerun", "latest", "--node", "caption", "--run", "9")
    assert result.exit_code == 2
    assert "--run 9 is not a run of this experiment" in result.stderr
    assert _row_counts(db) == before


def test_runs_list_shows_whole_values(cli: Callable[..., Result], workdir: Path) -> None:
    path = workdir / "seeds.yaml"
    path.write_text(
        "genarun: 1\nname: seeds\nmatrix:\n"
        "  prompt: ['a watercolor painting of a lighthouse at dawn, seen from the sea']\n"
        "  network: [[dummy-t2i, dummy-i2t]]\n  seed: [545654]\n"
        "nodes:\n  - id: t\n    kind: template\n    text: '{{ prompt }}'\n"
    )
    assert cli("run", path).exit_code == 0
    listing = cli("runs", "list").output
    assert (
        "prompt=a watercolor painting of a lighthouse at dawn, seen from the sea "
        "network=[dummy-t2i, dummy-i2t] seed=545654" in listing
    )
