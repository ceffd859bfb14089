"""The openai provider against a local OpenAI-compatible server (tests/providers_server.py)."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pytest

from genarun import plugins
from genarun.errors import GenarunError, ModelError
from genarun.models.base import Invocation, ModelSpec
from genarun.models.catalog import resolve_model
from genarun.models.openai import ApiError, OpenAIModel, OpenAIProvider, register
from genarun.plugins import Registry

# pytest puts tests/ on sys.path while tests/ has no __init__.py, and the repository root once
# it has one; the helper module is found either way.
try:
    from tests.providers_server import FakeOpenAIServer, chat_reply, embedding_vector
except ImportError:
    from providers_server import FakeOpenAIServer, chat_reply, embedding_vector  # type: ignore[no-redef]

KEY_ENV = "GENARUN_TEST_OPENAI_KEY"
SECRET = "sk-test-5ecret-do-not-leak-0123456789"


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's real key or endpoint must never reach these tests.
    for name in (KEY_ENV, "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def make_spec(base_url: str, **options: Any) -> ModelSpec:
    merged = {"base_url": base_url, "api_key_env": KEY_ENV, "backoff": 0.01, "timeout": 60.0}
    merged.update(options)
    return ModelSpec(
        provider="openai", id="fake-model", name="writer", options=tuple(sorted(merged.items()))
    )


def load(base_url: str, **options: Any) -> OpenAIModel:
    model = OpenAIProvider().load(make_spec(base_url, **options), "cpu")
    assert isinstance(model, OpenAIModel)
    return model


def chat(prompt: str, seed: int = 7, **settings: Any) -> Invocation:
    return Invocation(task="generate", input=prompt, seed=seed, settings=settings)


def test_register_and_tasks_from_options() -> None:
    reg = Registry()
    register(reg)
    provider = reg.providers["openai"]
    assert provider.tasks(make_spec("http://localhost:1/v1")) == {"generate"}
    assert provider.tasks(make_spec("http://localhost:1/v1", tasks=("embed_text",))) == {
        "embed_text"
    }
    assert provider.weights_present(make_spec("http://localhost:1/v1")) is None


def test_resolve_model_reads_tasks_from_a_tree_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry()
    register(reg)
    monkeypatch.setattr(plugins, "_registry", reg)
    spec = resolve_model(
        {
            "provider": "openai",
            "id": "text-embedding-3-small",
            "options": {"tasks": ["embed_text"]},
        },
    )
    assert (spec.provider, spec.id, spec.tasks) == (
        "openai",
        "text-embedding-3-small",
        {"embed_text"},
    )


@pytest.mark.parametrize(
    "base_url", ["localhost:8000/v1", "http://", "ftp://example.com/v1", "http://host:99999/v1"]
)
def test_check_rejects_malformed_base_url(base_url: str) -> None:
    with pytest.raises(ModelError, match="base_url"):
        OpenAIProvider().check(make_spec(base_url))


def test_check_rejects_bad_options_without_echoing_values() -> None:
    provider = OpenAIProvider()
    with pytest.raises(ModelError, match=r"timeout: .*greater than 0"):
        provider.check(make_spec("http://localhost:1/v1", timeout=-1))
    with pytest.raises(ModelError, match="tempreature"):
        provider.check(make_spec("http://localhost:1/v1", tempreature=0.5))
    with pytest.raises(ModelError, match="tasks") as bad_task:
        provider.tasks(make_spec("http://localhost:1/v1", tasks=("caption",)))
    assert "embed_text" in str(bad_task.value)
    # The key pasted where its variable's name belongs is refused, and not repeated back.
    with pytest.raises(ModelError, match="name of an environment variable") as pasted:
        provider.check(make_spec("http://localhost:1/v1", api_key_env=SECRET))
    assert SECRET not in str(pasted.value)


def test_check_hosted_api_needs_the_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ModelSpec(provider="openai", id="gpt-4o-mini", name="writer")
    with pytest.raises(ModelError, match="OPENAI_API_KEY is not set"):
        OpenAIProvider().check(spec)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    OpenAIProvider().check(spec)
    OpenAIProvider().check(make_spec("http://localhost:8000/v1"))  # local servers need no key


def test_chat_passes_prompt_seed_and_settings(server: FakeOpenAIServer) -> None:
    model = load(server.base_url)
    [reply] = model.run("generate", [chat("hello there", seed=11, temperature=0.3, max_tokens=50)])
    assert reply == chat_reply([{"role": "user", "content": "hello there"}], 11, 50)
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "fake-model"
    assert (request.body["temperature"], request.body["max_tokens"], request.body["seed"]) == (
        0.3,
        50,
        11,
    )


def test_chat_sends_system_message(server: FakeOpenAIServer) -> None:
    model = load(server.base_url)
    [reply] = model.run("generate", [chat("write a haiku", system="You are terse.")])
    assert "[system: You are terse.]" in reply
    assert server.requests[0].body["messages"][0] == {"role": "system", "content": "You are terse."}


def test_max_tokens_shapes_the_reply(server: FakeOpenAIServer) -> None:
    from genarun.models.base import hit_limit

    [reply] = load(server.base_url).run("generate", [chat("one two three four", max_tokens=3)])
    assert len(reply.split()) == 3
    assert hit_limit(reply)  # finish_reason "length": the text was cut, and says so
    [whole] = load(server.base_url).run("generate", [chat("one two", max_tokens=1024)])
    assert whole.endswith("one two") and not hit_limit(whole)


def test_large_seed_is_folded_deterministically(server: FakeOpenAIServer) -> None:
    model = load(server.base_url)
    seed = 2**40 + 5
    first = model.run("generate", [chat("x", seed=seed)])
    assert first == model.run("generate", [chat("x", seed=seed)])
    assert 0 <= server.requests[0].body["seed"] < 2**31


def test_batch_runs_concurrently_and_equals_one_at_a_time(server: FakeOpenAIServer) -> None:
    model = load(server.base_url, concurrency=8)
    batch = [chat(f"prompt number {i}", seed=100 + i, temperature=0.7) for i in range(8)]
    singles = [model.run("generate", [invocation])[0] for invocation in batch]
    # Sequential requests would take 8 x 1 s at least; at once, 1 s and the rest is room for
    # a busy machine (0.2 s answers and a bound of 1.6 s left it 1.4 s, not always enough).
    server.delay_answers(1.0)
    started = time.perf_counter()
    batched = model.run("generate", batch)
    elapsed = time.perf_counter() - started
    assert batched == singles
    assert len(set(batched)) == len(batch)
    assert server.max_in_flight > 1
    assert elapsed < 8 * 1.0


def test_embeddings_one_request_for_the_batch(server: FakeOpenAIServer) -> None:
    model = load(server.base_url, tasks=("embed_text",))
    texts = ["alpha", "beta", "gamma", "delta", "epsilon"]
    vectors = model.run(
        "embed_text", [Invocation("embed_text", t, seed=i) for i, t in enumerate(texts)]
    )
    [request] = server.requests
    assert request.path == "/v1/embeddings"
    assert request.body["input"] == texts
    for text, vector in zip(texts, vectors, strict=True):
        assert vector.dtype == np.float32 and vector.ndim == 1
        np.testing.assert_allclose(vector, np.asarray(embedding_vector(text), dtype=np.float32))


def test_image_generation_decodes_png(server: FakeOpenAIServer) -> None:
    model = load(server.base_url, tasks=("image", "generate"))
    invocation = Invocation("image", "a red lizard", seed=3, settings={"width": 48, "height": 32})
    [image] = model.run("image", [invocation])
    assert image.size == (48, 32) and image.mode == "RGB"
    assert server.requests[0].body["size"] == "48x32"
    assert server.requests[0].body["response_format"] == "b64_json"
    again = model.run("image", [invocation])[0]
    assert image.tobytes() == again.tobytes()


def test_task_not_configured_is_a_clear_error(server: FakeOpenAIServer) -> None:
    with pytest.raises(ModelError, match=r"tasks: \[embed_text\]"):
        load(server.base_url).run("embed_text", [Invocation("embed_text", "x", seed=0)])
    assert server.requests == []


def test_retries_after_500_then_succeeds(server: FakeOpenAIServer) -> None:
    server.fail_next(2, status=500)
    [reply] = load(server.base_url, max_retries=3).run("generate", [chat("hi")])
    assert reply == chat_reply([{"role": "user", "content": "hi"}], 7)
    assert len(server.requests) == 3


def test_retries_after_429_with_retry_after(server: FakeOpenAIServer) -> None:
    server.fail_next(1, status=429, retry_after="0")
    load(server.base_url, max_retries=1, backoff=30.0).run("generate", [chat("hi")])
    assert len(server.requests) == 2  # the server's Retry-After: 0 overrode the 30 s backoff


def test_final_failure_names_endpoint_status_and_server_text(server: FakeOpenAIServer) -> None:
    server.fail_next(10, status=503)
    with pytest.raises(ApiError) as failure:
        load(server.base_url, max_retries=2).run("generate", [chat("hi")])
    message = str(failure.value)
    assert f"{server.base_url}/chat/completions" in message
    assert "503" in message and "injected failure" in message
    assert "3 attempt(s)" in message
    assert isinstance(failure.value, GenarunError)


def test_client_errors_are_not_retried(server: FakeOpenAIServer) -> None:
    with pytest.raises(ApiError, match="status 404"):
        load(server.base_url + "/nope").run("generate", [chat("hi")])
    assert len(server.requests) == 1


def test_timeout_gives_a_clear_error_fast(server: FakeOpenAIServer) -> None:
    server.hang_next(5)
    started = time.perf_counter()
    with pytest.raises(ApiError) as failure:
        load(server.base_url, timeout=0.5, max_retries=1).run("generate", [chat("hi")])
    # Two attempts of 0.5 s; unbounded, they would hang until the server lets go (10 s).
    assert time.perf_counter() - started < 8
    message = str(failure.value)
    assert "timeout" in message and "0.5s" in message
    assert f"{server.base_url}/chat/completions" in message


def test_connection_refused_is_a_clear_error() -> None:
    with FakeOpenAIServer() as stopped:
        base_url = stopped.base_url  # a port that nothing listens on once the server stops
    with pytest.raises(ApiError, match="connection failed"):
        load(base_url, max_retries=1).run("generate", [chat("hi")])


def test_key_is_sent_and_works(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.require_key(SECRET)
    monkeypatch.setenv(KEY_ENV, SECRET)
    model = load(server.base_url)
    model.run("generate", [chat("hi")])
    assert server.requests[0].had_authorization
    assert SECRET not in repr(model) + repr(model.client) + repr(model.spec) + model.spec.key


def _messages(error: BaseException) -> str:
    """Every message and repr in an exception's chain."""
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen), repr(seen.args)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def test_key_never_leaks_into_errors_or_logs(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, SECRET)
    server.require_key("sk-the-right-one")
    server.fail_next(1, status=500)  # a retry, so the retry log line is checked too
    model = load(server.base_url, max_retries=2)
    with pytest.raises(ApiError) as failure:
        model.run("generate", [chat("hi")])
    # The fake server echoes the wrong key back, as the hosted API does; it must be scrubbed.
    message = str(failure.value)
    assert "401" in message and "Incorrect API key provided: ***" in message
    assert f"check the API key in the environment variable {KEY_ENV}" in message
    assert "retry 1/2" in caplog.text
    for text in (_messages(failure.value), caplog.text, repr(model), repr(model.__dict__)):
        assert SECRET not in text


def test_missing_key_variable_with_auth_endpoint(server: FakeOpenAIServer) -> None:
    server.require_key(SECRET)
    with pytest.raises(ApiError) as failure:
        load(server.base_url).run("generate", [chat("hi")])
    message = str(failure.value)
    assert "401" in message
    assert f"environment variable {KEY_ENV} is not set" in message
    assert not server.requests[0].had_authorization
