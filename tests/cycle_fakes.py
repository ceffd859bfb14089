"""A fake model provider for trajectory tests: loops quickly, counts batches, fails on demand.

`fake-t2i` paints one of two flat colours chosen by the prompt; `fake-i2t` names the colour, so
a trajectory enters a loop within a few steps. Options: `fail_calls` (a list of call numbers
that raise a transient CUDA error once each), `max_ok_batch` (larger batches raise out of
memory; with `oom_calls: N` only during the first N calls, a passing memory spike),
`garbage_calls` (call numbers that return text where an image is due). Every call is recorded in `CALLS` (task and batch size) for the assertions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import pytest

from genarun.models.base import Invocation, LoadedModel, ModelSpec, Provider
from genarun.models.catalog import CatalogEntry

CALLS: list[tuple[str, str, int]] = []  # (model id, task, batch size)
COLOURS = {"red": (200, 30, 30), "blue": (30, 30, 200)}


class FakeModel(LoadedModel):
    max_batch = 256

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.calls = 0
        self.failed: set[int] = set()

    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        from PIL import Image

        self.calls += 1
        options = self.spec.option_dict
        CALLS.append((self.spec.id, task, len(batch)))
        if self.calls in options.get("fail_calls", ()) and self.calls not in self.failed:
            self.failed.add(self.calls)
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if self.calls in options.get("garbage_calls", ()):  # a broken model: text for an image
            return ["not an image"] * len(batch)
        spike = self.calls <= options.get("oom_calls", 10**9)  # memory short only for these calls
        if len(batch) > options.get("max_ok_batch", 10**9) and spike:
            raise RuntimeError(f"CUDA out of memory (batch of {len(batch)})")
        out: list[Any] = []
        for inv in batch:
            if task == "image":
                name = "red" if hashlib.sha256(str(inv.input).encode()).digest()[0] % 2 else "blue"
                out.append(Image.new("RGB", (16, 16), COLOURS[name]))
            else:
                pixel = inv.input.convert("RGB").getpixel((0, 0))
                out.append("a red square" if pixel[0] > pixel[2] else "a blue square")
        return out


class FakeProvider(Provider):
    name = "fake"

    def tasks(self, spec: ModelSpec) -> frozenset[str]:
        if "embed" in spec.id:
            return frozenset({"embed_image"})
        return frozenset({"image"}) if "t2i" in spec.id else frozenset({"caption"})

    def load(self, spec: ModelSpec, device: str) -> LoadedModel:
        return FakeModel(spec)


def use_fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the fakes for one test: in a copy of the registry, with a fresh model cache.

    Both are put back when the test ends, so the fakes (and their loaded instances, whose call
    counts drive `fail_calls`) never leak into another test.
    """
    from genarun import plugins
    from genarun.models import cache

    base = plugins.registry()
    reg = plugins.Registry(dict(base.kinds), dict(base.providers), dict(base.catalog))
    monkeypatch.setattr(plugins, "_registry", reg)
    monkeypatch.setattr(cache, "_cache", None)
    reg.add_provider(FakeProvider())
    reg.add_model(
        CatalogEntry(
            "fake-t2i",
            "fake",
            "fake-t2i",
            frozenset({"image"}),
            "dummy",
            "0 B",
            "looping fake painter",
        )
    )
    reg.add_model(
        CatalogEntry(
            "fake-image-embed",
            "fake",
            "fake-image-embed",
            frozenset({"embed_image"}),
            "dummy",
            "0 B",
            "image-only embedder",
        )
    )
    reg.add_model(
        CatalogEntry(
            "fake-i2t",
            "fake",
            "fake-i2t",
            frozenset({"caption"}),
            "dummy",
            "0 B",
            "looping fake captioner",
        )
    )
