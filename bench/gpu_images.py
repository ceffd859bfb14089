"""Benchmark: text to image, then captioning, three ways, on real-size random-weight models.

Builds SD-Turbo's UNet, VAE and CLIP text encoder (512x512, 1 step) and a BLIP-base captioner
from their configs with random weights (no download: their speed is that of the real models),
saves them with `save_pretrained` into a temporary folder, and runs N prompts through

  (a) one invocation at a time (a diffusers call, then a generate call, per item),
  (b) a hand-written batched loop (diffusers and transformers, `--batch` items per call),
  (c) genarun's providers: `genarun.models.diffusers` and the transformers provider, loaded
      from the saved folders, batched the way genarun's executor batches.

It prints images/s, captions/s, peak GPU memory and the speed-ups side by side, and how far the
three ways' images differ (same seeds: they should agree).

    python bench/gpu_images.py                                 # GPU, 64 items, 512x512
    python bench/gpu_images.py --device cpu --n 4 --size 64    # quick local smoke run (tiny)
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # runnable from a checkout without installing genarun

# stabilityai/sd-turbo (SD 2.1 architecture), from its unet/, vae/ and text_encoder/ configs.
SD_TURBO_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_head_dim": [5, 10, 20, 20],  # diffusers' name for the number of heads in SD 2
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
}
SD_TURBO_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
SD_TURBO_TEXT: dict[str, Any] = {  # OpenCLIP ViT-H/14's text tower
    "vocab_size": 49408,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "projection_dim": 512,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}
SD_TURBO_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "timestep_spacing": "trailing",
    "steps_offset": 1,
    "prediction_type": "epsilon",
}
# A small BLIP for the smoke run; the full run uses BlipConfig's defaults (BLIP-base).
TINY_BLIP_TEXT = {
    "hidden_size": 32,
    "encoder_hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}
TINY_BLIP_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 64,
    "patch_size": 16,
}

PROMPTS = [
    "a watercolor painting of a lighthouse at sunset",
    "a photo of a cat sitting on a red chair",
    "a bearded dragon resting on a warm stone",
    "a futuristic city skyline in the rain, neon",
    "an oil painting of a bowl of fruit on a table",
    "a snowy owl on a fence post in winter",
    "a cozy cabin in a snowy forest at night",
    "an astronaut riding a horse on the moon",
]


@dataclass
class Result:
    """Timings of one way of running the benchmark."""

    name: str
    image_s: float = 0.0
    caption_s: float = 0.0
    peak_gb: float = 0.0
    images: list[Any] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1 or cpu (default cuda)")
    parser.add_argument("--n", type=int, default=64, help="prompts to run (default 64)")
    parser.add_argument("--size", type=int, default=512, help="image width and height")
    parser.add_argument("--batch", type=int, default=16, help="items per batched call")
    parser.add_argument("--tokens", type=int, default=20, help="caption length in tokens")
    parser.add_argument(
        "--arch",
        choices=["auto", "real", "tiny"],
        default="auto",
        help="real: SD-Turbo + BLIP-base sizes; tiny: small configs (auto: tiny below 256 px)",
    )
    parser.add_argument(
        "--keep", type=Path, help="save the built models here instead of a temp dir"
    )
    return parser.parse_args(argv)


def dtypes(device: str) -> tuple[Any, Any]:
    """The dtypes genarun picks: float16 for SD and bf16 (where supported) for BLIP on CUDA."""
    import torch

    if device.startswith("cuda"):
        caption = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16, caption
    return torch.float32, torch.float32


def build_sd(folder: Path, *, real: bool, device: str, dtype: Any) -> None:
    """Save an SD-Turbo-shaped pipeline with random weights (tiny-sd's shape when not real)."""
    import torch

    if not real:
        from genarun.models.tiny.stable_diffusion import build_tiny_sd

        build_tiny_sd(folder)
        return
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from genarun.models.tiny.stable_diffusion import clip_tokenizer

    tokenizer = clip_tokenizer()
    torch.manual_seed(0)
    with torch.device(device):  # initialising 1.3 B parameters is much faster on the GPU
        unet = UNet2DConditionModel(**SD_TURBO_UNET).to(dtype)
        vae = AutoencoderKL(**SD_TURBO_VAE).to(dtype)
        text_config = CLIPTextConfig(
            **SD_TURBO_TEXT,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        text_encoder = CLIPTextModel(text_config).to(dtype)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SD_TURBO_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)


def build_blip(folder: Path, *, real: bool, device: str, dtype: Any, size: int) -> None:
    """Save a BLIP captioner (BLIP-base sizes when real) with random weights and its processor."""
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    from genarun.models.tiny._shared import bert_tokenizer

    tokenizer = bert_tokenizer()
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if real:
        config = BlipConfig(text_config=ids)  # the defaults are BLIP-base: ViT-B/16 at 384 px
    else:
        config = BlipConfig(
            text_config={**TINY_BLIP_TEXT, **ids, "vocab_size": len(tokenizer)},
            vision_config=TINY_BLIP_VISION,
            projection_dim=32,
        )
    image_size = config.vision_config.image_size
    torch.manual_seed(1)
    with torch.device(device):
        model = BlipForConditionalGeneration(config).to(dtype).eval()
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


@contextmanager
def measured(result: Result, phase: str, device: str) -> Iterator[None]:
    """Time a phase (synchronising the GPU) into `result.<phase>_s`."""
    sync(device)
    start = time.perf_counter()
    yield
    sync(device)
    setattr(result, f"{phase}_s", getattr(result, f"{phase}_s") + time.perf_counter() - start)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed(call: Any, rounds: int, device: str) -> tuple[float, Any]:
    """Mean seconds of `call` over `rounds` calls, the device synchronised around them, and the
    last call's result."""
    sync(device)
    start = time.perf_counter()
    for _ in range(rounds):
        out = call()
    sync(device)
    return (time.perf_counter() - start) / rounds, out


def reset_peak(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: str) -> float:
    import torch

    return torch.cuda.max_memory_allocated(device) / 1e9 if device.startswith("cuda") else 0.0


class HandWritten:
    """Plain diffusers + transformers, loaded from the saved folders: the baseline."""

    def __init__(self, sd_dir: Path, blip_dir: Path, device: str, tokens: int) -> None:
        from diffusers import DiffusionPipeline
        from transformers import BlipForConditionalGeneration, BlipProcessor

        image_dtype, caption_dtype = dtypes(device)
        self.device, self.tokens, self.caption_dtype = device, tokens, caption_dtype
        self.pipe = DiffusionPipeline.from_pretrained(
            sd_dir, dtype=image_dtype, local_files_only=True
        ).to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.processor = BlipProcessor.from_pretrained(blip_dir, local_files_only=True)
        self.blip = (
            BlipForConditionalGeneration.from_pretrained(
                blip_dir, dtype=caption_dtype, local_files_only=True
            )
            .to(device)
            .eval()
        )

    def images(self, prompts: list[str], seeds: list[int], size: int) -> list[Any]:
        import torch

        generators = [torch.Generator(self.device).manual_seed(s) for s in seeds]
        with torch.inference_mode():
            return self.pipe(
                prompt=prompts,
                generator=generators,
                num_inference_steps=1,
                guidance_scale=0.0,
                width=size,
                height=size,
            ).images

    def captions(self, images: list[Any]) -> list[str]:
        import torch

        inputs = self.processor(images=images, text=[""] * len(images), return_tensors="pt")
        inputs = {
            k: v.to(self.device, self.caption_dtype) if v.is_floating_point() else v.to(self.device)
            for k, v in inputs.items()
        }
        with torch.inference_mode():
            out = self.blip.generate(
                **inputs,
                max_new_tokens=self.tokens,
                min_new_tokens=self.tokens,  # random weights: fix the work per caption
                do_sample=False,
            )
        return [t.strip() for t in self.processor.batch_decode(out, skip_special_tokens=True)]


def run_one_at_a_time(
    model: HandWritten, prompts: list[str], seeds: list[int], size: int
) -> Result:
    """(a): one image, then one caption, per item."""
    result = Result("(a) one at a time")
    reset_peak(model.device)
    for prompt, seed in zip(prompts, seeds, strict=True):
        with measured(result, "image", model.device):
            image = model.images([prompt], [seed], size)[0]
        with measured(result, "caption", model.device):
            result.captions += model.captions([image])
        result.images.append(image)
    result.peak_gb = peak_gb(model.device)
    return result


def run_hand_batched(
    model: HandWritten, prompts: list[str], seeds: list[int], size: int, batch: int
) -> Result:
    """(b): all images in batches, then all captions in batches."""
    result = Result(f"(b) hand-batched x{batch}")
    reset_peak(model.device)
    with measured(result, "image", model.device):
        for i in range(0, len(prompts), batch):
            result.images += model.images(prompts[i : i + batch], seeds[i : i + batch], size)
    with measured(result, "caption", model.device):
        for i in range(0, len(result.images), batch):
            result.captions += model.captions(result.images[i : i + batch])
    result.peak_gb = peak_gb(model.device)
    return result


def load_genarun(sd_dir: Path, blip_dir: Path, device: str, size: int, batch: int) -> tuple:
    """genarun's providers, loaded from the saved folders as a tree's `id: <folder>` would."""
    from genarun.models.base import ModelSpec
    from genarun.models.diffusers import DiffusersProvider

    try:
        from genarun.models.transformers import TransformersProvider

        captioner_provider: Any = TransformersProvider()
    except ImportError:  # a checkout without it: go through the registry, as the executor does
        from genarun.plugins import registry

        captioner_provider = registry().providers["transformers"]
    options = {"steps": 1, "guidance": 0.0, "width": size, "height": size, "max_batch": batch}
    painter = DiffusersProvider().load(
        ModelSpec(
            "diffusers",
            str(sd_dir),
            "bench-sd",
            frozenset({"image"}),
            tuple(sorted(options.items())),
        ),
        device,
    )
    captioner = captioner_provider.load(
        ModelSpec("transformers", str(blip_dir), "bench-blip", frozenset({"caption"})), device
    )
    captioner.max_batch = batch
    return painter, captioner


def run_genarun(
    painter: Any, captioner: Any, prompts: list[str], seeds: list[int], tokens: int, device: str
) -> Result:
    """(c): genarun's batched path: one run() per model with every item, chunked by max_batch."""
    from genarun.models.base import Invocation

    result = Result(f"(c) genarun x{painter.max_batch}")
    settings = {"max_tokens": tokens, "min_tokens": tokens, "temperature": 0.0}
    with measured(result, "image", device):
        result.images = _in_chunks(
            painter,
            "image",
            [Invocation("image", p, s) for p, s in zip(prompts, seeds, strict=True)],
        )
    with measured(result, "caption", device):
        result.captions = _in_chunks(
            captioner,
            "caption",
            [
                Invocation("caption", im, s, settings)
                for im, s in zip(result.images, seeds, strict=True)
            ],
        )
    result.peak_gb = peak_gb(device)
    return result


def _in_chunks(model: Any, task: str, invocations: list[Any]) -> list[Any]:
    # The executor hands a model at most max_batch invocations per run() call.
    out: list[Any] = []
    for i in range(0, len(invocations), model.max_batch):
        out += model.run(task, invocations[i : i + model.max_batch])
    return out


def max_pixel_diff(first: list[Any], second: list[Any]) -> int:
    import numpy as np

    return max(
        int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())
        for a, b in zip(first, second, strict=True)
    )


def report(results: list[Result], n: int) -> None:
    base = results[0]
    print(
        f"\n{'way':<24} {'images/s':>9} {'captions/s':>11} {'items/s':>8} {'peak GB':>8} {'vs (a)':>7}"
    )
    for r in results:
        total = r.image_s + r.caption_s
        print(
            f"{r.name:<24} {n / r.image_s:>9.2f} {n / r.caption_s:>11.2f} {n / total:>8.2f}"
            f" {r.peak_gb:>8.2f} {(base.image_s + base.caption_s) / total:>6.2f}x"
        )
    print("\nspeed-up over (a): images, captions")
    for r in results[1:]:
        print(
            f"  {r.name:<22} {base.image_s / r.image_s:6.2f}x {base.caption_s / r.caption_s:6.2f}x"
        )
    print("\nmax abs pixel difference between ways (0-255; same seeds):")
    for r in results[1:]:
        print(f"  {base.name} vs {r.name}: {max_pixel_diff(base.images, r.images)}")
    if len(results) > 2:
        print(
            f"  {results[1].name} vs {results[2].name}: {max_pixel_diff(results[1].images, results[2].images)}"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import diffusers
    import torch
    import transformers

    from genarun.models.diffusers import _quiet_progress_bars

    _quiet_progress_bars()
    # Random weights make the libraries warn about casts and unused configs; keep the table clear.
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    real = args.arch == "real" or (args.arch == "auto" and args.size >= 256)
    device = args.device
    image_dtype, caption_dtype = dtypes(device)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.n)]
    seeds = [1000 + i for i in range(args.n)]
    where = args.keep or Path(tempfile.mkdtemp(prefix="genarun-bench-"))
    sd_dir, blip_dir = where / "sd", where / "blip"
    gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    print(
        f"device {device} ({gpu}), torch {torch.__version__}, {args.n} items, {args.size}x{args.size},"
        f" batch {args.batch}, {'SD-Turbo + BLIP-base' if real else 'tiny'} random weights,"
        f" dtypes {image_dtype} / {caption_dtype}"
    )
    try:
        start = time.perf_counter()
        if not (sd_dir / "model_index.json").exists():
            build_sd(sd_dir, real=real, device=device, dtype=image_dtype)
        if not (blip_dir / "config.json").exists():
            build_blip(blip_dir, real=real, device=device, dtype=caption_dtype, size=args.size)
        reset_peak(device)
        print(f"built and saved the models in {time.perf_counter() - start:.1f} s")

        hand = HandWritten(sd_dir, blip_dir, device, args.tokens)
        # First calls of each batch shape pay for kernel selection and allocator growth: warm up
        # with one item and with a full batch, so no way is timed with another's warm-up.
        for count in (1, args.batch):
            hand.captions(hand.images(prompts[:count], seeds[:count], args.size))
        results = [run_one_at_a_time(hand, prompts, seeds, args.size)]
        results.append(run_hand_batched(hand, prompts, seeds, args.size, args.batch))
        del hand
        reset_peak(device)

        painter, captioner = load_genarun(sd_dir, blip_dir, device, args.size, args.batch)
        for count in (1, args.batch):
            run_genarun(painter, captioner, prompts[:count], seeds[:count], args.tokens, device)
        reset_peak(device)
        results.append(run_genarun(painter, captioner, prompts, seeds, args.tokens, device))
        report(results, args.n)
        print(f"\nfirst captions: {results[2].captions[:2]}")
    finally:
        if args.keep is None:
            shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
