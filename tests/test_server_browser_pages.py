"""End to end in a real headless Chromium (as tests/test_server_browser.py): the tree pages
(a valid tree drawn, a tree with an error shown on its node), the run page's graph and a click
through to a node's executions, the diff of two runs and an experiment's page, and a 404 with
its way back, on a real `genarun serve`. Screenshots of each page go to the test's tmp dir
(and $GENARUN_ARTIFACTS/browser-pages when set)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.helpers import PATIENCE, TREES, genarun_subprocess
from tests.human_helpers import serving
from tests.test_server_browser import CHROMIUM_FLAGS, _chromium, _shot

# Scenario trees shared with tests/test_server_graph.py and tests/test_server_experiments.py.
SERVE_TREES = TREES / "serve"
BOOK = (SERVE_TREES / "book.yaml").read_text()
BAD = (SERVE_TREES / "bad_book.yaml").read_text()
CYCLES = (SERVE_TREES / "trajectories.yaml").read_text()


def _run(db: Path, tree: Path, *args: str) -> None:
    done = genarun_subprocess("run", tree, "--db", db, *args, cwd=tree.parent, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.browser
@pytest.mark.slow
def test_tree_graph_errors_on_nodes_node_pages_diff_and_experiments_in_chromium(
    tmp_path: Path,
) -> None:
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    trees = tmp_path / "trees"
    trees.mkdir()
    (trees / "book.yaml").write_text(BOOK)
    (trees / "bad.yaml").write_text(BAD)
    (trees / "cycles.yaml").write_text(CYCLES)
    db = tmp_path / "g.db"
    _run(db, trees / "book.yaml")
    _run(db, trees / "book.yaml", "--set", "mood=stormy")
    _run(db, trees / "cycles.yaml")
    folders = [tmp_path / "screenshots"]
    if os.environ.get("GENARUN_ARTIFACTS"):
        folders.append(Path(os.environ["GENARUN_ARTIFACTS"]) / "browser-pages")
    with serving(db, "--trees", str(trees)) as base, sync_playwright() as p:
        # Playwright's 30 s defaults (launch, every goto, click and wait) are short for a slow,
        # busy machine; they are reached only when a page never comes.
        browser = p.chromium.launch(
            executable_path=chromium, args=CHROMIUM_FLAGS, timeout=PATIENCE * 1000
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(PATIENCE * 1000)
            page.goto(f"{base}/runs")
            page.click("text=Trees")
            _shot(page, folders, "1-trees")

            page.click("text=bad.yaml")
            cover = page.locator('svg.tree-graph g.node[data-node="cover"]')
            assert "has-error" in (cover.get_attribute("class") or "")
            assert cover.locator(".node-error").is_visible()
            assert "undefined name" in (cover.locator(".node-error").text_content() or "")
            said = cover.locator("title").text_content() or ""  # the whole message, hovered
            assert "undefined name 'titel' (did you mean 'title'?" in said
            title = page.locator('svg.tree-graph g.node[data-node="title"]')
            assert "has-error" not in (title.get_attribute("class") or "")
            assert page.locator("[role=alert]").inner_text().startswith("1 problem")
            _shot(page, folders, "2-tree-with-an-error")

            page.goto(f"{base}/trees/book.yaml")
            drawn = page.locator("svg.tree-graph g.node")
            assert drawn.count() == 4
            assert {drawn.nth(i).get_attribute("data-node") for i in range(4)} == {
                "title",
                "chapter",
                "cover",
                "blurb",
            }
            assert page.locator('svg.tree-graph path.edge.ref[data-target="blurb"]').count() == 1
            assert "foreach" in (
                page.locator('g.node[data-node="chapter"]').get_attribute("class") or ""
            )
            _shot(page, folders, "3-tree-valid")

            page.goto(f"{base}/runs?tree=drawn-book")
            page.locator("table a").first.click()
            page.wait_for_url(re.compile(r".*/runs/[0-9a-f]{8,}$"))
            run_url = page.url
            assert page.locator("svg.tree-graph g.node.done").count() == 4
            _shot(page, folders, "4-run-graph")
            page.locator('svg.tree-graph g.node[data-node="chapter"]').click()
            page.wait_for_url(re.compile(r".*/nodes/chapter$"))
            assert "chapter[1]" in page.content() and "On skinks" in page.content()
            _shot(page, folders, "5-node-executions")

            page.goto(f"{base}/diff")
            runs = page.locator("select[name=a] option")
            assert runs.count() == 4  # 2 books + 2 trajectories
            books = [
                runs.nth(i).get_attribute("value")
                for i in range(runs.count())
                if "drawn-book" in runs.nth(i).inner_text()
            ]
            page.select_option("select[name=a]", books[1])
            page.select_option("select[name=b]", books[0])
            page.click("text=Compare")
            assert "changed" in page.locator("[role=status]").inner_text()
            assert page.locator('section.entry[data-status="changed"]').count() >= 3
            changed = page.locator("section.entry td.rep")
            assert changed.count() >= 2 and "stormy" in page.content()
            images = page.locator('section.entry[id="cover"] img')
            assert images.count() == 2
            for i in range(2):
                width = page.evaluate("(img) => img.naturalWidth", images.nth(i).element_handle())
                assert width == 32
            _shot(page, folders, "6-diff")

            page.goto(f"{base}/experiments")
            page.locator("table a", has_text=re.compile("^[0-9a-f]{8}$")).first.click()
            page.wait_for_url(re.compile(r".*/experiments/[0-9a-f]+$"))
            if "fox-trajectories" not in page.content():
                page.go_back()
                page.locator("table a").nth(1).click()
            assert "fox-trajectories" in page.content()
            assert page.locator("table.tda tr").count() == 3  # a header and 2 diagrams
            _shot(page, folders, "7-experiment")
            page.click("text=Draw the plots")  # genarun tda plots, in a worker
            assert "drawing the plots in a worker" in page.locator("[role=status]").inner_text()
            experiment_url = page.url.split("?")[0]
            deadline = time.monotonic() + 240
            drift = page.locator('.plots img[alt="drift_dummy-embed.png"]')
            while drift.count() == 0:  # the worker writes the diagrams first, drift later
                assert time.monotonic() < deadline, page.content()[-3000:]
                time.sleep(1)
                page.goto(experiment_url)
            assert page.evaluate("(img) => img.naturalWidth", drift.element_handle()) > 300
            _shot(page, folders, "8-experiment-plots")

            missing = page.goto(f"{run_url}/nodes/nope")
            assert missing is not None and missing.status == 404
            page.click(f"text=Back to run {run_url.rsplit('/', 1)[1][:8]}")
            page.wait_for_url(run_url)
            _shot(page, folders, "9-back-from-404")
        finally:
            browser.close()
    for name in ("1-trees", "2-tree-with-an-error", "3-tree-valid", "4-run-graph", "6-diff"):
        assert (folders[0] / f"{name}.png").stat().st_size > 1000
