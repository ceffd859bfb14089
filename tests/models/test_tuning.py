"""Opt-in model tuning (compile, channels_last, attention) and the painter's fast PIL path,
offline, on the CPU: where compiling cannot work the model runs as before with one logged line."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from genarun.errors import ModelError
from genarun.models.base import Invocation, ModelSpec
from genarun.models.diffusers import DiffusersProvider
from genarun.models.pixels import INFO_KEY, pixel_digest

OPTIONS = {"steps": 1, "guidance": 0.0, "width": 64, "height": 64}
PROMPTS = [("a cat", 1), ("a dog on the beach", 2), ("a red house", 3)]


def spec(**options: Any) -> ModelSpec:
    return ModelSpec(
        "diffusers",
        "tiny-sd",
        "tiny-sd",
        frozenset({"image"}),
        tuple(sorted({**OPTIONS, **options}.items())),
    )


@pytest.fixture(scope="module")
def plain() -> Any:
    return DiffusersProvider().load(spec(), "cpu")


def run(model: Any) -> list[Any]:
    return model.run("image", [Invocation("image", p, s) for p, s in PROMPTS])


def test_fast_pil_path_gives_diffusers_own_pixels_and_digests(plain: Any) -> None:
    """The painter converts on the device and hashes off-thread; the bytes are exactly those
    of diffusers' own "pil" output, and the digest that of the pixels."""
    import hashlib

    import numpy as np
    import torch

    model = plain
    images = run(model)
    generators = [torch.Generator("cpu").manual_seed(s) for _, s in PROMPTS]
    with torch.inference_mode():
        reference = model.pipe(
            prompt=[p for p, _ in PROMPTS],
            generator=generators,
            output_type="pil",
            num_inference_steps=1,
            guidance_scale=0.0,
            width=64,
            height=64,
        ).images
    for ours, theirs in zip(images, reference, strict=True):
        assert ours.mode == theirs.mode == "RGB"
        assert np.array_equal(np.asarray(ours), np.asarray(theirs))
        assert INFO_KEY in ours.info
        expected = hashlib.sha256(f"{theirs.mode}{theirs.size}".encode())
        expected.update(theirs.tobytes())
        assert pixel_digest(ours) == pixel_digest(theirs) == expected.hexdigest()
    # An image sent to another process carries its finished digest (a future cannot travel).
    import pickle

    copy = pickle.loads(pickle.dumps(images[0]))
    assert copy.info[INFO_KEY] == pixel_digest(images[0]) == pixel_digest(copy)
    # A text chunk of that name (a PNG's texts land in info too) is not taken for the digest.
    reference[0].info[INFO_KEY] = "0" * 64
    assert pixel_digest(reference[0]) == pixel_digest(images[0])


def test_compile_on_the_cpu_falls_back_with_one_logged_line(
    plain: Any, caplog: pytest.LogCaptureFixture
) -> None:
    expected = run(plain)
    with caplog.at_level(logging.WARNING, logger="genarun.models"):
        model = DiffusersProvider().load(
            spec(compile=True, channels_last=True, attention="sdpa"), "cpu"
        )
        tuned = run(model)
    lines = [r.getMessage() for r in caplog.records if r.name == "genarun.models"]
    assert lines == [
        "model 'tiny-sd': compile ignored: compiling is for CUDA GPUs; on 'cpu' the model runs"
        " uncompiled"
    ]
    assert model.compiled == []
    import numpy as np

    # channels_last changes the order of the sums in convolutions: within a level of 255.
    for a, b in zip(expected, tuned, strict=True):
        assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compile": "fastest"}, "compile must be true, false or one of"),
        ({"channels_last": "yes"}, "channels_last must be true or false"),
        ({"attention": "flash3"}, "attention must be one of"),
    ],
)
def test_bad_tuning_values_are_model_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        DiffusersProvider().check(spec(**options))


def test_a_compile_failure_at_the_first_call_falls_back_to_eager_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """torch.compile fails lazily, at the first call: the guard runs the batch eagerly, logs
    one line, and stays eager."""
    import torch

    from genarun.models.tuning import CompiledForward

    def broken_backend(graph: Any, inputs: Any) -> Any:
        raise RuntimeError("no code generator for this graph")

    module = torch.nn.Linear(4, 2)
    x = torch.ones(3, 4)
    expected = module(x)
    guard = CompiledForward("fake (linear)", module, "default", backend=broken_backend)
    with caplog.at_level(logging.WARNING, logger="genarun.models"):
        first, second = module(x), module(x)
    assert torch.equal(first, expected) and torch.equal(second, expected)
    assert guard.failed is not None and "no code generator" in guard.failed
    lines = [r.getMessage() for r in caplog.records if r.name == "genarun.models"]
    assert len(lines) == 1 and lines[0].startswith(
        "model 'fake (linear)': compiling failed, running uncompiled"
    )


def test_a_compiled_module_gives_the_eager_results() -> None:
    """A backend that works (dynamo's eager backend: graph capture without code generation)."""
    import torch

    from genarun.models.tuning import CompiledForward

    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    expected = module(x)
    guard = CompiledForward("fake (mlp)", module, "default", backend="eager")
    assert torch.allclose(module(x), expected)
    assert guard.failed is None


def test_every_model_thread_gets_its_own_cuda_graph_state() -> None:
    """CUDA graph trees keep a tree manager per thread; in torch 2.11 only the thread that
    imported them had one, so a `reduce-overhead` model first called from a later model thread
    failed with a bare AssertionError (measured on the H100). prepare_graph_thread gives each
    thread its own, the way torch 2.11's lookup reads it (an attribute of the thread-local)."""
    import threading

    from torch._inductor import cudagraph_trees

    from genarun.models.tuning import prepare_graph_thread

    prepare_graph_thread()
    mine = cudagraph_trees.get_obj(cudagraph_trees.local, "tree_manager_containers")
    seen: list[dict[str, Any]] = []

    def model_thread() -> None:
        before = hasattr(cudagraph_trees.local, "tree_manager_containers")
        prepare_graph_thread()
        prepare_graph_thread()  # a second batch on the same thread keeps the same state
        local = cudagraph_trees.local
        seen.append(
            {
                "before": before,
                "containers": local.tree_manager_containers,
                "locks": local.tree_manager_locks,
                "container": cudagraph_trees.get_container(0),
            }
        )

    threads = [threading.Thread(target=model_thread) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 3 and not any(state["before"] for state in seen)
    containers = [state["containers"] for state in seen]
    assert all(state["containers"] == {0: state["container"]} for state in seen)
    assert len({id(c) for c in [mine, *containers]}) == 4  # one per thread, none shared


def test_a_compile_failure_keeps_its_traceback_at_debug_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import torch

    from genarun.models.tuning import CompiledForward

    def broken_backend(graph: Any, inputs: Any) -> Any:
        raise RuntimeError("no code generator for this graph")

    module = torch.nn.Linear(4, 2)
    CompiledForward("fake (linear)", module, "default", backend=broken_backend)
    with caplog.at_level(logging.DEBUG, logger="genarun.models"):
        module(torch.ones(1, 4))
    debug = [r for r in caplog.records if r.name == "genarun.models" and r.levelno == logging.DEBUG]
    assert len(debug) == 1 and debug[0].exc_info is not None
    assert "broken_backend" in caplog.text  # the frame that raised, for a bug report
