"""A model API that stalls (a real server on 127.0.0.1 that accepts and never answers): the
run ends with the node's error naming file, line and node, the fix (the timeout, the server)
and no class name, and keeps what finished."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.helpers import query
from tests.providers_server import FakeOpenAIServer

TREE = """\
genarun: 1
name: stalled
models:
  llm: {{provider: openai, id: tiny, options: {{base_url: "{url}", timeout: 0.5, max_retries: 1, backoff: 0.01}}}}
nodes:
  - id: before
    kind: template
    text: kept
  - id: ask
    kind: generate
    model: llm
    prompt: hello
"""


def test_a_stalled_model_api_fails_its_node_with_the_fix(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    with FakeOpenAIServer() as server:
        server.hang_next(5)
        (workdir / "tree.yaml").write_text(TREE.format(url=server.base_url))
        result = cli("run", "tree.yaml", "-q")
    assert result.exit_code == 1, result.output
    assert f"error: tree.yaml:9 node 'ask' failed: POST {server.base_url}/chat/completions" in (
        result.stderr
    )
    assert (
        "no complete answer within the total deadline of 0.5s (timeout) (raise the model's "
        "options.timeout, now 0.5s, or check that the server answers)"
    ) in result.stderr
    assert "ApiError" not in result.output and "Traceback" not in result.output
    rows = {
        r["node_id"]: r["status"] for r in query(workdir / "genarun.db", "SELECT * FROM executions")
    }
    assert rows == {"before": "done", "ask": "failed"}
    (folder,) = [f for f in (workdir / "stalled").iterdir() if f.name != "latest"]
    assert json.loads((folder / "output.json").read_text()) == {"before": "kept", "ask": None}


def test_a_model_api_that_is_not_there_says_to_check_the_base_url(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    with FakeOpenAIServer() as stopped:
        url = stopped.base_url  # nothing listens there once it stops
    (workdir / "tree.yaml").write_text(TREE.format(url=url))
    result = cli("run", "tree.yaml", "-q")
    assert result.exit_code == 1, result.output
    assert "connection failed" in result.stderr
    assert "(check options.base_url's host and port, and that the server is up)" in result.stderr
    assert "ApiError" not in result.output
