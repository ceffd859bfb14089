"""End to end in a real headless Chromium (Debian's `chromium`, driven by Playwright with
`executable_path`): start a run from the start page of a real `genarun serve`, watch it wait
for a person, open its image, answer in the inbox, and see the run continue to completed.
Screenshots of each page go to the test's tmp dir (and $GENARUN_ARTIFACTS when set)."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PATIENCE
from tests.human_helpers import serving

TREE = """genarun: 1
name: browser-book
seed: 2
nodes:
  - id: title
    kind: template
    text: "A book about {{ topic }}"
    children:
      - id: cover
        kind: image
        model: dummy
        prompt: "Cover for {{ title }}"
        width: 32
        height: 32
      - id: publish
        kind: human
        ask: approve
        question: "Publish {{ title }}?"
vars:
  topic: lizards
"""

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    """The chromium binary; in CI its absence fails the test, elsewhere it skips."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        found, what = None, "the playwright package (pip install -e '.[dev]')"
    else:
        what = "Debian's chromium (apt-get install -y chromium)"
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {what} is missing: .ci/run installs it")
        pytest.skip(f"needs {what}")
    return found


def _shot(page: Any, folders: list[Path], name: str) -> None:
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _until(page: Any, url: str, status: str, seconds: float = PATIENCE) -> None:
    """Reload the run page until its heading shows the status (the page has no script)."""
    deadline = time.monotonic() + seconds
    while True:
        page.goto(url)
        heading = page.locator("h1 .badge")
        assert heading.count() == 1, f"{page.url}: {page.content()[:2000]}"
        badge = heading.inner_text()
        if badge == status:
            return
        assert time.monotonic() < deadline, f"the run is {badge}, not {status}"
        time.sleep(0.3)


@pytest.mark.browser
@pytest.mark.slow
def test_start_wait_open_an_image_answer_and_complete_in_chromium(tmp_path: Path) -> None:
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    trees = tmp_path / "trees"
    trees.mkdir()
    (trees / "book.yaml").write_text(TREE)
    db = tmp_path / "g.db"
    folders = [tmp_path / "screenshots"]
    if os.environ.get("GENARUN_ARTIFACTS"):
        folders.append(Path(os.environ["GENARUN_ARTIFACTS"]) / "browser")
    with (
        serving(db, "--trees", str(trees), "--sweep", "0.5") as base,
        sync_playwright() as p,
    ):
        # Playwright's 30 s defaults (launch, every goto, click and wait) are short for a slow,
        # busy machine; they are reached only when a page never comes.
        browser = p.chromium.launch(
            executable_path=chromium, args=CHROMIUM_FLAGS, timeout=PATIENCE * 1000
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(PATIENCE * 1000)
            page.goto(f"{base}/runs")
            page.click("text=Start a run")
            page.select_option("select[name=tree]", "book.yaml")
            page.click("text=Choose")
            assert page.locator("input[name=node][value=publish]").is_checked()
            page.fill("textarea[name=set]", "topic=geckos")
            page.fill("input[name=seed]", "9")
            _shot(page, folders, "1-start")
            page.click("#start button")
            page.wait_for_url(re.compile(r".*/runs/[0-9a-f]{8,}$"))
            run_url = page.url
            _until(page, run_url, "waiting")
            assert "Publish A book about geckos?" in page.content()
            _shot(page, folders, "2-run-waiting")

            image = page.locator(".images img").first
            src = image.get_attribute("src")
            assert src and "/files/assets/" in src
            assert page.evaluate("(img) => img.naturalWidth", image.element_handle()) == 32
            shown = page.goto(base + src)
            assert shown is not None and shown.status == 200
            assert shown.headers["content-type"] == "image/png"
            _shot(page, folders, "3-image")

            page.goto(f"{base}/inbox")
            assert "Publish A book about geckos?" in page.content()
            _shot(page, folders, "4-inbox")
            page.fill("input[name=responder]", "ada")
            page.get_by_role("button", name="Approve").click()
            page.wait_for_url(re.compile(r".*/inbox\?.*"))
            assert "answered" in page.locator("[role=status]").inner_text()
            _shot(page, folders, "5-answered")

            _until(page, run_url, "completed")
            assert "true by ada via page" in page.content().lower()
            _shot(page, folders, "6-run-completed")
        finally:
            browser.close()
    for name in ("1-start", "2-run-waiting", "3-image", "4-inbox", "5-answered"):
        assert (folders[0] / f"{name}.png").stat().st_size > 1000
