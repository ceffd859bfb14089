"""`human` nodes in tree files: what is refused before anything runs, and the editor example."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import query

REPO = Path(__file__).resolve().parents[1]

_HEAD = "genarun: 1\nname: t\nnodes:\n  - id: ask_it\n    kind: human\n    question: Pick\n"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("    ask: choice\n", "ask: choice needs options"),
        ("    ask: best\n    options: covers\n", "ask: best picks from a list"),
        ("    ask: ponder\n", "ask"),
        ("    ask: text\n    timeout: 1h\n    on_timeout: later\n", "on_timeout"),
        ("    ask: text\n    timeout: 1h\n    on_timeout: default\n", "needs a default"),
        ("    ask: text\n    timeout: soon\n", "'soon' is not a duration"),
        ("    ask: choice\n    options: [a, a]\n", "given twice"),
        ("    ask: approve\n    schema: {type: object}\n", "goes with ask: text"),
        ("    ask: choice\n    options: [a, b]\n    collect: {}\n", "collect needs answers"),
        ("    ask: text\n    on_timeout: skip\n", "give a timeout too"),
        ("    ask: text\n    notfy: http://x\n", "unknown field 'notfy' (did you mean 'notify'?)"),
        # A default no person could answer would fail only days later, when time is up.
        ("    ask: choice\n    options: [a, b]\n    default: c\n    timeout: 1h\n", "'c' is not"),
        ("    ask: approve\n    default: 'no'\n    timeout: 1h\n", "not of type 'boolean'"),
        ("    ask: text\n    notify: chat.example.com/hook\n", "field 'notify': 'chat.example"),
        # A bad duration is placed at its own line, not the node's.
        ("    ask: text\n    timeout: 3 days\n", ":8 node 'ask_it': field 'timeout': '3 days'"),
        (
            "    ask: choice\n    options: [a, b]\n    collect: {answers: 2, until: 2 hours}\n",
            ":9 node 'ask_it': field 'collect.until': '2 hours' is not a duration",
        ),
    ],
)
def test_questions_that_cannot_be_asked_are_refused_with_their_place(
    workdir: Path, cli, fields: str, message: str
) -> None:
    tree = workdir / "t.yaml"
    tree.write_text(_HEAD + fields)
    result = cli("validate", tree)
    assert result.exit_code == 2, result.output
    assert f"{tree}:" in result.output and "ask_it" in result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (workdir / "genarun.db").exists()


def test_a_default_that_is_an_answer_is_taken(workdir: Path, cli) -> None:
    tree = workdir / "t.yaml"
    tree.write_text(
        _HEAD + "    ask: choice\n    options: [a, b]\n    default: b\n    timeout: 1h\n"
    )
    result = cli("validate", tree)
    assert result.exit_code == 0, result.output


def test_best_over_something_that_is_not_a_list_fails_the_node(workdir: Path, cli) -> None:
    tree = workdir / "t.yaml"
    tree.write_text(
        "genarun: 1\nname: t\nnodes:\n  - id: one\n    kind: template\n    text: just text\n"
        "    children:\n      - id: ask_it\n        kind: human\n        ask: best\n"
        "        question: Pick\n        options: '{{ one }}'\n"
    )
    result = cli("run", tree)
    assert result.exit_code == 1
    assert "options: expected a list, got str: 'just text'" in result.output
    assert query(workdir / "genarun.db", "SELECT count(*) FROM human_requests")[0][0] == 0


@pytest.mark.slow
def test_the_editor_example_picks_a_cover_and_is_approved(workdir: Path, cli) -> None:
    tree = workdir / "editor.yaml"
    shutil.copy(REPO / "examples/editor/tree.yaml", tree)
    db = workdir / "genarun.db"
    first = cli("run", tree)
    assert first.exit_code == 0, first.output
    assert "best_cover asks (best): Which of the 4 covers" in first.output
    assert "approve_plan asks (approve): Publish this plan?" in first.output
    inbox = cli("inbox")
    assert "0: assets/" in inbox.output and "3: assets/" in inbox.output
    assert cli("answer", "latest", "best_cover", "4").exit_code == 2  # 0 to 3
    assert cli("answer", "latest", "best_cover", "2").exit_code == 0
    done = cli("answer", "latest", "approve_plan", "yes", "--resume")
    assert done.exit_code == 0, done.output
    assert query(db, "SELECT status FROM runs")[0][0] == "completed"
    covers = query(db, "SELECT output FROM executions WHERE node_id = 'cover' ORDER BY path")
    assert len(covers) == 4  # painted once
    chosen = json.loads(covers[2]["output"])["$image"]
    (caption,) = query(db, "SELECT params FROM executions WHERE node_id = 'cover_caption'")
    assert chosen in caption["params"]
    (approved,) = query(
        db, "SELECT output FROM executions WHERE node_id = 'approve_plan' AND status = 'done'"
    )
    assert json.loads(approved["output"]) is True
