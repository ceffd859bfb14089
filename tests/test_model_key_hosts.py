"""A model's API key goes only where the person running, or the tree's `secrets:`, says
(genarun/models/key_hosts.py). The fake OpenAI server listens on this machine's own
non-loopback address, so to genarun it is another host: each payload is a whole `genarun run`
in a real process, and the server must never see the key."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import genarun_subprocess
from tests.providers_server import FakeOpenAIServer

KEY_ENV = "GENARUN_TEST_MODEL_KEY"
SECRET = "sk-live-5d4c3b2a1f0e-never-leaves-27182818"


def _outward_address() -> str | None:
    """This machine's address on its network (no packet is sent), or None if it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


ADDRESS = _outward_address()
pytestmark = pytest.mark.skipif(ADDRESS is None, reason="no non-loopback address to listen on")


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    assert ADDRESS is not None
    with FakeOpenAIServer(host=ADDRESS) as running:
        yield running


@dataclass(frozen=True)
class Payload:
    model: str  # the `models: {writer: ...}` value; BASE is the server's base URL
    secrets: str = ""  # the tree's `secrets:` block, if any
    env: tuple[tuple[str, str], ...] = ((KEY_ENV, SECRET),)
    node_model: str = "writer"  # the node's `model:` field


OPTIONS = f"api_key_env: {KEY_ENV}, max_retries: 0, timeout: 5"
WITHHELD = {
    # The tree names the endpoint; nothing says the key may go there.
    "base-url": Payload(f'{{provider: openai, id: m, options: {{base_url: "BASE", {OPTIONS}}}}}'),
    # The default variable, OPENAI_API_KEY, set in the person's shell.
    "default-key-variable": Payload(
        '{provider: openai, id: m, options: {base_url: "BASE", max_retries: 0}}',
        env=(("OPENAI_API_KEY", SECRET),),
    ),
    # A host listed for another secret, or on another port, is not this key's.
    "listed-for-another-secret": Payload(
        f'{{provider: openai, id: m, options: {{base_url: "BASE", {OPTIONS}}}}}',
        secrets="secrets: {OTHER_KEY: {hosts: [HOST]}}\n",
    ),
    "listed-on-another-port": Payload(
        f'{{provider: openai, id: m, options: {{base_url: "BASE", {OPTIONS}}}}}',
        secrets=f"secrets: {{{KEY_ENV}: {{hosts: ['HOST:1']}}}}\n",
    ),
    "listed-subdomains-only": Payload(
        f'{{provider: openai, id: m, options: {{base_url: "BASE", {OPTIONS}}}}}',
        secrets=f"secrets: {{{KEY_ENV}: {{hosts: ['*.HOST']}}}}\n",
    ),
    # $OPENAI_BASE_URL names another endpoint than the tree's.
    "env-base-url-elsewhere": Payload(
        f'{{provider: openai, id: m, options: {{base_url: "BASE", {OPTIONS}}}}}',
        env=((KEY_ENV, SECRET), ("OPENAI_BASE_URL", "https://api.example.org/v1")),
    ),
    # An alias of an alias: the spec the key's endpoint comes from is the tree's all the same.
    "alias-of-an-alias": Payload(
        "other",
        node_model="writer",
    ),
}
SENT = {
    "listed-in-secrets": Payload(
        f'{{provider: openai, id: m, options: {{base_url: "BASE", {OPTIONS}}}}}',
        secrets=f"secrets: {{{KEY_ENV}: {{hosts: [HOST]}}}}\n",
    ),
    "listed-with-its-port": Payload(
        f'{{provider: openai, id: m, options: {{base_url: "BASE", {OPTIONS}}}}}',
        secrets=f"secrets: {{{KEY_ENV}: {{hosts: ['HOST:PORT']}}}}\n",
    ),
    "base-url-from-the-environment": Payload(
        f"{{provider: openai, id: m, options: {{{OPTIONS}}}}}",
        env=((KEY_ENV, SECRET), ("OPENAI_BASE_URL", "BASE")),
    ),
}


def _run(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, server: FakeOpenAIServer, payload: Payload
) -> str:
    base = server.base_url
    port = base.rsplit(":", 1)[1].split("/")[0]

    def fill(text: str) -> str:
        return text.replace("BASE", base).replace("HOST", str(ADDRESS)).replace("PORT", port)

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in payload.env:
        monkeypatch.setenv(name, fill(value))
    tree = workdir / "keys.yaml"
    tree.write_text(
        "genarun: 1\nname: keys\n"
        + fill(payload.secrets)
        + f"models:\n  writer: {fill(payload.model)}\n"
        + f"  other: {fill(WITHHELD['base-url'].model)}\n"
        + f"nodes:\n  - id: answer\n    kind: generate\n    model: {fill(payload.node_model)}\n"
        + "    prompt: Say something\n"
    )
    done = genarun_subprocess("run", tree, cwd=workdir, timeout=120)
    return done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(WITHHELD))
def test_the_key_does_not_go_to_a_host_nobody_listed(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, server: FakeOpenAIServer, name: str
) -> None:
    output = _run(workdir, monkeypatch, server, WITHHELD[name])
    assert server.requests, output  # the request went out, without the key
    assert not any(r.had_authorization for r in server.requests), name


@pytest.mark.parametrize("name", sorted(SENT))
def test_the_key_goes_where_it_is_listed(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, server: FakeOpenAIServer, name: str
) -> None:
    output = _run(workdir, monkeypatch, server, SENT[name])
    assert server.requests and all(r.had_authorization for r in server.requests), output


def test_a_server_that_wants_the_key_says_how_to_list_its_host(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, server: FakeOpenAIServer
) -> None:
    server.require_key(SECRET)
    output = _run(workdir, monkeypatch, server, WITHHELD["base-url"])
    assert f"add `secrets: {{{KEY_ENV}: {{hosts: [{ADDRESS}]}}}}` to the tree" in output, output
    assert SECRET[:12] not in output
