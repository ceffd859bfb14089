"""Matrix experiments of cycles: one experiment, lockstep batching, progress reports, OOM halving."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.cycle_fakes import CALLS, use_fakes
from tests.helpers import query


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fakes(monkeypatch)
    CALLS.clear()


def outputs_by_prompt(db: Path) -> dict[str, list[str]]:
    """Each run's sequence of output hashes, keyed by its prompt (newest experiment only)."""
    experiment = query(db, "SELECT id FROM experiments ORDER BY created DESC LIMIT 1")[0]["id"]
    out = {}
    for run in query(db, "SELECT id, bindings FROM runs WHERE experiment_id = ?", experiment):
        steps = query(
            db, "SELECT sha256 FROM trajectory_steps WHERE run_id = ? ORDER BY step", run["id"]
        )
        out[json.loads(run["bindings"])["prompt"]] = [s["sha256"] for s in steps]
    return out


def test_matrix_runs_are_one_experiment_with_progress(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    result = cli("run", tree("cycle_experiment.yaml"))
    assert result.exit_code == 0, result.output
    db = workdir / "genarun.db"
    assert len(query(db, "SELECT id FROM experiments")) == 1
    assert (
        len(query(db, "SELECT id FROM runs")) == 16
    )  # 2 networks x 2 prompts x 2 seeds x 2 models
    listing = cli("experiments", "list")
    assert "cycle-experiment" in listing.output and "16 completed" in listing.output
    show = cli("experiments", "show", "latest")
    assert show.exit_code == 0, show.output
    for stage in ("invocations", "embeddings", "persistence"):
        line = next(x for x in show.output.splitlines() if x.startswith(stage))
        assert "100.0%" in line, line
    progress = json.loads(cli("experiments", "show", "latest", "--json").output)
    assert progress["stages"]["invocations"] == {"done": 192, "total": 192, "max": 192}
    assert progress["stages"]["persistence"]["done"] == 16
    prefix = progress["experiment"][:6]
    assert cli("experiments", "show", prefix).exit_code == 0
    missing = cli("experiments", "show", "ffffffff")
    assert missing.exit_code == 2 and "no experiment matches" in missing.output


def test_lockstep_batches_equal_unbatched_runs(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    path = tree("cycle_lockstep.yaml")
    assert cli("run", path).exit_code == 0
    batched = outputs_by_prompt(workdir / "genarun.db")
    sizes = [size for model, task, size in CALLS if task == "image"]
    assert sizes == [4, 4, 4]  # the 4 runs' same step: one call per step
    assert sorted({size for _m, task, size in CALLS if task == "caption"}) == [4]
    CALLS.clear()
    assert cli("run", path, "--batch-size", "1", "--no-cache").exit_code == 0
    assert {size for _m, _t, size in CALLS} == {1}
    assert outputs_by_prompt(workdir / "genarun.db") == batched
    assert all(len(v) == 6 for v in batched.values())


def test_an_identical_experiment_is_taken_from_the_cache(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    path = tree("cycle_lockstep.yaml")
    assert cli("run", path).exit_code == 0
    first = outputs_by_prompt(workdir / "genarun.db")
    CALLS.clear()
    result = cli("run", path)
    assert result.exit_code == 0, result.output
    assert CALLS == []  # no model was called again
    db = workdir / "genarun.db"
    second = query(db, "SELECT id FROM runs ORDER BY started DESC LIMIT 4")
    for run in second:  # each run owns a copy of its trajectory, steps and embeddings
        (traj,) = query(db, "SELECT length, status FROM trajectories WHERE run_id = ?", run["id"])
        assert (traj["length"], traj["status"]) == (6, "done")
        assert len(query(db, "SELECT id FROM trajectory_steps WHERE run_id = ?", run["id"])) == 6
        logs = query(db, "SELECT message FROM logs WHERE run_id = ?", run["id"])
        assert any("reused (cache)" in r["message"] for r in logs)
    assert outputs_by_prompt(db) == first
    CALLS.clear()
    assert cli("run", path, "--no-cache").exit_code == 0
    assert len([c for c in CALLS if c[1] == "image"]) == 3  # run again, in lockstep


def test_out_of_memory_halves_the_batch_and_results_match(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    path = tree("cycle_lockstep.yaml")
    assert cli("run", path, "--batch-size", "1").exit_code == 0
    reference = outputs_by_prompt(workdir / "genarun.db")
    path.write_text(path.read_text().replace("max_ok_batch: 1000", "max_ok_batch: 2"))
    CALLS.clear()
    result = cli("run", path)
    assert result.exit_code == 0, result.output
    sizes = [size for _m, task, size in CALLS if task == "image"]
    # The batch of 4 fails and is halved; after 4 good batches it may try 4 again (if the two
    # halves' runs arrive together), fail again and halve again: never more than 4.
    assert sizes[0] == 4 and sizes[1:3] == [2, 2] and set(sizes) <= {2, 4}
    assert sum(size for size in sizes if size == 2) == 4 * 3  # every image made in halves
    assert outputs_by_prompt(workdir / "genarun.db") == reference
    warnings = [
        r["message"]
        for r in query(workdir / "genarun.db", "SELECT message FROM logs WHERE level = 'warning'")
    ]
    assert any("out of memory" in w and "batches of 2" in w for w in warnings)


def test_panic_example_runs_on_tiny_models(cli: Callable[..., Result], workdir: Path) -> None:
    """examples/panic/tree.yaml: tiny SD + BLIP embedded with tiny CLIP, 4 seeds, offline."""
    import shutil

    example = Path(__file__).parents[1] / "examples" / "panic" / "tree.yaml"
    shutil.copy(example, workdir / "tree.yaml")
    result = cli("run", workdir / "tree.yaml", "--set", "steps=4", "--device", "cpu")
    assert result.exit_code == 0, result.output
    db = workdir / "genarun.db"
    runs = query(db, "SELECT id, seed FROM runs")
    assert sorted(r["seed"] for r in runs) == [42, 56, 6545, 545654]
    steps = query(db, "SELECT model, kind FROM trajectory_steps WHERE step < 2 ORDER BY step")
    assert {(s["model"], s["kind"]) for s in steps} == {("painter", "image"), ("captioner", "text")}
    assert {r["model"] for r in query(db, "SELECT DISTINCT model FROM embeddings")} == {"embedder"}
    assert len(query(db, "SELECT id FROM persistence")) == 4
    show = cli("experiments", "show", "latest")
    assert "persistence       4 / 4" in show.output

    # The README's pandas snippet, as written, on this experiment's export.
    export = cli("export", "data", "latest", "--format", "parquet", "--out", "data/")
    assert export.exit_code == 0, export.output
    readme = (example.parent / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert snippet is not None
    *body, last = snippet.group(1).strip().splitlines()
    names: dict[str, object] = {}
    exec("\n".join(body), names)  # the README's own code
    means = eval(last, names)
    assert list(means.index.names) == ["matrix_network", "homology_dim"]
    assert list(means.index.get_level_values("homology_dim")) == [0, 1]  # one network


def test_a_passing_memory_spike_halves_the_batch_then_it_grows_back(
    cli: Callable[..., Result], workdir: Path
) -> None:
    path = workdir / "spike.yaml"
    path.write_text(
        "genarun: 1\nname: spike\nseed: 2\n"
        # Out of memory above 2 items, but only during the model's first call: a spike.
        "models: {painter: {provider: fake, id: fake-t2i, options: {max_ok_batch: 2, oom_calls: 1}}}\n"
        "nodes:\n"
        "  - {id: pictures, kind: image, model: painter, foreach: 'range(16)', prompt: 'picture {{ item }}'}\n"
    )
    CALLS.clear()
    result = cli("run", path, "--batch-size", "4")
    assert result.exit_code == 0, result.output
    sizes = [size for _m, task, size in CALLS if task == "image"]
    # 4 fails; after 4 good batches of 2 the size is doubled back to the full 4.
    assert sizes == [4, 2, 2, 2, 2, 4, 4]
    rows = query(workdir / "genarun.db", "SELECT status FROM executions WHERE node_id = 'pictures'")
    assert [r["status"] for r in rows] == ["done"] * 16
    infos = [
        r["message"]
        for r in query(workdir / "genarun.db", "SELECT message FROM logs WHERE level = 'info'")
    ]
    assert any("trying batches of 4 again" in m for m in infos)
