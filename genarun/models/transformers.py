"""The `transformers` provider: text generation with causal LMs and image captioning.

Captioning covers BLIP, BLIP-2, VisionEncoderDecoder (ViT + GPT-2) and other image-to-text
models through AutoProcessor + generate; Moondream2 through its own remote-code API; image
embeddings (Nomic vision) through AutoModel with CLS pooling.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.errors import ModelError
from genarun.models import remote_code, weights
from genarun.models.base import GeneratedText, Invocation, LoadedModel, ModelSpec
from genarun.models.catalog import CatalogEntry
from genarun.models.torch_model import TorchModuleModel, rgb

if TYPE_CHECKING:
    from genarun.models.static_decoding import StaticDecoding
    from genarun.models.structured import RowConstraint, SchemaTokenizer
    from genarun.plugins import Registry

GENERATE_DEFAULTS = {"max_tokens": 128, "temperature": 0.7}
CAPTION_DEFAULTS = {"max_tokens": 1024, "temperature": 0.0, "min_tokens": 1}

# Model families by what `config.json` says (`kind` in a spec's options overrides).
CAUSAL = "causal"
IMAGE_TO_TEXT = "image-to-text"
MOONDREAM = "moondream"
IMAGE_EMBED = "image-embed"
KIND_TASKS = {
    CAUSAL: frozenset({"generate"}),
    IMAGE_TO_TEXT: frozenset({"caption"}),
    MOONDREAM: frozenset({"caption"}),
    IMAGE_EMBED: frozenset({"embed_image"}),
}


def model_kind(config: dict[str, Any], options: dict[str, Any]) -> str | None:
    """The family of a model from its config.json, or None when it is not one we run."""
    if options.get("kind"):
        return str(options["kind"])
    archs = config.get("architectures") or []
    model_type = str(config.get("model_type", ""))
    if model_type.startswith("moondream"):
        return MOONDREAM
    if model_type in ("vision-encoder-decoder", "blip", "blip-2") or any(
        a.endswith(("ForConditionalGeneration", "ForImageTextToText", "ForVision2Seq"))
        and "vision_config" in config
        for a in archs
    ):
        return IMAGE_TO_TEXT
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return CAUSAL
    return None


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _remote_code(spec: ModelSpec, source_kind: str, kind: str | None) -> bool:
    """Whether the model loads with its own code; ModelError when it wants it but the tree
    alone asks (genarun/models/remote_code.py)."""
    why = remote_code.wants_code(spec.option_dict, kind)
    return why is not None and remote_code.allowed(spec, source_kind, why)


class TransformersProvider(weights.LocalWeightsProvider):
    name = "transformers"
    extra = "local"
    modules = ("torch", "transformers")

    def tasks(self, spec: ModelSpec) -> frozenset[str]:
        if spec.tasks:
            return spec.tasks
        source = weights.locate(spec)
        if source.folder is not None and source.folder.is_dir():
            kind = model_kind(_read_config(source.folder), spec.option_dict)
            if kind in KIND_TASKS:
                return KIND_TASKS[kind]
        # Unknown until the weights are here; check() then reports them missing.
        return frozenset({"generate", "caption"})

    def check(self, spec: ModelSpec) -> None:
        super().check(spec)
        source = weights.locate(spec)
        folder = source.folder if source.folder is not None and source.folder.is_dir() else None
        config = _read_config(folder) if folder is not None else {}
        _remote_code(spec, source.kind, model_kind(config, spec.option_dict))

    def load(self, spec: ModelSpec, device: str) -> LoadedModel:
        source = weights.require(spec)
        assert source.folder is not None
        options = spec.option_dict
        kind = model_kind(_read_config(source.folder), options)
        # A hub model loads by id (revision, HF_HUB_OFFLINE and the cache layout honoured);
        # anything else from its folder. Never download: check() has told the user how.
        ref = spec.id if source.kind == "hub" else str(source.folder)
        common: dict[str, Any] = {
            "local_files_only": True,
            "trust_remote_code": _remote_code(spec, source.kind, kind),
        }
        if source.kind == "hub" and spec.revision:
            common["revision"] = spec.revision
        if kind == CAUSAL:
            return CausalLM(spec, ref, device, common)
        if kind == IMAGE_TO_TEXT:
            return ImageToText(spec, ref, device, common)
        if kind == MOONDREAM:
            return Moondream(spec, ref, device, common)
        if kind == IMAGE_EMBED:
            return ImageEmbedder(spec, ref, device, common)
        raise ModelError(
            f"model '{spec.label()}': transformers cannot tell what this model does from its"
            " config.json; set options: {kind: causal | image-to-text | image-embed}"
        )


class _TorchModel(TorchModuleModel):
    """A transformers model on a device, in the dtype that suits the device."""

    # Decoding launches many small kernels a token; sharing the GPU with a diffusion model,
    # each would wait behind its large ones without priority (see models.device.own_stream).
    stream_priority = -1

    def __init__(self, spec: ModelSpec, device: str) -> None:
        from genarun.models.device import torch_dtype

        self.spec = spec
        self.device = device
        self.dtype = torch_dtype(device, spec.option_dict.get("dtype"))
        self.model: Any = None

    def _place(self, model: Any) -> Any:
        return model.to(self.device).eval()


class CausalLM(_TorchModel):
    """Text generation with a decoder-only LM and a per-row seeded decode loop."""

    max_batch = 16

    def __init__(self, spec: ModelSpec, ref: str, device: str, common: dict[str, Any]) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        super().__init__(spec, device)
        self.tokenizer = AutoTokenizer.from_pretrained(ref, **common)
        self.model = self._place(
            AutoModelForCausalLM.from_pretrained(ref, dtype=self.dtype, **common)
        )
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids, default=0)
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None)
        self._schema_tokenizer: SchemaTokenizer | None = None
        self._grammars: dict[str, str] = {}  # JSON Schema text -> llguidance grammar

    def constraints(self, schema: Any, rows: int) -> list[RowConstraint]:
        """One grammar state per row for decoding under a JSON Schema (`schema:`)."""
        from genarun.models.structured import RowConstraint, compile_schema, schema_tokenizer

        if self._schema_tokenizer is None:
            vocab = int(self.model.get_output_embeddings().weight.shape[0])
            self._schema_tokenizer = schema_tokenizer(self.tokenizer, min(self.eos_ids), vocab)
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = compile_schema(self._schema_tokenizer, schema)
        return [RowConstraint(self._schema_tokenizer, self._grammars[key]) for _ in range(rows)]

    def encode_prompt(self, prompt: str, system: str | None) -> list[int]:
        """Token ids of a prompt: through the chat template where the tokenizer has one."""
        if self.tokenizer.chat_template:
            messages = [{"role": "system", "content": system}] if system else []
            messages.append({"role": "user", "content": prompt})
            text = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            return list(self.tokenizer(text, add_special_tokens=False).input_ids)
        text = f"{system}\n\n{prompt}" if system else prompt
        ids = list(self.tokenizer(text).input_ids)
        # A model needs at least one token to continue from; start from eos like GPT-2 does.
        return ids or [self.tokenizer.bos_token_id or min(self.eos_ids)]

    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        from genarun.models.sampling import sample_causal

        if task != "generate":
            raise ModelError(f"model '{self.spec.label()}' does text generation, not '{task}'")
        settings = {**GENERATE_DEFAULTS, **batch[0].settings}
        max_new = int(settings["max_tokens"])
        prompts = [self.encode_prompt(str(inv.input), settings.get("system")) for inv in batch]
        if self.max_positions:
            # Keep prompt + answer inside the position table, dropping the prompt's oldest tokens.
            # An answer under a schema may take more of it: a cut answer is invalid JSON.
            share = 4 if settings.get("schema") else 2
            max_new = max(1, min(max_new, self.max_positions * (share - 1) // share))
            keep = self.max_positions - max_new
            prompts = [p[-keep:] for p in prompts]
        new_tokens = sample_causal(
            self.model,
            prompts,
            [inv.seed for inv in batch],
            max_new_tokens=max_new,
            temperature=float(settings["temperature"]),
            eos_ids=self.eos_ids,
            pad_id=self.pad_id,
            min_new_tokens=int(settings.get("min_tokens", 0)),
            constraints=(
                self.constraints(settings["schema"], len(batch)) if settings.get("schema") else None
            ),
        )
        return [
            GeneratedText(
                self.tokenizer.decode(t, skip_special_tokens=True).strip(),
                hit_limit=len(t) >= max_new,  # no end token within the ceiling
                tokens=len(t),
                prompt_tokens=len(prompt),  # as read, after any cut to the position table
            )
            for t, prompt in zip(new_tokens, prompts, strict=True)
        ]


class ImageToText(_TorchModel):
    """Captioning with an image-to-text model through its processor and `generate`."""

    max_batch = 16

    def __init__(self, spec: ModelSpec, ref: str, device: str, common: dict[str, Any]) -> None:
        from transformers import AutoConfig, AutoModelForImageTextToText

        super().__init__(spec, device)
        config = AutoConfig.from_pretrained(ref, **common)
        self.is_blip = config.model_type == "blip"
        self.is_ved = config.model_type == "vision-encoder-decoder"
        if self.is_ved:
            # VisionEncoderDecoder folders hold an image processor and a tokenizer, not a processor.
            from transformers import AutoImageProcessor, AutoTokenizer

            self.image_processor = AutoImageProcessor.from_pretrained(ref, **common)
            self.tokenizer = AutoTokenizer.from_pretrained(ref, **common)
            self.processor = None
        else:
            from transformers import AutoProcessor

            self.processor = AutoProcessor.from_pretrained(ref, **common)
            self.tokenizer = self.processor.tokenizer
        model = AutoModelForImageTextToText.from_pretrained(ref, dtype=self.dtype, **common)
        self.model = self._place(model)
        gen = self.model.generation_config
        if self.is_blip:
            eos: Any = config.text_config.sep_token_id  # BLIP stops at [SEP]
        else:
            eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        decoder = config.decoder if self.is_ved else getattr(config, "text_config", config)
        self.max_positions: int | None = getattr(decoder, "max_position_embeddings", None)
        self.decoding: StaticDecoding | None = None
        self.compiled = self._tune()

    def _tune(self) -> list[Any]:
        """The opt-in `compile` option (genarun.models.tuning): the image encoder, whose shapes
        are static, and the text decoder's decoding steps through transformers' static cache
        (genarun.models.static_decoding). Returns the guards (each with `name` and `failed`)."""
        from genarun.models import tuning
        from genarun.models.static_decoding import static_decoding

        label, options = self.spec.label(), self.spec.option_dict
        tuning.check_options(label, options)
        mode = tuning.compile_mode(options)
        if mode is None:
            return []
        reason = tuning.compile_unavailable(self.device)
        if reason is not None:
            tuning.log.warning("model '%s': compile ignored: %s", label, reason)
            return []
        self.decoding = static_decoding(label, self.model, options, self.device)
        guards: list[Any] = [self.decoding] if self.decoding is not None else []
        encoder = getattr(self.model, "vision_model", None)
        if encoder is None and self.is_ved:
            encoder = getattr(self.model, "encoder", None)
        if encoder is not None:
            # One large forward a batch gains nothing from CUDA graphs, and a graph's outputs
            # are overwritten by its next replay, while generate hands the image's to every
            # decoding step: the image encoder compiles without them.
            graphless = {"reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs"}
            encoder_mode = graphless.get(mode, mode)
            guards += tuning.compile_modules(
                label, {"image encoder": encoder}, encoder_mode, self.device
            )
        return guards

    def _inputs(self, images: list[Any], prompt: str | None) -> dict[str, Any]:
        import torch

        if self.is_ved:
            pixels = self.image_processor(images=images, return_tensors="pt").pixel_values
            inputs: dict[str, Any] = {"pixel_values": pixels}
            start = self.model.config.decoder_start_token_id
            prefix = self.tokenizer(prompt).input_ids if prompt else []
            ids = torch.tensor([[start, *prefix]] * len(images), dtype=torch.long)
            inputs["decoder_input_ids"] = ids
            inputs["decoder_attention_mask"] = torch.ones_like(ids)
        else:
            # BLIP's unconditional captioning needs text="" (its processor adds [CLS] [SEP]).
            text = prompt if prompt is not None else ("" if self.is_blip else None)
            kwargs: dict[str, Any] = {"images": images, "return_tensors": "pt"}
            if text is not None:
                kwargs["text"] = [text] * len(images)
            assert self.processor is not None  # set for every model that is not a ViT-GPT2 one
            inputs = dict(self.processor(**kwargs))
        return {
            k: v.to(self.device, dtype=self.dtype) if v.is_floating_point() else v.to(self.device)
            for k, v in inputs.items()
        }

    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        import torch

        if task != "caption":
            raise ModelError(f"model '{self.spec.label()}' does captioning, not '{task}'")
        settings = {**CAPTION_DEFAULTS, **batch[0].settings}
        images = [rgb(inv.input) for inv in batch]
        inputs = self._inputs(images, settings.get("prompt") or None)
        max_new = int(settings["max_tokens"])
        given = inputs.get("decoder_input_ids", inputs.get("input_ids"))
        used = int(given.shape[1]) if given is not None else 1
        if self.max_positions:
            # A generous ceiling (1024) must stay inside the decoder's position table.
            max_new = max(1, min(max_new, self.max_positions - used))
        seeds = [inv.seed for inv in batch]
        if not self.compiled:
            return self._caption(inputs, seeds, settings, max_new, {})
        from genarun.models.static_decoding import bucket, pad_rows

        # Compiled modules see a few batch sizes, not one each (static_decoding.bucket).
        rows = bucket(len(batch), int(self.spec.option_dict.get("max_batch") or self.max_batch))
        inputs = pad_rows(inputs, rows)
        seeds += [seeds[-1]] * (rows - len(seeds))  # padding rows draw from their own streams
        decoding = self.decoding
        if decoding is not None and decoding.failed is None:
            with decoding.lock:
                try:
                    compiled = decoding.generate_kwargs(rows, used + max_new)
                    return self._caption(inputs, seeds, settings, max_new, compiled)[: len(batch)]
                except torch.OutOfMemoryError:
                    raise  # the batcher halves the batch; compiling is not what failed
                except Exception as error:  # compile-time failures surface at the first call
                    decoding.fail(error)
        return self._caption(inputs, seeds, settings, max_new, {})[: len(batch)]

    def _caption(
        self,
        inputs: dict[str, Any],
        seeds: list[int],
        settings: dict[str, Any],
        max_new: int,
        compiled: dict[str, Any],
    ) -> list[GeneratedText]:
        """One `generate` call of the batch; `compiled` holds the static cache and the compile
        settings of genarun.models.static_decoding, or nothing for eager decoding."""
        import torch
        from transformers import LogitsProcessorList

        from genarun.models.sampling import GreedySteps, RowSampler

        temperature = float(settings["temperature"])
        # Greedy decoding draws nothing, so it needs no per-row generators: the light processor
        # keeps the GPU free of the sampler's per-step host syncs (1.3x faster on an H100).
        sampler: GreedySteps | RowSampler = (
            GreedySteps(self.eos_ids, int(settings["min_tokens"]))
            if temperature <= 0
            else RowSampler(
                seeds,
                self.device,
                temperature,
                eos_ids=self.eos_ids,
                min_new_tokens=int(settings["min_tokens"]),
            )
        )
        extra: dict[str, Any] = dict(compiled)
        if not self.is_blip:  # BLIP's generate passes its own pad id
            pad = self.model.generation_config.pad_token_id
            extra["pad_token_id"] = pad if pad is not None else min(self.eos_ids, default=0)
        with torch.inference_mode():
            sequences = self.model.generate(
                **inputs,
                max_new_tokens=max_new,
                do_sample=False,  # RowSampler already picked each row's token
                num_beams=1,
                logits_processor=LogitsProcessorList([sampler]),
                **extra,
            )
        new = (
            sequences[:, sequences.shape[1] - sampler.steps :]
            if sampler.steps
            else sequences[:, :0]
        )
        captions = []
        for row in new.tolist():
            cut = next((i for i, t in enumerate(row) if t in self.eos_ids), len(row))
            text = self.tokenizer.decode(row[:cut], skip_special_tokens=True).strip()
            captions.append(GeneratedText(text, hit_limit=cut >= max_new, tokens=cut))
        return captions


class Moondream(_TorchModel):
    """Moondream2, whose remote code has its own `caption` and `query` methods."""

    max_batch = 1

    def __init__(self, spec: ModelSpec, ref: str, device: str, common: dict[str, Any]) -> None:
        from transformers import AutoModelForCausalLM

        super().__init__(spec, device)
        self.model = self._place(
            AutoModelForCausalLM.from_pretrained(ref, dtype=self.dtype, **common)
        )

    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        import torch

        if task != "caption":
            raise ModelError(f"model '{self.spec.label()}' does captioning, not '{task}'")
        results = []
        for inv in batch:  # its API takes one image at a time
            torch.manual_seed(inv.seed)  # its sampler uses torch's global generator
            image = rgb(inv.input)
            prompt = inv.settings.get("prompt")
            if prompt:
                results.append(str(self.model.query(image, prompt)["answer"]).strip())
            else:
                length = str(inv.settings.get("length", "normal"))
                results.append(str(self.model.caption(image, length=length)["caption"]).strip())
        return results


class ImageEmbedder(_TorchModel):
    """Image embeddings from a vision encoder: the CLS token, L2-normalised (Nomic vision)."""

    max_batch = 32

    def __init__(self, spec: ModelSpec, ref: str, device: str, common: dict[str, Any]) -> None:
        from transformers import AutoImageProcessor, AutoModel

        super().__init__(spec, device)
        self.processor = AutoImageProcessor.from_pretrained(ref, **common)
        self.model = self._place(AutoModel.from_pretrained(ref, dtype=self.dtype, **common))

    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        import torch

        if task != "embed_image":
            raise ModelError(f"model '{self.spec.label()}' embeds images, not '{task}'")
        pixels = self.processor(images=[rgb(inv.input) for inv in batch], return_tensors="pt")
        pixels = pixels.pixel_values.to(self.device, dtype=self.dtype)
        with torch.inference_mode():
            hidden = self.model(pixel_values=pixels).last_hidden_state[:, 0].float()
        vectors = torch.nn.functional.normalize(hidden, dim=-1).cpu().numpy()
        return [v.astype("float32") for v in vectors]


def catalog_entries() -> list[CatalogEntry]:
    """Built-in tiny models and real hub models this provider runs."""
    gen, cap = frozenset({"generate"}), frozenset({"caption"})
    return [
        CatalogEntry("tiny-gpt2", "transformers", "tiny-gpt2", gen, "builtin", "0.3 MB",
                     "GPT-2, 2 layers of width 32, random weights: for tests and trying trees"),
        CatalogEntry("tiny-blip", "transformers", "tiny-blip", cap, "builtin", "0.4 MB",
                     "BLIP captioner with random weights, 32x32 input: for tests"),
        CatalogEntry("tiny-vit-gpt2", "transformers", "tiny-vit-gpt2", cap, "builtin", "0.5 MB",
                     "ViT + GPT-2 VisionEncoderDecoder captioner with random weights: for tests"),
        CatalogEntry("qwen2.5-0.5b", "transformers", "Qwen/Qwen2.5-0.5B-Instruct", gen, "hub",
                     "1.0 GB", "Qwen2.5 0.5B Instruct: small chat model, follows instructions"),
        CatalogEntry("blip", "transformers", "Salesforce/blip-image-captioning-base", cap, "hub",
                     "990 MB", "BLIP base image captioning (COCO)"),
        CatalogEntry("blip2", "transformers", "Salesforce/blip2-opt-2.7b", cap, "hub", "15.5 GB",
                     "BLIP-2 with OPT-2.7b: captions and answers questions about images"),
        CatalogEntry("moondream2", "transformers", "vikhyatk/moondream2", cap, "hub", "3.7 GB",
                     "Moondream2 vision-language model (remote code): detailed captions",
                     {"trust_remote_code": True, "kind": MOONDREAM}),
        CatalogEntry("nomic-vision", "transformers", "nomic-ai/nomic-embed-vision-v1.5",
                     frozenset({"embed_image"}), "hub", "370 MB",
                     "Nomic Embed Vision v1.5: image vectors in nomic-text's space (768-d)",
                     {"trust_remote_code": True, "kind": IMAGE_EMBED}),
    ]  # fmt: skip


def register(registry: Registry) -> None:
    registry.add_provider(TransformersProvider())
    for entry in catalog_entries():
        registry.add_model(entry)
