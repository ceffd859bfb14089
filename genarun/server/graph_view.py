"""The tree, drawn: a compiled tree (or, when it does not compile, the structure its file
states) as a graph laid out on the server and rendered as inline SVG by Jinja2.

Layout: layers by topological generation (networkx), left to right, one column per
generation, nodes stacked down each column and ordered by the barycentre of their
predecessors (two sweeps) so that edges cross less. No script and no JS build: the SVG is
plain markup, each node a link, so a page with 50+ nodes stays readable by scrolling and
searchable with the browser's find. Edges: parent to child solid grey, a reference (a node
that names another that is not its ancestor) dashed blue; foreach nodes are drawn as a stack.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

if TYPE_CHECKING:
    from genarun.tree.load import Document

NODE_W, NODE_H = 220, 54  # a node's box
COL_GAP, ROW_GAP = 70, 14  # between columns (generations) and between boxes in a column
PAD = 12
ID_CHARS, LINE_CHARS = 28, 34  # longer text is cut in the box; its <title> has all of it


@dataclass
class GraphNode:
    id: str
    kind: str
    foreach: bool = False
    parent: str | None = None
    line: int | None = None
    problems: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # a run's executions by status
    layer: int = 0
    x: int = 0
    y: int = 0

    @property
    def status(self) -> str:
        """One colour for the node: what most needs a look first."""
        for status in ("failed", "running", "waiting", "interrupted"):
            if self.statuses.get(status):
                return status
        if self.statuses.get("done"):
            return "done"
        return "skipped" if self.statuses else "none"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "foreach": self.foreach,
            "parent": self.parent,
            "line": self.line,
            "layer": self.layer,
            "x": self.x,
            "y": self.y,
            "problems": self.problems,
        }
        if self.statuses:
            out["status"] = self.status
            out["executions"] = self.statuses
        return out


@dataclass
class Graph:
    name: str
    nodes: dict[str, GraphNode]
    edges: list[tuple[str, str, str]]  # (source, target, "child" or "ref")
    compiled: bool  # False: drawn from the file's structure, no reference edges
    problems: list[str] = field(default_factory=list)  # those that name no node shown
    width: int = 0
    height: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "compiled": self.compiled,
            "nodes": [n.to_json() for n in self.nodes.values()],
            "edges": [{"source": s, "target": t, "edge": e} for s, t, e in self.edges],
            "problems": self.problems,
            "width": self.width,
            "height": self.height,
        }


# --- building ------------------------------------------------------------------------------
def from_compiled(compiled: Any) -> Graph:
    """The graph of a compiled tree: its nodes in tree order, child and reference edges."""
    from genarun.graph.compiled import tree_edges

    nodes = {
        n.id: GraphNode(
            n.id, n.kind.name, foreach=n.spec.foreach is not None, parent=n.parent, line=n.line
        )
        for n in compiled.nodes.values()
    }
    return Graph(compiled.name, nodes, list(tree_edges(compiled.nodes)), compiled=True)


def from_document(data: Any, lines: Any = None) -> Graph:
    """The parent/child structure a tree file states, read from its data as loaded, for a
    file that does not validate: whatever a node lacks (an id, a kind) is shown as missing."""
    nodes: dict[str, GraphNode] = {}
    edges: list[tuple[str, str, str]] = []

    def walk(raw_nodes: Any, parent: str | None, loc: tuple[Any, ...]) -> None:
        if not isinstance(raw_nodes, list):
            return
        for i, raw in enumerate(raw_nodes):
            raw = raw if isinstance(raw, dict) else {}
            given = raw.get("id")
            node_id = given if isinstance(given, str) and given else f"(node {i + 1})"
            while node_id in nodes:  # a duplicate id: drawn twice, named apart
                node_id += "'"
            kind = raw.get("kind")
            line = lines.line((*loc, i)) if lines is not None else None
            nodes[node_id] = GraphNode(
                node_id,
                kind if isinstance(kind, str) else "?",
                foreach="foreach" in raw,
                parent=parent,
                line=line,
            )
            if parent is not None:
                edges.append((parent, node_id, "child"))
            walk(raw.get("children"), node_id, (*loc, i, "children"))

    data = data if isinstance(data, dict) else {}
    walk(data.get("nodes"), None, ("nodes",))
    name = data.get("name")
    return Graph(name if isinstance(name, str) else "", nodes, edges, compiled=False)


def tree_file_graph(path: Path, label: str) -> Graph:
    """A tree file as `genarun validate` sees it, drawn (see `checked_graph`)."""
    from genarun.tree.load import load_document

    graph, _count = checked_graph(lambda: load_document(path), label)
    return graph


def checked_graph(load: Callable[[], Document], label: str) -> tuple[Graph, int]:
    """A tree checked exactly as `genarun validate` checks it (every problem of the fields,
    names, templates, types and models in one pass), drawn: compiled when it validates, else
    its stated structure; every problem placed on the node it names, the rest in `problems`.
    With the number of problems."""
    from genarun.errors import GenarunError, TreeError
    from genarun.run.model_checks import check_all_models
    from genarun.run.tree_checks import checked_document
    from genarun.tree.panic_config import is_panic_config, panic_tree

    doc = None
    problems: list[Any] = []
    try:
        doc = load()
        if is_panic_config(doc.data):
            doc = panic_tree(doc)
        compiled = checked_document(doc)
        graph = from_compiled(compiled)
        check_all_models(compiled)
    except TreeError as exc:
        problems = exc.problems
        graph = from_document(doc.data, doc) if doc is not None else from_document(None)
    except GenarunError as exc:
        problems = [str(exc)]
        graph = from_document(doc.data, doc) if doc is not None else from_document(None)
    except RecursionError:  # a tree nested past Python's stack (the loader bounds most)
        problems = ["the tree is nested too deeply to check"]
        graph = from_document(None)
    place_problems(graph, problems, label)
    return layout(graph), len(problems)


def place_problems(graph: Graph, problems: list[Any], label: str) -> None:
    for problem in problems:
        node = getattr(problem, "node", None)
        if node in graph.nodes:
            graph.nodes[node].problems.append(_problem_text(problem))
        else:
            text = str(problem)
            # The server's own path of the file is no one's business: the name it was given.
            file = getattr(problem, "file", None)
            if file and text.startswith(file):
                text = label + text[len(file) :]
            graph.problems.append(text)


def _problem_text(problem: Any) -> str:
    """A problem as shown on its node: the line and the message with its fix."""
    line = f"line {problem.line}: " if problem.line else ""
    hint = f" ({problem.hint})" if problem.hint else ""
    return f"{line}{problem.message}{hint}"


def run_graph(run: dict[str, Any]) -> Graph:
    """The tree of a run as it ran (runs.tree_text), laid out; statuses are the caller's."""
    from genarun.errors import GenarunError, TreeError
    from genarun.publish.data import compile_run_tree
    from genarun.tree.load import load_text

    try:
        graph = from_compiled(compile_run_tree(run))
    except GenarunError as exc:  # a tree an older genarun ran: its stated structure
        name = run["tree_path"] or f"{run['name']}.yaml"
        try:
            doc = load_text(
                run["tree_text"] or "", name, "json" if name.endswith(".json") else "yaml"
            )
            graph = from_document(doc.data, doc)
        except TreeError:
            graph = from_document(None)
        graph.problems.append(str(exc))
    return layout(graph)


def status_counts(store: Any, run_id: str) -> list[tuple[str, str, int]]:
    from sqlalchemy import func, select

    from genarun.store.db import executions

    stmt = (
        select(executions.c.node_id, executions.c.status, func.count())
        .where(executions.c.run_id == run_id)
        .group_by(executions.c.node_id, executions.c.status)
    )
    return [(r[0], r[1], r[2]) for r in store.conn.execute(stmt)]


# --- layout --------------------------------------------------------------------------------
def layout(graph: Graph) -> Graph:
    """Columns by topological generation; each column ordered by where its nodes' predecessors
    sit (a barycentre sweep), then placed beside them, parents centred on their children."""
    import networkx as nx

    dag = nx.DiGraph()
    dag.add_nodes_from(graph.nodes)
    dag.add_edges_from((s, t) for s, t, _ in graph.edges if s in graph.nodes and t in graph.nodes)
    order = {node_id: i for i, node_id in enumerate(graph.nodes)}  # file order breaks ties
    try:
        layers = [sorted(g, key=order.__getitem__) for g in nx.topological_generations(dag)]
    except nx.NetworkXUnfeasible:  # a cycle (a tree that failed to compile): one column
        layers = [list(graph.nodes)]
    _order_layers(dag, layers, order)
    children: dict[str, list[str]] = {}
    for source, target, edge in graph.edges:
        if edge == "child" and source in graph.nodes and target in graph.nodes:
            children.setdefault(source, []).append(target)
    rows = _rows(dag, layers, children)
    for column, members in enumerate(layers):
        for node_id in members:
            node = graph.nodes[node_id]
            node.layer = column
            node.x = PAD + column * (NODE_W + COL_GAP)
            node.y = PAD + round(rows[node_id])
    graph.width = 2 * PAD + max(1, len(layers)) * (NODE_W + COL_GAP) - COL_GAP
    graph.height = 2 * PAD + round(max(rows.values(), default=0)) + NODE_H
    return graph


def _order_layers(dag: Any, layers: list[list[str]], order: dict[str, int]) -> None:
    """One down sweep of the barycentre heuristic: a node sorts by the mean relative position
    of its predecessors (in whichever earlier column they are), so children stay in their
    parents' order and a node that names others sits near them. File order breaks ties."""
    position: dict[str, float] = {}
    for index, members in enumerate(layers):
        if index:
            members.sort(
                key=functools.partial(_barycentre, dag=dag, position=position, order=order)
            )
        for i, node_id in enumerate(members):
            position[node_id] = (i + 0.5) / len(members)


def _barycentre(
    node_id: str, *, dag: Any, position: dict[str, float], order: dict[str, int]
) -> tuple[float, int]:
    near = [position[n] for n in dag.predecessors(node_id)]
    return (sum(near) / len(near) if near else 1.0, order[node_id])


def _rows(dag: Any, layers: list[list[str]], children: dict[str, list[str]]) -> dict[str, float]:
    """A y per node, in column order without overlap: first beside its predecessors, then
    (from the last column back) each parent centred on its children, as a drawn tree is."""
    step = NODE_H + ROW_GAP
    y: dict[str, float] = {}
    for members in layers:
        free = 0.0
        for node_id in members:
            near = [y[p] for p in dag.predecessors(node_id)]
            y[node_id] = max(free, sum(near) / len(near) if near else 0.0)
            free = y[node_id] + step
    for members in reversed(layers[:-1]):
        free = 0.0
        for node_id in members:
            kids = [y[c] for c in children.get(node_id, [])]
            want = (min(kids) + max(kids)) / 2 if kids else y[node_id]
            y[node_id] = max(free, want)
            free = y[node_id] + step
    return y


# --- rendering -----------------------------------------------------------------------------
_SVG = """<div class="graph" style="overflow:auto;max-height:80vh;border:1px solid #ddd">
<svg xmlns="http://www.w3.org/2000/svg" class="tree-graph" role="img" aria-label="the tree {{ g.name }}: {{ g.nodes|length }} nodes"
 width="{{ g.width }}" height="{{ g.height }}" viewBox="0 0 {{ g.width }} {{ g.height }}" font-family="system-ui,sans-serif" font-size="12">
<defs>
<marker id="arrow-child" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#888"/></marker>
<marker id="arrow-ref" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#36c"/></marker>
</defs>
{% for e in edges %}<path class="edge {{ e.edge }}" data-source="{{ e.source }}" data-target="{{ e.target }}" d="{{ e.d }}" fill="none"
 stroke="{{ '#888' if e.edge == 'child' else '#36c' }}" stroke-width="1.4"{% if e.edge != 'child' %} stroke-dasharray="5 4"{% endif %} marker-end="url(#arrow-{{ e.edge }})"><title>{{ e.source }} → {{ e.target }} ({{ 'child' if e.edge == 'child' else 'reference' }})</title></path>
{% endfor %}
{% for n in nodes %}<a href="{{ n.href }}" class="node-link"><g class="node {{ n.status }}{% if n.foreach %} foreach{% endif %}{% if n.problems %} has-error{% endif %}" data-node="{{ n.id }}" transform="translate({{ n.x }},{{ n.y }})">
<title>{{ n.id }} ({{ n.kind }}){% if n.foreach %}, foreach{% endif %}{% if n.line %}, line {{ n.line }}{% endif %}{% if n.counts %}: {{ n.counts }}{% endif %}{% for p in n.problems %}
error: {{ p }}{% endfor %}</title>
{% if n.foreach %}<rect x="6" y="6" width="{{ w }}" height="{{ h }}" rx="6" fill="#fff" stroke="#999"/><rect x="3" y="3" width="{{ w }}" height="{{ h }}" rx="6" fill="#fff" stroke="#999"/>{% endif %}
<rect width="{{ w }}" height="{{ h }}" rx="6" fill="{{ n.fill }}" stroke="{{ '#c00' if n.problems else '#666' }}" stroke-width="{{ 2.5 if n.problems else 1 }}"/>
<text x="8" y="16" font-weight="600">{{ n.id_text }}</text>
<text x="8" y="31" fill="#444">{{ n.kind }}{% if n.foreach %} · foreach{% endif %}{% if n.counts %} · {{ n.counts_text }}{% endif %}</text>
{% if n.problems %}<text x="8" y="46" fill="#c00" font-size="11" class="node-error">⚠ {{ n.error_text }}</text>{% endif %}
</g></a>
{% endfor %}</svg></div>
<p class="legend" style="font-size:.85em;color:#555">{{ g.nodes|length }} nodes · <span style="color:#888">──▶</span> parent to child · <span style="color:#36c">- - ▶</span> reference · stacked box: foreach{% if not g.compiled %} · drawn from the file's structure (it does not compile, so references are not shown){% endif %}</p>
"""

FILLS = {
    "done": "#d4f4d4",
    "failed": "#f8d0d0",
    "waiting": "#fdf0c0",
    "running": "#d0e4f8",
    "interrupted": "#f6dcc0",
    "skipped": "#e4e4e4",
    "none": "#ffffff",
}

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_svg_template = _env.from_string(_SVG)


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def render_svg(graph: Graph, href: Any) -> Markup:
    """The graph as an inline SVG; `href(node)` is where a click on the node goes."""
    nodes = []
    for n in graph.nodes.values():
        counts = ", ".join(f"{c} {s}" for s, c in sorted(n.statuses.items()))
        nodes.append(
            {
                "id": n.id,
                "id_text": _cut(n.id, ID_CHARS),
                "kind": n.kind,
                "foreach": n.foreach,
                "line": n.line,
                "x": n.x,
                "y": n.y,
                "status": n.status,
                "fill": "#fff0f0" if n.problems else FILLS.get(n.status, "#fff"),
                "counts": counts,
                "counts_text": _cut(counts, LINE_CHARS - len(n.kind) - 10),
                "problems": n.problems,
                "error_text": _cut(
                    re.sub(r"^line \d+: ", "", n.problems[0])
                    if len(n.problems) == 1
                    else f"{len(n.problems)} errors",
                    LINE_CHARS,
                ),
                "href": href(n),
            }
        )
    edges = []
    for source, target, edge in graph.edges:
        a, b = graph.nodes.get(source), graph.nodes.get(target)
        if a is None or b is None:
            continue
        x1, y1 = a.x + NODE_W, a.y + NODE_H / 2
        x2, y2 = b.x, b.y + NODE_H / 2
        bend = max(30.0, (x2 - x1) / 2)
        d = f"M{x1},{y1:.0f} C{x1 + bend:.0f},{y1:.0f} {x2 - bend:.0f},{y2:.0f} {x2},{y2:.0f}"
        edges.append({"source": source, "target": target, "edge": edge, "d": d})
    return Markup(_svg_template.render(g=graph, nodes=nodes, edges=edges, w=NODE_W, h=NODE_H))
