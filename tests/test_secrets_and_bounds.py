"""Whole runs through the CLI against a hostile OpenAI-compatible server on 127.0.0.1: the API key
(and its altered echoes) never reaches the database, the output folder, logs or stderr; model
outputs parsed as YAML are bounded (an alias bomb or a recursive alias fails its node, not the
run)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import genarun_subprocess, query
from tests.providers_server import FakeOpenAIServer

KEY_ENV = "GENARUN_TEST_SECRET_KEY"
SECRET = "sk-live-9f8e7d6c5b4a-do-not-store-31415926"
# A 250-byte "billion laughs": 9^6 copies of 'lol' once its aliases are expanded.
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as running:
        yield running


def write_tree(folder: Path, base_url: str, parse: str = "text", retries: int = 1) -> Path:
    tree = folder / "leak.yaml"
    tree.write_text(
        f"""genarun: 1
name: leak
seed: 1
models:
  writer:
    provider: openai
    id: fake-model
    options: {{base_url: "{base_url}", api_key_env: {KEY_ENV}, backoff: 0.01,
               max_retries: {retries}, timeout: 5}}
nodes:
  - id: answer
    kind: generate
    model: writer
    prompt: "Say something"
    parse: {parse}
  - id: steady
    kind: template
    text: "still here"
"""
    )
    return tree


def leaks(text: str, secret: str = SECRET, run: int = 8) -> list[str]:
    """Runs of `run` characters of the secret found in `text`, case-insensitively."""
    low = text.lower()
    return sorted(
        {
            secret[i : i + run]
            for i in range(len(secret) - run + 1)
            if secret[i : i + run].lower() in low
        }
    )


def everything_written(folder: Path) -> str:
    """Every file under the folder (database, WAL, output folder, logs), as text."""
    return "\n".join(
        p.read_bytes().decode("latin-1") for p in sorted(folder.rglob("*")) if p.is_file()
    )


@pytest.mark.parametrize("echo", ["exact", "altered", "truncated", "upper"])
def test_a_rejected_key_and_its_echoes_are_stored_nowhere(
    workdir: Path, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, echo: str
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET + "\r")  # a pasted key with a stray carriage return
    server.require_key("sk-live-the-right-one-0000000000")
    server.echo_key(echo)
    tree = write_tree(workdir, server.base_url)
    result = genarun_subprocess("run", tree, cwd=workdir)
    assert result.returncode == 1, result.stderr
    assert "Incorrect API key provided: ***" in result.stderr
    [row] = query(workdir / "genarun.db", "SELECT error FROM executions WHERE node_id='answer'")
    assert "Incorrect API key provided: ***" in row["error"]
    logs_json = next(workdir.glob("leak/*/logs.json")).read_text()
    assert "Incorrect API key provided: ***" in logs_json
    # Nothing of the key anywhere: not the key, its stripped form, nor an 8-character run of it.
    assert leaks(result.stdout + result.stderr) == []
    assert leaks(everything_written(workdir)) == []
    assert server.requests and all(r.had_authorization for r in server.requests)


def test_a_key_echoed_in_retries_and_model_output_is_stored_nowhere(
    workdir: Path, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    server.fail_next(1, status=503, message=f"upstream refused Bearer {SECRET[:-3]}, try later")
    server.reply_text(f"Your key is {SECRET.upper()} and the header was Authorization: {SECRET}")
    tree = write_tree(workdir, server.base_url)
    result = genarun_subprocess("run", tree, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "retry 1/1" in result.stderr  # the retry was logged, masked
    [row] = query(workdir / "genarun.db", "SELECT output FROM executions WHERE node_id='answer'")
    assert json.loads(row["output"]) == "Your key is *** and the header was Authorization: ***"
    assert leaks(result.stdout + result.stderr) == []
    assert leaks(everything_written(workdir)) == []


def test_a_yaml_alias_bomb_from_a_model_fails_its_node_quickly(
    workdir: Path, server: FakeOpenAIServer
) -> None:
    assert len(ALIAS_BOMB) <= 300
    server.reply_text(ALIAS_BOMB)
    tree = write_tree(workdir, server.base_url, parse="yaml")
    started = time.perf_counter()
    result = genarun_subprocess("run", tree, cwd=workdir)
    assert time.perf_counter() - started < 60  # expanded, it would run out of memory or time
    assert result.returncode == 1 and "internal error" not in result.stderr
    assert "node 'answer' failed" in result.stderr and "expands to more than" in result.stderr
    rows = query(workdir / "genarun.db", "SELECT node_id, status FROM executions ORDER BY node_id")
    assert [(r["node_id"], r["status"]) for r in rows] == [("answer", "failed"), ("steady", "done")]


@pytest.mark.parametrize("text", ["a: &a [1, *a]", "&x {self: *x}"])
def test_a_recursive_yaml_alias_fails_its_node_not_the_run(
    workdir: Path, server: FakeOpenAIServer, text: str
) -> None:
    server.reply_text(text)
    tree = write_tree(workdir, server.base_url, parse="yaml")
    result = genarun_subprocess("run", tree, cwd=workdir)
    assert result.returncode == 1 and "internal error" not in result.stderr
    assert "refers to a node that contains it" in result.stderr
    [run] = query(workdir / "genarun.db", "SELECT status FROM runs")
    assert run["status"] == "failed"
    assert (next(workdir.glob("leak/*/output.json"))).exists()
