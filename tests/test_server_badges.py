"""Status badges on the pages of `genarun serve`: every status a run, an execution or a human
request can have is coloured (a `completed` run's badge was plain grey), and every badge class
a real page uses has a rule in its style."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from genarun.run.state import RunStatus, Status
from genarun.server.run_pages import STYLE
from tests.helpers import app_client, query

TREE = """\
genarun: 1
name: badges
seed: 2
nodes:
  - id: words
    kind: generate
    model: dummy
    foreach: [a, b]
    prompt: "say {{ item }}"
  - id: broken
    kind: generate
    model: {provider: dummy, id: dummy, options: {fail_on: boom}}
    prompt: "boom"
"""

# The statuses of human requests (store/human.py): `answered` is shown with the `done` colour.
HUMAN_STATUSES = ("waiting", "expired")


def _coloured(style: str) -> set[str]:
    """The classes a rule in `style` gives a background."""
    found: set[str] = set()
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", style):
        if "background" in body:
            found.update(re.findall(r"\.([a-z_-]+)", selectors))
    return found


@pytest.mark.parametrize(
    "status", sorted({*map(str, RunStatus), *map(str, Status), *HUMAN_STATUSES})
)
def test_every_status_has_a_colour(status: str) -> None:
    assert status in _coloured(STYLE)


def test_every_badge_on_the_run_pages_is_styled(workdir: Path, cli: Callable[..., Result]) -> None:
    (workdir / "tree.yaml").write_text(TREE)
    cli("run", "tree.yaml")
    (workdir / "tree.yaml").write_text(TREE.replace("  - id: broken", "  - id: unused"))
    cli("run", "tree.yaml", "--skip", "unused")
    db = workdir / "genarun.db"
    runs = dict(query(db, "SELECT status, id FROM runs"))
    assert set(runs) == {"failed", "completed"}
    client = app_client(db)
    (experiment,) = (row[0] for row in query(db, "SELECT id FROM experiments LIMIT 1"))
    pages = ["/runs", *(f"/runs/{run}" for run in runs.values()), "/experiments"]
    pages.append(f"/experiments/{experiment}")
    used: set[str] = set()
    for page in pages:
        html = client.get(page).text
        style = "".join(re.findall(r"<style>(.*?)</style>", html, re.DOTALL))
        classes = {c for attr in re.findall(r'class="badge ([^"]*)"', html) for c in attr.split()}
        assert classes <= _coloured(style), (page, classes - _coloured(style))
        used |= classes
    assert {"completed", "failed", "done", "skipped"} <= used
