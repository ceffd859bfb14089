"""A captioner's text decoding compiled: transformers' static KV cache and compiled generation.

`compile: reduce-overhead` on a captioner makes `generate` run each decoding step of the text
decoder as one recorded CUDA graph instead of thousands of small kernels launched from Python
(BLIP-base: 12 layers of self- and cross-attention per token). This is transformers' own
machinery, not a decoder of ours: given a cache whose shapes never change (`StaticCache`),
`generate` compiles the model's forward for the decoding steps with the `CompileConfig` it is
passed (the prefill, which also fills the image's cross-attention keys, stays eager).

Why not `generate(cache_implementation="static")`: BLIP's text decoder attends to the image
through cross-attention but is not an encoder-decoder model in transformers' sense
(`is_encoder_decoder` is false), so generate then builds one StaticCache that self- and
cross-attention share, and the image's keys overrun it (`index_copy_(): index 12 is out of
bounds`, transformers 5.17 and 5.25). The cache that works is the one transformers builds for
encoder-decoder models: an `EncoderDecoderCache` of two `StaticCache`s (self-attention sized to
prompt plus new tokens, cross-attention to the image's tokens), passed as the caller's cache.
VisionEncoderDecoder captioners (ViT + GPT-2) take the same cache.

Shapes must repeat or every call compiles anew: a batch is padded to its bucket (the next power
of two, at most the model's largest batch) by repeating its last row, whose outputs are dropped;
the cache length is rounded up to a power of two. Each (bucket, length) compiles once, and its
cache is kept and reset between calls, so its tensors keep the addresses its CUDA graph recorded.
Greedy tokens are those of the uncompiled model: rows do not interact, and the masked cache
slots add exact zeros (tests/models/test_static_decoding.py checks it token for token).

Where this cannot work (no CUDA, a torch without a compiler, an encoder whose token count is not
known, an error while compiling) the decoder runs as before and one line is logged.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from genarun.models import tuning

MIN_CACHE = 32  # shortest self-attention cache: 20-token captions all share one length


def next_power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def bucket(rows: int, largest: int) -> int:
    """The batch size a compiled model pads `rows` to: the next power of two, at most `largest`
    (the most a batch may hold), so that a run's batch sizes compile a few shapes, not one each
    (the last, partial batch of a run; the batcher's halving after a failure)."""
    if rows >= largest:
        return rows
    return min(next_power_of_two(rows), largest)


def image_tokens(model: Any) -> int | None:
    """How many tokens the captioner's image encoder gives the decoder's cross-attention, from
    its config (a ViT: one per patch plus the class token); None when not known."""
    config = model.config
    if config.model_type == "blip":
        vision = config.vision_config
    elif config.model_type == "vision-encoder-decoder" and config.encoder.model_type == "vit":
        vision = config.encoder
    else:
        return None
    return int((vision.image_size // vision.patch_size) ** 2 + 1)


class StaticDecoding:
    """The compiled decoding of one captioner: its compile settings, its caches per shape, and
    whether compiling failed (then the captioner decodes eagerly for good)."""

    def __init__(
        self,
        name: str,
        decoder: Any,
        cross_tokens: int,
        mode: str,
        max_positions: int | None,
        backend: str,
    ) -> None:
        from transformers import CompileConfig

        from genarun.models.sampling import cache_argument

        self.name = name
        self.decoder = decoder  # the module whose generate() decodes (BLIP: its text decoder)
        self.text_config = decoder.config.get_text_config(decoder=True)
        self.cross_tokens = cross_tokens
        self.max_positions = max_positions
        self.cache_arg = cache_argument(decoder)  # `cache` in transformers >= 5.2x
        self.compile_config = CompileConfig(
            fullgraph=False,
            dynamic=False,
            backend=backend,
            mode=mode if backend == "inductor" else None,  # modes are inductor's
        )
        # transformers compiles only on accelerators unless told that a test wants the CPU.
        self.compile_config._compile_all_devices = True
        import torch

        # Each (bucket, cache length) is one compiled entry of the decoder's call; dynamo's
        # default of 8 per code object would decode later shapes eagerly without a word (7
        # buckets up to 64 rows, and every captioner in the process shares the entries).
        config = torch._dynamo.config
        limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
        setattr(config, limit, max(int(getattr(config, limit)), 64))  # its name before torch 2.7
        self.graphs = backend == "inductor" and mode in tuning.GRAPH_MODES
        self.caches: dict[tuple[int, int], Any] = {}
        self.failed: str | None = None
        self.lock = threading.Lock()

    def cache_length(self, needed: int) -> int:
        length = max(MIN_CACHE, next_power_of_two(needed))
        if self.max_positions:
            length = min(length, max(needed, self.max_positions))
        return length

    def generate_kwargs(self, rows: int, needed: int) -> dict[str, Any]:
        """What `generate` needs to decode `rows` (already a bucket) rows of at most `needed`
        tokens (prompt and new) compiled: the reset cache for that shape and the CompileConfig."""
        import torch
        from transformers import EncoderDecoderCache, StaticCache

        if self.graphs:
            tuning.prepare_graph_thread()  # generate's compiled steps run on this thread
        key = (rows, self.cache_length(needed))
        cache = self.caches.get(key)
        if cache is None:
            cache = EncoderDecoderCache(
                StaticCache(config=self.text_config, max_cache_len=key[1]),
                StaticCache(config=self.text_config, max_cache_len=self.cross_tokens),
            )
            self.caches[key] = cache
        else:
            with torch.inference_mode():  # its tensors were made in generate's inference mode
                cache.reset()
        return {self.cache_arg: cache, "compile_config": self.compile_config}

    def fail(self, error: BaseException) -> None:
        """Decode eagerly from now on, with one logged line naming the backend's error."""
        self.failed = tuning.log_compile_failure(self.name, error)
        self.caches.clear()


def static_decoding(
    label: str, model: Any, options: Mapping[str, Any], device: str
) -> StaticDecoding | None:
    """The compiled decoding `options` ask for, where compiling works on `device` (the caller
    has checked: tuning.compile_unavailable); None when compile is off or this model's decoder
    takes no static cache (then one line is logged)."""
    mode = tuning.compile_mode(options)
    if mode is None:
        return None
    decoder = getattr(model, "text_decoder", None) if model.config.model_type == "blip" else model
    cross = image_tokens(model)
    if decoder is None or cross is None:
        tuning.log.warning(
            "model '%s': text decoder not compiled: no static cache for a %s decoder",
            label,
            model.config.model_type,
        )
        return None
    text = model.config.get_text_config(decoder=True)
    return StaticDecoding(
        f"{label} (text decoder)",
        decoder,
        cross,
        mode,
        getattr(text, "max_position_embeddings", None),
        tuning.compile_backend(device),
    )


def pad_rows(inputs: dict[str, Any], rows: int) -> dict[str, Any]:
    """Every tensor of a batch (batch-first) grown to `rows` by repeating its last row."""
    import torch

    out = {}
    for key, value in inputs.items():
        extra = rows - int(value.shape[0])
        if extra > 0:
            value = torch.cat([value, value[-1:].expand(extra, *value.shape[1:])])
        out[key] = value
    return out
