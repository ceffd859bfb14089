"""The tree editor in a real headless Chromium (Debian's `chromium`, driven by Playwright, as
tests/test_server_browser.py does) against a real `genarun serve`: open a tree from the trees
page, add a node, see its validation problem appear, edit its field and see it go, make and fix
a misspelt name, save, check the file on disk (comments kept), then start a run of it from the
editor and follow it to completed. Screenshots go to the test's tmp dir (and
$GENARUN_ARTIFACTS when set)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.helpers import PATIENCE
from tests.human_helpers import serving
from tests.test_server_browser import CHROMIUM_FLAGS, _chromium, _shot, _until

TREE = """# A small book, edited in the browser.
genarun: 1
name: edited-book
seed: 3
nodes:
  - id: title   # the heading
    kind: template
    text: "A book about geckos"
    children:
      - id: cover
        kind: image
        model: dummy
        prompt: "Cover for {{ title }}"
        width: 32
        height: 32
"""


@pytest.mark.browser
@pytest.mark.slow
def test_edit_a_tree_in_chromium_save_it_and_run_it(tmp_path: Path) -> None:
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    trees = tmp_path / "trees"
    trees.mkdir()
    (trees / "book.yaml").write_text(TREE)
    folders = [tmp_path / "screenshots"]
    if os.environ.get("GENARUN_ARTIFACTS"):
        folders.append(Path(os.environ["GENARUN_ARTIFACTS"]) / "editor")
    with (
        serving(tmp_path / "g.db", "--trees", str(trees)) as base,
        sync_playwright() as p,
    ):
        # Playwright's 30 s defaults (launch, every goto, click and wait) are short for a slow,
        # busy machine; they are reached only when a page never comes.
        browser = p.chromium.launch(
            executable_path=chromium, args=CHROMIUM_FLAGS, timeout=PATIENCE * 1000
        )
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.set_default_timeout(PATIENCE * 1000)
            page.goto(f"{base}/trees/book.yaml")
            page.click("#edit-tree")
            page.wait_for_url(f"{base}/trees/book.yaml/edit")
            root = page.locator("#editor-root")
            assert root.get_attribute("data-problems") == "0"
            page.evaluate("window.notReloaded = true")  # the script swaps, never reloads

            # add a node: its missing required field shows on it
            page.select_option("#add-kind", "template")
            page.fill("#add-id", "summary")
            page.select_option("#add-parent", "")
            page.click("#add")
            summary = page.locator('li[data-node="summary"]')
            summary.locator(".problem").wait_for()
            assert "missing required field 'text'" in summary.inner_text()
            assert page.locator("#editor-root").get_attribute("data-problems") == "1"
            assert page.locator("#unsaved").is_visible()
            _shot(page, folders, "1-added")

            # fill the field: applied on change, the problem goes
            page.fill("#f-text", "In short: {{ titel }}")
            page.locator("#f-text").blur()
            page.wait_for_function(
                "document.querySelector('li[data-node=summary] .problem')"
                " && document.querySelector('li[data-node=summary] .problem')"
                ".textContent.includes('titel')"
            )
            assert "did you mean 'title'" in summary.inner_text()
            _shot(page, folders, "2-misspelt")
            page.fill("#f-text", "In short: {{ title }}")
            page.locator("#f-text").blur()
            page.wait_for_function(
                "document.getElementById('editor-root').dataset.problems === '0'"
            )
            assert summary.locator(".problem").count() == 0
            assert page.evaluate("window.notReloaded") is True
            assert (trees / "book.yaml").read_text() == TREE  # nothing saved yet

            page.click("#save")
            page.locator("#saved").wait_for()
            assert page.locator("#message").inner_text() == "saved book.yaml"
            _shot(page, folders, "3-saved")
            saved = (trees / "book.yaml").read_text()
            assert (
                saved
                == TREE + "  - id: summary\n    kind: template\n    text: 'In short: {{ title }}'\n"
            )

            # a refused change (a token gone stale when the server restarted) keeps the page
            page.select_option("#add-parent", "")
            page.fill("#add-id", "later")
            page.evaluate("document.querySelector('input[name=csrf]').value = '0'.repeat(64)")
            page.press("#add-id", "Enter")
            page.locator("#refused").wait_for()
            assert "the form is stale or forged" in page.locator("#refused").inner_text()
            assert page.locator('li[data-node="summary"]').count() == 1
            assert page.evaluate("window.notReloaded") is True
            page.reload()

            # start a run of the saved tree from the editor and follow it
            page.click("#start-run button")
            page.wait_for_url(re.compile(r".*/runs/[0-9a-f]{8,}$"))
            _until(page, page.url, "completed")
            assert "summary" in page.content()
            _shot(page, folders, "4-run")
        finally:
            browser.close()
