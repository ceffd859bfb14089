"""Devices asked for by name must exist: a plain message, not torch's from deep in a load."""

from __future__ import annotations

import pytest
import torch

from genarun.errors import ModelError
from genarun.models.device import pick_device


def test_cpu_and_auto_are_always_there() -> None:
    assert pick_device("cpu") == "cpu"
    assert pick_device() in ("cpu", "cuda", "mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_a_plain_message() -> None:
    with pytest.raises(
        ModelError,
        match=r"device 'cuda:1' is not available: this machine has no CUDA GPU.*--device cpu",
    ):
        pick_device("cuda:1")


def test_a_gpu_index_beyond_the_machines_count() -> None:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ModelError, match="is not available"):
        pick_device(f"cuda:{count}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_run_on_a_missing_device_stops_before_anything_runs(cli, workdir) -> None:  # type: ignore[no-untyped-def]
    tree = workdir / "t.yaml"
    tree.write_text("genarun: 1\nname: dev\nnodes:\n  - {id: a, kind: template, text: hi}\n")
    result = cli("run", tree, "--device", "cuda")
    assert result.exit_code == 2 and "device 'cuda' is not available" in result.output
    assert not (workdir / "dev").exists()


@pytest.mark.parametrize("device", ["cuda:x", "cuda:", "cuda:-1", "gpu"])
def test_a_device_that_is_not_a_device_name_is_a_plain_message(
    device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$GENARUN_DEVICE bypasses --device's check: 'cuda:x' gave int()'s 'invalid literal'."""
    monkeypatch.setenv("GENARUN_DEVICE", device)
    with pytest.raises(ModelError, match=f"'{device}' is not a device: use cpu, cuda, cuda:N"):
        pick_device()
