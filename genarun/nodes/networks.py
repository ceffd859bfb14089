"""Model networks of a `cycle`: which task each model does at its position, and the type check
around the whole loop (wrap-around included) and of the embedders, before anything runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from genarun.models.base import TASK_IO, ModelSpec

# Tasks that can be a link of a network, preferred in this order for a given input type
# (a model that both paints and writes, like `dummy`, paints when given text).
LINK_TASKS = ("image", "generate", "caption")
EXAMPLES = {
    "text": "a text-to-image model such as tiny-sd",
    "image": "an image-to-text model such as tiny-blip",
}
ARTICLE = {"text": "text", "image": "an image"}


@dataclass(frozen=True)
class Link:
    """One model of a network and what it does at its position."""

    spec: ModelSpec
    task: str
    takes: str  # text or image
    gives: str


class NetworkError(ValueError):
    """A network whose input and output types do not chain."""


def models_list(value: Any) -> list[Any]:
    """A network or embed field as a list of model references."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested or long past reading
            parsed = None
        if isinstance(parsed, list):
            return parsed
    return [value]


def plan_network(specs: list[ModelSpec]) -> list[Link]:
    """Choose each model's task from the type it receives; check the types close the loop."""
    if not specs:
        raise NetworkError("network is empty: list at least one model")
    names = [s.label() for s in specs]
    shown = "[" + ", ".join(names) + "]"
    links: list[Link] = []
    takes = "text"  # the start prompt
    for i, spec in enumerate(specs):
        task = next((t for t in LINK_TASKS if t in spec.tasks and TASK_IO[t][0] == takes), None)
        if task is None:
            does = ", ".join(
                f"{t} ({TASK_IO[t][0]} -> {TASK_IO[t][1]})" for t in LINK_TASKS if t in spec.tasks
            )
            source = "the start prompt" if i == 0 else f"'{names[i - 1]}' (position {i})"
            detail = f"it does {does}" if does else "it is not a generative model"
            raise NetworkError(
                f"network {shown}: '{names[i]}' (position {i + 1}) receives {ARTICLE[takes]} from {source}, "
                f"but cannot take {ARTICLE[takes]} ({detail}); put {EXAMPLES[takes]} there"
            )
        gives = TASK_IO[task][1]
        links.append(Link(spec, task, takes, gives))
        takes = gives
    if takes != links[0].takes:
        raise NetworkError(
            f"network {shown}: '{names[-1]}' at the end gives {ARTICLE[takes]}, which wraps around to "
            f"'{names[0]}' at the start, which takes {ARTICLE[links[0].takes]}; add {EXAMPLES[takes]} "
            f"at the end of the network"
        )
    return links


def embed_types(spec: ModelSpec) -> set[str]:
    return {TASK_IO[t][0] for t in ("embed_text", "embed_image") if t in spec.tasks}


def check_embedders(links: list[Link], embedders: list[ModelSpec]) -> None:
    produced = {link.gives for link in links}
    for spec in embedders:
        takes = embed_types(spec)
        if not takes:
            raise NetworkError(
                f"embed: '{spec.label()}' is not an embedding model (it does: {', '.join(sorted(spec.tasks)) or 'nothing known'})"
            )
        if not takes & produced:
            raise NetworkError(
                f"embed: '{spec.label()}' embeds {' and '.join(sorted(takes))} only, but the network produces "
                f"only {' and '.join(sorted(produced))}; use a joint text/image model such as tiny-clip"
            )
