"""Benchmark: trajectories (text to image, image to text, every output embedded), three ways.

R runs x S steps of a two-model network, SD-Turbo (512x512, 1 step) then BLIP-base, with every
output embedded by a CLIP-size model (open_clip ViT-B-32); all real-size architectures with
random weights built locally (no download), so their speed is that of the real models:

  (a) one invocation at a time: PANIC-TDA's engine design, each run stepping on its own;
  (b) a hand-written lockstep loop: at each step all runs' inputs go to the model in batches,
      then all outputs to the embedder;
  (c) genarun: a tree with a `cycle` node and a `matrix` of R seeds, run by the executor
      (lockstep batching across runs, steps and embeddings committed to SQLite as they finish).

Models are loaded and warmed up before timing in every way. Prints steps/s and the ratios
(targets: (c) >= 0.85x (b), (c) >= 4x (a)), and how many of (b)'s and (c)'s outputs agree.

    python bench/gpu_trajectories.py                                        # GPU: 64 runs x 10 steps
    python bench/gpu_trajectories.py --device cpu --runs 4 --steps 2 --size 64 --tiny   # smoke run

`--compile-captioner MODE` adds a genarun way per batch size whose captioner has `compile: MODE`
(its image encoder and its text decoding, the latter through transformers' static cache:
genarun/models/static_decoding.py), warmed up (compiled) before the rounds; at x32 genarun's
two halves of the runs overlap (the painter paints one while the captioner captions the other).
`--compile-painter MODE` compiles the painter in that way too (UNet and VAE decoder, with
`channels_last`), or alone in it without `--compile-captioner`.

`--timeline` also prints, for each model call, the CPU seconds the process's other threads used
while its batches ran (bench/timeline.py: what competed with it for the GIL), and
`--switch-intervals MS ...` adds a genarun way per GIL switch interval.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for folder in (str(REPO), str(BENCH)):
    if folder not in sys.path:
        sys.path.insert(0, folder)  # runnable from a checkout; gpu_images' builders by import

import watchdog  # noqa: E402
from gpu_images import HandWritten, build_blip, build_sd, dtypes, sync  # noqa: E402
from timeline import Timeline  # noqa: E402
from trajectory_tree import cycle_tree  # noqa: E402

PROMPT = "a lighthouse on a cliff at dusk, oil painting"


@dataclass
class Way:
    name: str
    seconds: float = 0.0
    invocations: int = 0
    embeddings: int = 0
    captions: dict[int, list[str]] = field(default_factory=dict)  # run -> captions
    parts: dict[str, float] = field(default_factory=dict)  # seconds per model call kind


class Timed:
    """Adds a block's seconds (GPU work included) to `way.parts[name]`."""

    def __init__(self, way: Way, name: str, device: str) -> None:
        self.way, self.name, self.device = way, name, device

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        sync(self.device)
        self.way.parts[self.name] = (
            self.way.parts.get(self.name, 0.0) + time.perf_counter() - self.start
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=512, help="image width and height")
    parser.add_argument(
        "--batches",
        type=int,
        nargs="+",
        default=[32, 64],
        help="most items per model call; the hand loops and genarun run at each",
    )
    parser.add_argument(
        "--cohorts",
        type=int,
        default=2,
        help="cohorts of the pipelined hand loop (0: leave it out)",
    )
    parser.add_argument("--tokens", type=int, default=20, help="caption length in tokens")
    parser.add_argument("--tiny", action="store_true", help="small architectures (smoke run)")
    parser.add_argument(
        "--skip-one-at-a-time", action="store_true", help="skip (a) (slow on big runs)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[4],
        help="genarun model threads; several values: one (c) each",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="alternating rounds of (b) and (c); medians are compared",
    )
    parser.add_argument(
        "--providers",
        action="store_true",
        help="also time one batch per model through genarun's providers alone and by hand",
    )
    parser.add_argument(
        "--executors",
        nargs="+",
        choices=["local", "ray"],
        default=["local"],
        help="genarun's executors to time, alternating in one process (ray: `--executor ray`, "
        "a local Ray started here, one actor per model sharing the GPU; issue 16's GPU figure)",
    )
    parser.add_argument(
        "--ray-batches",
        type=int,
        nargs="+",
        help="batch sizes of the Ray comparison (default: the largest of --batches); each "
        "max_batch is another set of model actors on the GPU",
    )
    parser.add_argument(
        "--ray-gpus",
        type=float,
        nargs=3,
        default=[0.4, 0.3, 0.3],
        metavar=("PAINTER", "CAPTIONER", "EMBEDDER"),
        help="each model actor's share of the GPU under --executors ray (ray_num_gpus)",
    )
    parser.add_argument(
        "--ray-actors",
        nargs="+",
        choices=["per-model", "per-gpu"],
        default=["per-model"],
        help="the Ray executor's actor placements to time, one Ray way each (`ray_actors`): "
        "per-model, an actor per model; per-gpu, one actor holding every model on the GPU "
        "(one CUDA context, as the local executor). Between two, the first's actors are ended "
        "and the GPU's memory waited for",
    )
    parser.add_argument(
        "--ray-only",
        action="store_true",
        help="with --executors local ray: only the Ray comparison (with its own local "
        "rounds, see --ray-mode); no hand loops, no other local rounds",
    )
    parser.add_argument(
        "--ray-mode",
        choices=["separate", "alternate"],
        default="separate",
        help="separate (default): all Ray rounds, then Ray shut down (its actors' processes and "
        "the GPU memory they hold gone), then all local rounds, so neither executor runs beside "
        "the other's models; alternate: Ray and local rounds alternate with Ray's actors alive "
        "throughout (drift touches both alike, but on one GPU each holds memory the other needs)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        help="seconds; past them print every thread's stack and Ray's state, save the figures "
        "so far (--json) and exit 3 (for a lent machine's time limit)",
    )
    parser.add_argument(
        "--json", type=Path, help="write every figure here as JSON (also after each way)"
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="record when each of genarun's model batches ran; print busy and idle times",
    )
    parser.add_argument(
        "--switch-intervals",
        type=float,
        nargs="+",
        metavar="MS",
        help="also run genarun with the interpreter's GIL switch interval set to each of these "
        "(milliseconds; Python's default is 5): one (c) way each",
    )
    parser.add_argument(
        "--compile-captioner",
        choices=["true", "reduce-overhead", "max-autotune"],
        help="also run genarun with the captioner compiled (model option `compile`): one (c) "
        "way per batch size, beside the plain ones",
    )
    parser.add_argument(
        "--compile-painter",
        choices=["true", "reduce-overhead", "max-autotune"],
        help="compile the painter too (`compile: MODE`, `channels_last: true`) in the compiled "
        "way (with --compile-captioner) or in a compiled way of its own",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile genarun's scheduler thread; print its top functions",
    )
    return parser.parse_args(argv)


def build_clip(folder: Path, *, tiny: bool, device: str) -> tuple[Path, str]:
    """A CLIP-size open_clip model with random weights as a .pt checkpoint; returns (file, arch)."""
    import open_clip
    import torch

    arch = "ViT-B-32"
    if tiny:
        from genarun.models.tiny.clip import register_arch

        register_arch()
        arch = "genarun-tiny-clip"
    torch.manual_seed(2)
    model = open_clip.create_model(arch, pretrained=None, device=device)
    path = folder / "clip.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    return path, arch


class HandClip:
    """open_clip directly: the embedder of ways (a) and (b)."""

    def __init__(self, path: Path, arch: str, device: str) -> None:
        import open_clip

        self.device = device
        precision = "fp16" if device.startswith("cuda") else "fp32"
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=str(path), precision=precision, device=device
        )
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(arch)

    def texts(self, texts: list[str]) -> Any:
        import torch

        with torch.inference_mode():
            features = self.model.encode_text(self.tokenizer(texts).to(self.device))
            return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()

    def images(self, images: list[Any]) -> Any:
        import torch

        dtype = self.model.visual.conv1.weight.dtype  # low precision leaves embeddings in fp32
        pixels = torch.stack([self.preprocess(im.convert("RGB")) for im in images]).to(
            self.device, dtype=dtype
        )
        with torch.inference_mode():
            features = self.model.encode_image(pixels)
            return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()


def run_seeds(runs: int) -> tuple[list[int], list[int]]:
    """The matrix seeds of the genarun tree and the seeds its cycle node derives from them."""
    from genarun.run.seeds import derive_seed

    matrix = list(range(1, runs + 1))
    return matrix, [derive_seed(s, "traj", ()) for s in matrix]


def one_at_a_time(
    models: HandWritten, clip: HandClip, seeds: list[int], steps: int, size: int
) -> Way:
    """(a): each run steps on its own; every model call holds one item."""
    way = Way("(a) one at a time")
    sync(models.device)
    start = time.perf_counter()
    for run, seed in enumerate(seeds):
        current: Any = PROMPT
        clip.texts([PROMPT])
        for step in range(steps):
            if step % 2 == 0:
                current = models.images([current], [seed], size)[0]
                clip.images([current])
            else:
                current = models.captions([current])[0]
                clip.texts([current])
                way.captions.setdefault(run, []).append(current)
            way.invocations += 1
            way.embeddings += 1
    sync(models.device)
    way.seconds = time.perf_counter() - start
    return way


def lockstep(
    models: HandWritten, clip: HandClip, seeds: list[int], steps: int, size: int, batch: int
) -> Way:
    """(b): all runs' same step in batches of `batch`, then their embeddings."""
    way = Way(f"(b) hand lockstep x{batch}")
    sync(models.device)
    start = time.perf_counter()
    current: list[Any] = [PROMPT] * len(seeds)
    device = models.device
    for i in range(0, len(seeds), batch):
        with Timed(way, "embed_text", device):
            clip.texts(current[i : i + batch])
    for step in range(steps):
        out: list[Any] = []
        for i in range(0, len(seeds), batch):
            chunk = current[i : i + batch]
            if step % 2 == 0:
                with Timed(way, "image", device):
                    images = models.images(chunk, seeds[i : i + batch], size)
                with Timed(way, "embed_image", device):
                    clip.images(images)
                out += images
            else:
                with Timed(way, "caption", device):
                    captions = models.captions(chunk)
                with Timed(way, "embed_text", device):
                    clip.texts(captions)
                out += captions
        current = out
        if step % 2 == 1:
            for run, caption in enumerate(current):
                way.captions.setdefault(run, []).append(caption)
        way.invocations += len(seeds)
        way.embeddings += len(seeds)
    sync(models.device)
    way.seconds = time.perf_counter() - start
    return way


def tree_text(
    sd_dir: Path,
    blip_dir: Path,
    clip_path: Path,
    arch: str,
    matrix_seeds: list[int],
    steps: int,
    size: int,
    tokens: int,
    batch: int,
    ray_gpus: list[float] | None = None,
    captioner_compile: str | None = None,
    painter_compile: str | None = None,
) -> str:
    import json

    models: dict[str, dict[str, Any]] = {
        "painter": {
            "provider": "diffusers",
            "id": str(sd_dir),
            "options": {
                "steps": 1,
                "guidance": 0.0,
                "width": size,
                "height": size,
                "max_batch": batch,
            },
        },
        "captioner": {
            "provider": "transformers",
            "id": str(blip_dir),
            "options": {"max_batch": batch},
        },
        "embedder": {"provider": "open_clip", "id": str(clip_path), "options": {"arch": arch}},
    }
    if captioner_compile is not None:
        models["captioner"]["options"]["compile"] = (
            True if captioner_compile == "true" else captioner_compile
        )
    if painter_compile is not None:
        models["painter"]["options"]["compile"] = (
            True if painter_compile == "true" else painter_compile
        )
        models["painter"]["options"]["channels_last"] = True  # the best compiled painter
    if ray_gpus is not None:  # local paths have no catalog size: each actor's share is given
        for name, share in zip(("painter", "captioner", "embedder"), ray_gpus, strict=True):
            models[name]["options"]["ray_num_gpus"] = share
    tree = cycle_tree(
        "bench-trajectories",
        models,
        matrix_seeds,
        start=PROMPT,
        steps=steps,
        tokens=tokens,
        settings={"caption": {"min_tokens": tokens, "temperature": 0.0}},
    )
    return json.dumps(tree, indent=1)


def with_genarun(
    work: Path,
    text: str,
    device: str,
    batch: int,
    name: str,
    workers: int = 4,
    profile: bool = False,
    executor: str = "local",
    ray_actors: str | None = None,
) -> tuple[Way, Any]:
    import cProfile
    import pstats

    from genarun.run.runner import RunOptions, run_tree

    path = work / f"{name}.json"
    path.write_text(text)
    profiler = cProfile.Profile() if profile else None
    sync(device)
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    outcome = run_tree(
        path,
        RunOptions(
            db=work / f"{name}.db",
            out=work / "out",
            device=device,
            batch_size=batch,
            workers=workers,
            executor=executor,
            ray_actors=ray_actors,
        ),
    )
    if profiler:
        profiler.disable()
    sync(device)
    label = (
        f"(c) genarun x{batch} w{workers}"
        if executor == "local"
        else f"(r) genarun ray {ray_actors or 'per-model'} x{batch}"
    )
    way = Way(label, seconds=time.perf_counter() - start)
    if outcome.status != "completed":  # an exception: the Ray rounds report it and go on
        raise RuntimeError(f"genarun run failed: {outcome.failures[:3]}")
    print(f"{way.name}: {way.seconds:.2f} s")
    for stat in outcome.model_stats:
        way.parts[stat["task"]] = stat["seconds"]  # busy time; with several threads they overlap
        # Below the batch size: the batcher halved batches after failures (out of memory).
        way.parts[f"{stat['task']} mean batch"] = stat["mean_batch"]
        print(
            f"  {stat['model'][-40:]:>40} {stat['task']:<12} {stat['batches']:>4} batches {stat['items']:>5} items (mean {stat['mean_batch']}) busy {stat['seconds']:.2f} s"
        )
    if profiler:
        stats = pstats.Stats(profiler).sort_stats("tottime")
        stats.print_stats(25)
        stats.sort_stats("cumulative").print_stats(25)
    return way, outcome


def genarun_captions(
    work: Path, name: str, outcome: Any, matrix_seeds: list[int]
) -> dict[int, list[str]]:
    from genarun.store.db import Store
    from genarun.store.trajectories import stored_steps

    store = Store(work / f"{name}.db")
    captions: dict[int, list[str]] = {}
    for state in outcome.runs:
        run = matrix_seeds.index(state.seed)
        captions[run] = [s["value"] for s in stored_steps(store, state.id) if s["kind"] == "text"]
    store.close()
    return captions


def providers_alone(
    text: str, hand: HandWritten, clip: HandClip, seeds: list[int], args: argparse.Namespace
) -> None:
    """One batch per model through genarun's providers alone (no executor) and by hand: what
    the provider costs apart from scheduling."""
    import json

    from genarun.models.base import Invocation
    from genarun.models.cache import model_cache
    from genarun.models.catalog import resolve_model

    aliases = json.loads(text)["models"]
    loaded = {
        name: model_cache().get(resolve_model(name, aliases), args.device) for name in aliases
    }
    chunk = seeds[: max(args.batches)]
    caption = {"max_tokens": args.tokens, "min_tokens": args.tokens, "temperature": 0.0}

    def timed(label: str, call: Any) -> Any:
        sync(args.device)
        start = time.perf_counter()
        for _ in range(3):
            out = call()
        sync(args.device)
        print(
            f"  {label:<28} {(time.perf_counter() - start) / 3 * 1000:8.1f} ms per batch of {len(chunk)}"
        )
        return out

    print("providers alone vs by hand:")
    images = timed(
        "genarun image",
        lambda: loaded["painter"].run("image", [Invocation("image", PROMPT, s) for s in chunk]),
    )
    timed("hand image", lambda: hand.images([PROMPT] * len(chunk), chunk, args.size))
    timed(
        "genarun caption",
        lambda: loaded["captioner"].run(
            "caption",
            [Invocation("caption", im, s, caption) for im, s in zip(images, chunk, strict=True)],
        ),
    )
    timed("hand caption", lambda: hand.captions(images))
    if args.profile:
        import cProfile
        import pstats

        for label, call in (
            (
                "genarun caption",
                lambda: loaded["captioner"].run(
                    "caption",
                    [
                        Invocation("caption", im, s, caption)
                        for im, s in zip(images, chunk, strict=True)
                    ],
                ),
            ),
            ("hand caption", lambda: hand.captions(images)),
        ):
            profiler = cProfile.Profile()
            profiler.enable()
            call()
            sync(args.device)
            profiler.disable()
            print(f"--- {label}")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
    timed(
        "genarun embed_image",
        lambda: loaded["embedder"].run(
            "embed_image",
            [Invocation("embed_image", im, s) for im, s in zip(images, chunk, strict=True)],
        ),
    )
    timed("hand embed_image", lambda: clip.images(images))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    matrix_seeds, seeds = run_seeds(args.runs)
    report: dict[str, Any] = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "device": torch.cuda.get_device_name(args.device)
        if args.device.startswith("cuda")
        else "cpu",
        "torch": torch.__version__,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    with tempfile.TemporaryDirectory(prefix="genarun-bench-") as tmp:
        bench = Bench(args, Path(tmp), matrix_seeds, seeds, report)
        watchdog.start(args.deadline, bench.save)
        bench.build()
        if not args.ray_only:
            bench.local_rounds()
            summarize(bench.ways, bench.timelines, args, report)
        if "ray" in args.executors:
            # Last: a local Ray's start and its actors' model loads come after every local
            # figure is printed, so a Ray that cannot start costs none of them.
            bench.ray_rounds()
            summarize(bench.ways, bench.timelines, args, report)


class Bench:
    """The models, the hand-written references and genarun's runs of one benchmark."""

    def __init__(
        self,
        args: argparse.Namespace,
        work: Path,
        matrix_seeds: list[int],
        seeds: list[int],
        report: dict[str, Any],
    ) -> None:
        self.args, self.work = args, work
        self.matrix_seeds, self.seeds = matrix_seeds, seeds
        self.batches = sorted(set(args.batches))
        self.ways: list[Way] = []
        self.timelines: dict[str, list[dict[str, float]]] = {}
        self.report = report

    def build(self) -> None:
        import torch

        args, work = self.args, self.work
        image_dtype, caption_dtype = dtypes(args.device)
        print(
            f"building random-weight models ({'tiny' if args.tiny else 'SD-Turbo + BLIP-base + ViT-B-32'}) on {args.device} ...",
            flush=True,
        )
        build_sd(work / "sd", real=not args.tiny, device=args.device, dtype=image_dtype)
        build_blip(
            work / "blip",
            real=not args.tiny,
            device=args.device,
            dtype=caption_dtype,
            size=args.size,
        )
        self.clip_path, self.arch = build_clip(work, tiny=args.tiny, device=args.device)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        if args.ray_only:  # the Ray rounds warm up both executors themselves
            return
        # Warm-ups at every batch size: genarun's first run also loads its models into the
        # process-wide cache (and compiles a compiled captioner at that batch).
        for batch in self.batches:
            self.warm_up(batch, "local")
            if compiling(args):
                self.warm_up(batch, "local", compiled=True)
        self.hand = HandWritten(work / "sd", work / "blip", args.device, args.tokens)
        self.clip = HandClip(self.clip_path, self.arch, args.device)
        for batch in self.batches:
            lockstep(self.hand, self.clip, self.seeds[: min(batch, args.runs)], 2, args.size, batch)
        if args.providers:
            providers_alone(
                self.tree(self.batches[-1], self.matrix_seeds, args.steps),
                self.hand,
                self.clip,
                self.seeds,
                args,
            )

    def tree(
        self,
        batch: int,
        runs: list[int],
        steps: int,
        executor: str = "local",
        compiled: bool = False,
    ) -> str:
        args = self.args
        return tree_text(
            self.work / "sd",
            self.work / "blip",
            self.clip_path,
            self.arch,
            runs,
            steps,
            args.size,
            args.tokens,
            batch,
            args.ray_gpus if executor == "ray" else None,
            args.compile_captioner if compiled else None,
            args.compile_painter if compiled else None,
        )

    def warm_up(
        self, batch: int, executor: str, compiled: bool = False, ray_actors: str | None = None
    ) -> None:
        began = time.perf_counter()
        text = self.tree(
            batch, self.matrix_seeds[: min(batch, self.args.runs)], 2, executor, compiled
        )
        with_genarun(
            self.work,
            text,
            self.args.device,
            batch,
            # Its own database per placement: a later warm-up of the same tree would find
            # every execution stored and load nothing.
            f"warmup-{executor}{'-compiled' if compiled else ''}{'-' + ray_actors if ray_actors else ''}",
            executor=executor,
            ray_actors=ray_actors,
        )
        what = f", compiled:{compiled_suffix(self.args)}" if compiled else ""
        what += f", actors {ray_actors}" if ray_actors else ""
        print(f"  warm-up ({executor}, batch {batch}{what}): {time.perf_counter() - began:.1f} s")
        if compiled:
            print(f"  {compiled_state(text, self.args.device)}", flush=True)

    def local_rounds(self) -> None:
        """(a) once, then rounds of (b), (p) and (c); the ways alternate, so a slower or
        faster spell of the machine touches all of them."""
        import torch
        from gpu_hand_loops import pipelined

        args, hand, clip, seeds = self.args, self.hand, self.clip, self.seeds
        if not args.skip_one_at_a_time:
            self.ways.append(one_at_a_time(hand, clip, seeds, args.steps, args.size))
        for round_ in range(args.repeat):
            for batch in self.batches:
                self.ways.append(lockstep(hand, clip, seeds, args.steps, args.size, batch))
            if args.cohorts:
                way = Way(f"(p) hand pipelined {args.cohorts} cohorts")
                self.ways.append(
                    pipelined(
                        way, hand, clip, seeds, args.steps, args.size, args.cohorts, PROMPT, sync
                    )
                )
                print(f"{way.name}: {way.seconds:.2f} s")
            for batch in self.batches:
                for i, workers in enumerate(args.workers):
                    self.genarun(batch, "local", workers, f"bench{round_}_{batch}_{i}", round_)
                for ms in args.switch_intervals or []:
                    label = f"bench{round_}_{batch}_si{ms:g}".replace(".", "_")
                    self.genarun(batch, "local", args.workers[0], label, round_, ms)
                if compiling(args):
                    label = f"bench{round_}_{batch}_cc"
                    self.genarun(batch, "local", args.workers[0], label, round_, compiled=True)
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()

    def ray_rounds(self) -> None:
        """Issue 16: `--executor ray` against the local executor, same trees; by default Ray's
        rounds then, with Ray shut down, the local ones (`--ray-mode`)."""
        import gc

        import torch

        from genarun.models.cache import model_cache

        args = self.args
        batches = sorted(set(args.ray_batches or [self.batches[-1]]), reverse=True)
        # The actors' models live in their own processes, beside this one's: the hand loops'
        # models and every local model copy go first, so both fit on the GPU at once.
        self.__dict__.pop("hand", None)
        self.__dict__.pop("clip", None)
        model_cache().clear()
        gc.collect()
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        if args.ray_mode == "alternate":
            self._alternate(batches)
        else:
            self._separate(batches)

    def _alternate(self, batches: list[int]) -> None:
        args = self.args
        try:
            for batch in batches:
                self.warm_up(batch, "local")
                for placement in args.ray_actors:
                    self.warm_up(batch, "ray", ray_actors=placement)
                print(f"  Ray after its warm-ups: {watchdog.ray_state()}", flush=True)
            for round_ in range(args.repeat):
                for batch in batches:
                    for placement in args.ray_actors:
                        self.ray_way(batch, round_, placement)
                    self.genarun(batch, "local", args.workers[0], f"loc{round_}_{batch}", round_)
        except Exception as exc:  # the local figures stand; say what Ray did
            print(f"the Ray executor failed, its figures are left out: {exc!r}")
            traceback.print_exc()

    def _separate(self, batches: list[int]) -> None:
        """On one GPU, the 01:13 UTC H100 run's local executor halved its batches (26.7 items
        on average instead of 64) beside the Ray actors' reserved memory, and Ray's warm-up
        halved its painter's beside the driver's. So: Ray's rounds first, while this process
        holds no model; then Ray shut down, which ends its actors' processes and frees their
        memory (waited for: the GPU's free memory back to what it was before); then the local
        executor's rounds, alone. Each way records the GPU's free memory before it ran."""
        args = self.args
        free_before = gpu_free(args.device)
        try:
            for i, placement in enumerate(args.ray_actors):
                if i:  # the last placement's actors and their memory gone first
                    self.report[f"ray_released_before_{placement}"] = release_actors(
                        args.device, free_before
                    )
                try:
                    for batch in batches:
                        self.warm_up(batch, "ray", ray_actors=placement)
                        print(f"  Ray after its warm-up: {watchdog.ray_state()}", flush=True)
                    for round_ in range(args.repeat):
                        for batch in batches:
                            self.ray_way(batch, round_, placement)
                except Exception as exc:  # the other figures still come; say what Ray did
                    print(
                        f"the Ray executor ({placement}) failed, its figures are left out: {exc!r}"
                    )
                    traceback.print_exc()
        finally:
            self.report["ray_stopped"] = stop_ray(args.device, free_before)
        for batch in batches:
            self.warm_up(batch, "local")
        for round_ in range(args.repeat):
            for batch in batches:
                self.genarun(batch, "local", args.workers[0], f"loc{round_}_{batch}", round_)

    def ray_way(self, batch: int, round_: int, placement: str) -> None:
        name = f"ray{round_}_{batch}_{placement.replace('-', '_')}"
        self.genarun(batch, "ray", self.args.workers[0], name, round_, ray_actors=placement)

    def genarun(
        self,
        batch: int,
        executor: str,
        workers: int,
        name: str,
        round_: int,
        switch_ms: float | None = None,
        compiled: bool = False,
        ray_actors: str | None = None,
    ) -> None:
        import torch

        args = self.args
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()  # what the last way reserved, for the next
        free = gpu_free(args.device)  # what the other executor's processes left (fairness)
        timeline = Timeline()
        began = time.perf_counter()
        cpu = time.thread_time()
        if args.timeline:
            timeline.__enter__()
        interval = sys.getswitchinterval()
        if switch_ms is not None:
            sys.setswitchinterval(switch_ms / 1000)
        try:
            text = self.tree(batch, self.matrix_seeds, args.steps, executor, compiled)
            way, outcome = with_genarun(
                self.work,
                text,
                args.device,
                batch,
                name,
                workers,
                args.profile and round_ == 0 and executor == "local" and not self.timelines,
                executor,
                ray_actors,
            )
        finally:
            sys.setswitchinterval(interval)
            if args.timeline:
                timeline.__exit__()
        if switch_ms is not None:
            way.name += f" si{switch_ms:g}ms"
        if compiled:
            way.name += compiled_suffix(args)
            print(f"  {compiled_state(text, args.device)}")
        scheduler_cpu = time.thread_time() - cpu
        way.parts["scheduler cpu"] = scheduler_cpu
        if free is not None:
            way.parts["gpu free GiB before"] = free
        if args.timeline:
            summary = timeline.summary(began, began + way.seconds)
            summary["scheduler cpu"] = round(scheduler_cpu, 3)
            # Per model call: its median seconds, and the CPU seconds other threads used
            # meanwhile (what competed with it for the GIL; bench/timeline.py).
            for task, row in timeline.beside_summary().items():
                print(f"  {task:<12} beside: {row}")
                summary.update({f"{task} {key}": value for key, value in row.items()})
            self.timelines.setdefault(way.name, []).append(summary)
            print(f"  timeline: {summary}")
        way.captions = genarun_captions(self.work, name, outcome, self.matrix_seeds)
        self.ways.append(way)
        self.save()

    def save(self) -> None:
        """The figures so far as JSON (--json): a run cut off by its limit keeps them."""
        if self.args.json:
            self.report["ways"] = [
                {"name": w.name, "seconds": round(w.seconds, 3), "parts": w.parts}
                for w in self.ways
            ]
            self.report["timelines"] = self.timelines
            self.args.json.write_text(json.dumps(self.report, indent=1))


def compiling(args: argparse.Namespace) -> bool:
    return bool(args.compile_captioner or args.compile_painter)


def compiled_suffix(args: argparse.Namespace) -> str:
    """What the compiled way's name adds: each compiled model and its mode."""
    suffix = f" captioner {args.compile_captioner}" if args.compile_captioner else ""
    return suffix + (f" painter {args.compile_painter}" if args.compile_painter else "")


def compiled_state(text: str, device: str) -> str:
    """What the compiled models of the tree `text` compiled: each one's guards (fallen back or
    not), and the captioner's static caches by (batch bucket, cache length), one per shape."""
    from genarun.models.cache import model_cache
    from genarun.models.catalog import resolve_model

    models = json.loads(text)["models"]
    parts = []
    for name in ("painter", "captioner"):
        model: Any = model_cache().get(resolve_model(name, models), device)
        guards = [
            f"{g.name}: {'fell back: ' + g.failed if g.failed else 'compiled'}"
            for g in model.compiled
        ]
        parts.append(f"{name} {guards or 'not compiled'}")
        if name == "captioner":
            caches = sorted(getattr(model.decoding, "caches", None) or {})
            parts[-1] += f"; static caches (rows, length): {caches}"
    return "; ".join(parts)


def gpu_free(device: str) -> float | None:
    """GiB free on the GPU, whichever process holds the rest (Ray's actors included); None off
    CUDA."""
    import torch

    if not device.startswith("cuda"):
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return round(free / 2**30, 2)


def release_actors(device: str, free_before: float | None) -> dict[str, Any]:
    """End this process's pooled Ray model actors (Ray stays up), then wait until the GPU's
    free memory is back, so the next placement's actors load beside nothing of the last's."""
    import ray

    from genarun.run.ray_pool import POOL

    POOL.release(ray)
    return wait_for_gpu(device, free_before, "Ray's model actors ended")


def stop_ray(device: str, free_before: float | None, wait: float = 60.0) -> dict[str, Any]:
    """Shut down the Ray this process started (its model actors' processes end with it), then
    wait until the GPU's free memory is back to `free_before` (less 1 GiB of slack), so the
    next rounds do not run beside the actors' memory. Returns what was seen, for the report."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    return wait_for_gpu(device, free_before, "Ray shut down", wait)


def wait_for_gpu(
    device: str, free_before: float | None, what: str, wait: float = 60.0
) -> dict[str, Any]:
    """Wait until the GPU's free memory is back to `free_before` (less 1 GiB of slack), at
    most `wait` seconds; what was seen, for the report."""
    began = time.perf_counter()
    free = gpu_free(device)
    while (
        free is not None
        and free_before is not None
        and free < free_before - 1.0
        and time.perf_counter() - began < wait
    ):
        time.sleep(0.5)
        free = gpu_free(device)
    seen = {
        "gpu_free_gib_before_ray": free_before,
        "gpu_free_gib_after_shutdown": free,
        "waited_s": round(time.perf_counter() - began, 1),
    }
    print(f"  {what}: {seen}", flush=True)
    return seen


def summarize(
    ways: list[Way],
    timelines: dict[str, list[dict[str, float]]],
    args: argparse.Namespace,
    report: dict[str, Any],
) -> None:
    """Print every way, the medians, every ratio and the targets; write the JSON."""
    steps = args.runs * args.steps
    print(
        f"\n{args.runs} runs x {args.steps} steps ({steps} invocations + {steps + args.runs} embeddings), {args.size}px, batches {sorted(set(args.batches))}, {report['device']}"
    )
    print(f"{'way':<34} {'seconds':>9} {'steps/s':>8}")
    for way in ways:
        parts = "  ".join(f"{k} {v:.2f}" for k, v in way.parts.items())
        print(f"{way.name:<34} {way.seconds:>9.2f} {steps / way.seconds:>8.2f}  {parts}")
    medians = {
        name: statistics.median(w.seconds for w in ways if w.name == name)
        for name in dict.fromkeys(w.name for w in ways)
    }
    print("\nmedians over the alternating rounds:")
    for name, seconds in medians.items():
        runs = [round(w.seconds, 2) for w in ways if w.name == name]
        print(f"  {name:<34} {seconds:7.2f} s  {runs}")
    hand_ways = {n: t for n, t in medians.items() if n.startswith("(b)")}
    genarun = {n: t for n, t in medians.items() if n.startswith("(c)")}
    on_ray = {n: t for n, t in medians.items() if n.startswith("(r)")}
    # --ray-only has no hand loop: the local executor is then the reference.
    best_hand = min(hand_ways, key=hand_ways.__getitem__) if hand_ways else None
    best = min(genarun, key=genarun.__getitem__) if genarun else None
    ratios: dict[str, float] = {}
    print(f"\nratios (a way's speed over another's; > 1 is faster); best hand loop: {best_hand}")
    for name in genarun:
        for other in [*hand_ways, *(n for n in medians if n.startswith("(p)"))]:
            ratios[f"{name} / {other}"] = medians[other] / genarun[name]
    for name in genarun:  # the compiled captioner against the plain one, same batch
        plain = re.split(r" (?:captioner|painter) ", name)[0]
        if plain != name and plain in genarun:
            ratios[f"{name} / {plain}"] = genarun[plain] / genarun[name]
    for other in medians:
        if other.startswith("(p)") and best_hand:
            ratios[f"{other} / {best_hand}"] = medians[best_hand] / medians[other]
    one = next((n for n in medians if n.startswith("(a)")), None)
    if one and best:
        ratios[f"{best} / {one}"] = medians[one] / genarun[best]
    for name in on_ray:  # issue 16: the Ray executor against the local one, same batch
        batch_tag = name.rsplit(" ", 1)[-1]
        for local in (n for n in genarun if f" {batch_tag} " in n):
            ratios[f"{name} / {local}"] = genarun[local] / on_ray[name]
        if best_hand:
            ratios[f"{name} / {best_hand}"] = medians[best_hand] / on_ray[name]
    for key, value in ratios.items():
        print(f"  {key:<72} {value:5.2f}x")
    if best_hand and best:
        print(
            f"\ntargets: best genarun / best hand lockstep {medians[best_hand] / genarun[best]:.2f}x"
            f" (>= 1.0), >= 1.2x with overlap; ({best} vs {best_hand})"
        )
    if on_ray and best:
        best_ray = min(on_ray, key=on_ray.__getitem__)
        print(
            f"issue 16: best Ray / best local genarun {genarun[best] / on_ray[best_ray]:.2f}x"
            f" (>= 0.9; {best_ray} vs {best})"
        )
        # Each actor placement against the local executor at the same batch, side by side.
        for name, seconds in on_ray.items():
            tag = f" {name.rsplit(' ', 1)[-1]} "
            local = next((n for n in genarun if tag in n), None)
            if local:
                print(
                    f"  {name:<34} {seconds:7.2f} s  vs {local} {genarun[local]:.2f} s: "
                    f"{genarun[local] / seconds:.2f}x"
                )
    reference = best_hand or best
    b = next((w for w in ways if w.name == reference), None)
    agree: dict[str, str] = {}
    for way in ways:
        if b is None or way.name in agree or way is b or not way.captions:
            continue
        same = sum(b.captions.get(r) == way.captions.get(r) for r in range(args.runs))
        agree[way.name] = f"{same}/{args.runs}"
    print(f"runs whose captions equal {reference}'s: {agree}")
    report.update(
        {
            "ways": [
                {"name": w.name, "seconds": round(w.seconds, 3), "parts": w.parts} for w in ways
            ],
            "medians": medians,
            "ratios": {k: round(v, 3) for k, v in ratios.items()},
            "best_hand": best_hand,
            "best_genarun": best,
            "captions_equal": agree,
            "timelines": timelines,
        }
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}", flush=True)


if __name__ == "__main__":
    main()
