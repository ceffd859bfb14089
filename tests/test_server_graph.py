"""The tree, drawn (`genarun serve`): the run page's graph coloured by executions, a node's
executions page, the tree page of a tree file before it runs with its errors on their nodes,
their JSON under /api/v1, and the layered layout itself. Through Starlette's ASGI client."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from genarun.server.app import ServeOptions, create_app
from genarun.server.graph_view import NODE_H, NODE_W, Graph, GraphNode, layout
from tests.helpers import LOCAL, TREES, app_client

# Scenario trees shared with tests/test_server_browser_pages.py.
SERVE_TREES = TREES / "serve"
TREE = (SERVE_TREES / "book.yaml").read_text()
BAD = (SERVE_TREES / "bad_book.yaml").read_text()


def _nodes_in_svg(html: str) -> set[str]:
    return set(re.findall(r'<g class="node [^"]*" data-node="([^"]+)"', html))


def test_the_run_page_draws_the_tree_with_statuses_and_links_to_each_nodes_executions(
    workdir: Path, ran, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = ran("drawn.yaml", TREE)
    db = workdir / "genarun.db"
    client = app_client(db, trees=workdir)
    html = client.get(f"/runs/{run_id}").text
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="tree-graph"' in html
    assert _nodes_in_svg(html) == {"title", "chapter", "cover", "blurb"}
    assert '<g class="node done foreach" data-node="chapter"' in html  # coloured, stacked
    assert 'class="edge child" data-source="title" data-target="chapter"' in html
    # blurb names chapter, which is not its ancestor: a reference edge, dashed
    assert 'class="edge ref" data-source="chapter" data-target="blurb"' in html
    assert f'href="/runs/{run_id}/nodes/chapter"' in html

    node = client.get(f"/runs/{run_id[:8]}/nodes/chapter")
    assert node.status_code == 200
    assert "chapter[0]" in node.text and "chapter[1]" in node.text
    assert "On geckos" in node.text and "On skinks" in node.text
    cover = client.get(f"/runs/{run_id}/nodes/cover").text
    assert f'src="/runs/{run_id}/files/assets/' in cover

    # A long foreach: its first page here, and a link to page through all on the run page.
    with monkeypatch.context() as patched:
        patched.setattr("genarun.server.run_summary.PAGE_SIZE", 1)
        first = client.get(f"/runs/{run_id}/nodes/chapter").text
    assert first.count("chapter[") == 1 and "The first 1 of 2" in first
    assert f'href="/runs/{run_id}?node=chapter"' in first

    missing = client.get(f"/runs/{run_id}/nodes/nope")
    assert missing.status_code == 404
    assert "no node &#39;nope&#39;" in missing.text and f'href="/runs/{run_id}"' in missing.text
    unknown_run = client.get("/runs/abcdef12/nodes/title")
    assert unknown_run.status_code == 404 and 'href="/runs"' in unknown_run.text

    graph = client.get(f"/api/v1/runs/{run_id[:8]}/graph").json()
    assert graph["run"] == run_id and graph["compiled"] is True
    by_id = {n["id"]: n for n in graph["nodes"]}
    assert by_id["chapter"]["foreach"] is True
    assert by_id["chapter"]["executions"] == {"done": 2} and by_id["chapter"]["status"] == "done"
    assert {"source": "chapter", "target": "blurb", "edge": "ref"} in graph["edges"]
    assert by_id["blurb"]["layer"] > by_id["chapter"]["layer"] > by_id["title"]["layer"]
    assert client.get("/api/v1/runs/abcdef12/graph").status_code == 404
    # A run whose tree text is not stored (written by another tool) has no drawing, no error.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET tree_text = NULL")
    conn.close()
    bare = client.get(f"/runs/{run_id}")
    assert bare.status_code == 200 and "tree-graph" not in bare.text
    assert client.get(f"/api/v1/runs/{run_id}/graph").json()["nodes"] == []

    # The trees folder lists tree files only: not the run's folder (its tree.yaml copy, its
    # JSON outputs, latest/) nor a YAML file that is no tree.
    (workdir / "ci.yaml").write_text("on: push\n")
    assert client.get("/api/v1/trees").json() == {"trees": ["drawn.yaml"]}
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert {"/api/v1/trees", "/api/v1/trees/{tree}", "/api/v1/runs/{run_id}/graph"} <= set(paths)


def test_the_tree_page_draws_a_file_before_it_runs_with_its_errors_on_their_nodes(
    workdir: Path,
) -> None:
    trees = workdir / "trees"
    (trees / "sub").mkdir(parents=True)
    (trees / "good.yaml").write_text(TREE)
    (trees / "sub" / "bad.yaml").write_text(BAD)
    (trees / "broken.yaml").write_text("genarun: 1\nname: x\nnodes: [\n")
    (trees / "version.yaml").write_text(TREE.replace("genarun: 1", "genarun: 7"))
    client = TestClient(
        create_app(ServeOptions(db=workdir / "g.db", auto_resume=False, trees=trees)),
        base_url=LOCAL,
    )
    listing = client.get("/trees").text
    for name in ("good.yaml", "sub/bad.yaml", "broken.yaml"):
        assert f">{name}</a>" in listing

    good = client.get("/trees/good.yaml").text
    assert _nodes_in_svg(good) == {"title", "chapter", "cover", "blurb"}
    assert "valid" in good and 'href="/start?tree=good.yaml"' in good
    assert 'class="edge ref" data-source="chapter" data-target="blurb"' in good

    bad = client.get("/trees/sub/bad.yaml")
    assert bad.status_code == 200
    assert _nodes_in_svg(bad.text) == {"title", "cover", "other"}
    cover = re.search(r'<g class="node [^"]*" data-node="cover".*?</g>', bad.text, re.S)
    assert cover and "has-error" in cover.group(0)
    assert "undefined name &#39;titel&#39;" in cover.group(0)  # in its tooltip
    assert 'class="node-error"' in cover.group(0)  # and written in the box
    other = re.search(r'<g class="node [^"]*" data-node="other".*?</g>', bad.text, re.S)
    assert other and "has-error" not in other.group(0)
    assert "1 problem:" in bad.text and "/start?tree" not in bad.text

    broken = client.get("/trees/broken.yaml").text  # no structure to draw: the error above
    assert "<svg" not in broken and "broken.yaml:4: YAML syntax error" in broken
    assert "/tmp" not in broken.split("Problems of the file")[1]  # the server's path is not shown

    version = client.get("/trees/version.yaml").text  # a problem of no node, the tree drawn
    assert "format version 7" in version and _nodes_in_svg(version) == {
        "title",
        "chapter",
        "cover",
        "blurb",
    }

    (workdir / "outside.yaml").write_text(TREE)
    (trees / "link.yaml").symlink_to(workdir / "outside.yaml")
    for name, said in (("nope.yaml", "no file nope.yaml"), ("link.yaml", "outside the trees")):
        missing = client.get(f"/trees/{name}")
        assert missing.status_code == 404 and said in missing.text
        assert 'href="/trees"' in missing.text

    # Names no file can have are no file either (they were a 500: ValueError, ENAMETOOLONG).
    for name in ("a%00b.yaml", "x" * 5000):
        assert client.get(f"/trees/{name}").status_code == 404
        assert client.get(f"/api/v1/trees/{name}").status_code == 404
        assert client.post("/api/v1/runs", json={"tree": name}).status_code == 404

    api = client.get("/api/v1/trees/sub/bad.yaml").json()
    assert api["compiled"] is False and api["problems"] == []
    (cover_json,) = [n for n in api["nodes"] if n["id"] == "cover"]
    assert "titel" in cover_json["problems"][0] and cover_json["line"] == 8
    assert "good.yaml" in client.get("/api/v1/trees").json()["trees"]
    assert client.get("/api/v1/trees/nope.yaml").status_code == 404


def test_the_tree_pages_need_the_session_and_the_api_its_token(workdir: Path) -> None:
    (workdir / "good.yaml").write_text(TREE)
    app = create_app(ServeOptions(db=workdir / "g.db", auto_resume=False, token="s3cret"))
    client = TestClient(app, base_url=LOCAL)
    assert client.get("/trees/good.yaml").status_code == 401
    assert client.get("/api/v1/trees/good.yaml").status_code == 401
    bearer = {"Authorization": "Bearer s3cret"}
    assert client.get("/api/v1/trees", headers=bearer).status_code == 200


def test_the_layout_puts_each_node_after_what_it_needs_and_keeps_60_nodes_apart() -> None:
    # A root with 12 chapters of 4 sections each, and a summary naming every chapter.
    nodes = {"root": GraphNode("root", "template")}
    edges = []
    for c in range(12):
        nodes[f"c{c}"] = GraphNode(f"c{c}", "generate", foreach=True, parent="root")
        edges.append(("root", f"c{c}", "child"))
        for s in range(4):
            nodes[f"c{c}s{s}"] = GraphNode(f"c{c}s{s}", "generate", parent=f"c{c}")
            edges.append((f"c{c}", f"c{c}s{s}", "child"))
    nodes["summary"] = GraphNode("summary", "generate")
    edges += [(f"c{c}s3", "summary", "ref") for c in range(12)]
    graph = layout(Graph("big", nodes, edges, compiled=True))
    assert len(graph.nodes) == 62
    for source, target, _ in edges:
        assert graph.nodes[target].layer > graph.nodes[source].layer
        assert graph.nodes[target].x >= graph.nodes[source].x + NODE_W
    boxes = {(n.x, n.y) for n in graph.nodes.values()}
    assert len(boxes) == 62  # no two nodes in one place
    for n in graph.nodes.values():
        assert 0 <= n.x <= graph.width - NODE_W and 0 <= n.y <= graph.height - NODE_H
    # Sections sit beside their chapter: the barycentre order keeps children in parents' order.
    rows = {n.id: n.y for n in graph.nodes.values()}
    chapters = sorted(range(12), key=lambda c: rows[f"c{c}"])
    firsts = sorted(range(12), key=lambda c: rows[f"c{c}s0"])
    assert chapters == firsts


def test_the_tree_page_shows_every_problem_validate_finds(workdir: Path) -> None:
    """The tree page checks a file as `genarun validate` (and the editor) do: a field mistake in
    one node hides neither another node's unknown model nor a third's unknown filter (the page
    stopped at the first stage that found a problem)."""
    trees = workdir / "trees"
    trees.mkdir()
    (trees / "three.yaml").write_text(
        "genarun: 1\nname: three\nnodes:\n  - id: a\n    kind: template\n    text: hi\n"
        "    colour: red\n  - id: b\n    kind: generate\n    model: dummmy/text\n"
        "    prompt: '{{ a }}'\n  - id: c\n    kind: template\n    text: '{{ b | nosuch }}'\n"
    )
    client = TestClient(
        create_app(ServeOptions(db=workdir / "g.db", auto_resume=False, trees=trees)),
        base_url=LOCAL,
    )
    page = client.get("/trees/three.yaml").text
    assert "3 problems:" in page
    for node, said in (
        ("a", "unknown field &#39;colour&#39;"),
        ("b", "model &#39;dummmy/text&#39;: cannot tell which provider"),
        ("c", "unknown filter &#39;nosuch&#39;"),
    ):
        box = re.search(rf'<g class="node [^"]*" data-node="{node}".*?</g>', page, re.S)
        assert box and "has-error" in box.group(0) and said in box.group(0), node
