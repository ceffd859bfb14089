"""A model's text is never thrown away: an execution that fails after its model answered (an
answer `parse: json` cannot read, an image model that returned text) keeps that text with the
failure, in SQLite, `runs show` and `runs show --json`, and the message says how to fix it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.cycle_fakes import use_fakes
from tests.helpers import query


def _failed(db: Path) -> dict:
    rows = query(db, "SELECT * FROM executions WHERE status = 'failed'")
    assert len(rows) == 1
    return dict(rows[0])


def test_unparseable_model_answer_is_kept_with_the_failure(
    cli: Callable[..., Result], workdir: Path
) -> None:
    # tiny-gpt2's random weights never answer in JSON: the case of a model that ignores the format
    tree = workdir / "plan.yaml"
    tree.write_text(
        "genarun: 1\nname: plan\nseed: 1\nnodes:\n"
        "  - id: plan\n    kind: generate\n    model: tiny-gpt2\n"
        "    prompt: List 3 titles as a JSON array.\n    parse: json\n    max_tokens: 24\n"
        "    retries: 1\n"
    )
    result = cli("run", tree)
    assert result.exit_code == 1
    run_id = query(workdir / "genarun.db", "SELECT id FROM runs")[0]["id"]
    message = result.output
    assert "node 'plan' failed: output is not valid JSON" in message
    assert "ask for only JSON in the prompt" in message and "parse: text" in message
    assert f"its text is kept: genarun runs show {run_id[:8]}" in message

    row = _failed(workdir / "genarun.db")
    text = json.loads(row["raw_output"])
    assert isinstance(text, str) and text.strip()
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert row["attempts"] == 2  # the retry failed the same way; its answer is the one kept

    shown = cli("runs", "show", run_id[:8])
    assert shown.exit_code == 0
    assert "plan failed; the text it got:" in shown.output
    assert text in shown.output  # in full, not cut to the table's 60 characters
    report = json.loads(cli("runs", "show", run_id[:8], "--json").output)
    (execution,) = report["executions"]
    assert execution["status"] == "failed" and execution["raw_output"] == text


def test_a_template_that_is_not_json_keeps_its_rendered_text(
    cli: Callable[..., Result], tree: Callable[[str], Path], workdir: Path
) -> None:
    result = cli("run", tree("failing.yaml"))
    assert result.exit_code == 1
    assert "fix the text so it is valid JSON, or write parse: text" in result.output
    assert json.loads(_failed(workdir / "genarun.db")["raw_output"]) == "this is not json"
    report = json.loads(cli("runs", "show", "latest", "--json").output)
    kept = {e["node"]: e["raw_output"] for e in report["executions"]}
    assert kept.pop("bad") == "this is not json"
    assert kept and set(kept.values()) == {None}  # the executions that did not fail


def test_any_failure_after_the_model_answered_keeps_its_text(
    cli: Callable[..., Result], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An image model that returns text instead of an image: saving the PNG fails.
    use_fakes(monkeypatch)
    tree = workdir / "cover.yaml"
    tree.write_text(
        "genarun: 1\nname: cover\nseed: 1\n"
        "models:\n  painter: {provider: fake, id: fake-t2i, options: {garbage_calls: [1]}}\n"
        "nodes:\n  - id: cover\n    kind: image\n    model: painter\n    prompt: a cat\n"
    )
    result = cli("run", tree)
    assert result.exit_code == 1
    assert "its text is kept: genarun runs show" in result.output
    assert json.loads(_failed(workdir / "genarun.db")["raw_output"]) == "not an image"


def test_a_failure_before_any_model_answered_keeps_nothing(
    cli: Callable[..., Result], workdir: Path
) -> None:
    tree = workdir / "missing.yaml"
    tree.write_text(
        "genarun: 1\nname: missing\nseed: 1\nnodes:\n"
        "  - id: describe\n    kind: caption\n    model: dummy\n    image: no-such-file.png\n"
    )
    result = cli("run", tree)
    assert result.exit_code == 1
    assert "its text is kept" not in result.output
    assert _failed(workdir / "genarun.db")["raw_output"] is None
