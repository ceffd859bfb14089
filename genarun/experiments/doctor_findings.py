"""What every `genarun doctor` check shares: the finding it reports, and the nodes of a run's
stored tree (read once per tree text)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass
class Finding:
    check: str  # one of genarun.experiments.doctor.CHECKS
    where: str  # for people: "run 1a2b3c4d trajectory[0] step 3"
    message: str
    fixable: bool
    data: dict[str, Any] = field(default_factory=dict)  # what the repair needs

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "data"}


def plural(n: int, word: str) -> str:
    """`1 row`, `3 rows`."""
    return f"{n} {word}{'s' if n != 1 else ''}"


_NODES_CACHE: dict[tuple[str, str], list[dict[str, Any]] | None] = {}


def tree_nodes(run: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Every node (as written, children included) of the tree a run stored; None when its
    text is missing or no longer reads as a tree."""
    from genarun.errors import TreeError
    from genarun.tree.load import load_text

    text, name = run.get("tree_text") or "", run.get("tree_path") or ""
    if (text, name) in _NODES_CACHE:
        return _NODES_CACHE[(text, name)]
    fmt: Literal["yaml", "json"] = "json" if name.lower().endswith(".json") else "yaml"
    found: list[dict[str, Any]] | None = None
    try:
        data = load_text(text, name or "tree", fmt).data if text else None
    except TreeError:
        data = None
    if isinstance(data, dict):
        found = []
        stack = list(data.get("nodes") or [])
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                found.append(node)
                stack.extend(node.get("children") or [])
    _NODES_CACHE[(text, name)] = found
    return found
