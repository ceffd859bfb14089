"""The compiled tree's types: a CompiledNode per tree node, the CompiledTree holding them, and the
edges between them (parent to child, referenced node to its user)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from genarun.nodes.base import NodeKind
from genarun.tree.template_core import Compiled
from genarun.tree.validate import LoadedTree, TreeNode

if TYPE_CHECKING:
    import networkx as nx


@dataclass
class CompiledNode:
    """One node of the tree, ready to execute."""

    id: str
    kind: NodeKind
    tree_node: TreeNode
    parent: str | None
    ancestors: tuple[str, ...]  # outermost first
    children: list[str]
    foreach: Compiled | None
    item_name: str
    when: Compiled | None
    vars: list[tuple[str, Compiled]]
    params: dict[str, Compiled]
    deps: frozenset[str]  # nodes named that are not ancestors: they must finish first
    loops: tuple[str, ...]  # foreach nodes among ancestors and self, outermost first
    skip_reason: str | None = None
    # The nodes its node-id fields name (kind.node_fields: a persistence node's `of`).
    named: dict[str, TreeNode] = field(default_factory=dict)
    # Nodes whose earlier foreach items it searches and waits for (genarun.retrieval.sources).
    progressive: frozenset[str] = frozenset()

    @property
    def spec(self) -> Any:
        return self.tree_node.spec

    @property
    def line(self) -> int | None:
        return self.tree_node.line

    @cached_property
    def node_path(self) -> str:
        return "/".join((*self.ancestors, self.id))


@dataclass
class CompiledTree:
    """A validated tree compiled for running: its nodes by id, roots, vars and matrix."""

    loaded: LoadedTree
    nodes: dict[str, CompiledNode]
    roots: list[str]
    tree_vars: list[tuple[str, Compiled]]
    matrix: dict[str, list[Any]]
    overrides: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The tree as a networkx DiGraph: a node per tree node (`kind`, `line`), an edge from
        parent to child (`edge="child"`) and from a referenced node to its user (`"ref"`)."""
        import networkx as nx

        graph = nx.DiGraph()
        for node in self.nodes.values():
            graph.add_node(node.id, kind=node.kind.name, line=node.line)
        for source, target, edge in tree_edges(self.nodes):
            graph.add_edge(source, target, edge=edge)
        return graph

    @property
    def name(self) -> str:
        return self.loaded.spec.name


def tree_edges(nodes: dict[str, CompiledNode]) -> Iterator[tuple[str, str, str]]:
    """(source, target, "child" or "ref") for every edge, in a stable order."""
    for node in nodes.values():
        if node.parent:
            yield node.parent, node.id, "child"
        for dep in sorted(node.deps):
            yield dep, node.id, "ref"


def shared_loop_count(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """How many foreach loops (outermost first) two nodes' `loops` share."""
    shared = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        shared += 1
    return shared
