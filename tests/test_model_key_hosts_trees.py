"""One process, many trees (`genarun watch`, `serve`): a tree's `secrets:` hosts let only that
tree's requests carry the model's API key. Loaded models are cached per process; a second tree
with the same openai model spec once reused the first tree's client, and with it the hosts the
first tree listed (genarun/models/base.py `ModelSpec.instance_key`).

The model's endpoint is a name only a proxy knows; the proxy is a real fake OpenAI server on
127.0.0.1 (from HTTP_PROXY), so it sees every request and whether it carried the key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from genarun.models.base import ModelSpec
from genarun.models.cache import ModelCache
from tests.helpers import genarun_subprocess
from tests.providers_server import FakeOpenAIServer

KEY_ENV = "GENARUN_TEST_TREES_KEY"
SECRET = "sk-live-9e8d7c6b5a4f-only-where-listed-31415926"
HOST = "models.genarun-test.invalid"
MODEL = (
    f'{{provider: openai, id: m, options: {{base_url: "http://{HOST}/v1",'
    f" api_key_env: {KEY_ENV}, max_retries: 0, timeout: 10}}}}"
)


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as running:
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        address = running.base_url.removesuffix("/v1")
        monkeypatch.setenv("HTTP_PROXY", address)
        monkeypatch.setenv("http_proxy", address)
        monkeypatch.setenv(KEY_ENV, SECRET)
        yield running


def _tree(folder: Path, name: str, hosts: list[str] | None) -> None:
    secrets = f"secrets: {{{KEY_ENV}: {{hosts: [{', '.join(hosts)}]}}}}\n" if hosts else ""
    (folder / f"{name}.yaml").write_text(
        f"genarun: 1\nname: {name}\n{secrets}models:\n  writer: {MODEL}\n"
        f"nodes:\n  - id: answer\n    kind: generate\n    model: writer\n"
        f"    prompt: 'from {name}'\n"
    )


def _keyed_by_tree(proxy: FakeOpenAIServer) -> dict[str, set[bool]]:
    """Tree name -> whether its requests carried the key (the prompt names the tree)."""
    seen: dict[str, set[bool]] = {}
    for request in proxy.requests:
        text = str(request.body.get("messages"))
        tree = next(name for name in ("listed1", "unlisted", "listed3", "other") if name in text)
        seen.setdefault(tree, set()).add(request.had_authorization)
    return seen


def test_watch_sends_the_key_only_for_the_trees_that_list_its_host(
    workdir: Path, proxy: FakeOpenAIServer
) -> None:
    trees = workdir / "trees"
    trees.mkdir()
    # Watched in name order: a listing tree first, so its client is cached before the other.
    _tree(trees, "listed1", [HOST])
    _tree(trees, "unlisted", None)
    _tree(trees, "listed3", [HOST])
    _tree(trees, "other", ["api.elsewhere.invalid"])
    done = genarun_subprocess("watch", "--once", trees, cwd=workdir, timeout=120)
    output = done.stdout + done.stderr
    assert all(proxy.requests[i].path.startswith(f"http://{HOST}/") for i in range(4)), output
    assert _keyed_by_tree(proxy) == {
        "listed1": {True},
        "unlisted": {False},
        "listed3": {True},
        "other": {False},
    }, output


def test_specs_that_differ_only_in_key_hosts_load_their_own_clients() -> None:
    from genarun.models.openai import OpenAIProvider

    cache = ModelCache(providers=lambda: {"openai": OpenAIProvider()})
    options = (("base_url", f"http://{HOST}/v1"),)
    plain = ModelSpec("openai", "m", options=options)
    listed = ModelSpec("openai", "m", options=options, key_hosts=(HOST,))
    reordered = ModelSpec("openai", "m", options=options, key_hosts=("b.invalid", HOST))
    assert plain.key == listed.key  # one model for batching's settings and the run cache
    try:
        first, second = cache.get(listed), cache.get(plain)
        assert first is not second
        assert cache.get(ModelSpec("openai", "m", options=options, key_hosts=(HOST,))) is first
        assert cache.get(reordered) is not first
        assert first.client._key_allowed and not second.client._key_allowed  # type: ignore[attr-defined]
    finally:
        cache.clear()
