"""`assemble:` on a fetch: a text model fills the request's parameters under the OpenAPI
operation's (or a given) schema, the request is stored as its own step before it is sent, and a
resume sends the stored request instead of asking the model again. Against a real HTTP server
on 127.0.0.1, with the dummy and the tiny random-weight GPT-2."""

from __future__ import annotations

import json
import shutil
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from tests.fetch_server import FetchServer
from tests.helpers import TREES, query

try:
    from tests.providers_server import FakeOpenAIServer
except ImportError:
    from providers_server import FakeOpenAIServer  # type: ignore[no-redef]


@pytest.fixture
def server() -> Iterator[FetchServer]:
    with FetchServer() as running:
        yield running


def write_tree(folder: Path, fetch: str, *, models: str = "") -> Path:
    shutil.copy(TREES / "assemble" / "forecast.yaml", folder / "forecast.yaml")
    path = folder / "api.yaml"
    path.write_text(
        "genarun: 1\nname: api\nseed: 3\n"
        + models
        + "vars:\n  city: Oslo\nnodes:\n  - id: weather\n    kind: fetch\n"
        + fetch
    )
    return path


def sent_query(server: FetchServer) -> dict[str, list[str]]:
    (request,) = server.requests
    return urllib.parse.parse_qs(urllib.parse.urlsplit(request["path"]).query)


@pytest.mark.parametrize("model", ["dummy", pytest.param("tiny-gpt2", marks=pytest.mark.slow)])
def test_a_model_fills_the_operation_parameters_the_node_does_not_pin(
    server: FetchServer, cli: Callable[..., Result], workdir: Path, model: str
) -> None:
    path = write_tree(
        workdir,
        f'    url: "{server.url}/echo"\n'
        "    params: {current: temperature_2m}\n"
        "    extract: path\n"
        f"    assemble:\n      model: {model}\n      from: forecast.yaml#getForecast\n"
        '      instructions: "The current weather in {{ city }}."\n',
    )
    result = cli("run", path)
    assert result.exit_code == 0, result.output
    sent = sent_query(server)
    assert sent["current"] == ["temperature_2m"]  # pinned by the node
    assert -90 <= float(sent["latitude"][0]) <= 90  # filled under the parameter's bounds
    assert -180 <= float(sent["longitude"][0]) <= 180
    assert server.requests[0]["path"].startswith("/echo/v1/forecast?")  # base URL + path
    (row,) = query(workdir / "genarun.db", "SELECT * FROM assembled_requests")
    assert "The current weather in Oslo." in row["prompt"]  # instructions rendered in scope
    assert "- latitude (number, required): Latitude of the place" in row["prompt"]
    stored = json.loads(row["request"])
    assert stored["method"] == "GET" and stored["url"] == f"{server.url}/echo/v1/forecast"
    assert set(json.loads(row["parameters"])) == {"latitude", "longitude"}
    run_id = query(workdir / "genarun.db", "SELECT id FROM runs")[0]["id"]
    shown = cli("runs", "show", run_id[:8])
    assert "assembled requests" in shown.output
    assert f"weather  GET {server.url}/echo/v1/forecast  <- {model}: {{" in shown.output
    report = json.loads(cli("runs", "show", run_id[:8], "--json").output)
    assert report["assembled"][0]["parameters"] == json.loads(row["parameters"])


def test_path_and_body_parameters_build_the_request(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    path = write_tree(
        workdir,
        f'    url: "{server.url}/echo"\n'
        "    assemble: {model: dummy, from: forecast.yaml#addNote, instructions: A note.}\n",
    )
    result = cli("run", path)
    assert result.exit_code == 0, result.output
    (request,) = server.requests
    assert request["method"] == "POST"
    assert request["path"] in ("/echo/v1/places/oslo/notes", "/echo/v1/places/lisbon/notes")
    body = json.loads(request["body"])
    assert len(body["text"]) <= 40 and (body["stars"] is None or 1 <= body["stars"] <= 5)


def test_inline_schema_fills_the_query_of_a_get(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    path = write_tree(
        workdir,
        f'    url: "{server.url}/echo/search"\n'
        "    params: {lang: en}\n"
        "    assemble:\n      model: dummy\n"
        "      schema: {type: object, properties: {q: {type: string}, limit: {type: integer,"
        " minimum: 1, maximum: 5}, lang: {enum: [de]}}, required: [q, limit, lang]}\n",
    )
    result = cli("run", path)
    assert result.exit_code == 0, result.output
    sent = sent_query(server)
    assert sent["lang"] == ["en"] and 1 <= int(sent["limit"][0]) <= 5 and sent["q"][0]


def test_resume_sends_the_stored_request_without_asking_the_model_again(
    server: FetchServer, cli: Callable[..., Result], workdir: Path
) -> None:
    path = write_tree(
        workdir,
        f'    url: "{server.url}/echo"\n    extract: path\n    retries: 0\n'
        "    assemble:\n      model: dummy\n"
        "      from: forecast.yaml#getForecast\n",
    )
    # The first attempt's request fails (404 for its exact path), after it was assembled.
    original = server.answer

    def failing(method: str, path: str, prefix: str, nth: int, body: bytes):  # type: ignore[no-untyped-def]
        if nth == 1:
            return 503, {"Content-Type": "application/json"}, b"{}"
        return original(method, path, prefix, nth, body)

    server.answer = failing  # type: ignore[method-assign]
    result = cli("run", path)
    assert result.exit_code == 1
    run_id = query(workdir / "genarun.db", "SELECT id FROM runs")[0]["id"]
    resumed = cli("resume", run_id)
    assert resumed.exit_code == 0, resumed.output
    first, second = (r["path"] for r in server.requests)
    assert first == second  # the same latitude and longitude: not sampled again
    assert len(query(workdir / "genarun.db", "SELECT id FROM assembled_requests")) == 1
    logs = [r["message"] for r in query(workdir / "genarun.db", "SELECT message FROM logs")]
    assert any("sending the request assembled before" in m for m in logs)


def test_answers_failing_the_parameter_schema_fail_the_node_after_retries(
    cli: Callable[..., Result], workdir: Path
) -> None:
    with FakeOpenAIServer() as api, FetchServer() as target:
        api.reply_text('{"latitude": 500, "longitude": 0}')
        path = write_tree(
            workdir,
            f'    url: "{target.url}/echo"\n'
            "    assemble: {model: api, from: forecast.yaml#getForecast, retries: 1}\n",
            models=f"models:\n  api: {{provider: openai, id: m, options: {{base_url: '{api.base_url}',"
            " api_key_env: GENARUN_TEST_NO_KEY}}\n",
        )
        result = cli("run", path)
        assert result.exit_code == 1
        assert not target.requests  # nothing was sent
        assert len(api.requests) == 2
    assert (
        "node 'weather' failed: output does not match the schema at $.latitude: assemble: the"
        " model's parameters failed the schema in 2 answers, the last at $.latitude: 500 is"
        " greater than the maximum of 90"
    ) in result.output
    assert "say in assemble.instructions which values to use" in result.output


@pytest.mark.parametrize(
    ("assemble", "expected"),
    [
        (
            "{model: dummy, from: nowhere.yaml#getForecast}",
            "api.yaml:10 node 'weather': field 'assemble': from: OpenAPI file 'nowhere.yaml' does"
            " not exist in",
        ),
        (
            "{model: dummy, from: forecast.yaml#getForcast}",
            "forecast.yaml has no operation 'getForcast' (did you mean 'getForecast'?)",
        ),
        ("{model: dummy, from: forecast.yaml}", "must name an OpenAPI file and an operation"),
        ("{model: dummy}", "assemble needs exactly one of from:"),
        ("{model: dummy, schema: {type: objekt}}", "not a valid JSON Schema"),
        ("{model: dumy, schema: {type: object}}", "unknown model 'dumy'"),
        (
            "{model: dummy, schema: {type: object}, instructons: hi}",
            "instructons: unknown field (did you mean 'instructions'?)",
        ),
    ],
)
def test_bad_assemble_is_an_error_before_anything_runs(
    server: FetchServer, cli: Callable[..., Result], workdir: Path, assemble: str, expected: str
) -> None:
    path = write_tree(workdir, f'    url: "{server.url}/echo"\n    assemble: {assemble}\n')
    result = cli("run", path)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output and not server.requests
