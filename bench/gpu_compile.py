"""Benchmark: genarun's opt-in model tuning (compile, channels_last, attention) against plain
diffusers, on SD-Turbo's real-size architecture with random weights (512x512, 1 step).

For each way it times `--rounds` calls of `--batch` images after warm-ups (compiling happens in
the warm-ups), and prints images/s, the speed-up over plain diffusers at the same batch, the
largest pixel difference from plain diffusers' images (same seeds), and the fraction of the
GPU's dense fp16 peak reached, from the FLOPs of one image counted on the architecture
(torch.utils.flop_counter over the text encoder, UNet and VAE decoder).

    python bench/gpu_compile.py                         # GPU: batch 64, 3 rounds
    python bench/gpu_compile.py --device cpu --size 64 --batch 4 --tiny   # smoke run (falls back)
    python bench/gpu_compile.py --captioner --batch 64   # the captioner alone instead (BLIP-base,
                                     # plain vs compiled text decoding: gpu_compile_captioner.py)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for folder in (str(REPO), str(BENCH)):
    if folder not in sys.path:
        sys.path.insert(0, folder)

from gpu_images import (  # noqa: E402
    HandWritten,
    build_blip,
    build_sd,
    dtypes,
    max_pixel_diff,
    timed,
)

PROMPT = "a lighthouse on a cliff at dusk, oil painting"
# Dense fp16/bf16 tensor-core peaks (vendor datasheets, SXM parts, without sparsity).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}

WAYS: dict[str, dict[str, Any]] = {
    "genarun plain": {},
    "genarun channels_last": {"channels_last": True},
    "genarun compile": {"compile": True},
    "genarun compile + channels_last": {"compile": True, "channels_last": True},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--ways", nargs="+", default=list(WAYS), choices=list(WAYS))
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--captioner",
        action="store_true",
        help="time the captioner alone instead, plain vs compiled (bench/gpu_compile_captioner.py)",
    )
    parser.add_argument("--tokens", type=int, default=20, help="with --captioner: caption tokens")
    return parser.parse_args(argv)


def flops_per_image(pipe: Any, size: int, device: str) -> float:
    """FLOPs of one 1-step image (text encoder, UNet, VAE decoder), counted by torch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        pipe(
            prompt=[PROMPT],
            generator=[torch.Generator(device).manual_seed(0)],
            num_inference_steps=1,
            guidance_scale=0.0,
            width=size,
            height=size,
            output_type="pt",
        )
    return float(counter.get_total_flops())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.captioner:
        import gpu_compile_captioner

        forwarded = ["--device", args.device, "--batch", str(args.batch), "--size", str(args.size)]
        forwarded += ["--rounds", str(args.rounds), "--tokens", str(args.tokens)]
        forwarded += ["--tiny"] if args.tiny else []
        forwarded += ["--json", str(args.json)] if args.json else []
        gpu_compile_captioner.main(forwarded)
        return
    import logging

    import diffusers
    import torch
    import transformers

    from genarun.models.base import Invocation, ModelSpec
    from genarun.models.diffusers import DiffusersProvider

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    device = args.device
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    seeds = list(range(100, 100 + args.batch))
    report: dict[str, Any] = {"device": name, "torch": torch.__version__, "batch": args.batch}
    with tempfile.TemporaryDirectory(prefix="genarun-compile-") as tmp:
        work = Path(tmp)
        image_dtype, caption_dtype = dtypes(device)
        build_sd(work / "sd", real=not args.tiny, device=device, dtype=image_dtype)
        build_blip(
            work / "blip", real=not args.tiny, device=device, dtype=caption_dtype, size=args.size
        )
        hand = HandWritten(work / "sd", work / "blip", device, 20)
        flops = flops_per_image(hand.pipe, args.size, device)
        print(f"{name}: {flops / 1e12:.3f} TFLOPs per image (1 step, {args.size}px)")
        report["tflops_per_image"] = flops / 1e12

        def plain() -> list[Any]:
            return hand.images([PROMPT] * args.batch, seeds, args.size)

        plain()  # warm-up
        seconds, reference = timed(plain, args.rounds, device)
        rows = [("plain diffusers (hand)", seconds, 0, None)]
        hand.pipe = hand.blip = None  # free the GPU for the ways below
        torch.cuda.empty_cache() if device.startswith("cuda") else None
        options = {"steps": 1, "guidance": 0.0, "width": args.size, "height": args.size}
        for way in args.ways:
            spec = ModelSpec(
                "diffusers",
                str(work / "sd"),
                way.replace(" ", "-"),
                frozenset({"image"}),
                tuple(sorted({**options, **WAYS[way], "max_batch": args.batch}.items())),
            )
            model = DiffusersProvider().load(spec, device)
            invocations = [Invocation("image", PROMPT, s) for s in seeds]
            began = time.perf_counter()
            model.run("image", invocations)  # warm-up (compiles)
            model.run("image", invocations)
            warm = time.perf_counter() - began
            seconds, images = timed(
                lambda m=model, i=invocations: m.run("image", i), args.rounds, device
            )
            fell_back = [g.name for g in getattr(model, "compiled", []) if g.failed]
            rows.append((way, seconds, max_pixel_diff(reference, images), warm))
            if fell_back:
                print(f"  {way}: fell back to eager for {fell_back}")
            del model
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    base = rows[0][1]
    print(f"\n{'way':<34} {'images/s':>9} {'vs plain':>9} {'max px diff':>12} {'% of peak':>10}")
    report["ways"] = []
    for way, seconds, diff, warm in rows:
        rate = args.batch / seconds
        share = rate * flops / 1e12 / peak * 100 if peak else None
        shown = f"{share:9.1f}%" if share is not None else "       n/a"
        print(f"{way:<34} {rate:>9.1f} {base / seconds:>8.2f}x {diff:>12} {shown}")
        report["ways"].append(
            {
                "way": way,
                "images_per_s": round(rate, 2),
                "speedup_vs_plain": round(base / seconds, 3),
                "max_pixel_diff": diff,
                "peak_fraction": None if share is None else round(share / 100, 4),
                "warmup_s": None if warm is None else round(warm, 1),
            }
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
