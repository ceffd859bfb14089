"""The `diffusers` provider: text to image with any `DiffusionPipeline` (SD, SD-Turbo, SDXL, Flux).

The pipeline class comes from the checkpoint's `model_index.json`, so one provider serves every
architecture. A batch of invocations runs as one pipeline call with one seeded generator per
item: each image depends only on its own prompt and seed, never on its batch neighbours.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.errors import ModelError
from genarun.models.base import Invocation, LoadedModel, ModelSpec, Provider
from genarun.models.catalog import CatalogEntry, local_model_dir
from genarun.models.tuning import TUNING_OPTIONS
from genarun.models.weights import is_local_path

if TYPE_CHECKING:
    from genarun.plugins import Registry

PROVIDER = "diffusers"
IMAGE_TASKS = frozenset({"image"})
TINY_MODELS = ("tiny-sd", "tiny-sdxl", "tiny-flux")

# genarun's setting names -> the pipeline's call arguments
SETTING_ARGS = {
    "steps": "num_inference_steps",
    "guidance": "guidance_scale",
    "width": "width",
    "height": "height",
    "negative_prompt": "negative_prompt",
}
# Options used when loading, not when calling the pipeline.
LOAD_OPTIONS = frozenset({"dtype", "variant", "max_batch"}) | TUNING_OPTIONS
# Call arguments that genarun owns: a setting may not override them.
RESERVED_ARGS = frozenset({"prompt", "generator", "output_type", "num_images_per_prompt"})
SEED_MASK = 0xFFFF_FFFF_FFFF_FFFF  # torch seeds are unsigned 64-bit


def _entry(
    source: str, name: str, model_id: str, size: str, description: str, **options: Any
) -> CatalogEntry:
    return CatalogEntry(
        name=name,
        provider=PROVIDER,
        id=model_id,
        tasks=IMAGE_TASKS,
        source=source,
        size=size,
        description=description,
        options=options,
    )


def _tiny(name: str, size: str, description: str, **options: Any) -> CatalogEntry:
    return _entry("builtin", name, name, size, description, **options)


def _hub(name: str, hub_id: str, size: str, description: str, **options: Any) -> CatalogEntry:
    return _entry("hub", name, hub_id, size, description, **options)


# Sizes are those of the files from_pretrained reads (full-precision files unless noted).
CATALOG: tuple[CatalogEntry, ...] = (
    _tiny(
        "tiny-sd",
        "4.6 MB",
        "SD-Turbo-like Stable Diffusion with tiny random weights, 64x64, 1 step (tests, offline)",
        steps=1,
        guidance=0.0,
        width=64,
        height=64,
    ),
    _tiny(
        "tiny-sdxl",
        "6.4 MB",
        "SDXL-Turbo-like (two text encoders) with tiny random weights, 64x64, 1 step",
        steps=1,
        guidance=0.0,
        width=64,
        height=64,
    ),
    _tiny(
        "tiny-flux",
        "3.2 MB",
        "FLUX.1-schnell-like (CLIP + T5, flow matching) with tiny random weights, 64x64",
        steps=1,
        guidance=0.0,
        width=64,
        height=64,
        max_sequence_length=64,
    ),
    _hub(
        "sd-turbo",
        "stabilityai/sd-turbo",
        "5.2 GB",
        "Stable Diffusion 2.1 distilled to 1 step, 512x512",
        steps=1,
        guidance=0.0,
        width=512,
        height=512,
    ),
    _hub(
        "sdxl-turbo",
        "stabilityai/sdxl-turbo",
        "13.9 GB",
        "SDXL distilled to 1 step, 512x512",
        steps=1,
        guidance=0.0,
        width=512,
        height=512,
    ),
    _hub(
        "sdxl",
        "stabilityai/stable-diffusion-xl-base-1.0",
        "13.9 GB",
        "Stable Diffusion XL base 1.0, 1024x1024",
        steps=30,
        guidance=5.0,
        width=1024,
        height=1024,
    ),
    _hub(
        "flux-schnell",
        "black-forest-labs/FLUX.1-schnell",
        "33.7 GB (bf16)",
        "FLUX.1 [schnell], 4 steps, 1024x1024 (Apache-2.0)",
        steps=4,
        guidance=0.0,
        width=1024,
        height=1024,
        max_sequence_length=256,
    ),
    _hub(
        "flux-dev",
        "black-forest-labs/FLUX.1-dev",
        "33.7 GB (bf16)",
        "FLUX.1 [dev], 28 steps, 1024x1024 (gated: accept its license on huggingface.co first)",
        steps=28,
        guidance=3.5,
        width=1024,
        height=1024,
    ),
)


def register(registry: Registry) -> None:
    """Add the diffusers provider and its catalog models to the registry."""
    registry.add_provider(DiffusersProvider())
    for entry in CATALOG:
        registry.add_model(entry)


def _missing_weights(spec: ModelSpec) -> ModelError:
    label = spec.label()
    if is_local_path(spec.id):
        return ModelError(
            f"model '{label}': no diffusers model folder at '{spec.id}' (it needs a"
            " model_index.json, as written by save_pretrained or `huggingface-cli download`)"
        )
    return ModelError(
        f"model '{label}': the weights of '{spec.id}' are not on this machine. Get them with"
        f" `huggingface-cli download {spec.id}` on a machine with network access (then copy the"
        " Hugging Face cache, or set HF_HOME to it), or point `id:` at a local folder that"
        " holds the model"
    )


class DiffusersProvider(Provider):
    """Loads diffusers pipelines: built-in tiny models, Hugging Face ids and local folders."""

    name = PROVIDER
    extra = "local"
    modules = ("torch", "diffusers", "transformers")

    def tasks(self, spec: ModelSpec) -> frozenset[str]:
        return IMAGE_TASKS

    def weights_present(self, spec: ModelSpec) -> bool | None:
        if spec.id in TINY_MODELS:
            return True  # built on first use, offline
        folder = local_model_dir(spec.id, spec.revision)
        return folder is not None and (folder / "model_index.json").is_file()

    def check(self, spec: ModelSpec) -> None:
        from genarun.models.device import DTYPE_NAMES
        from genarun.models.tuning import check_options

        check_options(spec.label(), spec.option_dict)
        dtype = spec.option_dict.get("dtype")
        if dtype is not None and dtype not in DTYPE_NAMES:
            raise ModelError(
                f"model '{spec.label()}': unknown dtype '{dtype}'; use one of {', '.join(DTYPE_NAMES)}"
            )
        if not self.weights_present(spec):
            raise _missing_weights(spec)

    def load(self, spec: ModelSpec, device: str) -> LoadedModel:
        self.check(spec)
        return DiffusersModel(spec, device)


class DiffusersModel(LoadedModel):
    """A diffusion pipeline on one device."""

    def __init__(self, spec: ModelSpec, device: str) -> None:
        import inspect

        from diffusers import DiffusionPipeline

        from genarun.models.device import torch_dtype

        _quiet_progress_bars()
        self.spec = spec
        self.device = device
        options = spec.option_dict
        source, folder, from_hub = _weights_source(spec)
        index = json.loads((folder / "model_index.json").read_text())
        self.pipeline_class = str(index.get("_class_name", "DiffusionPipeline"))
        dtype = torch_dtype(
            device, options.get("dtype") or _default_dtype(self.pipeline_class, device)
        )
        kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
        if from_hub:
            # The cache the folder was found in, even if HF_HUB_CACHE changed after import.
            kwargs["cache_dir"] = str(folder.parents[2])
            if spec.revision:
                kwargs["revision"] = spec.revision
        if options.get("variant"):
            kwargs["variant"] = options["variant"]
        if "safety_checker" in index:
            # genarun stores every image; filtering is the tree author's choice, not ours.
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            pipe = DiffusionPipeline.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelError(f"model '{spec.label()}': cannot load '{spec.id}': {exc}") from exc
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(device)
        self.compiled = _tune(pipe, spec, device)
        self._call_args = frozenset(inspect.signature(pipe.__call__).parameters)
        self._defaults = self._call_kwargs(options, where="options")
        self.max_batch = int(options.get("max_batch", 16))

    def _call_kwargs(self, settings: Mapping[str, Any], *, where: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for key, value in settings.items():
            if key in LOAD_OPTIONS or value is None:
                continue
            arg = SETTING_ARGS.get(key, key)
            if arg in RESERVED_ARGS or arg not in self._call_args:
                known = sorted(set(SETTING_ARGS) | (self._call_args - RESERVED_ARGS - {"self"}))
                raise ModelError(
                    f"model '{self.spec.label()}': unknown {where[:-1]} '{key}' for"
                    f" {self.pipeline_class}; known: {', '.join(known)}"
                )
            kwargs[arg] = value
        return kwargs

    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        """Generate one PIL image per invocation, each from its own seed."""
        if task != "image":
            raise ModelError(f"model '{self.spec.label()}' makes images; it cannot do '{task}'")
        if self.pipe is None:
            raise ModelError(f"model '{self.spec.label()}' was unloaded; load it again")
        step = max(1, self.max_batch)
        images: list[Any] = []
        for start in range(0, len(batch), step):
            images.extend(self._generate(batch[start : start + step]))
        return images

    def _generate(self, batch: Sequence[Invocation]) -> list[Any]:
        import torch

        kwargs = {**self._defaults, **self._call_kwargs(batch[0].settings, where="settings")}
        if isinstance(kwargs.get("negative_prompt"), str):
            kwargs["negative_prompt"] = [kwargs["negative_prompt"]] * len(batch)
        generators = [
            torch.Generator(self.device).manual_seed(inv.seed & SEED_MASK) for inv in batch
        ]
        tensors = _plain_postprocess(self.pipe)
        try:
            with torch.inference_mode():
                out = self.pipe(
                    prompt=[str(inv.input) for inv in batch],
                    generator=generators,
                    output_type="pt" if tensors else "pil",
                    **kwargs,
                )
                images = _to_pil(out.images) if tensors else list(out.images)
        except ValueError as exc:  # the pipeline's check_inputs: bad sizes, too-long prompts
            raise ModelError(f"model '{self.spec.label()}': {exc}") from exc
        self._mark_prompt_tokens(batch, images)
        return images

    def _mark_prompt_tokens(self, batch: Sequence[Invocation], images: list[Any]) -> None:
        """Record each prompt's length in the first text encoder's tokens and its limit (77
        for CLIP): the pipeline cuts a longer prompt without saying so."""
        from genarun.models.base import mark_prompt_tokens

        tokenizer = getattr(self.pipe, "tokenizer", None)
        if tokenizer is None:
            return
        limit = getattr(tokenizer, "model_max_length", None)
        for inv, image in zip(batch, images, strict=True):
            ids = tokenizer(str(inv.input), truncation=False)["input_ids"]
            mark_prompt_tokens(image, len(ids), limit if limit and limit < 100_000 else None)

    def memory_bytes(self) -> int:
        if self.device == "cpu" or self.pipe is None:
            return 0
        import torch

        from genarun.models.device import module_bytes

        return sum(
            module_bytes(part)
            for part in self.pipe.components.values()
            if isinstance(part, torch.nn.Module)
        )

    def unload(self) -> None:
        from genarun.models.device import release_accelerator_memory

        self.pipe = None
        release_accelerator_memory(self.device)


def _plain_postprocess(pipe: Any) -> bool:
    """Whether the pipeline turns its decoded images into PIL images with diffusers' own
    VaeImageProcessor.postprocess, which `_to_pil` then does faster with the same pixels."""
    from diffusers.image_processor import VaeImageProcessor

    processor = getattr(pipe, "image_processor", None)
    return (
        isinstance(processor, VaeImageProcessor)
        and type(processor).postprocess is VaeImageProcessor.postprocess
    )


def _to_pil(images: Any) -> list[Any]:
    """PIL images from a pipeline's "pt" output (denormalised to [0, 1], on its device).

    diffusers' "pil" output copies the batch to the CPU as float32 (12 bytes a pixel) and scales
    and rounds it there with numpy: at 64 images of 512x512 that was the painter's largest CPU
    cost. The same float32 arithmetic (x * 255, round half to even, to uint8) on the GPU gives
    the same bytes, and 3 bytes a pixel cross the bus. The images' pixel digests start at once
    on other threads (genarun.models.pixels)."""
    import torch
    from PIL import Image

    from genarun.models.pixels import attach_digest

    pixels = (images.float() * 255).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()  # one image a row of bytes
    if pixels.shape[-1] == 1:
        pixels = pixels.squeeze(-1)
        out = [Image.fromarray(p, mode="L") for p in pixels]
    else:
        out = [Image.fromarray(p) for p in pixels]
    for image, array in zip(out, pixels, strict=True):
        attach_digest(image, array)  # what a cycle compares outputs by, hashed in parallel
    return out


def _tune(pipe: Any, spec: ModelSpec, device: str) -> list[Any]:
    """Apply the opt-in `channels_last`, `attention` and `compile` options (genarun.models.
    tuning) to the pipeline's denoiser and VAE decoder; returns the compile guards."""
    from genarun.models import tuning

    options = spec.option_dict
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    vae = getattr(pipe, "vae", None)
    if options.get("channels_last"):
        for module in (denoiser, vae):
            if module is not None:
                tuning.to_channels_last(module)
    if options.get("attention") == "sdpa":
        from diffusers.models.attention_processor import AttnProcessor2_0

        for module in (denoiser, vae):
            if module is not None and hasattr(module, "set_attn_processor"):
                try:
                    module.set_attn_processor(AttnProcessor2_0())
                except (ValueError, TypeError) as exc:  # a model with its own processors
                    tuning.log.warning(
                        "model '%s': attention sdpa not applied (%s)", spec.label(), exc
                    )
    mode = tuning.compile_mode(options)
    if mode is None:
        return []
    modules = {"denoiser": denoiser, "vae decoder": getattr(vae, "decoder", None)}
    return tuning.compile_modules(spec.label(), modules, mode, device)


def _weights_source(spec: ModelSpec) -> tuple[str, Path, bool]:
    """What to hand from_pretrained (a folder, or a cached Hugging Face id), and the folder."""
    if spec.id in TINY_MODELS:
        from genarun.models.tiny import ensure_tiny_model

        folder = ensure_tiny_model(spec.id)
        return str(folder), folder, False
    found = local_model_dir(spec.id, spec.revision)
    if found is None or not (found / "model_index.json").is_file():
        raise _missing_weights(spec)
    if is_local_path(spec.id):
        return str(found), found, False
    # By id, so from_pretrained resolves the revision in the HF cache as it would online.
    return spec.id, found, True


def _default_dtype(pipeline_class: str, device: str) -> str:
    """float32 on CPU; on accelerators float16, or bfloat16 for Flux (trained and shipped in it)."""
    from genarun.models.device import device_type

    if device_type(device) == "cpu":
        return "float32"
    return "bfloat16" if "Flux" in pipeline_class else "float16"


def _quiet_progress_bars() -> None:
    """genarun reports its own progress; the libraries' per-load bars would drown it."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
