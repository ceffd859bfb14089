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
