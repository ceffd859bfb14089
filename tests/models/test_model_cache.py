"""The process-wide model cache and device choice, with fake providers (no weights)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from genarun.models.base import Invocation, LoadedModel, ModelSpec, Provider
from genarun.models.cache import ModelCache
from genarun.models.device import default_dtype_name, pick_device
from tests.helpers import PATIENCE


class CountingModel(LoadedModel):
    def __init__(self, spec: ModelSpec, device: str, size: int) -> None:
        self.spec, self.device, self.size = spec, device, size
        self.unloaded = False

    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        return [inv.input for inv in batch]

    def unload(self) -> None:
        self.unloaded = True

    def memory_bytes(self) -> int:
        return 0 if self.unloaded else self.size


class CountingProvider(Provider):
    name = "counting"

    def __init__(self, size: int = 100, delay: float = 0.0) -> None:
        self.size, self.delay, self.loads = size, delay, 0
        self.lock = threading.Lock()

    def tasks(self, spec: ModelSpec) -> frozenset[str]:
        return frozenset({"generate"})

    def load(self, spec: ModelSpec, device: str) -> LoadedModel:
        time.sleep(self.delay)  # a slow load, so concurrent callers overlap
        with self.lock:
            self.loads += 1
        return CountingModel(spec, device, self.size)


def cache_with(provider: CountingProvider, **kwargs: Any) -> ModelCache:
    return ModelCache(providers=lambda: {provider.name: provider}, **kwargs)


def spec(name: str) -> ModelSpec:
    return ModelSpec("counting", name)


def test_each_model_loads_once() -> None:
    provider = CountingProvider()
    cache = cache_with(provider)
    first = cache.get(spec("a"), "cpu")
    assert cache.get(spec("a"), "cpu") is first
    assert provider.loads == 1


def test_concurrent_gets_share_one_load() -> None:
    provider = CountingProvider(delay=0.2)
    cache = cache_with(provider)
    got: list[LoadedModel] = []
    threads = [
        threading.Thread(target=lambda: got.append(cache.get(spec("a"), "cpu"))) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert provider.loads == 1 and len({id(m) for m in got}) == 1


class MeetingProvider(CountingProvider):
    """Each load waits until all three are loading at once: loads one at a time never meet
    (the barrier breaks after its timeout, reached only then)."""

    def __init__(self) -> None:
        super().__init__()
        self.meeting = threading.Barrier(3, timeout=PATIENCE)

    def load(self, spec: ModelSpec, device: str) -> LoadedModel:
        self.meeting.wait()
        return super().load(spec, device)


def test_different_models_load_in_parallel_without_torch() -> None:
    # One lock per model, not one for all: the three loads are under way at the same time.
    # (It was timed: three 0.3 s loads in under 0.8 s, which a busy machine can miss.)
    provider = MeetingProvider()
    provider.uses_torch = False
    cache = cache_with(provider)
    failed: list[BaseException] = []

    def get(name: str) -> None:
        try:
            cache.get(spec(name), "cpu")
        except BaseException as exc:  # collected for the assert
            failed.append(exc)

    threads = [threading.Thread(target=get, args=(n,)) for n in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == [] and provider.loads == 3


class OverlapProvider(CountingProvider):
    """Records how many loads run at once."""

    def __init__(self) -> None:
        super().__init__(delay=0.1)
        self.running = self.most = 0

    def load(self, spec: ModelSpec, device: str) -> LoadedModel:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super().load(spec, device)
        finally:
            with self.lock:
                self.running -= 1


def test_torch_models_load_one_at_a_time_across_caches() -> None:
    # transformers/diffusers/accelerate patch torch process-wide while they build a model, so
    # two loads at once (even through two caches) must never overlap.
    provider = OverlapProvider()
    caches = [cache_with(provider), cache_with(provider)]
    threads = [
        threading.Thread(target=caches[i % 2].get, args=(spec(n), "cpu"))
        for i, n in enumerate("abcd")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert provider.loads == 4 and provider.most == 1


def _load_at_once(names: list[str]) -> list[BaseException]:
    """Ask one fresh cache for these real models from as many threads at the same moment."""
    from genarun.models.catalog import resolve_model

    cache = ModelCache()
    barrier = threading.Barrier(len(names))
    errors: list[BaseException] = []

    def load(name: str) -> None:
        barrier.wait()
        try:
            cache.get(resolve_model(name), "cpu")
        except BaseException as exc:  # collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_real_tiny_models_load_at_once_without_meta_tensors() -> None:
    # A painter and an embedder (or two captioners) are asked for at the same moment by a
    # trajectory's first step; loaded together they got each other's meta tensors and failed.
    for _ in range(2):
        assert _load_at_once(["tiny-sd", "tiny-blip", "tiny-clip"]) == []


def test_budget_unloads_least_recently_used() -> None:
    provider = CountingProvider(size=100)
    cache = cache_with(provider, budget_bytes=250)
    a = cache.get(spec("a"), "cpu")
    b = cache.get(spec("b"), "cpu")
    cache.get(spec("a"), "cpu")  # a is now the most recently used
    cache.get(spec("c"), "cpu")  # 300 > 250: b goes
    assert b.unloaded and not a.unloaded
    assert [k.split(":")[1].split("[")[0] for k in cache.loaded()] == ["a", "c"]
    cache.get(spec("b"), "cpu")
    assert provider.loads == 4


def test_unload_and_clear() -> None:
    provider = CountingProvider()
    cache = cache_with(provider)
    a = cache.get(spec("a"), "cpu")
    assert cache.unload(spec("a"), "cpu") and a.unloaded
    assert not cache.unload(spec("a"), "cpu")
    b = cache.get(spec("b"), "cpu")
    cache.clear()
    assert b.unloaded and cache.loaded() == []


def test_unknown_provider_is_a_model_error() -> None:
    from genarun.errors import ModelError

    cache = cache_with(CountingProvider())
    with pytest.raises(ModelError, match="unknown provider"):
        cache.get(ModelSpec("nope", "x"), "cpu")


def test_device_override_and_dtypes(monkeypatch: pytest.MonkeyPatch) -> None:
    from genarun.errors import ModelError

    assert pick_device("cpu") == "cpu"
    monkeypatch.setenv("GENARUN_DEVICE", "cuda:99")
    assert pick_device("cpu") == "cpu"  # an explicit argument wins over the environment
    with pytest.raises(ModelError, match="'cuda:99' is not available"):  # no machine has 100
        pick_device()
    monkeypatch.setenv("GENARUN_DEVICE", "cpu")
    assert pick_device() == "cpu"
    monkeypatch.delenv("GENARUN_DEVICE")
    assert pick_device() in ("cuda", "mps", "cpu")
    assert default_dtype_name("cpu") == "float32"
    assert default_dtype_name("mps") == "float16"
