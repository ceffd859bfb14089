"""`rot13`: a model provider added by a plugin, with one catalog model, `rot13-small`.

Its "text generation" is the ROT13 of the prompt, cut to `max_tokens` words: instant and
deterministic, and batched like any provider (the executor hands it lists of invocations).
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from genarun.models.base import Invocation, LoadedModel, ModelSpec, Provider
from genarun.models.catalog import CatalogEntry

if TYPE_CHECKING:
    from genarun.plugins import Registry


class Rot13Model(LoadedModel):
    max_batch = 8

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.batch_sizes: list[int] = []

    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        self.batch_sizes.append(len(batch))
        out = []
        for invocation in batch:
            words = codecs.encode(str(invocation.input), "rot13").split()
            limit = int(invocation.settings.get("max_tokens") or len(words))
            out.append(" ".join(words[:limit]))
        return out


class Rot13Provider(Provider):
    name = "rot13"
    uses_torch = False  # loading it imports no model library

    def tasks(self, spec: ModelSpec) -> frozenset[str]:
        return frozenset({"generate"})

    def load(self, spec: ModelSpec, device: str) -> LoadedModel:
        return Rot13Model(spec)


def register(registry: Registry) -> None:
    registry.add_provider(Rot13Provider())
    registry.add_model(
        CatalogEntry(
            "rot13-small",
            "rot13",
            "rot13-small",
            frozenset({"generate"}),
            "api",
            "0 B",
            "ROT13 of the prompt (a plugin's model)",
        )
    )
