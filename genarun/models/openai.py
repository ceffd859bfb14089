"""The `openai` provider: any OpenAI-compatible HTTP endpoint (hosted APIs, vLLM, llama.cpp, Ollama).

A tree names the endpoint in the model's options:

    models:
      writer: {provider: openai, id: gpt-4o-mini}
      local: {provider: openai, id: qwen2.5, options: {base_url: "http://localhost:8000/v1"}}
      embedder: {provider: openai, id: text-embedding-3-small, options: {tasks: [embed_text]}}

Only the standard library talks HTTP, so registering and using this provider imports no heavy
library. The API key is read from the environment variable named by `api_key_env` at the moment a
request is sent and is never kept on an object, logged, or put in an error message.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genarun.errors import GenarunError, ModelError
from genarun.models.base import Invocation, LoadedModel, ModelSpec, Provider

if TYPE_CHECKING:
    from genarun.plugins import Registry

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Hosts that always require a key: a missing key there is reported before any request is sent.
_HOSTS_NEEDING_KEY = frozenset({"api.openai.com"})
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S = 60.0  # caps a server's requested wait, so a run never sleeps for hours
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ERROR_TEXT_LIMIT = 500

EndpointTask = Literal["generate", "image", "embed_text"]


class ApiError(GenarunError):
    """An OpenAI-compatible endpoint failed after its retries, or answered something unusable."""


class OpenAIOptions(BaseModel):
    """The `options:` of an openai model spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = None  # None: $OPENAI_BASE_URL, else the hosted OpenAI API
    api_key_env: str = "OPENAI_API_KEY"  # the NAME of the variable holding the key
    timeout: float = Field(60.0, gt=0)  # seconds per request attempt
    max_retries: int = Field(3, ge=0)
    backoff: float = Field(1.0, ge=0)  # first retry delay in seconds; doubles each retry
    concurrency: int = Field(8, ge=1)  # parallel requests for a batch of chats or images
    tasks: tuple[EndpointTask, ...] = ("generate",)
    max_batch: int | None = Field(None, ge=1)  # most invocations per run() (the executor reads it)

    def resolved_base_url(self) -> str:
        return (self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def parse_options(spec: ModelSpec) -> OpenAIOptions:
    """Validate a spec's options; raise ModelError naming the model and each bad option."""
    raw = spec.option_dict
    env_name = raw.get("api_key_env")
    if env_name is not None and not (isinstance(env_name, str) and _ENV_NAME.match(env_name)):
        # Deliberately does not echo the value: people paste the key itself here.
        raise ModelError(
            f"model '{spec.label()}': options.api_key_env must be the name of an environment"
            " variable holding the key (e.g. OPENAI_API_KEY), not the key itself"
        )
    try:
        return OpenAIOptions.model_validate(raw)
    except ValidationError as exc:
        # include_input=False keeps option values (possibly secrets) out of the message.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise ModelError(f"model '{spec.label()}': invalid openai options: {problems}") from None


def _check_base_url(url: str, label: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelError(
            f"model '{label}': base_url '{url}' is not an http(s) URL; write it like"
            " https://api.openai.com/v1 or http://localhost:8000/v1"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ModelError(f"model '{label}': base_url '{url}' has an invalid port") from None


class OpenAIProvider(Provider):
    """Loads nothing: a 'loaded' model is a client for one endpoint and model name."""

    name = "openai"
    uses_torch = False

    def tasks(self, spec: ModelSpec) -> frozenset[str]:
        return frozenset(parse_options(spec).tasks)

    def check(self, spec: ModelSpec) -> None:
        options = parse_options(spec)
        base_url = options.resolved_base_url()
        _check_base_url(base_url, spec.label())
        host = urllib.parse.urlsplit(base_url).hostname
        if host in _HOSTS_NEEDING_KEY and not os.environ.get(options.api_key_env):
            raise ModelError(
                f"model '{spec.label()}': {host} needs an API key, but the environment variable"
                f" {options.api_key_env} is not set; export it, or name another variable with"
                " options.api_key_env"
            )

    def load(self, spec: ModelSpec, device: str) -> LoadedModel:
        options = parse_options(spec)
        _check_base_url(options.resolved_base_url(), spec.label())
        return OpenAIModel(spec, options)

    def weights_present(self, spec: ModelSpec) -> bool | None:
        return None


class EndpointClient:
    """JSON-over-HTTP with retries. Holds the key's variable name, never the key."""

    def __init__(self, base_url: str, options: OpenAIOptions):
        self.base_url = base_url
        self.options = options
        self._jitter = random.Random()

    def __repr__(self) -> str:
        return f"EndpointClient({self.base_url!r}, api_key_env={self.options.api_key_env!r})"

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST `body` as JSON to base_url + path; return the decoded JSON answer."""
        url = self.base_url + path
        payload = json.dumps(body).encode()
        attempts = self.options.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._post_once(url, payload)
            except _RetryableError as exc:
                if attempt == attempts:
                    raise ApiError(
                        f"POST {url} failed after {attempts} attempt(s): {exc}"
                    ) from None
                delay = exc.retry_after if exc.retry_after is not None else self._delay(attempt)
                log.warning(
                    "POST %s: %s; retry %d/%d in %.2fs",
                    url,
                    exc,
                    attempt,
                    self.options.max_retries,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def _delay(self, attempt: int) -> float:
        base = self.options.backoff * 2 ** (attempt - 1)
        # Jitter spreads out the retries of a batch's parallel requests that failed together.
        return base * (1 + 0.25 * self._jitter.random())

    def _post_once(self, url: str, payload: bytes) -> dict[str, Any]:
        # Errors are raised `from None`: the message already says what a user needs, and a
        # chained urllib error would add noise (and the key-bearing request in its frames).
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.options.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.options.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            text = _scrub(_server_error_text(exc), key)
            status = exc.code
            if status in _RETRY_STATUSES:
                raise _RetryableError(
                    f"status {status}: {text}", _retry_after(exc.headers.get("Retry-After"))
                ) from None
            raise ApiError(
                f"POST {url} failed with status {status}: {text}{self._hint(status, key)}"
            ) from None
        except (
            TimeoutError,
            urllib.error.URLError,
            http.client.HTTPException,
            ConnectionError,
        ) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(reason, TimeoutError):
                raise _RetryableError(
                    f"no answer within {self.options.timeout:g}s (timeout)"
                ) from None
            raise _RetryableError(
                f"connection failed: {_scrub(str(reason), key) or type(reason).__name__}"
            ) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise ApiError(
                f"POST {url} answered with invalid JSON: {_scrub(_snippet(raw), key)}"
            ) from None
        if not isinstance(answer, dict):
            raise ApiError(
                f"POST {url} answered with JSON that is not an object: {_scrub(_snippet(raw), key)}"
            )
        return answer

    def _hint(self, status: int, key: str | None) -> str:
        if status not in (401, 403):
            return ""
        env = self.options.api_key_env
        if not key:
            return (
                f" (the environment variable {env} is not set, so no API key was sent; export it,"
                " or name another variable with options.api_key_env)"
            )
        return f" (check the API key in the environment variable {env})"


class _RetryableError(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to exponential backoff
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)


def _server_error_text(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read()
    except (OSError, http.client.HTTPException):
        raw = b""
    try:
        body = json.loads(raw)
    except ValueError:
        return _snippet(raw) or str(exc.reason)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:_ERROR_TEXT_LIMIT]
    if isinstance(error, str):
        return error[:_ERROR_TEXT_LIMIT]
    return _snippet(raw)


def _snippet(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").strip()[:_ERROR_TEXT_LIMIT]


def _scrub(text: str, key: str | None) -> str:
    # Some servers echo the key they were sent ("Incorrect API key provided: sk-...").
    return text.replace(key, "***") if key else text


class OpenAIModel(LoadedModel):
    """One model name on one OpenAI-compatible endpoint."""

    max_batch = 64

    def __init__(self, spec: ModelSpec, options: OpenAIOptions):
        self.spec = spec
        self.options = options
        self.device = "remote"
        self.client = EndpointClient(options.resolved_base_url(), options)

    def __repr__(self) -> str:
        return f"OpenAIModel({self.spec.id!r} at {self.client.base_url!r})"

    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        if task not in self.options.tasks:
            raise ModelError(
                f"model '{self.spec.label()}' is configured for tasks {list(self.options.tasks)},"
                f" not '{task}'; add it to the model's options, e.g. tasks: [{task}]"
            )
        if not batch:
            return []
        if task == "embed_text":
            return self._embed(batch)
        if task == "generate":
            return self._parallel(self._chat, batch)
        return self._parallel(self._image, batch)

    def _parallel(
        self, call: Callable[[Invocation], Any], batch: Sequence[Invocation]
    ) -> list[Any]:
        # These endpoints take one conversation or prompt per request, so a batch is sent as
        # parallel requests; results keep the batch's order, so batched equals unbatched.
        if len(batch) == 1:
            return [call(batch[0])]
        with ThreadPoolExecutor(min(self.options.concurrency, len(batch))) as pool:
            return list(pool.map(call, batch))

    def _chat(self, invocation: Invocation) -> str:
        settings = invocation.settings
        messages: list[dict[str, str]] = []
        if settings.get("system"):
            messages.append({"role": "system", "content": str(settings["system"])})
        messages.append({"role": "user", "content": str(invocation.input)})
        body: dict[str, Any] = {
            "model": self.spec.id,
            "messages": messages,
            "seed": _api_seed(invocation.seed),
        }
        for name in ("max_tokens", "temperature", "top_p", "stop"):
            if settings.get(name) is not None:
                body[name] = settings[name]
        answer = self.client.post("/chat/completions", body)
        try:
            choice = answer["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise self._bad_answer("/chat/completions", "no choices[0].message.content") from None
        if not isinstance(content, str):
            reason = choice.get("finish_reason") or choice["message"].get("refusal") or "unknown"
            raise self._bad_answer("/chat/completions", f"no text in the reply ({reason})")
        return content

    def _embed(self, batch: Sequence[Invocation]) -> list[Any]:
        import numpy as np

        texts = [str(invocation.input) for invocation in batch]
        answer = self.client.post("/embeddings", {"model": self.spec.id, "input": texts})
        data = answer.get("data")
        if not isinstance(data, list) or len(data) != len(texts):
            got = len(data) if isinstance(data, list) else "no"
            raise self._bad_answer("/embeddings", f"{got} embeddings for {len(texts)} inputs")
        # Servers may answer out of order; `index` says which input each vector belongs to.
        ordered = sorted(data, key=lambda item: item.get("index", 0))
        try:
            return [np.asarray(item["embedding"], dtype=np.float32).reshape(-1) for item in ordered]
        except (KeyError, TypeError, ValueError):
            raise self._bad_answer("/embeddings", "an item without a numeric 'embedding'") from None

    def _image(self, invocation: Invocation) -> Any:
        from io import BytesIO

        from PIL import Image

        settings = invocation.settings
        body: dict[str, Any] = {
            "model": self.spec.id,
            "prompt": str(invocation.input),
            "n": 1,
            "response_format": "b64_json",
        }
        width, height = settings.get("width"), settings.get("height")
        if width or height:
            body["size"] = f"{int(width or height)}x{int(height or width)}"
        answer = self.client.post("/images/generations", body)
        try:
            encoded = answer["data"][0]["b64_json"]
            image = Image.open(BytesIO(base64.b64decode(encoded, validate=True)))
            image.load()
        except (KeyError, IndexError, TypeError, ValueError, OSError):
            raise self._bad_answer(
                "/images/generations", "no decodable data[0].b64_json image"
            ) from None
        return image.convert("RGB")

    def _bad_answer(self, path: str, what: str) -> ApiError:
        return ApiError(
            f"model '{self.spec.label()}': POST {self.client.base_url}{path} answered without"
            f" the expected content: {what}"
        )


def _api_seed(seed: int) -> int:
    # Servers reject seeds outside 32-bit ranges (llama.cpp takes uint32, OpenAI int32-ish);
    # folding keeps the seed deterministic and leaves small seeds unchanged.
    return seed % 2**31


def register(registry: Registry) -> None:
    """Add the openai provider to the registry."""
    registry.add_provider(OpenAIProvider())
