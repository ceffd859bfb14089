"""The Ray executor on a local Ray (2 CPUs, no dashboard), started once for the module: the same
outputs as the local executor, an actor killed mid-run recovers, a killed driver resumes."""

from __future__ import annotations

import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from genarun.run.ray_actor import ModelHost
from genarun.run.ray_placement import WAIT_ENV as PLACEMENT_WAIT
from genarun.run.ray_pool import POOL, PooledActor
from genarun.run.runner import RunOptions, run_tree
from tests.helpers import PATIENCE, batches_started, query, start_local_ray
from tests.helpers import comparable_outputs as outputs
from tests.test_fail_alone import check_failed_alone, fails_alone_then_resumes_on_ray, fault_tree

ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray for the whole module; its address, for drivers in other processes. Actors
    that must start get PATIENCE to start (genarun's 120 s ran out on a slow, busy machine,
    which failed the run); a test of the wait itself sets its own."""
    with pytest.MonkeyPatch.context() as patience:
        patience.setenv(PLACEMENT_WAIT, f"{PATIENCE:g}")
        start_local_ray(ray, num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            ray.shutdown()


def run_both(tmp: Path, tree: Path, **options: Any) -> tuple[Any, Any]:
    """Run `tree` with the local and the Ray executor (separate databases): both outputs."""
    found = []
    for executor in ("local", "ray"):
        db = tmp / f"{executor}.db"
        outcome = run_tree(
            tree,
            RunOptions(db=db, out=tmp / executor, executor=executor, **options),
        )
        assert outcome.status == "completed", (executor, outcome.failures)
        found.append([outputs(run.folder, db) for run in outcome.runs])
    return found[0], found[1]


@pytest.mark.slow  # the tiny models load in the driver and in Ray's actors: about a minute
@pytest.mark.parametrize("example", ["story", "blog"])
def test_examples_give_the_same_outputs_on_ray(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example: str
) -> None:
    monkeypatch.setenv("GENARUN_HOME", str(tmp_path / "home"))
    shutil.copytree(REPO / "examples" / example, tmp_path / example)
    tree = tmp_path / example / "tree.yaml"
    local, on_ray = run_both(tmp_path, tree, seed=3)
    assert local == on_ray


@pytest.mark.slow
def test_panic_gives_the_same_trajectories_on_ray(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENARUN_HOME", str(tmp_path / "home"))
    tree = tmp_path / "panic.yaml"
    text = (REPO / "examples/panic/tree.yaml").read_text()
    tree.write_text(text.replace("steps: 20", "steps: 4"))
    local, on_ray = run_both(tmp_path, tree)
    assert len(local) == 4 and local == on_ray


def stored(db: Path) -> int:
    """Executions stored so far (0 before the store exists)."""
    try:
        return len(query(db, "SELECT id FROM executions"))
    except sqlite3.OperationalError:  # not created yet
        return 0


SLOW_TREE = """\
genarun: 1
name: slow
seed: 5
models:
  slow: {provider: dummy, id: dummy-llm, options: {delay: 0.4}}
nodes:
  - id: line
    kind: generate
    model: slow
    foreach: range(6)
    prompt: "line {{ item }}"
"""


def test_a_killed_model_actor_is_restarted_and_its_batch_queued_again(
    cluster: str, workdir: Path
) -> None:
    tree = workdir / "slow.yaml"
    log = workdir / "batches.log"
    tree.write_text(SLOW_TREE.replace("delay: 0.4", f'delay: 0.4, batch_log: "{log}"'))
    killed: list[str] = []
    ended = threading.Event()

    def kill_the_actor() -> None:
        # Once the second batch (2 lines, 0.8 s) has started (the dummy logs each batch as it
        # starts, in the actor's process): kill the process of the actor that holds the model
        # in the middle of it (Ray restarts the actor). Waiting a fixed 24 s for the first
        # batch, then 0.2 s more, was a guess: a busy machine starts Ray's actors slowly.
        deadline = time.monotonic() + PATIENCE
        while not ended.wait(0.02) and time.monotonic() < deadline:
            if batches_started(log) >= 2:
                pooled = shared_actor()
                ray.kill(pooled.actor, no_restart=False)
                killed.append(pooled.name)
                return

    killer = threading.Thread(target=kill_the_actor)
    killer.start()
    try:
        outcome = run_tree(tree, RunOptions(executor="ray", batch_size=2))
    finally:
        ended.set()
        killer.join()
    assert killed, "the actor was never found"
    assert outcome.status == "completed", outcome.failures
    db = workdir / "genarun.db"
    died = query(db, "SELECT message FROM logs WHERE message LIKE '%died%queued again%'")
    assert died, "the actor's death was not logged"
    rows = query(db, "SELECT status FROM executions")
    assert [r["status"] for r in rows] == ["done"] * 6

    local = run_tree(tree, RunOptions(db=workdir / "local.db", out=workdir / "local"))
    assert outputs(outcome.runs[0].folder, db) == outputs(
        local.runs[0].folder, workdir / "local.db"
    )


def test_a_driver_killed_with_sigkill_is_resumed_on_ray(cluster: str, workdir: Path) -> None:
    # Driver and resume are processes of their own that join the cluster (`--ray-address`).
    # The killed driver's model actors end with it (they are not detached); the resumed
    # driver connects to the same cluster, starts its actors there and finishes the run.
    from ray._private import state as gcs  # the job and actor tables, no dashboard needed

    tree = workdir / "slow.yaml"
    tree.write_text(SLOW_TREE.replace("delay: 0.4", "delay: 0.3"))
    db = workdir / "genarun.db"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}

    def genarun(*args: str) -> list[str]:
        return [sys.executable, "-m", "genarun", *args, "--executor", "ray", "--ray-address"]

    driver = subprocess.Popen(
        [*genarun("run", str(tree), "--batch-size", "1"), cluster],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Until two executions are stored (the driver connects, starts its actor and loads
        # the model first: under a heavy load that took over 30 s).
        for _ in range(3600):
            if stored(db) >= 2:
                break
            time.sleep(0.05)
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        driver.wait(PATIENCE)
    done_before = len(query(db, "SELECT id FROM executions"))
    assert 2 <= done_before < 6
    run_id = query(db, "SELECT id FROM runs")[0]["id"]
    resume = subprocess.run(
        [*genarun("resume", run_id[:8]), cluster],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resume.returncode == 0, resume.stdout + resume.stderr
    rows = query(db, "SELECT node_id, path, status FROM executions")
    assert sorted(r["path"] for r in rows) == sorted(f"[{i}]" for i in range(6))
    assert query(db, "SELECT status FROM runs")[0]["status"] == "completed"

    # Both drivers were jobs of this cluster; the killed one's actors died with it.
    jobs = {job["DriverPid"]: job["JobID"] for job in gcs.jobs()}
    assert driver.pid in jobs, "the killed driver was not on the cluster"
    killed = [a for a in gcs.actors().values() if a["JobID"] == jobs[driver.pid]]
    assert killed and all(a["State"] == "DEAD" for a in killed), killed
    resumed = [job for pid, job in jobs.items() if pid not in (driver.pid, os.getpid())]
    assert resumed, f"the resumed driver did not join the cluster: {gcs.jobs()}"
    started = [a for a in gcs.actors().values() if a["JobID"] in resumed]
    assert any(a["Name"].startswith("genarun-") for a in started), started


def shared_actor() -> PooledActor:
    """The pool's one actor for models with no GPU or CPUs of their own (the dummy's)."""
    (pooled,) = [p for key, p in POOL.actors.items() if key[0] == "shared"]
    return pooled


QUICK_TREE = SLOW_TREE.replace("slow", "quick").replace("delay: 0.4", "delay: 0, tag: pool")


def quick_actors() -> dict[str, int]:
    """The pool's actor holding QUICK_TREE's model: name -> process id."""
    pooled = shared_actor()
    return {pooled.name: ray.get(pooled.actor.describe.remote())["pid"]}


def test_model_actors_outlive_a_run_and_a_dead_one_is_replaced(cluster: str, workdir: Path) -> None:
    tree = workdir / "quick.yaml"
    tree.write_text(QUICK_TREE)

    def run(n: int) -> Any:
        db = workdir / f"{n}.db"
        outcome = run_tree(tree, RunOptions(db=db, out=workdir / str(n), executor="ray"))
        assert outcome.status == "completed", outcome.failures
        return outputs(outcome.runs[0].folder, db)

    first = run(1)
    actors = quick_actors()
    assert len(actors) == 1
    assert run(2) == first
    assert quick_actors() == actors  # the same actor, the same process: no new start

    # Killed for good between runs: the next run finds it dead and starts another.
    ray.kill(shared_actor().actor, no_restart=True)
    assert run(3) == first
    replaced = quick_actors()
    assert len(replaced) == 1 and replaced != actors

    # Released (as at interpreter exit): the actor is ended, and a later run starts anew.
    pooled = shared_actor()
    POOL.release(ray)
    for _ in range(300):  # ray.kill is asynchronous: calls fail once the kill has landed
        try:
            ray.get(pooled.actor.describe.remote(), timeout=60)
        except ray.exceptions.RayActorError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the released actor still answers")
    (old,) = replaced
    assert old not in ray.util.list_named_actors()
    assert run(4) == first
    assert len(quick_actors()) == 1


TWO_MODELS_TREE = """\
genarun: 1
name: two
seed: 2
models:
  first: {provider: dummy, id: dummy-llm, options: {load_delay: 2, ray_num_cpus: 0.01}}
  second: {provider: dummy, id: dummy-llm, options: {load_delay: 2, ray_num_cpus: 0.02}}
nodes:
  - id: plan
    kind: generate
    model: first
    prompt: "a plan"
    children:
      - id: text
        kind: generate
        model: second
        prompt: "write {{ plan }}"
"""


def test_the_actors_of_a_tree_start_at_once(cluster: str, workdir: Path) -> None:
    # `second` is first asked for after `first` has answered: started then, its 2 s load would
    # come after `first`'s. Started with the run, the two loads overlap.
    tree = workdir / "two.yaml"
    tree.write_text(TWO_MODELS_TREE)
    outcome = run_tree(tree, RunOptions(executor="ray"))
    assert outcome.status == "completed", outcome.failures
    loads = {}
    for key, pooled in POOL.actors.items():
        if "load_delay" in str(key[0]):  # actors of their own (ray_num_cpus): one model each
            loads.update(ray.get(pooled.actor.describe.remote())["loads"])
    assert len(loads) == 2, loads
    (a_began, a_ended), (b_began, b_ended) = loads.values()
    assert a_ended - a_began >= 2 and b_ended - b_began >= 2
    assert a_began < b_ended and b_began < a_ended, "the models loaded one after the other"


def test_a_failing_node_fails_alone_on_ray(
    cluster: str, workdir: Path, cli: Callable[..., Result]
) -> None:
    tree, flag = fault_tree(workdir)
    db = workdir / "genarun.db"
    fails_alone_then_resumes_on_ray(db, tree, flag, cli)


@pytest.mark.slow  # four actor processes die and restart: 30-100 s on a busy 2-core machine
def test_a_model_that_keeps_crashing_its_actor_fails_alone(cluster: str, workdir: Path) -> None:
    # `bad` ends its process on every call (as a CUDA error can): first in the shared actor,
    # which takes the others' batches down with it once; then in an actor of its own, until
    # its execution fails. Everything else completes, in both runs.
    tree, _flag = fault_tree(workdir)
    text = tree.read_text()
    tree.write_text(text.replace('fail_while: "', 'crash_on: "a title", unused: "'))
    db = workdir / "genarun.db"
    check_failed_alone(db, run_tree(tree, RunOptions(executor="ray")), reason="died 4 times")
    crashes = query(db, "SELECT message FROM logs WHERE message LIKE '%died%queued again%'")
    assert len(crashes) >= 3, crashes


def load_fault_tree(folder: Path, options: str) -> Path:
    """The fault tree of tests/test_fail_alone.py with `bad` given `options` instead."""
    folder.mkdir(exist_ok=True)
    tree, flag = fault_tree(folder)
    tree.write_text(tree.read_text().replace(f'{{fail_while: "{flag}"}}', options))
    return tree


@pytest.mark.parametrize("own", [True, False], ids=["own-actor", "shared-actor"])
def test_a_model_that_fails_to_load_fails_its_nodes_alone_on_ray(
    cluster: str, workdir: Path, own: bool
) -> None:
    # `bad` raises while loading. The local executor is the reference: the nodes that use it
    # fail with its error, the rest of both runs completes, and the run ends. On Ray the error
    # is the model's own too, named (it used to be Ray's "actor died" without it).
    options = '{fail_load: "weights missing here"' + (", ray_num_cpus: 0.5}" if own else "}")
    local = workdir / "local"
    tree = load_fault_tree(local, options)
    ref = run_tree(tree, RunOptions(executor="local", db=local / "genarun.db"))
    check_failed_alone(local / "genarun.db", ref, reason="weights missing here")

    tree = load_fault_tree(workdir / "ray", options)
    db = workdir / "ray" / "genarun.db"
    check_failed_alone(db, run_tree(tree, RunOptions(executor="ray", db=db)), "weights missing")
    error = query(db, "SELECT error FROM executions WHERE status = 'failed'")[0]["error"]
    assert "model 'bad' failed to load" in error and "RuntimeError" in error, error


@pytest.mark.slow  # two actor processes die while loading: 10-30 s on a busy 2-core machine
def test_a_model_whose_loading_kills_its_actor_fails_alone(cluster: str, workdir: Path) -> None:
    # Loading `bad` ends its actor's process. Ray restarts an actor that dies while it is being
    # created for ever: the run used to hang. Now its nodes fail and the rest completes.
    tree = load_fault_tree(workdir, "{crash_load: true, ray_num_cpus: 0.5}")
    db = workdir / "genarun.db"
    outcome = run_tree(tree, RunOptions(executor="ray", db=db))
    check_failed_alone(db, outcome, reason="died while loading it, twice")


def test_a_model_asking_more_than_any_node_has_fails_alone_at_once(workdir: Path) -> None:
    # `bad` asks for more CPUs than this machine has. The driver starts its own Ray (nothing
    # will join it): the model's nodes fail at once, naming the model, what it asked for and
    # the fix; the rest completes. Ray itself only leaves such an actor pending: the run hung.
    tree = load_fault_tree(workdir, "{ray_num_cpus: 512}")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "genarun", "run", str(tree), "--executor", "ray"],
        cwd=workdir,
        env={**env, "GENARUN_RAY_PLACEMENT_TIMEOUT": "600"},  # never reached: no waiting
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert time.monotonic() - began < 300
    assert done.returncode != 0, done.stdout
    db = workdir / "genarun.db"
    (failed,) = query(db, "SELECT node_id, error FROM executions WHERE status = 'failed'")
    error = failed["error"]
    assert failed["node_id"] == "broken", error
    assert "model 'bad': its Ray actor asks for 0 GPUs and 512 CPUs" in error, error
    assert "no node of the cluster has that much" in error and "ray_num_cpus" in error, error
    statuses = sorted(r["status"] for r in query(db, "SELECT status FROM runs"))
    assert statuses == ["completed", "failed"]


PLACED_TREE = """\
genarun: 1
name: placed
nodes:
  - id: line
    kind: generate
    model: {provider: dummy, id: dummy-llm, options: {ray_num_cpus: NEED, tag: placed}}
    prompt: "a line"
"""


def test_a_model_whose_actor_cannot_be_placed_fails_after_the_wait(
    cluster: str, workdir: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another job's actor holds all but half a CPU: the model's actor (1 CPU) fits the
    # cluster but not what is free, and Ray would leave it pending for ever. After the wait
    # the node fails with what the cluster has and the fix; once the CPUs are free, resume.
    free = ray.available_resources().get("CPU", 0.0)
    assert free > 0.6, ray.available_resources()
    # What is free once the holder goes (actors of earlier tests in this module may keep a
    # share): the model asks for that much, at most 1 CPU, so that resume can place it.
    need = min(1.0, math.floor(free * 100) / 100)
    holder = ray.remote(num_cpus=free - 0.5)(ModelHost).remote(None)  # as another driver's
    ray.get(holder.__ray_ready__.remote())
    monkeypatch.setenv("GENARUN_RAY_PLACEMENT_TIMEOUT", "2")
    tree = workdir / "placed.yaml"
    tree.write_text(PLACED_TREE.replace("NEED", f"{need:g}"))
    db = workdir / "genarun.db"
    outcome = run_tree(tree, RunOptions(executor="ray"))
    assert outcome.status == "failed"
    (failed,) = query(db, "SELECT error FROM executions WHERE status = 'failed'")
    error = failed["error"]
    asked = f"0 GPUs and {need:g} CPU{'' if need == 1 else 's'}"
    assert f"asks for {asked} and was not started in 2 s" in error, error
    assert "0.5 CPUs free" in error and "ray_num_cpus options" in error, error
    assert not [key for key in POOL.actors if "placed" in str(key[0])], "the actor was kept"

    ray.kill(holder)
    monkeypatch.setenv("GENARUN_RAY_PLACEMENT_TIMEOUT", f"{PATIENCE:g}")
    resumed = cli("resume", outcome.runs[0].id[:8], "--executor", "ray")
    assert resumed.exit_code == 0, resumed.output
    assert query(db, "SELECT status FROM runs")[0]["status"] == "completed"
