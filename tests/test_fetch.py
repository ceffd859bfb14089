"""The `fetch` node against a real HTTP server on 127.0.0.1: answers, retries (429 with
Retry-After, 500 then 200), timeouts, garbage, redirect loops, huge bodies, stored responses,
`cache: {ttl}`, idempotency keys, and resume retrying only the failed calls."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from tests.fetch_server import FetchServer
from tests.helpers import query


@pytest.fixture
def server() -> Iterator[FetchServer]:
    with FetchServer() as running:
        yield running


def write_tree(folder: Path, nodes: str, *, extra: str = "", name: str = "api") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"genarun: 1\nname: {name}\nseed: 1\n{extra}nodes:\n{nodes}")
    return path


def output(folder: Path, name: str = "api") -> dict:
    """The newest run's output.json (failed runs have no latest/)."""
    run = query(folder / "genarun.db", "SELECT out_dir FROM runs ORDER BY started DESC")[0]
    return json.loads((Path(run["out_dir"]) / "output.json").read_text())


def executions(db: Path, node: str) -> list:
    return query(db, "SELECT * FROM executions WHERE node_id = ? ORDER BY path, id", node)


def test_json_answer_through_extract_and_stored_response(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    path = write_tree(
        workdir,
        f"""  - id: items
    kind: fetch
    url: "{server.url}/items"
    params: {{q: "{{{{ 'lizards' }}}}", n: 3}}
    extract: "items[*].title"
    children:
      - id: one
        kind: fetch
        foreach: items
        as: title
        url: "{server.url}/echo/{{{{ title }}}}"
        extract: path
  - id: words
    kind: fetch
    url: "{server.url}/text"
""",
    )
    result = cli("run", path)
    assert result.exit_code == 0, result.output
    out = output(workdir)
    assert out["items"]["value"] == ["alpha", "beta", "gamma"]
    assert [e["value"] for e in out["items"]["one"]] == ["/echo/alpha", "/echo/beta", "/echo/gamma"]
    assert out["words"] == "plain words"  # a text answer is text
    assert "/items?q=lizards&n=3" in [r["path"] for r in server.requests]
    rows = query(workdir / "genarun.db", "SELECT * FROM responses ORDER BY node_id, path")
    assert len(rows) == 5
    first = json.loads(rows[0]["request"])
    assert first == {
        "method": "GET",
        "url": f"{server.url}/items",
        "params": {"q": "lizards", "n": 3},
    }
    assert rows[0]["status"] == 200 and rows[0]["content_type"] == "application/json"
    assert json.loads(rows[0]["body"])["n"] == 3
    shown = cli("runs", "show", "latest", "--json")
    assert shown.exit_code == 0
    report = json.loads(shown.output)
    assert [r["node_id"] for r in report["responses"]] == ["items", "one", "one", "one", "words"]
    text = cli("runs", "show", "latest").output
    assert f"items  GET {server.url}/items  -> 200 application/json" in text


def test_429_with_retry_after_is_waited_out(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    path = write_tree(
        workdir,
        f"""  - id: limited
    kind: fetch
    url: "{server.url}/ratelimited"
    extract: ok
    backoff: 0.01
""",
    )
    started = time.monotonic()
    result = cli("run", path)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started >= 0.9  # Retry-After: 1 was honoured over the backoff
    assert output(workdir)["limited"] == 2
    assert server.count["/ratelimited"] == 2
    row = query(workdir / "genarun.db", "SELECT attempts FROM responses")[0]
    assert row["attempts"] == 2


def test_500_then_200_is_retried_and_post_carries_one_idempotency_key(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    path = write_tree(
        workdir,
        f"""  - id: create
    kind: fetch
    method: POST
    url: "{server.url}/flaky"
    json: {{title: "{{{{ 'hello' }}}}"}}
    backoff: 0.01
    extract: ok
""",
    )
    result = cli("run", path)
    assert result.exit_code == 0, result.output
    assert output(workdir)["create"] == 2
    keys = [r["headers"].get("idempotency-key") for r in server.requests]
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]
    assert json.loads(server.requests[0]["body"]) == {"title": "hello"}
    # Stored under the tree's field names (`json`, not the Python field `json_`).
    [row] = executions(workdir / "genarun.db", "create")
    assert json.loads(row["params"])["json"] == {"title": "hello"}
    assert "json_" not in json.loads(row["params"])
    shown = json.loads(cli("runs", "show", "latest", "--json").output)
    assert "json" in next(e for e in shown["executions"] if e["node"] == "create")["params"]


def test_post_without_idempotency_key_is_never_sent_twice(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    path = write_tree(
        workdir,
        f"""  - id: create
    kind: fetch
    method: POST
    url: "{server.url}/flaky"
    json: {{title: x}}
    idempotency_key: false
    backoff: 0.01
""",
    )
    result = cli("run", path)
    assert result.exit_code == 1
    assert server.count["/flaky"] == 1
    assert "idempotency-key" not in server.requests[0]["headers"]
    assert "status 500" in result.output


def run_failing(
    server: FetchServer, cli: Callable[..., Result], workdir: Path, node: str
) -> tuple[Result, str]:
    path = write_tree(workdir, "  - id: steady\n    kind: template\n    text: still here\n" + node)
    result = cli("run", path)
    assert result.exit_code == 1, result.output
    error = executions(workdir / "genarun.db", "call")[0]["error"]
    assert output(workdir)["steady"] == "still here"  # finished outputs are kept
    return result, error


@pytest.mark.parametrize(
    ("route", "fields", "expected"),
    [
        ("/slow", "timeout: 0.3\n    retries: 0", "within"),
        ("/garbage", "extract: a.b", "extract needs a JSON response"),
        ("/lying", "", "its body is not JSON"),
        # with extract too: the body broke its content-type, not extract (was "extract
        # needs a JSON response, but it answered with application/json")
        ("/lying", "extract: a", "its body is not JSON (Expecting property name"),
        (
            "/items",
            "extract: nothing.here",
            "matched nothing in the response (an object with keys items, n)",
        ),
        ("/loop", "", "redirect"),
        ("/huge", "max_bytes: 1000000", "larger than the limit of 1,000,000 bytes"),
        ("/missing", "", "status 404"),
        ("/down", "retries: 1\n    backoff: 0.01", "failed after 2 attempt(s)"),
        ("/image", "", "neither JSON nor text"),
    ],
)
def test_bad_answers_fail_the_node_with_the_url_and_the_fix(
    server: FetchServer,
    cli: Callable[..., Result],
    workdir: Path,
    route: str,
    fields: str,
    expected: str,
) -> None:
    node = f"""  - id: call
    kind: fetch
    url: "{server.url}{route}"
    {fields}
"""
    result, error = run_failing(server, cli, workdir, node)
    assert expected in error, error
    assert f"{server.url}{route}" in error  # the URL is named
    assert "call" in result.output and "Traceback" not in result.output


def test_404_is_not_retried_and_names_the_fix(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    _result, error = run_failing(
        server, cli, workdir, f'  - id: call\n    kind: fetch\n    url: "{server.url}/missing"\n'
    )
    assert server.count["/missing"] == 1
    assert "check the URL" in error


def test_unreachable_host_fails_with_the_url(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    _result, error = run_failing(
        server,
        cli,
        workdir,
        f'  - id: call\n    kind: fetch\n    url: "http://127.0.0.1:{port}/x"\n    retries: 0\n',
    )
    assert f"http://127.0.0.1:{port}/x" in error and "connection failed" in error


def test_a_large_body_is_stored_as_an_asset(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    path = write_tree(
        workdir,
        f'  - id: call\n    kind: fetch\n    url: "{server.url}/big"\n    extract: length(rows)\n',
    )
    result = cli("run", path)
    assert result.exit_code == 0, result.output
    assert output(workdir)["call"] == 1000
    row = query(workdir / "genarun.db", "SELECT body, asset, size FROM responses")[0]
    assert row["body"] is None and row["asset"] == "assets/call.response.json"
    folder = query(workdir / "genarun.db", "SELECT out_dir FROM runs")[0]["out_dir"]
    stored = Path(folder) / row["asset"]
    assert len(stored.read_bytes()) == row["size"] > 64 * 1024


def test_cache_ttl_reuses_a_stored_response_and_nothing_else_does(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    cached = write_tree(
        workdir,
        f'  - id: call\n    kind: fetch\n    url: "{server.url}/items"\n    extract: n\n'
        "    cache: {ttl: 10m}\n",
        name="cached",
    )
    for _ in range(2):
        result = cli("run", cached)
        assert result.exit_code == 0, result.output
    assert server.count["/items"] == 1
    assert output(workdir, "cached")["call"] == 3
    plain = write_tree(
        workdir, f'  - id: call\n    kind: fetch\n    url: "{server.url}/items"\n', name="plain"
    )
    for _ in range(2):
        assert cli("run", plain).exit_code == 0
    assert server.count["/items"] == 3  # without a ttl, every run asks again
    cached.write_text(cached.read_text().replace("ttl: 10m", "ttl: 1ms"))
    time.sleep(0.01)
    assert cli("run", cached).exit_code == 0
    assert server.count["/items"] == 4  # expired


def test_resume_retries_only_the_failed_calls(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    path = write_tree(
        workdir,
        f"""  - id: call
    kind: fetch
    foreach: [a, b, c, d]
    url: "{server.url}/echo/{{{{ item }}}}"
    extract: path
""",
    )
    server.fail.add("/echo/c")
    result = cli("run", path)
    assert result.exit_code == 1
    run_id = query(workdir / "genarun.db", "SELECT id FROM runs")[0]["id"]
    server.fail.clear()
    resumed = cli("resume", run_id)
    assert resumed.exit_code == 0, resumed.output
    asked = [r["path"] for r in server.requests]
    # Each finished call was made once; the failed one again (and any the failure stopped).
    assert sorted(asked) == ["/echo/a", "/echo/b", "/echo/c", "/echo/c", "/echo/d"]
    assert [e["value"] for e in output(workdir)["call"]] == [f"/echo/{x}" for x in "abcd"]


def test_fields_are_validated_before_anything_runs(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    path = write_tree(
        workdir,
        f'  - id: call\n    kind: fetch\n    url: "{server.url}/items"\n    extract: "items[?"\n',
    )
    result = cli("run", path)
    assert result.exit_code == 2
    assert "is not a JMESPath expression" in result.output and "api.yaml:" in result.output
    assert server.count.total() == 0
    assert not (workdir / "genarun.db").exists()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("url: api.example.com/v1\n", ":7 node 'call': field 'url': 'api.example.com/v1' is not"),
        ("url: http://127.0.0.1:9/x\n    timeout: -1\n", ":8 node 'call': field 'timeout'"),
    ],
)
def test_a_written_out_url_or_timeout_is_checked_before_the_run(
    cli: Callable[..., Result], workdir: Path, fields: str, expected: str
) -> None:
    """A URL without a scheme failed every execution, and only once the run reached it."""
    path = write_tree(workdir, f"  - id: call\n    kind: fetch\n    {fields}")
    result = cli("run", path)
    assert result.exit_code == 2, result.output
    assert f"{path}{expected}" in result.output and "Traceback" not in result.output
    assert not (workdir / "genarun.db").exists()


def test_head_gives_status_and_headers_and_an_empty_answer_is_empty_text(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    path = write_tree(
        workdir,
        f"""  - id: probe
    kind: fetch
    method: HEAD
    url: "{server.url}/items"
  - id: nothing
    kind: fetch
    method: DELETE
    url: "{server.url}/empty"
""",
    )
    result = cli("run", path)
    assert result.exit_code == 0, result.output
    out = output(workdir)
    assert out["probe"]["status"] == 200
    assert out["probe"]["headers"]["content-type"] == "application/json"
    assert out["nothing"] == ""
    # Independent nodes: their calls run on the I/O pool at once, in either order.
    assert sorted(r["method"] for r in server.requests) == ["DELETE", "HEAD"]


def test_a_post_is_sent_once_while_a_model_batch_of_the_run_is_halved(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    # The model's batch of 4 runs out of memory and is retried in halves while the POSTs of
    # the same foreach items are in flight: each POST still reaches the server exactly once.
    path = write_tree(
        workdir,
        f"""  - id: write
    kind: generate
    foreach: [a, b, c, d]
    model: {{provider: dummy, id: dummy-llm, options: {{max_ok_batch: 2}}}}
    prompt: "Say {{{{ item }}}}"
  - id: post
    kind: fetch
    foreach: [a, b, c, d]
    method: POST
    url: "{server.url}/echo/{{{{ item }}}}"
    json: {{item: "{{{{ item }}}}"}}
    extract: body
""",
    )
    result = cli("run", path, "--batch-size", "4")
    assert result.exit_code == 0, result.output
    posts = [r for r in server.requests if r["method"] == "POST"]
    assert sorted(r["path"] for r in posts) == [f"/echo/{x}" for x in "abcd"]
    keys = {r["headers"]["idempotency-key"] for r in posts}
    assert len(keys) == 4  # one per foreach item
    logs = query(workdir / "genarun.db", "SELECT message FROM logs WHERE level = 'warning'")
    assert any("out of memory" in r["message"] for r in logs)
