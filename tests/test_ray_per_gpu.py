"""The Ray executor's two actor placements (`ray_actors`): per-model and per-gpu, on a local Ray
with one logical GPU (Ray hands it out; nothing here touches CUDA: the models are dummies
given GPU shares with `ray_num_gpus`). Same outputs as the local executor with either; on a
GPU's shared actor, a killed process is restarted and every batch it lost runs again, and a
model that keeps crashing it fails alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from genarun.errors import UserError
from genarun.run.ray_placement import WAIT_ENV as PLACEMENT_WAIT
from genarun.run.ray_pool import POOL, PooledActor
from genarun.run.ray_sharing import AloneGate
from genarun.run.runner import RunOptions, run_tree
from tests.helpers import PATIENCE, batches_started, query, start_local_ray, wait_until
from tests.helpers import comparable_outputs as outputs
from tests.test_fail_alone import check_failed_alone, fails_alone_then_resumes_on_ray, fault_tree

ray = pytest.importorskip("ray")

PLACEMENTS = ["per-model", "per-gpu"]
# per-model's own GPU actors fault the way tests/test_ray.py's own actors do: slow only.
BOTH = [pytest.param("per-model", marks=pytest.mark.slow), "per-gpu"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray with 2 CPUs and one logical GPU for the module; actors get PATIENCE to
    start (as in tests/test_ray.py)."""
    with pytest.MonkeyPatch.context() as patience:
        patience.setenv(PLACEMENT_WAIT, f"{PATIENCE:g}")
        start_local_ray(ray, num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            POOL.release(ray)
            ray.shutdown()


# Three models sharing the GPU (0.4 + 0.3 + 0.3, as bench/gpu_trajectories.py gives the
# painter, captioner and embedder), and a CPU model beside them.
CYCLE_TREE = """\
genarun: 1
name: shared-gpu
models:
  painter: {provider: dummy, id: dummy-t2i, options: {ray_num_gpus: 0.4, delay: 0.01}}
  captioner: {provider: dummy, id: dummy-i2t, options: {ray_num_gpus: 0.3, delay: 0.01}}
  embedder: {provider: dummy, id: dummy-embed, options: {ray_num_gpus: 0.3}}
matrix:
  seed: [1, 2, 3]
nodes:
  - id: traj
    kind: cycle
    network: [painter, captioner]
    start: "a lighthouse at night"
    steps: 4
    stop_on_repeat: false
    embed: [embedder, dummy-text-embed]
"""


def gpu_actors() -> dict[tuple[Any, ...], PooledActor]:
    """The pool's actors that asked Ray for GPUs."""
    return {key: p for key, p in POOL.actors.items() if p.asks[0] > 0}


def loaded(pooled: PooledActor) -> set[str]:
    """The models an actor's process has loaded (their keys)."""
    return set(ray.get(pooled.actor.describe.remote(), timeout=120)["loads"])


def test_both_placements_give_the_local_outputs(cluster: str, workdir: Path) -> None:
    tree = workdir / "shared.yaml"
    tree.write_text(CYCLE_TREE)

    def run(executor: str, placement: str | None = None) -> Any:
        name = f"{executor}-{placement}"
        db = workdir / f"{name}.db"
        options = RunOptions(db=db, out=workdir / name, executor=executor, ray_actors=placement)
        outcome = run_tree(tree, options)
        assert outcome.status == "completed", outcome.failures
        return [outputs(state.folder, db) for state in outcome.runs]

    local = run("local")
    assert run("ray", "per-model") == local
    per_model = gpu_actors()
    assert len(per_model) == 3 and sorted(p.asks[0] for p in per_model.values()) == [
        0.3,
        0.3,
        0.4,
    ]

    # The per-model actors hold the whole GPU: idle now, they make room for the GPU's actor.
    assert run("ray", "per-gpu") == local
    (pooled,) = gpu_actors().values()
    assert pooled.asks[0] == 1.0 and pooled.key[0] == "gpu"
    assert len(pooled.models) == 3 and len(loaded(pooled)) == 3  # one process holds all three
    assert not set(per_model) & set(POOL.actors), "the idle per-model actors were kept"

    # The next execution takes the same actor: nothing started, nothing loaded again.
    pid = ray.get(pooled.actor.describe.remote())["pid"]
    assert run("ray", "per-gpu") == local
    assert list(gpu_actors().values()) == [pooled]
    assert ray.get(pooled.actor.describe.remote())["pid"] == pid


SLOW_TREE = """\
genarun: 1
name: slow-gpu
seed: 5
models:
  first: {provider: dummy, id: dummy-llm, options: {delay: 0.3, ray_num_gpus: 0.5}}
  second: {provider: dummy, id: dummy-llm, options: {delay: 0.3, ray_num_gpus: 0.5, tag: 2}}
nodes:
  - id: line
    kind: generate
    model: first
    foreach: range(6)
    prompt: "line {{ item }}"
  - id: other
    kind: generate
    model: second
    foreach: range(6)
    prompt: "other {{ item }}"
"""


def stored(db: Path) -> int:
    try:
        return len(query(db, "SELECT id FROM executions"))
    except Exception:  # not created yet
        return 0


@pytest.mark.parametrize("placement", BOTH)
def test_a_killed_gpu_actor_is_restarted_and_its_batches_queued_again(
    cluster: str, workdir: Path, placement: str
) -> None:
    # Both models' batches of 2 run at once (0.6 s each). Once some are stored, the process
    # holding `first` is killed mid-batch; with per-gpu it holds `second` too, and both
    # batches it was running are lost: each is queued again, and the run completes.
    tree = workdir / "slow.yaml"
    log = workdir / "batches.log"
    tree.write_text(
        SLOW_TREE.replace(
            "delay: 0.3, ray_num_gpus: 0.5}", f'delay: 0.3, ray_num_gpus: 0.5, batch_log: "{log}"}}'
        )
    )
    db = workdir / "genarun.db"
    killed: list[str] = []
    ended = threading.Event()

    def kill_the_actor() -> None:
        # Once `first`'s second batch has started (the dummy logs each batch as it starts, in
        # the actor's process), kill the actor holding it in the middle of it. A fixed 0.2 s
        # after two executions were stored was a guess that a busy machine can lose.
        deadline = time.monotonic() + PATIENCE
        while not ended.wait(0.02) and time.monotonic() < deadline:
            # The actor holding `first` (the one model key without a tag).
            holders = [
                p
                for key, p in gpu_actors().items()
                if any("tag" not in name for name in (p.models if key[0] == "gpu" else [key[0]]))
            ]
            if batches_started(log) >= 2 and holders:
                ray.kill(holders[0].actor, no_restart=False)
                killed.append(holders[0].name)
                return

    killer = threading.Thread(target=kill_the_actor)
    killer.start()
    try:
        outcome = run_tree(tree, RunOptions(executor="ray", batch_size=2, ray_actors=placement))
    finally:
        ended.set()
        killer.join()
    assert killed, "the actor was never found"
    assert outcome.status == "completed", outcome.failures
    died = query(db, "SELECT message FROM logs WHERE message LIKE '%died%queued again%'")
    assert died, "the actor's death was not logged"
    if placement == "per-gpu":
        assert any("GPU actor holding model" in row["message"] for row in died), died
    rows = query(db, "SELECT status FROM executions")
    assert [r["status"] for r in rows] == ["done"] * 12

    local = run_tree(tree, RunOptions(db=workdir / "local.db", out=workdir / "local"))
    assert outputs(outcome.runs[0].folder, db) == outputs(
        local.runs[0].folder, workdir / "local.db"
    )


def gpu_fault_tree(folder: Path, bad: str) -> tuple[Path, Path]:
    """tests/test_fail_alone.py's fault tree with both its models on the GPU (0.5 each: with
    per-gpu, one actor holds both), `bad`'s options `bad` (FLAG: the flag file's path)."""
    tree, flag = fault_tree(folder)
    text = tree.read_text().replace(
        "good: {provider: dummy, id: dummy-llm}",
        "good: {provider: dummy, id: dummy-llm, options: {ray_num_gpus: 0.5}}",
    )
    bad = bad.replace("FLAG", str(flag))
    tree.write_text(text.replace(f'{{fail_while: "{flag}"}}', bad))
    return tree, flag


@pytest.mark.parametrize("placement", BOTH)
def test_a_failing_node_fails_alone_on_a_shared_gpu(
    cluster: str,
    workdir: Path,
    cli: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    placement: str,
) -> None:
    monkeypatch.setenv("GENARUN_RAY_ACTORS", placement)  # as a user would set it
    tree, flag = gpu_fault_tree(workdir, '{fail_while: "FLAG", ray_num_gpus: 0.5}')
    db = workdir / "genarun.db"
    fails_alone_then_resumes_on_ray(db, tree, flag, cli)


@pytest.mark.slow  # the GPU actor's process dies and restarts 5-8 times: 30-90 s when busy
def test_a_model_that_keeps_crashing_the_gpu_actor_fails_alone(cluster: str, workdir: Path) -> None:
    # `bad` ends the process on every call (as a CUDA error can) that `good`'s batches share
    # with per-gpu; `good` is slow, so its batches are in flight when `bad` crashes. Each lost
    # batch runs again alone there, so `good` loses a batch once; `bad`'s one input fails
    # alone once it has ended the process 4 times. (Side by side, `good`'s batches were lost
    # at each of the 4 crashes, and its inputs failed too.)
    tree, _ = gpu_fault_tree(workdir, '{crash_on: "a title", ray_num_gpus: 0.5}')
    tree.write_text(
        tree.read_text().replace("{ray_num_gpus: 0.5}}", "{ray_num_gpus: 0.5, delay: 0.2}}")
    )
    db = workdir / "genarun.db"
    outcome = run_tree(tree, RunOptions(executor="ray", ray_actors="per-gpu"))
    check_failed_alone(db, outcome, reason="died 4 times")
    crashes = query(db, "SELECT message FROM logs WHERE message LIKE '%died%queued again%'")
    assert len(crashes) >= 3, crashes


def test_an_unknown_placement_is_a_user_error(
    cluster: str, workdir: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = workdir / "slow.yaml"
    tree.write_text(SLOW_TREE)
    result = cli("run", tree, "--executor", "ray", "--ray-actors", "per-node")
    assert result.exit_code == 2 and "'per-node' is not one of" in result.output, result.output
    monkeypatch.setenv("GENARUN_RAY_ACTORS", "per-node")
    with pytest.raises(UserError, match=r"GENARUN_RAY_ACTORS='per-node'.*per-model.*per-gpu"):
        run_tree(tree, RunOptions(executor="ray"))
    assert not (workdir / "genarun.db").exists() or stored(workdir / "genarun.db") == 0


def test_a_lone_batch_waits_for_the_others_and_keeps_them_out() -> None:
    gate = AloneGate()
    events: list[str] = []
    side_in = threading.Event()
    release_side = threading.Event()

    def side(name: str, wait: threading.Event | None = None) -> None:
        with gate.hold():
            events.append(f"{name} in")
            side_in.set()
            if wait is not None:
                wait.wait(PATIENCE)
            events.append(f"{name} out")

    def alone() -> None:
        with gate.hold(alone=True):
            events.append("alone in")
            time.sleep(0.1)
            events.append("alone out")

    first = threading.Thread(target=side, args=("a", release_side))
    first.start()
    assert side_in.wait(PATIENCE)
    lone = threading.Thread(target=alone)
    lone.start()
    # The lone batch now waits for `a` (the gate counts it: a fixed 0.1 s was a guess that a
    # busy machine lost, letting `b` in first); `b` comes after it.
    wait_until(lambda: gate._waiting_alone == 1, "the lone batch to wait at the gate")
    late = threading.Thread(target=side, args=("b",))
    late.start()
    time.sleep(0.1)  # time for `b` to get in, were the gate open to it
    assert events == ["a in"]
    release_side.set()
    for thread in (first, lone, late):
        thread.join(PATIENCE)
    assert events == ["a in", "a out", "alone in", "alone out", "b in", "b out"]


PAIR_TREE = """\
genarun: 1
name: pair
models:
  kept: {provider: dummy, id: dummy-llm, options: {ray_num_gpus: 0.5}}
  other: {provider: dummy, id: dummy-llm, options: {ray_num_gpus: 0.5, tag: TAG}}
nodes:
  - id: a
    kind: generate
    model: kept
    prompt: "a"
  - id: b
    kind: generate
    model: other
    prompt: "b"
"""


def test_a_gpu_actor_unloads_the_models_no_run_uses_to_make_room(
    cluster: str, workdir: Path
) -> None:
    # The GPU's actor holds `kept` and `other` (0.5 + 0.5). The next tree keeps `kept` and
    # brings another model: the GPU's actor unloads the idle one to hold it, instead of a
    # second GPU actor that the one GPU could never place.
    for tag in ("one", "two"):
        tree = workdir / f"{tag}.yaml"
        tree.write_text(PAIR_TREE.replace("TAG", tag))
        options = RunOptions(db=workdir / f"{tag}.db", executor="ray", ray_actors="per-gpu")
        outcome = run_tree(tree, options)
        assert outcome.status == "completed", outcome.failures
    (pooled,) = gpu_actors().values()
    assert sorted("tag" in key for key in pooled.models) == [False, True]
    assert any("tag='two'" in key for key in pooled.models), pooled.models
    held = loaded(pooled)
    assert not any("tag='one'" in key for key in held), held


def test_gpu_shares_follow_the_device_and_an_explicit_option() -> None:
    from genarun.models.catalog import resolve_model
    from genarun.run.ray_placement import gpu_share

    def share(options: dict[str, Any], device: str | None = None, gpus: float = 1.0) -> float:
        spec = resolve_model(
            "m", {"m": {"provider": "dummy", "id": "dummy-llm", "options": options}}
        )
        return gpu_share(spec, gpus, device)

    assert share({}) == 0.0  # the dummy uses no torch: no GPU unless asked
    assert share({"ray_num_gpus": 0.25}) == 0.25  # asked: any provider may use the GPU
    assert share({"ray_num_gpus": 0.25}, "cuda") == 0.25
    assert share({"ray_num_gpus": 0.25}, "cpu") == 0.0  # the run said cpu: the actor computes there
    assert share({"ray_num_gpus": 0.25}, gpus=0) == 0.0  # no GPU in the cluster
