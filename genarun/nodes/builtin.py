"""Registers the built-in node kinds (an entry-point plugin, like any third party's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genarun.plugins import Registry


def register(registry: Registry) -> None:
    from genarun.nodes import (
        caption,
        cycle,
        embed,
        fetch,
        generate,
        group,
        human,
        image,
        persistence,
        retrieve,
        template,
    )

    for module in (
        template,
        group,
        generate,
        image,
        caption,
        embed,
        cycle,
        persistence,
        fetch,
        human,
        retrieve,
    ):
        registry.add_kind(module.KIND)
