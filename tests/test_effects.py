"""Executor effects with real threads: I/O calls against a real loopback server (per-host and
per-node limits, concurrent with a model batch, sent once when a model batch is halved), CPU
work off the scheduler thread, and durable waits."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from genarun.run.runner import RunOptions, run_tree
from tests.effect_fakes import CountingServer, answer, server, use_effect_fakes
from tests.helpers import query

__all__ = ["server"]  # the fixture, used by name


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    use_effect_fakes(monkeypatch)


def write(workdir: Path, text: str) -> Path:
    path = workdir / "tree.yaml"
    path.write_text("genarun: 1\n" + text)
    return path


def test_io_calls_keep_the_per_host_limit(workdir: Path) -> None:
    with CountingServer(delay=0.05, gather=8) as server:
        check_host_limit(workdir, server)


def check_host_limit(workdir: Path, server: CountingServer) -> None:
    tree = write(
        workdir,
        f"name: hosts\nnodes:\n  - id: page\n    kind: get\n    foreach: range(24)\n"
        f"    url: '{server.url}/page/{{{{ item }}}}'\n",
    )
    outcome = run_tree(tree, RunOptions())
    assert outcome.status == "completed", outcome.failures
    assert sorted(server.hits) == sorted(f"/page/{i}" for i in range(24))
    assert set(server.hits.values()) == {1}
    # 24 calls on 64 I/O threads, each held until 8 are served at once: only the host limit
    # (8) holds them back (without it, all 24 would be served at once).
    assert server.max_active == 8


def test_node_concurrency_caps_its_calls(workdir: Path) -> None:
    with CountingServer(delay=0.05, gather=3) as server:
        check_node_cap(workdir, server)


def check_node_cap(workdir: Path, server: CountingServer) -> None:
    tree = write(
        workdir,
        f"name: capped\nnodes:\n  - id: page\n    kind: get\n    foreach: range(10)\n"
        f"    concurrency: 3\n    url: '{server.url}/p/{{{{ item }}}}'\n",
    )
    outcome = run_tree(tree, RunOptions())
    assert outcome.status == "completed", outcome.failures
    assert server.max_active == 3
    assert sum(server.hits.values()) == 10


def test_io_runs_while_a_model_batch_runs(workdir: Path, server: CountingServer) -> None:
    # The model's call returns only once the server saw the request, and the request is
    # answered only once the model's call began: the run finishes only if both run at once.
    from tests.effect_fakes import MeetingModel

    MeetingModel.server = server
    tree = write(
        workdir,
        "name: overlap\nnodes:\n"
        "  - id: pic\n    kind: image\n    model: meeting-t2i\n    prompt: a cat\n"
        f"  - id: page\n    kind: get\n    url: '{server.url}/meet'\n",
    )
    try:
        outcome = run_tree(tree, RunOptions())
    finally:
        MeetingModel.server = None
    assert outcome.status == "completed", outcome.failures
    assert server.hits["/meet"] == 1


@pytest.mark.parametrize("together", [False, True])
def test_a_call_is_sent_once_when_a_model_batch_is_halved(
    workdir: Path, server: CountingServer, together: bool
) -> None:
    # The dummy painter runs out of memory (simulated) above 2 images a batch. Together: the
    # 8 calls and paintings are asked at once, so the first batch is 8. One after the other:
    # the first painting (0.3 s) runs alone while the other calls return and queue behind it.
    tree = write(
        workdir,
        "name: halved\nmodels:\n  painter: {provider: dummy, id: dummy-t2i, "
        "options: {max_ok_batch: 2, delay: 0.3}}\n"
        "nodes:\n  - id: post\n    kind: get_then_paint\n    foreach: range(8)\n"
        f"    together: {str(together).lower()}\n    model: painter\n"
        f"    prompt: 'picture {{{{ item }}}}'\n    url: '{server.url}/post/{{{{ item }}}}'\n",
    )
    outcome = run_tree(tree, RunOptions(batch_size=8))
    assert outcome.status == "completed", outcome.failures
    halved = query(
        workdir / "genarun.db",
        "SELECT message FROM logs WHERE message LIKE '%CUDA out of memory%retrying in batches%'",
    )
    assert halved, "no batch was halved: the test proves nothing"
    assert server.hits == {f"/post/{i}": 1 for i in range(8)}  # each call sent exactly once
    output = json.loads((outcome.runs[0].folder / "output.json").read_text())
    assert [entry["value"]["body"] for entry in output["post"]] == [f"/post/{i}" for i in range(8)]


def test_cpu_work_runs_off_the_scheduler_thread(workdir: Path) -> None:
    tree = write(workdir, "name: cpu\nnodes:\n  - id: work\n    kind: cpu\n")
    outcome = run_tree(tree, RunOptions())
    assert outcome.status == "completed", outcome.failures
    output = json.loads((outcome.runs[0].folder / "output.json").read_text())["work"]
    assert output["ran_on"].startswith("genarun-cpu")
    assert output["scheduler"] == "MainThread"


def test_cpu_work_holding_the_gil_never_stalls_the_scheduler(workdir: Path) -> None:
    """While one node's CPU work holds the GIL (in C, as ripser's persistence does), another
    node's calls, each dispatched by the scheduler thread, all go on and finish first."""
    import os

    tree = write(
        workdir,
        "name: gil\nnodes:\n  - id: slow\n    kind: gil\n    size: 60000000\n"
        "  - id: ticks\n    kind: ticks\n    count: 10\n",
    )
    outcome = run_tree(tree, RunOptions())
    assert outcome.status == "completed", outcome.failures
    output = json.loads((outcome.runs[0].folder / "output.json").read_text())
    slow, ticks = output["slow"], output["ticks"]["times"]
    assert slow["total"] == 60000000 * (60000000 - 1) // 2
    # The ticks began once the count had started, and the last came while it still ran, not
    # after it: the scheduler thread went on.
    assert ticks[-1] < slow["ended"], (ticks[-1] - slow["started"], slow["ended"] - slow["started"])
    assert slow["pid"] != os.getpid()  # in a worker process


def test_an_error_in_cpu_work_fails_its_node_with_the_message(workdir: Path) -> None:
    tree = write(workdir, "name: cpu\nnodes:\n  - id: work\n    kind: cpu\n    fail: true\n")
    outcome = run_tree(tree, RunOptions())
    assert outcome.status == "failed"
    [failure] = outcome.failures
    assert (failure.node, failure.path, failure.message) == ("work", (), "the CPU work broke")


WAIT_TREE = """\
name: asking
nodes:
  - id: ask
    kind: ask
    question: what colour?
    children:
      - id: reply
        kind: template
        text: "you said {{ ask }}"
  - id: uses
    kind: template
    text: "again {{ ask }}"
  - id: other
    kind: generate
    model: dummy
    prompt: an independent branch
"""


def test_a_wait_parks_its_dependents_and_the_run_ends_waiting(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    tree = write(workdir, WAIT_TREE)
    result = cli("run", str(tree))
    assert result.exit_code == 0, result.output
    assert "waiting: ask: ask" in result.output
    db = workdir / "genarun.db"
    run = query(db, "SELECT id, status FROM runs")[0]
    assert run["status"] == "waiting"
    rows = {r["node_id"]: r for r in query(db, "SELECT * FROM executions")}
    # The independent branch ran; the dependents of the wait were neither run nor failed.
    assert set(rows) == {"ask", "other"}
    assert rows["other"]["status"] == "done"
    assert rows["ask"]["status"] == "waiting"
    assert json.loads(rows["ask"]["output"]) == {
        "key": "ask",
        "payload": {"question": "what colour?"},
    }

    answer(workdir, "ask", "green")
    resumed = cli("resume", run["id"][:8])
    assert resumed.exit_code == 0, resumed.output
    assert query(db, "SELECT status FROM runs")[0]["status"] == "completed"
    out_dir = query(db, "SELECT out_dir FROM runs")[0]["out_dir"]
    output = json.loads((Path(out_dir) / "output.json").read_text())
    assert output["ask"] == {"value": "green", "reply": "you said green"}
    assert output["uses"] == "again green"
    # The independent branch was kept, not run again.
    assert len(query(db, "SELECT * FROM executions WHERE node_id = 'other'")) == 1


def test_a_wait_answered_while_the_run_goes_on_resumes_in_the_same_run(workdir: Path) -> None:
    # The other branch keeps the run busy for a while; the answer comes meanwhile.
    tree = write(
        workdir,
        WAIT_TREE.replace("question: what colour?", "question: what colour?\n    poll_every: 0.05")
        .replace("model: dummy", "model: {provider: dummy, id: slow, options: {delay: 0.2}}")
        .replace("  - id: other\n", "  - id: other\n    foreach: range(3)\n"),
    )
    answer(workdir, "ask", "blue")
    (workdir / "answers" / "ask.txt").unlink()

    import threading

    timer = threading.Timer(0.15, answer, (workdir, "ask", "blue"))
    timer.start()
    try:
        outcome = run_tree(tree, RunOptions(batch_size=1))
    finally:
        timer.cancel()
    assert outcome.status == "completed", outcome.failures
    output = json.loads((outcome.runs[0].folder / "output.json").read_text())
    assert output["ask"]["reply"] == "you said blue"
