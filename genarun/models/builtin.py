"""Registers the built-in model providers and catalog entries (an entry-point plugin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genarun.plugins import Registry


def register(registry: Registry) -> None:
    # Provider modules import their heavy libraries lazily, inside load().
    from genarun.models import diffusers, dummy, openai

    for module in (dummy, openai, diffusers):
        module.register(registry)
