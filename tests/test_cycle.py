"""The `cycle` node: trajectories, seeds, loops, type checks around the network, retries."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.cycle_fakes import CALLS, use_fakes
from tests.helpers import query


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fakes(monkeypatch)
    CALLS.clear()


def steps_of(db: Path, run_prefix: str = "") -> list[dict]:
    rows = query(
        db,
        "SELECT * FROM trajectory_steps WHERE run_id LIKE ? ORDER BY run_id, step",
        run_prefix + "%",
    )
    return [dict(r) for r in rows]


def test_matrix_of_cycles_stores_steps_embeddings_and_output(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    result = cli("run", tree("cycle_basic.yaml"))
    assert result.exit_code == 0, result.output
    db = workdir / "genarun.db"
    runs = query(db, "SELECT id FROM runs")
    assert len(runs) == 2
    for run in runs:
        steps = steps_of(db, run["id"])
        assert [s["step"] for s in steps] == list(range(6))
        assert [s["kind"] for s in steps] == ["image", "text"] * 3
        assert [s["model"] for s in steps] == ["dummy-t2i", "dummy-i2t"] * 3
        # every output and the start prompt (step -1) embedded, numbered by step
        items = [
            r["item"]
            for r in query(
                db, "SELECT item FROM embeddings WHERE run_id = ? ORDER BY item", run["id"]
            )
        ]
        assert items == list(range(-1, 6))
        for s in steps:
            assert set(json.loads(s["embeddings"])) == {"dummy-embed"}
        traj = query(db, "SELECT * FROM trajectories WHERE run_id = ?", run["id"])[0]
        assert (traj["status"], traj["stop_reason"], traj["length"]) == ("done", "max_steps", 6)
        output = json.loads(
            query(
                db, "SELECT output FROM executions WHERE run_id = ? AND node_id = 'traj'", run["id"]
            )[0]["output"]
        )
        assert [o["step"] for o in output] == list(range(6))
        assert output[0]["value"]["$image"] == "assets/traj-0.png"
        assert output[1]["embeddings"]["dummy-embed"]["$embedding"] > 0


def test_fixed_seed_is_reproducible_and_random_seed_varies(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    path = tree("cycle_basic.yaml")
    assert cli("run", path, "--set", "prompt=a red fox").exit_code == 0
    assert cli("run", path, "--set", "prompt=a red fox").exit_code == 0
    db = workdir / "genarun.db"
    a, b = (r["id"] for r in query(db, "SELECT id FROM runs ORDER BY started, rowid"))
    assert [s["sha256"] for s in steps_of(db, a)] == [s["sha256"] for s in steps_of(db, b)]
    assert len({s["seed"] for s in steps_of(db, a)}) == 1  # one seed for every invocation

    assert cli("run", tree("cycle_random.yaml")).exit_code == 0
    assert cli("run", workdir / "cycle_random.yaml").exit_code == 0
    c, d = (
        r["id"]
        for r in query(
            db, "SELECT id FROM runs WHERE name = 'cycle-random' ORDER BY started, rowid"
        )
    )
    seeds = [s["seed"] for s in steps_of(db, c)]
    assert len(set(seeds)) == 4  # fresh randomness at each step, recorded
    assert [s["sha256"] for s in steps_of(db, c)] != [s["sha256"] for s in steps_of(db, d)]
    traj = query(db, "SELECT seed, seed_random FROM trajectories WHERE run_id = ?", c)[0]
    assert traj["seed_random"] == 1 and traj["seed"] is None


def test_stop_on_repeat_records_reason_and_loop_length(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    result = cli("run", tree("cycle_loop.yaml"))
    assert result.exit_code == 0, result.output
    db = workdir / "genarun.db"
    traj = query(db, "SELECT * FROM trajectories")[0]
    assert traj["stop_reason"] == "repeat"
    assert traj["loop_length"] == 2
    steps = steps_of(db)
    assert len(steps) == traj["length"] < 30
    last = steps[-1]
    assert any(s["sha256"] == last["sha256"] and s["step"] == last["step"] - 2 for s in steps)
    listing = cli("runs", "list")
    assert "repeat" in listing.output and f"{traj['length']}/30" in listing.output


@pytest.mark.parametrize(
    ("name", "line", "words"),
    [
        ("cycle_invalid_wrap.yaml", 6, ["wraps around", "dummy-t2i", "image-to-text model"]),
        (
            "cycle_invalid_chain.yaml",
            6,
            ["position 2", "receives an image", "dummy-t2i", "image-to-text"],
        ),
        (
            "cycle_invalid_unknown.yaml",
            6,
            ["unknown model 'tiny-blipp'", "did you mean 'tiny-blip'"],
        ),
        ("cycle_invalid_embedder.yaml", 9, ["dummy-i2t", "embed"]),
        (
            "cycle_invalid_embed_types.yaml",
            9,
            ["fake-image-embed", "embeds image only", "produces only text"],
        ),
        ("cycle_invalid_steps.yaml", 8, ["steps must be at least 1"]),
    ],
)
def test_bad_networks_fail_before_running(
    tree: Callable[[str], Path],
    cli: Callable[..., Result],
    workdir: Path,
    name: str,
    line: int,
    words: list[str],
) -> None:
    result = cli("run", tree(name))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{name}:{line} node 'traj'" in result.output
    for word in words:
        assert word in result.output
    db = workdir / "genarun.db"
    assert not db.exists() or not query(db, "SELECT * FROM executions")


def test_transient_failure_is_retried_without_redoing_steps(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    result = cli("run", tree("cycle_flaky.yaml"), "--batch-size", "1")
    assert result.exit_code == 0, result.output
    db = workdir / "genarun.db"
    for run in query(db, "SELECT id FROM runs"):
        assert [s["step"] for s in steps_of(db, run["id"])] == list(range(8))
    # 3 runs x 4 image steps, plus the one failed call; nothing done twice
    assert len([c for c in CALLS if c[0] == "fake-t2i"]) == 13
    warnings = query(db, "SELECT message FROM logs WHERE level = 'warning'")
    assert any("CUDA error" in w["message"] for w in warnings)
    assert any(
        "resuming the trajectory" in r["message"] for r in query(db, "SELECT message FROM logs")
    )


def test_a_failing_run_never_stops_the_others(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    result = cli("run", tree("cycle_broken.yaml"))
    assert result.exit_code == 1
    db = workdir / "genarun.db"
    statuses = {r["bindings"]: r["status"] for r in query(db, "SELECT bindings, status FROM runs")}
    assert sorted(statuses.values()) == ["completed", "failed"]
    trajs = {r["stop_reason"]: r["length"] for r in query(db, "SELECT * FROM trajectories")}
    assert trajs == {"failed": 0, "max_steps": 4}
    listing = cli("runs", "list")
    assert "failed" in listing.output


def test_resume_continues_a_failed_trajectory_from_its_last_step(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    result = cli("run", tree("cycle_resume.yaml"))
    assert result.exit_code == 1  # the painter failed twice in a row: the run failed
    db = workdir / "genarun.db"
    run = query(db, "SELECT id, status FROM runs")[0]
    assert run["status"] == "failed"
    done_before = [s["step"] for s in steps_of(db)]
    # step 1's embedding travels with step 2's image, so step 1 is stored only with it
    assert done_before == [0]
    assert query(db, "SELECT stop_reason FROM trajectories")[0]["stop_reason"] == "failed"
    result = cli("resume", run["id"])
    assert result.exit_code == 0, result.output
    assert [s["step"] for s in steps_of(db)] == list(range(8))  # step 0 not redone
    images = [c for c in CALLS if c[0] == "fake-t2i"]
    assert len(images) == 4 + 3  # 4 image steps, each once, plus the 3 failed calls
    traj = query(db, "SELECT * FROM trajectories")[0]
    assert (traj["status"], traj["stop_reason"], traj["length"]) == ("done", "max_steps", 8)


def test_stop_on_repeat_can_vary_in_a_matrix(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    result = cli("run", tree("cycle_repeat_matrix.yaml"))
    assert result.exit_code == 0, result.output
    rows = query(
        workdir / "genarun.db",
        "SELECT r.bindings, t.stop_reason, t.length FROM trajectories t JOIN runs r ON r.id = t.run_id",
    )
    by_repeat = {json.loads(r["bindings"])["repeat"]: (r["stop_reason"], r["length"]) for r in rows}
    assert by_repeat[False] == ("max_steps", 10)
    assert by_repeat[True][0] == "repeat" and by_repeat[True][1] < 10


def test_each_step_records_how_long_its_invocation_took(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    # The painter sleeps 0.1 s per invocation; the captioner does not sleep at all.
    path = tree("cycle_basic.yaml")
    path.write_text(
        path.read_text()
        .replace(
            "nodes:",
            "models:\n  painter: {provider: dummy, id: dummy-t2i, options: {delay: 0.1}}\nnodes:",
        )
        .replace("[dummy-t2i, dummy-i2t]", "[painter, dummy-i2t]")
    )
    assert cli("run", path).exit_code == 0
    steps = steps_of(workdir / "genarun.db")
    assert len(steps) == 12
    # even steps are the painter's (its position in the network), odd ones the captioner's
    painted = [s["duration"] for s in steps if s["step"] % 2 == 0]
    captioned = [s["duration"] for s in steps if s["step"] % 2 == 1]
    assert len(painted) == len(captioned) == 6
    assert min(painted) >= 0.1 and 0 <= max(captioned) < min(painted), steps


def test_a_step_that_raises_inside_the_cycle_marks_its_trajectory_failed(
    cli: Callable[..., Result], workdir: Path
) -> None:
    # The painter answers its 2nd call with text: the cycle itself raises on it (not the
    # model call), and the trajectory must say failed, not stay 'running'.
    path = workdir / "garbage.yaml"
    path.write_text(
        "genarun: 1\nname: garbage\nseed: 3\n"
        "models: {painter: {provider: fake, id: fake-t2i, options: {garbage_calls: [2, 3]}}}\n"
        "nodes:\n"
        "  - {id: traj, kind: cycle, network: [painter, fake-i2t], start: a fox, steps: 6,"
        " stop_on_repeat: false, retries: 1}\n"
    )
    result = cli("run", path)
    assert result.exit_code == 1, result.output
    (traj,) = query(workdir / "genarun.db", "SELECT status, stop_reason, length FROM trajectories")
    assert (traj["status"], traj["stop_reason"], traj["length"]) == ("failed", "failed", 2)


def test_stop_on_repeat_any_earlier_output_by_default_or_same_position(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    """PANIC-TDA stops a run when an output repeats any earlier output; genarun stopped only
    at a repeat in the same network position. Both are recorded with the loop length."""
    result = cli("run", tree("cycle_repeat_modes.yaml"))
    assert result.exit_code == 0, result.output
    db = workdir / "genarun.db"
    found = {}
    for run in query(db, "SELECT id, bindings FROM runs"):
        traj = query(db, "SELECT * FROM trajectories WHERE run_id = ?", run["id"])[0]
        steps = steps_of(db, run["id"])
        found[json.loads(run["bindings"])["repeat"]] = (traj, steps)
    default, any_, position, never = (found[k] for k in (True, "any", "position", False))
    assert default[0]["length"] == any_[0]["length"] and default[0]["loop_length"] == 2
    traj, steps = any_
    assert (traj["stop_reason"], traj["loop_length"]) == ("repeat", 2)
    last = steps[-1]
    # the last output repeats one two steps back, at the other position of the same model
    assert [s["sha256"] for s in steps if s["step"] == last["step"] - 2] == [last["sha256"]]
    assert len({s["sha256"] for s in steps[:-1]}) == len(steps) - 1  # no repeat before it
    traj, steps = position
    assert (traj["stop_reason"], traj["loop_length"]) == ("repeat", 4)
    assert traj["length"] > any_[0]["length"]
    assert (never[0]["stop_reason"], never[0]["length"]) == ("max_steps", 16)


def test_texts_cut_at_the_token_ceiling_are_counted(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    """Captions run to their natural end under a generous ceiling (PANIC-TDA's 1024 tokens,
    not 40 silently); each step records whether its text was cut there, and each trajectory
    how many were."""
    result = cli("run", tree("cycle_ceiling.yaml"))
    assert result.exit_code == 0, result.output
    db = workdir / "genarun.db"
    for run in query(db, "SELECT id, bindings FROM runs"):
        ceiling = json.loads(run["bindings"])["ceiling"]
        traj = query(
            db, "SELECT * FROM trajectories WHERE run_id = ? AND node_id = 'traj'", run["id"]
        )[0]
        steps = [s for s in steps_of(db, run["id"]) if s["node_id"] == "traj"]
        cut = 1 if ceiling == 4 else 0
        assert [s["hit_limit"] for s in steps] == [None, cut] * 3  # images: not applicable
        assert traj["hit_limit"] == 3 * cut
        texts = [s["value"] for s in steps if s["kind"] == "text"]
        assert all(len(t.split()) == (3 + (4 if cut else 6)) for t in texts)  # "A picture of"
        natural = query(
            db,
            "SELECT hit_limit FROM trajectories WHERE run_id = ? AND node_id = 'natural'",
            run["id"],
        )[0]
        assert natural["hit_limit"] == 0  # the default ceiling cuts nothing
    listing = cli("runs", "list").output
    assert "6/6 max_steps, 3 cut at max_tokens" in listing
    logs = query(db, "SELECT message FROM logs WHERE level = 'warning'")
    assert any("3 of 3 texts were cut at the token ceiling" in r["message"] for r in logs)


def test_a_steps_rows_are_written_after_the_next_steps_batch_is_dispatched(
    tree: Callable[[str], Path],
    cli: Callable[..., Result],
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bookkeeping of a step (its embeddings, its row, the wait for its PNG) runs after the
    next step's model batch has gone out, so the models never wait for it (issue 18: with 64
    runs, 2 s of a GPU run had no model busy while the scheduler stored the last step)."""
    from genarun.nodes import cycle
    from genarun.run.batching import ModelBatcher

    log: list[tuple[str, Any]] = []
    dispatch, store = ModelBatcher.dispatch, cycle._store_pending

    def logged_dispatch(self: ModelBatcher, *args: Any, **kwargs: Any) -> None:
        before = {key: len(q.items) for key, q in self.queues.items()}
        dispatch(self, *args, **kwargs)
        for key, q in self.queues.items():
            if len(q.items) < before[key] and q.task in ("image", "caption"):
                log.append(("dispatch", q.task))

    def logged_store(ctx: Any, records: list[dict[str, Any]], step: int, *rest: Any) -> None:
        log.append(("store", step))
        store(ctx, records, step, *rest)

    monkeypatch.setattr(ModelBatcher, "dispatch", logged_dispatch)
    monkeypatch.setattr(cycle, "_store_pending", logged_store)
    result = cli("run", tree("cycle_basic.yaml"), "--set", "prompt=a red fox")
    assert result.exit_code == 0, result.output
    # One run of 6 steps: the i-th generation batch is step i. Step k's embeddings return
    # with step k + 1's output; its rows are written only after step k + 2's batch went out
    # (the start prompt's embedding is step -1).
    dispatched = [i for i, entry in enumerate(log) if entry[0] == "dispatch"]
    assert len(dispatched) == 6
    for step in range(-1, 4):
        assert log.index(("store", step)) > dispatched[step + 2], log
    # and every step is stored, in order, once
    assert [s for kind, s in log if kind == "store"] == list(range(-1, 6))
    db = workdir / "genarun.db"
    assert [s["step"] for s in steps_of(db)] == list(range(6))


def test_a_deferred_step_write_that_fails_fails_the_attempt_and_the_retry_goes_on(
    tree: Callable[[str], Path],
    cli: Callable[..., Result],
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step's rows are written after the generator moved on; their error still reaches the
    cycle (thrown in where it resumes), which fails the attempt, and the retry continues from
    the last stored step."""
    from genarun.nodes import cycle

    store = cycle._store_pending
    failed: list[int] = []

    def flaky_store(ctx: Any, records: list[dict[str, Any]], step: int, *rest: Any) -> None:
        if step == 2 and not failed:
            failed.append(step)
            raise OSError("disk hiccup")
        store(ctx, records, step, *rest)

    monkeypatch.setattr(cycle, "_store_pending", flaky_store)
    result = cli("run", tree("cycle_basic.yaml"), "--set", "prompt=a red fox")
    assert result.exit_code == 0, result.output
    assert failed == [2]
    db = workdir / "genarun.db"
    assert [s["step"] for s in steps_of(db)] == list(range(6))
    messages = [r["message"] for r in query(db, "SELECT message FROM logs")]
    assert any("attempt 1 failed" in m and "disk hiccup" in m for m in messages), messages
    resumed = [m for m in messages if "resuming the trajectory" in m]
    assert resumed == ["resuming the trajectory at step 2 of 6"], messages
