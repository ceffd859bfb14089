"""`compile` reaching a captioner's text decoder (genarun.models.static_decoding), on the CPU:
transformers' static cache and compiled generation give the uncompiled model's tokens, batch
sizes compile once per bucket, and a compiler that fails costs one logged line, not the run.

GENARUN_COMPILE_CPU=eager compiles with dynamo's graph capture but no code generation (the
same graphs, guards and recompiles as inductor, in seconds); the slow test runs inductor."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from genarun.models.base import Invocation, ModelSpec
from genarun.models.transformers import TransformersProvider
from genarun.models.tuning import COMPILE_CPU_ENV

GREEDY = {"max_tokens": 12, "min_tokens": 12}
SAMPLED = {"max_tokens": 6, "temperature": 1.0}
PROMPTED = {"max_tokens": 6, "prompt": "a picture of"}


def spec(name: str, **options: Any) -> ModelSpec:
    return ModelSpec(
        "transformers", name, name, frozenset({"caption"}), tuple(sorted(options.items()))
    )


def invocations(rows: int, settings: dict[str, Any]) -> list[Invocation]:
    from PIL import Image

    rng = np.random.RandomState(rows)
    pictures = [
        Image.fromarray(rng.randint(0, 255, (32, 32, 3)).astype("uint8")) for _ in range(rows)
    ]
    return [Invocation("caption", p, 100 + i, settings) for i, p in enumerate(pictures)]


def captions(model: Any, batch: list[Invocation]) -> list[tuple[str, int, bool]]:
    return [(str(t), t.tokens, t.hit_limit) for t in model.run("caption", batch)]


def unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@pytest.mark.parametrize("name", ["tiny-blip", "tiny-vit-gpt2"])
def test_compiled_text_decoding_gives_the_uncompiled_tokens(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(COMPILE_CPU_ENV, "eager")
    plain = TransformersProvider().load(spec(name), "cpu")
    model = TransformersProvider().load(spec(name, compile="reduce-overhead", max_batch=4), "cpu")
    # Before: only the image encoder was compiled (and nothing at all on the CPU).
    assert [g.name for g in model.compiled] == [f"{name} (text decoder)", f"{name} (image encoder)"]
    for settings in (GREEDY, SAMPLED, PROMPTED):
        batch = invocations(3, settings)  # padded to 4 rows, the padding dropped
        assert captions(model, batch) == captions(plain, batch)
    assert [g.failed for g in model.compiled] == [None, None]
    # CUDA graphs for the decoding steps only: the image encoder's output must outlive them.
    assert model.compiled[0].compile_config.mode is None  # dynamo's eager backend takes none
    assert model.compiled[1].mode == "default"
    # One static cache per (bucket, length): 12 or 6 new tokens after a short prompt fit 32.
    assert model.decoding is not None and set(model.decoding.caches) == {(4, 32)}


def test_batch_sizes_that_vary_compile_once_per_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last, partial batch of a run and the batcher's halving give sizes of every kind:
    they are padded to a power of two, so the decoder compiles a few shapes, then none."""
    monkeypatch.setenv(COMPILE_CPU_ENV, "eager")
    plain = TransformersProvider().load(spec("tiny-blip"), "cpu")
    model = TransformersProvider().load(spec("tiny-blip", compile=True, max_batch=4), "cpu")
    for rows in (3, 1):  # buckets 4 and 1
        model.run("caption", invocations(rows, GREEDY))
    compiled = unique_graphs()
    for rows in (4, 1, 3, 1, 4):
        batch = invocations(rows, GREEDY)
        assert captions(model, batch) == captions(plain, batch)
    assert unique_graphs() == compiled
    assert model.decoding is not None
    assert sorted(model.decoding.caches) == [(1, 32), (4, 32)]


def test_a_compiler_that_fails_falls_back_with_one_line_per_module(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken code generator fails at the first call, inside generate: the batch is decoded
    again uncompiled, each compiled module says so once, and later batches stay uncompiled."""
    import torch

    @torch._dynamo.register_backend(name="genarun_test_broken")  # type: ignore[misc]
    def broken(graph: Any, inputs: Any) -> Any:
        raise RuntimeError("no code generator for this graph")

    monkeypatch.setenv(COMPILE_CPU_ENV, "genarun_test_broken")
    plain = TransformersProvider().load(spec("tiny-blip"), "cpu")
    with caplog.at_level(logging.WARNING, logger="genarun.models"):
        model = TransformersProvider().load(spec("tiny-blip", compile="reduce-overhead"), "cpu")
        for rows in (3, 2):
            batch = invocations(rows, GREEDY)
            assert captions(model, batch) == captions(plain, batch)
    lines = sorted(r.getMessage() for r in caplog.records if r.name == "genarun.models")
    assert len(lines) == 2, lines
    for line, module in zip(lines, ("image encoder", "text decoder"), strict=True):
        assert line.startswith(
            f"model 'tiny-blip ({module})': compiling failed, running uncompiled"
        )
        assert "no code generator" in line
    assert all(g.failed for g in model.compiled)


def test_compile_on_the_cpu_is_ignored_with_one_logged_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(COMPILE_CPU_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="genarun.models"):
        model = TransformersProvider().load(spec("tiny-blip", compile="reduce-overhead"), "cpu")
        model.run("caption", invocations(3, GREEDY))
    lines = [r.getMessage() for r in caplog.records if r.name == "genarun.models"]
    assert lines == [
        "model 'tiny-blip': compile ignored: compiling is for CUDA GPUs; on 'cpu' the model runs"
        " uncompiled"
    ]
    assert model.compiled == [] and model.decoding is None


@pytest.mark.slow
def test_inductor_code_gives_the_uncompiled_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inductor's generated C++ (a C compiler is on the test machines; without one this is the
    fallback above): the same tokens, greedy and sampled, at two buckets."""
    monkeypatch.setenv(COMPILE_CPU_ENV, "1")
    plain = TransformersProvider().load(spec("tiny-blip"), "cpu")
    model = TransformersProvider().load(spec("tiny-blip", compile="reduce-overhead"), "cpu")
    assert model.compiled[0].compile_config.mode == "reduce-overhead"
    assert model.compiled[1].mode == "default"  # no CUDA graphs for the image encoder
    for rows, settings in ((3, GREEDY), (2, GREEDY), (3, SAMPLED)):
        batch = invocations(rows, settings)
        assert captions(model, batch) == captions(plain, batch)
    assert [g.failed for g in model.compiled] == [None, None]
