"""Benchmark: the captioner alone, plain against `compile` (issue 18 item 3): BLIP-base's real
architecture with random weights, 20 greedy tokens a caption, one batch of `--batch` images.

Ways: transformers' own `generate` by hand (the plain baseline), genarun's captioner plain, and
genarun's captioner with `compile: true` and `compile: reduce-overhead` (its text decoder through
transformers' static cache and compiled generation: genarun/models/static_decoding.py). Each
compiled way's first calls compile (timed apart as its warm-up); then `--rounds` timed calls.
Prints captions/s, the speed-up over genarun plain, and how many captions are token for token
those of genarun plain.

    python bench/gpu_compile_captioner.py                          # GPU: batch 64, 5 rounds
    GENARUN_COMPILE_CPU=1 python bench/gpu_compile_captioner.py --device cpu --tiny --batch 6
        # CPU dry run: compiles with inductor's C++ code (a C compiler needed; else it falls back)
    python bench/gpu_compile.py --captioner ...                   # the same, from gpu_compile
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

from gpu_images import build_blip, dtypes, sync, timed  # noqa: E402

WAYS: dict[str, dict[str, Any]] = {
    "genarun plain": {},
    "genarun compile": {"compile": True},
    "genarun compile reduce-overhead": {"compile": "reduce-overhead"},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--size", type=int, default=512, help="the images' width and height")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--ways", nargs="+", default=list(WAYS), choices=list(WAYS))
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def pictures(count: int, size: int) -> list[Any]:
    """Random RGB images, as a painter's outputs reach the captioner."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    return [
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(count)
    ]


def hand_captions(folder: Path, device: str, dtype: Any, tokens: int) -> Any:
    """transformers' generate by hand, as bench/gpu_images.HandWritten captions."""
    import torch
    from transformers import BlipForConditionalGeneration, BlipProcessor

    processor = BlipProcessor.from_pretrained(folder, local_files_only=True)
    model = (
        BlipForConditionalGeneration.from_pretrained(folder, dtype=dtype, local_files_only=True)
        .to(device)
        .eval()
    )

    def call(images: list[Any]) -> list[str]:
        inputs = processor(images=images, text=[""] * len(images), return_tensors="pt")
        inputs = {
            k: v.to(device, dtype) if v.is_floating_point() else v.to(device)
            for k, v in inputs.items()
        }
        with torch.inference_mode():
            out = model.generate(
                **inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False
            )
        return [t.strip() for t in processor.batch_decode(out, skip_special_tokens=True)]

    return call


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import logging

    import torch
    import transformers

    from genarun.models.base import Invocation, ModelSpec
    from genarun.models.transformers import TransformersProvider

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    transformers.utils.logging.set_verbosity_error()
    device = args.device
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    images = pictures(args.batch, args.size)
    settings = {"max_tokens": args.tokens, "min_tokens": args.tokens, "temperature": 0.0}
    batch = [Invocation("caption", im, 100 + i, settings) for i, im in enumerate(images)]
    report: dict[str, Any] = {
        "device": name,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "batch": args.batch,
        "tokens": args.tokens,
        "ways": [],
    }
    rows: list[tuple[str, float, float | None, str]] = []
    with tempfile.TemporaryDirectory(prefix="genarun-compile-captioner-") as tmp:
        folder = Path(tmp) / "blip"
        _, caption_dtype = dtypes(device)
        build_blip(folder, real=not args.tiny, device=device, dtype=caption_dtype, size=args.size)
        hand = hand_captions(folder, device, caption_dtype, args.tokens)
        hand(images)  # warm-up
        seconds, _ = timed(lambda h=hand: h(images), args.rounds, device)
        rows.append(("transformers generate (hand)", seconds, None, ""))
        hand = None  # its model's memory, for the ways below
        reference: list[tuple[str, int]] | None = None
        for way in args.ways:
            options = {**WAYS[way], "max_batch": args.batch}
            spec = ModelSpec(
                "transformers",
                str(folder),
                way.replace(" ", "-"),
                frozenset({"caption"}),
                tuple(sorted(options.items())),
            )
            model = TransformersProvider().load(spec, device)
            began = time.perf_counter()
            model.run("caption", batch)  # warm-up: compiles, and records the CUDA graphs
            model.run("caption", batch)
            sync(device)
            warm = time.perf_counter() - began
            seconds, out = timed(lambda m=model: m.run("caption", batch), args.rounds, device)
            tokens = [(str(t), t.tokens) for t in out]
            reference = tokens if reference is None else reference
            same = sum(a == b for a, b in zip(reference, tokens, strict=True))
            state = "; ".join(f"{g.name} fell back: {g.failed}" for g in model.compiled if g.failed)
            caches = sorted(getattr(model.decoding, "caches", {}) or {})
            rows.append((way, seconds, warm, f"{same}/{len(tokens)} {state} caches {caches}"))
            del model
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    base = next((s for w, s, _, _ in rows if w == "genarun plain"), rows[0][1])
    print(f"\n{name}, batch {args.batch}, {args.tokens} tokens a caption, {args.rounds} rounds")
    print(f"{'way':<34} {'captions/s':>10} {'s/batch':>8} {'vs plain':>9} {'warm-up':>8}  same")
    for way, seconds, warm, note in rows:
        warm_text = f"{warm:7.1f}s" if warm is not None else "       "
        print(
            f"{way:<34} {args.batch / seconds:>10.1f} {seconds:>8.3f} {base / seconds:>8.2f}x"
            f" {warm_text}  {note}"
        )
        report["ways"].append(
            {
                "way": way,
                "captions_per_s": round(args.batch / seconds, 2),
                "seconds_per_batch": round(seconds, 4),
                "speedup_vs_genarun_plain": round(base / seconds, 3),
                "warmup_s": None if warm is None else round(warm, 1),
                "note": note,
            }
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
