"""The `openai` provider: any OpenAI-compatible HTTP endpoint (hosted APIs, vLLM, llama.cpp, Ollama).

A tree names the endpoint in the model's options:

    models:
      writer: {provider: openai, id: gpt-4o-mini}
      local: {provider: openai, id: qwen2.5, options: {base_url: "http://localhost:8000/v1"}}
      embedder: {provider: openai, id: text-embedding-3-small, options: {tasks: [embed_text]}}

Requests go through genarun's shared HTTP client (genarun.net.http, on httpx): a total deadline
per attempt, a response size limit, retries with backoff that honour Retry-After, and redirects
to another origin refused, so the key never leaves the endpoint and another host's reply never
passes for the model's. The API key is read from the environment variable named by
`api_key_env` at the moment a request is sent, stripped and checked, never kept on an object, and
masked (with its echoes) in every message, log line and stored row. It is sent only to the hosts
genarun/models/key_hosts.py allows: a tree's `base_url` alone cannot send it elsewhere.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genarun.errors import GenarunError, ModelError
from genarun.models.base import GeneratedText, Invocation, LoadedModel, ModelSpec, Provider
from genarun.models.embedding_shapes import POOLING_HINT, EmbeddingShapeError, embedding_vectors
from genarun.models.key_hosts import key_may_go_to, withheld_hint
from genarun.redaction import redact, remember_secret, safe_url

if TYPE_CHECKING:
    from genarun.net.http_errors import HttpError
    from genarun.plugins import Registry

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Hosts that always require a key: a missing key there is reported before any request is sent.
_HOSTS_NEEDING_KEY = frozenset({"api.openai.com"})
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S = 60.0  # caps a server's requested wait, so a run never sleeps for hours
_CONNECT_TIMEOUT_S = 10.0
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ERROR_TEXT_LIMIT = 500
_MENTIONS_EMBEDDING = re.compile(r"embedding|pooling", re.IGNORECASE)
EndpointTask = Literal["generate", "image", "embed_text"]


class ApiError(GenarunError):
    """An OpenAI-compatible endpoint failed after its retries, or answered something unusable."""


class OpenAIOptions(BaseModel):
    """The `options:` of an openai model spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = None  # None: $OPENAI_BASE_URL, else the hosted OpenAI API
    api_key_env: str = "OPENAI_API_KEY"  # the NAME of the variable holding the key
    timeout: float = Field(60.0, gt=0)  # seconds per request attempt, whole body included
    max_response_bytes: int = Field(64 * 2**20, ge=1024)  # a larger reply fails the request
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
    if env_name is not None and not (isinstance(env_name, str) and _ENV_NAME.fullmatch(env_name)):
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
    shown = safe_url(url)  # a user:password@ part is never repeated back
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise ModelError(f"model '{label}': base_url '{shown}' is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelError(
            f"model '{label}': base_url '{shown}' is not an http(s) URL; write it like"
            " https://api.openai.com/v1 or http://localhost:8000/v1"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ModelError(f"model '{label}': base_url '{shown}' has an invalid port") from None


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
        if options.base_url and "@" in urllib.parse.urlsplit(options.base_url).netloc:
            # The tree is stored with every run (the database, the folder's copy): a password
            # written into it would be too. From the environment it is sent and masked.
            raise ModelError(
                f"model '{spec.label()}': options.base_url '{safe_url(options.base_url)}' holds"
                " a user:password@ part, which would be stored with every run; leave it out"
                " and put the key in the variable named by options.api_key_env, or give the"
                " whole URL in $OPENAI_BASE_URL"
            )
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
    """JSON over the shared bounded HTTP client. Holds the key's variable name, never the key."""

    def __init__(
        self,
        base_url: str,
        options: OpenAIOptions,
        label: str = "model",
        key_hosts: tuple[str, ...] = (),
    ):
        self._url = base_url  # may hold user:password@, which is never printed or stored
        # Whether the key may go to this endpoint (genarun/models/key_hosts.py).
        self._key_allowed = key_may_go_to(base_url, key_hosts)
        self.base_url = safe_url(base_url)
        self.options = options
        self.label = label
        # httpx is imported when a model is loaded, not when the provider registers: --help and
        # validate stay quick.
        from genarun.net.http import HttpClient, HttpPolicy

        self.http = HttpClient(
            HttpPolicy(
                connect_timeout=min(_CONNECT_TIMEOUT_S, options.timeout),
                read_timeout=options.timeout,
                total_timeout=options.timeout,
                max_response_bytes=options.max_response_bytes,
                # A model API that moved elsewhere must not get the key, nor may another host's
                # reply pass for the model's output.
                cross_origin_redirects="refuse",
                max_retries=options.max_retries,
                backoff=options.backoff,
                max_retry_after=_MAX_RETRY_AFTER_S,
                retry_statuses=_RETRY_STATUSES,
                concurrency=options.concurrency,
            ),
            user_agent="genarun-openai",
        )

    def __repr__(self) -> str:
        return f"EndpointClient({self.base_url!r}, api_key_env={self.options.api_key_env!r})"

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST `body` as JSON to base_url + path; return the decoded JSON answer."""
        from genarun.net.http_errors import HttpError

        headers = {"Accept": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            # Inference requests have no side effects: repeating one after a lost answer is safe.
            reply = self.http.request(
                "POST", self._url + path, json=body, headers=headers, idempotent=True
            )
            answer = reply.json()
        except HttpError as exc:
            raise ApiError(f"{exc}{self._hint(exc, key, path)}") from None
        if not isinstance(answer, dict):
            raise ApiError(
                f"POST {self.base_url}{path} answered with JSON that is not an object:"
                f" {redact(json.dumps(answer)[:_ERROR_TEXT_LIMIT])}"
            )
        return answer

    def _api_key(self) -> str | None:
        """The key from the environment at send time, stripped and checked."""
        env = self.options.api_key_env
        raw = os.environ.get(env)
        if raw is None:
            return None
        remember_secret(raw)
        if not self._key_allowed:
            return None
        key = raw.strip()
        for position, char in enumerate(key):
            if not 33 <= ord(char) <= 126:
                # The key itself is never quoted: only where the bad character is.
                raise ApiError(
                    f"model '{self.label}': the API key in the environment variable {env} has a"
                    f" character that cannot be sent in a header (U+{ord(char):04X} at position"
                    f" {position} of {len(key)}); set the variable again with the key alone"
                )
        return key or None

    def _hint(self, exc: HttpError, key: str | None, path: str) -> str:
        env = self.options.api_key_env
        if exc.status in (401, 403):
            if not key and not self._key_allowed and os.environ.get(env):
                return withheld_hint(env, self.base_url)
            if not key:
                return (
                    f" (the environment variable {env} is not set, so no API key was sent;"
                    " export it, or name another variable with options.api_key_env)"
                )
            return f" (check the API key in the environment variable {env})"
        server_error = exc.status is not None and exc.status >= 500
        if path == "/embeddings" and server_error and _MENTIONS_EMBEDDING.search(exc.server_text):
            return f" ({POOLING_HINT})"
        if exc.reason == "too_large":
            return " (options.max_response_bytes of the model)"
        if exc.reason == "timeout":  # as a fetch node says (nodes/fetch_request.py)
            return (
                f" (raise the model's options.timeout, now {self.options.timeout:g}s, or check"
                " that the server answers)"
            )
        if exc.reason == "connection":
            return " (check options.base_url's host and port, and that the server is up)"
        return ""


class OpenAIModel(LoadedModel):
    """One model name on one OpenAI-compatible endpoint."""

    max_batch = 64

    def __init__(self, spec: ModelSpec, options: OpenAIOptions):
        self.spec = spec
        self.options = options
        self.device = "remote"
        self.client = EndpointClient(
            options.resolved_base_url(), options, spec.label(), spec.key_hosts
        )
        self.dimension: int | None = None  # of the vectors this model returned so far
        # Prompt tokens of the vectors of the last embeddings request, by id (the API counts
        # the request's tokens; genarun.usage.meter asks per vector while they are alive).
        self._embedded_tokens: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"OpenAIModel({self.spec.id!r} at {self.client.base_url!r})"

    def unload(self) -> None:
        self.client.close()

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
        if settings.get("schema") is not None:
            body["response_format"] = response_format(settings["schema"])
        answer = self.client.post("/chat/completions", body)
        try:
            choice = answer["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise self._bad_answer("/chat/completions", "no choices[0].message.content") from None
        if not isinstance(content, str):
            reason = choice.get("finish_reason") or choice["message"].get("refusal") or "unknown"
            raise self._bad_answer("/chat/completions", f"no text in the reply ({reason})")
        usage = _usage(answer)
        return GeneratedText(
            content,
            hit_limit=choice.get("finish_reason") == "length",
            tokens=_count(usage.get("completion_tokens")),
            prompt_tokens=_count(usage.get("prompt_tokens")),
        )

    def token_counts(self, task: str, invocation: Invocation, result: Any) -> Any:
        """(prompt, completion) tokens as the API's `usage` told them (genarun.usage.meter);
        None: ask the result."""
        if task == "embed_text":
            return self._embedded_tokens.pop(id(result), None), None
        return None

    def _embed(self, batch: Sequence[Invocation]) -> list[Any]:
        texts = [str(invocation.input) for invocation in batch]
        answer = self.client.post("/embeddings", {"model": self.spec.id, "input": texts})
        try:
            vectors = embedding_vectors(answer, len(texts), self.dimension)
        except EmbeddingShapeError as exc:
            raise self._bad_answer("/embeddings", str(exc)) from None
        self.dimension = int(vectors[0].shape[0]) if vectors else self.dimension
        usage = _usage(answer)
        total = _count(usage.get("prompt_tokens"))
        self._embedded_tokens = {}
        if total is not None and vectors:
            # One count for the request: shared by the texts in proportion to their length.
            lengths = [max(len(text), 1) for text in texts]
            shares = [total * n // sum(lengths) for n in lengths]
            shares[-1] += total - sum(shares)
            self._embedded_tokens = {id(v): s for v, s in zip(vectors, shares, strict=True)}
        return vectors

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
            body["size"] = f"{int(width or height or 0)}x{int(height or width or 0)}"
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


_FORMAT_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The chat request's `response_format` for a node's `schema:` (OpenAI structured outputs,
    also read by vLLM, llama.cpp's server and Ollama). `strict` is asked for only where the
    schema meets strict mode's rules (every object closed, every property required), which
    the hosted API otherwise refuses with a 400; the answer is validated here either way."""
    title = schema.get("title")
    name = _FORMAT_NAME.sub("_", title)[:64].strip("_") if isinstance(title, str) else ""
    return {
        "type": "json_schema",
        "json_schema": {"name": name or "answer", "schema": schema, "strict": _strict(schema)},
    }


def _strict(schema: Any) -> bool:
    """Whether every object schema inside `schema` is closed and requires all its properties."""
    if isinstance(schema, list):
        return all(_strict(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or []) != set(properties):
            return False
    return all(
        _strict(value)
        for key, value in schema.items()
        if key not in ("enum", "const", "default", "examples", "required")
    )


def _usage(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    """An answer's `usage` object (token counts), or an empty one."""
    usage = answer.get("usage")
    return usage if isinstance(usage, dict) else {}


def _count(value: Any) -> int | None:
    """A token count from an API's `usage`, or None when it is missing or no count."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _api_seed(seed: int) -> int:
    # Servers reject seeds outside 32-bit ranges (llama.cpp takes uint32, OpenAI int32-ish);
    # folding keeps the seed deterministic and leaves small seeds unchanged.
    return seed % 2**31


def register(registry: Registry) -> None:
    """Add the openai provider to the registry."""
    registry.add_provider(OpenAIProvider())
