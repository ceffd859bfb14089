"""The provider interface that the model node kinds (generate, image, caption, embed, cycle) use.

A *provider* (transformers, diffusers, open_clip, ...) turns a `ModelSpec` into a `LoadedModel`.
The executor hands a loaded model batches of `Invocation`s of one task with equal settings; each
invocation carries its own seed, and batched results must equal unbatched ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Task = Literal["generate", "image", "caption", "embed_text", "embed_image"]
TASKS: tuple[Task, ...] = ("generate", "image", "caption", "embed_text", "embed_image")

# What each task takes and gives ("text" or "image"); used to type-check model networks.
TASK_IO: dict[str, tuple[str, str]] = {
    "generate": ("text", "text"),
    "image": ("text", "image"),
    "caption": ("image", "text"),
    "embed_text": ("text", "vector"),
    "embed_image": ("image", "vector"),
}


# Model options that tell an executor where to place the model (genarun.run.ray_backend), not
# the provider how to load or call it: `option_dict` leaves them out, so a provider that checks
# its options (diffusers, openai) accepts a tree written for Ray with any executor.
EXECUTOR_OPTIONS = frozenset({"ray_num_gpus", "ray_num_cpus"})


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model reference: which provider loads which weights, with which options."""

    provider: str
    id: str  # catalog name of a built-in, Hugging Face id, local path, or API model name
    name: str = ""  # what the tree called it (alias or reference), for messages
    tasks: frozenset[str] = frozenset()
    options: tuple[tuple[str, Any], ...] = ()  # sorted (key, value) pairs, hashable
    revision: str | None = None
    # The tree's `price:` for this model (genarun.usage.prices), sorted pairs. Not part of its
    # identity: a new price changes no output, so it neither splits batches nor the cache.
    price: tuple[tuple[str, Any], ...] = field(default=(), compare=False)
    # Hosts the tree's `secrets:` lists for this model's API key (the openai provider's
    # `api_key_env`), filled in by the run, never from a model reference: an output or a model
    # spec cannot send the key elsewhere. Not part of its identity either.
    key_hosts: tuple[str, ...] = field(default=(), compare=False)

    @property
    def option_dict(self) -> dict[str, Any]:
        """The options the provider loads and calls the model with."""
        return {k: v for k, v in self.options if k not in EXECUTOR_OPTIONS}

    @property
    def executor_options(self) -> dict[str, Any]:
        """The placement options (`EXECUTOR_OPTIONS`) the tree gave the model."""
        return {k: v for k, v in self.options if k in EXECUTOR_OPTIONS}

    @property
    def key(self) -> str:
        """Identity used for the loaded-model cache, batching and the execution cache."""
        opts = ",".join(f"{k}={v!r}" for k, v in self.options)
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.provider}:{self.id}{rev}[{opts}]"

    @property
    def instance_key(self) -> str:
        """Identity of a loaded instance: `key`, plus the hosts its API key may go to. Two
        trees listing different hosts for one model spec (`genarun watch`, `serve`: one
        process, many trees) must get their own clients, or one tree's listed hosts would let
        the other send the key there."""
        if not self.key_hosts:
            return self.key
        return f"{self.key}{{key_hosts={','.join(sorted(set(self.key_hosts)))}}}"

    def label(self) -> str:
        return self.name or self.id


@dataclass
class Invocation:
    """One model call. `input` is a prompt (str) or an image (PIL.Image.Image)."""

    task: str
    input: Any
    seed: int
    settings: Mapping[str, Any] = field(default_factory=dict)


class GeneratedText(str):
    """A text a model returned, and whether it stopped at the token ceiling (`max_tokens`, or
    the model's position table) instead of ending by itself: a cut caption is a different
    experimental condition from a natural one, so trajectories count them."""

    hit_limit: bool
    tokens: int | None  # tokens generated (by the model's tokenizer), when the model knows
    prompt_tokens: int | None  # tokens of the prompt the model read, when it knows

    def __new__(
        cls,
        text: str,
        *,
        hit_limit: bool = False,
        tokens: int | None = None,
        prompt_tokens: int | None = None,
    ) -> GeneratedText:
        made = super().__new__(cls, text)
        made.hit_limit = hit_limit
        made.tokens = tokens
        made.prompt_tokens = prompt_tokens
        return made


def text_tokens(output: Any) -> int | None:
    """How many tokens a model generated for a text output (None when not known)."""
    return getattr(output, "tokens", None)


# A text-to-image model's count of the prompt's tokens and the most its text encoder reads
# (77 for CLIP): a longer prompt was cut, silently, before it reached the image.
PROMPT_TOKENS_KEY = "genarun:prompt_tokens"
PROMPT_LIMIT_KEY = "genarun:prompt_limit"


def mark_prompt_tokens(image: Any, tokens: int, limit: int | None) -> None:
    """Record on an image (its `info`) how many tokens its prompt had and the encoder's limit."""
    image.info[PROMPT_TOKENS_KEY] = int(tokens)
    if limit:
        image.info[PROMPT_LIMIT_KEY] = int(limit)


def prompt_tokens(image: Any) -> tuple[int | None, int | None]:
    """(tokens of the prompt, the text encoder's limit) recorded on an image, or Nones."""
    info = getattr(image, "info", None) or {}
    return info.get(PROMPT_TOKENS_KEY), info.get(PROMPT_LIMIT_KEY)


def hit_limit(output: Any) -> bool:
    """Whether a model's text output stopped at its token ceiling (False when not known)."""
    return bool(getattr(output, "hit_limit", False))


def batch_key(task: str, settings: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Invocations with equal keys may share one batched call."""
    return (task, tuple(sorted((k, repr(v)) for k, v in settings.items())))


class LoadedModel(ABC):
    """A model in memory, ready to run batches of one task."""

    spec: ModelSpec
    device: str = "cpu"
    max_batch: int = 16
    # CUDA stream priority of the worker running it (genarun.models.device.own_stream): < 0
    # for latency-bound models (token-by-token decoders) that share the GPU with heavy ones.
    stream_priority: int = 0

    @abstractmethod
    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        """Run invocations of one task with equal settings; return one result per invocation.

        Results: `generate`/`caption` -> str, `image` -> PIL.Image.Image,
        `embed_text`/`embed_image` -> 1-D numpy float32 array.
        """

    def unload(self) -> None:  # noqa: B027 - optional hook
        """Free memory (GPU tensors) held by the model."""

    def memory_bytes(self) -> int:
        """Approximate accelerator memory held, for least-recently-used eviction."""
        return 0


class Provider(ABC):
    """Loads models of one backend. Registered by name in the plugin registry."""

    name: str
    # False for providers that never touch torch or the Hugging Face libraries (fakes, HTTP
    # APIs): loading their models then imports neither, to pick a device or to quiet them.
    uses_torch: bool = True
    # The extra of `pip install genarun[...]` that brings the libraries this provider imports
    # (checked at validation, before anything loads); None: the core install is enough.
    extra: str | None = None
    modules: tuple[str, ...] = ()

    @abstractmethod
    def tasks(self, spec: ModelSpec) -> frozenset[str]:
        """The tasks this model can do, known without loading weights."""

    def check(self, spec: ModelSpec) -> None:  # noqa: B027 - optional hook
        """Raise ModelError if the model cannot be loaded (weights missing), without loading."""

    @abstractmethod
    def load(self, spec: ModelSpec, device: str) -> LoadedModel:
        """Load the model onto `device` ("cpu", "cuda", "cuda:1", "mps")."""

    def weights_present(self, spec: ModelSpec) -> bool | None:
        """Whether the weights are available locally (None: not applicable, e.g. an API)."""
        return None
