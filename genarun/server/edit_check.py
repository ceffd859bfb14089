"""The editor's check of a tree's text: exactly `genarun validate`'s (every problem of the
fields, names, templates, types and models in one pass, genarun/run/tree_checks.py), run on the
text the editor would save, with each problem placed on the node it concerns, and the tree
drawn (its nesting and data edges) for the page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from genarun.server.graph_view import Graph


@dataclass
class Checked:
    graph: Graph  # the drawing; its nodes carry their problems
    problems: list[str] = field(default_factory=list)  # problems that name no node
    count: int = 0  # all problems
    nodes: int = 0

    @property
    def valid(self) -> bool:
        return self.count == 0

    def of(self, node_id: str) -> list[str]:
        found = self.graph.nodes.get(node_id)
        return found.problems if found is not None else []

    def uses(self, node_id: str) -> list[str]:
        """The nodes this one names (data edges into it), in file order."""
        return [s for s, t, e in self.graph.edges if e == "ref" and t == node_id]


def check_text(text: str, label: str, fmt: Literal["yaml", "json"]) -> Checked:
    """Validate a tree's text as `genarun validate LABEL` would from the trees folder."""
    from genarun.server.graph_view import checked_graph
    from genarun.tree.load import load_text

    graph, count = checked_graph(lambda: load_text(text, label, fmt), label)
    return Checked(graph, graph.problems, count, len(graph.nodes))
