"""Registers the built-in model providers and catalog entries (an entry-point plugin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genarun.plugins import Registry


def register(registry: Registry) -> None:
    # Provider modules import their heavy libraries lazily, inside load().
    from genarun.models import diffusers, dummy, open_clip, openai, sentence_transformers
    from genarun.models import transformers as transformers_provider

    for module in (
        dummy,
        openai,
        diffusers,
        transformers_provider,
        open_clip,
        sentence_transformers,
    ):
        module.register(registry)
