"""The openai provider against servers that misbehave: redirects elsewhere, trickled and huge
answers, altered key echoes, odd Retry-After values, unpooled embeddings (tests/providers_server.py
on 127.0.0.1; nothing is mocked)."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from genarun.errors import ModelError
from genarun.models.base import Invocation, ModelSpec
from genarun.models.openai import ApiError, OpenAIModel, OpenAIProvider
from genarun.redaction import forget_secrets

try:
    from tests.providers_server import FakeOpenAIServer, chat_reply
except ImportError:
    from providers_server import FakeOpenAIServer, chat_reply  # type: ignore[no-redef]

KEY_ENV = "GENARUN_TEST_OPENAI_KEY"
SECRET = "sk-test-5ecret-do-not-leak-0123456789"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (KEY_ENV, "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    # Secrets remembered by other tests would mask this test's values for reasons of their own.
    forget_secrets()
    yield
    forget_secrets()


def load(base_url: str, **options: Any) -> OpenAIModel:
    merged = {"base_url": base_url, "api_key_env": KEY_ENV, "backoff": 0.01, "timeout": 60.0}
    merged.update(options)
    spec = ModelSpec(
        provider="openai", id="fake-model", name="writer", options=tuple(sorted(merged.items()))
    )
    model = OpenAIProvider().load(spec, "cpu")
    assert isinstance(model, OpenAIModel)
    return model


def chat(prompt: str = "hi") -> Invocation:
    return Invocation(task="generate", input=prompt, seed=7)


def embed(*texts: str) -> list[Invocation]:
    return [Invocation("embed_text", text, seed=i) for i, text in enumerate(texts)]


def leaked_runs(text: str, secret: str = SECRET, run: int = 8) -> list[str]:
    """Every run of `run` characters of the secret found in `text` (case-insensitive)."""
    low = text.lower()
    return sorted(
        {
            secret[i : i + run]
            for i in range(len(secret) - run + 1)
            if secret[i : i + run].lower() in low
        }
    )


def test_redirect_to_another_origin_is_refused_and_gets_no_key(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with FakeOpenAIServer() as elsewhere:
        server.redirect_next(1, elsewhere.base_url + "/chat/completions")
        with pytest.raises(ApiError) as failure:
            load(server.base_url).run("generate", [chat()])
        # The other origin saw nothing: not the key, and its reply cannot become the output.
        assert elsewhere.requests == []
    message = str(failure.value)
    assert "redirected to another origin" in message and elsewhere.base_url in message
    assert len(server.requests) == 1 and SECRET not in message


def test_same_origin_redirect_is_followed_with_the_key(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    server.require_key(SECRET)
    server.redirect_next(1, server.base_url + "/chat/completions", status=307)
    [reply] = load(server.base_url).run("generate", [chat("moved")])
    assert reply == chat_reply([{"role": "user", "content": "moved"}], 7)
    assert [r.had_authorization for r in server.requests] == [True, True]


@pytest.mark.parametrize("phase", ["body", "headers"])
def test_a_trickling_server_hits_the_total_deadline(server: FakeOpenAIServer, phase: str) -> None:
    # One byte a second never trips a per-read timeout of 2 s; the total deadline stops it.
    # The whole answer would take minutes at that pace: 20 s is room for a busy machine.
    server.trickle_next(1, phase=phase, interval_s=1.0)
    started = time.perf_counter()
    with pytest.raises(ApiError) as failure:
        load(server.base_url, timeout=2.0, max_retries=0).run("generate", [chat()])
    elapsed = time.perf_counter() - started
    assert elapsed < 20, elapsed
    assert "total deadline of 2s" in str(failure.value)


@pytest.mark.parametrize("declared", [True, False])
def test_a_huge_answer_fails_within_the_size_limit(
    server: FakeOpenAIServer, declared: bool
) -> None:
    server.huge_next(1, 200 * 2**20, declare_length=declared)
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(ApiError) as failure:
            load(server.base_url, max_response_bytes=2**20, max_retries=0).run("generate", [chat()])
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(failure.value)
    assert "larger than the limit of 1,048,576 bytes" in message
    assert "max_response_bytes" in message
    assert ("declares 209,715,200 bytes" in message) == declared
    assert peak < 16 * 2**20, peak  # the 200 MB never sat in memory
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize("echo", ["exact", "altered", "truncated", "upper"])
def test_an_echoed_key_is_masked_even_when_altered(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, echo: str
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    server.require_key("sk-the-right-one-000000000000")
    server.echo_key(echo)
    with pytest.raises(ApiError) as failure:
        load(server.base_url).run("generate", [chat()])
    message = str(failure.value)
    assert "401" in message and "Incorrect API key provided: ***" in message
    assert leaked_runs(message) == []


def test_key_with_a_trailing_line_break_is_stripped(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET + "\r\n")
    server.require_key(SECRET)
    [reply] = load(server.base_url).run("generate", [chat()])
    assert reply.startswith("reply#")


def test_key_with_a_control_character_inside_is_refused_unquoted(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET[:10] + "\r\n" + SECRET[10:])
    with pytest.raises(ApiError) as failure:
        load(server.base_url).run("generate", [chat()])
    message = str(failure.value)
    assert f"environment variable {KEY_ENV}" in message and "U+000D at position 10" in message
    assert leaked_runs(message) == [] and server.requests == []


@pytest.mark.parametrize(
    "retry_after", ["soon", "-3", "1e9999", "Wed, 21 Oct 2015 07:28:00 GMT", "0.01"]
)
def test_retry_after_values_that_are_not_waits_are_ignored(
    server: FakeOpenAIServer, retry_after: str
) -> None:
    server.fail_next(1, status=429, retry_after=retry_after)
    started = time.perf_counter()
    [reply] = load(server.base_url, max_retries=1).run("generate", [chat()])
    assert reply.startswith("reply#") and len(server.requests) == 2
    # A date in the past means: retry now. A wait taken from "1e9999" would be the 60 s cap.
    assert time.perf_counter() - started < 30


def test_deterministic_server_error_is_not_retried(server: FakeOpenAIServer) -> None:
    server.fail_next(
        5, status=500, message="this model must be created with embedding=True to call this API"
    )
    with pytest.raises(ApiError) as failure:
        load(server.base_url, tasks=("embed_text",), max_retries=3).run("embed_text", embed("a"))
    assert len(server.requests) == 1
    message = str(failure.value)
    assert "embedding=True" in message and "--pooling" in message


def test_transient_server_error_is_still_retried(server: FakeOpenAIServer) -> None:
    server.fail_next(2, status=500, message="the GPU is busy")
    vectors = load(server.base_url, tasks=("embed_text",)).run("embed_text", embed("a"))
    assert len(vectors) == 1 and len(server.requests) == 3


def test_per_token_embeddings_are_refused_with_the_setting(server: FakeOpenAIServer) -> None:
    server.embeddings_mode("per_token")
    with pytest.raises(ApiError) as failure:
        load(server.base_url, tasks=("embed_text",)).run(
            "embed_text", embed("a gecko basks", "a gecko sleeps in the sun")
        )
    message = str(failure.value)
    assert "3 vectors (one per token) instead of one" in message
    assert "--pooling mean" in message and "embedding=True" in message


def test_flattened_embeddings_of_varying_length_are_refused(server: FakeOpenAIServer) -> None:
    server.embeddings_mode("varying")
    with pytest.raises(ApiError, match=r"different lengths \(16, 24\).*pooling"):
        load(server.base_url, tasks=("embed_text",)).run(
            "embed_text", embed("two words", "three words here")
        )


def test_embedding_dimension_must_stay_the_same_across_batches(server: FakeOpenAIServer) -> None:
    model = load(server.base_url, tasks=("embed_text",))
    [first] = model.run("embed_text", embed("one"))
    assert first.shape == (8,)
    server.embeddings_mode("varying")  # two words: 16 numbers, from the same model
    with pytest.raises(ApiError, match="16 dimensions where this model's earlier ones had 8"):
        model.run("embed_text", embed("two words"))


def test_password_in_openai_base_url_is_sent_but_never_shown(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "pa55-w0rd-n0t-f0r-pr1nt1ng"
    base_url = server.base_url.replace("http://", f"http://reader:{password}@")
    monkeypatch.setenv("OPENAI_BASE_URL", base_url + "/nope")
    spec = ModelSpec(
        provider="openai",
        id="fake-model",
        name="writer",
        options=(("api_key_env", KEY_ENV), ("max_retries", 0)),
    )
    OpenAIProvider().check(spec)  # from the environment it is allowed: nothing stores it
    model = OpenAIProvider().load(spec, "cpu")
    with pytest.raises(ApiError) as failure:
        model.run("generate", [chat()])
    assert server.requests[0].had_authorization  # sent as Basic credentials
    for text in (str(failure.value), repr(model), repr(model.client)):
        assert password not in text and "reader:" not in text
    assert f"{server.base_url}/nope/chat/completions" in str(failure.value)


def test_password_written_into_the_tree_is_refused_before_the_run() -> None:
    spec = ModelSpec(
        provider="openai",
        id="fake-model",
        name="writer",
        options=(("base_url", "http://ann:pa55-w0rd-in-tree@127.0.0.1:9/v1"),),
    )
    with pytest.raises(ModelError) as refused:
        OpenAIProvider().check(spec)
    message = str(refused.value)
    assert "user:password@" in message and "OPENAI_BASE_URL" in message
    assert "pa55" not in message and "ann:" not in message
