"""Fake GPU models that use the interpreter the way the real ones do (issue 18 items 1-2).

On a GPU, what a model costs the Python process is three kinds of work:
- launches: each torch op runs some Python (the module call, argument parsing) with the GIL
  held, then releases the GIL for the C++ dispatch; its kernel runs later on the GPU. BLIP's
  20 decoding steps are thousands of small kernels, so captioning is bound by this Python
  (launch-bound): 0.41 s a batch of 64 on an H100 alone;
- waits: a sync (`.cpu()`, `.tolist()`, `stream.synchronize()`) sleeps with the GIL released
  until the GPU has caught up; the painter's UNet spends most of its 1.1 s here;
- pre- and post-processing on the CPU: PIL resizing (the GIL released inside the resample),
  numpy, tensors to PIL images, tokenizers.

The fakes do exactly that: a launch is a fixed amount of pure-Python work (calibrated once to
`OP_US` microseconds) followed by a hash of 4 KiB with the GIL released (the dispatch); the GPU
is a clock per thread (a CUDA stream) that each launch advances by its kernel's time and a sync
sleeps until; pre- and post-processing is real PIL and numpy on real 512 px images, done as
the providers do it (the embedder's through `genarun.models.torch_model.map_images`). Streams
never slow each other down (a GPU with room for all): what the fakes measure is the
interpreter, the GIL and the scheduler, not the sharing of the GPU itself.

Outputs are deterministic functions of the inputs and seeds, so every way of running them
must give the same captions and vectors.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from timeline import schedstat

OP_US = 15.0  # Python per torch op (module call and argument handling), held GIL
_DISPATCH = b"\0" * 4096  # hashlib releases the GIL for data of 2 KiB or more


@dataclass(frozen=True)
class Shape:
    """How one kind of model call uses the interpreter and the (fake) GPU, per batch of 64
    where it scales with the batch. Figures chosen after the H100 runs of bench/RESULTS.md."""

    task: str
    ops: int  # torch ops launched per call (per decoding step for a decoder)
    gpu_s: float  # GPU time of the call, for a batch of 64
    steps: int = 1  # decoding steps, each ending in a sync (generate's stopping check)


PAINT = Shape("image", ops=1800, gpu_s=1.05)  # text encoder + UNet + VAE at 512 px, 1 step
CAPTION = Shape("caption", ops=500, gpu_s=0.10, steps=20)  # BLIP-base: 20 tokens
EMBED_IMAGE = Shape("embed_image", ops=250, gpu_s=0.03)  # ViT-B-32
EMBED_TEXT = Shape("embed_text", ops=200, gpu_s=0.01)


@dataclass
class Spent:
    """Where one call's launches and syncs spent their wall time, from the thread's scheduler
    statistics (Linux): running on a core, runnable but waiting for a core, asleep in a sync
    (the GPU), and the rest, which is blocked waiting for the GIL (the launches never block
    otherwise). Telling the GIL from the cores is what a busy machine with few cores cannot do
    from wall times alone."""

    wall: float = 0.0
    cpu: float = 0.0
    core_wait: float = 0.0
    gpu_wait: float = 0.0

    @property
    def gil_wait(self) -> float:
        return max(0.0, self.wall - self.cpu - self.core_wait - self.gpu_wait)


class _Interpreter:
    """The calibrated pure-Python work of one op."""

    loops = 0

    @classmethod
    def calibrate(cls) -> None:
        if cls.loops:
            return
        # Thread CPU time, fastest of a few: on a busy machine wall time would count the
        # moments the thread waited for a core, and the ops would come out too short.
        n = 20_000
        fastest = float("inf")
        for _ in range(5):
            began = time.thread_time()
            _spin(n)
            fastest = min(fastest, time.thread_time() - began)
        cls.loops = max(1, int(n * OP_US * 1e-6 / max(fastest, 1e-9)))


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


class FakeGPU:
    """One clock per thread: the time at which the kernels it has launched will be done."""

    def __init__(self) -> None:
        self._local = threading.local()
        self.spent: dict[str, list[Spent]] = {}  # task -> one per call

    def take_spent(self) -> dict[str, list[Spent]]:
        """The calls' `Spent` since the last take, by task."""
        spent, self.spent = self.spent, {}
        return spent

    def launch(self, ops: int, gpu_s: float) -> None:
        """Launch `ops` kernels taking `gpu_s` in all."""
        _Interpreter.calibrate()
        per_op = gpu_s / max(1, ops)
        loops = _Interpreter.loops
        done = getattr(self._local, "done", 0.0)
        for _ in range(ops):
            _spin(loops)  # the op's Python, GIL held
            hashlib.sha256(_DISPATCH)  # its dispatch, GIL released
            done = max(done, time.perf_counter()) + per_op
        self._local.done = done

    def sync(self) -> float:
        """Wait, with the GIL released, until this thread's kernels are done; the seconds the
        GPU still had to go."""
        left = getattr(self._local, "done", 0.0) - time.perf_counter()
        if left <= 0:
            return 0.0
        time.sleep(left)
        return left  # an overrun (waking up, taking the GIL back) is not the GPU's

    def run(self, shape: Shape, items: int) -> None:
        gpu = shape.gpu_s * items / 64
        before, began = schedstat(), time.perf_counter()
        slept = 0.0
        for _ in range(shape.steps):
            self.launch(shape.ops, gpu / shape.steps)
            slept += self.sync()
        after = schedstat()
        spent = Spent(wall=time.perf_counter() - began, gpu_wait=slept)
        if before is not None and after is not None:
            spent.cpu, spent.core_wait = after[0] - before[0], after[1] - before[1]
        self.spent.setdefault(shape.task, []).append(spent)


GPU = FakeGPU()


class Pixels:
    """Deterministic 512 px images: a few smooth bases, one chosen by the prompt and seed."""

    def __init__(self, size: int) -> None:
        import numpy as np

        ys, xs = np.mgrid[0:size, 0:size]
        self.size = size
        self.bases = [
            np.stack(
                [
                    (k * 37 + xs * (c + 1) + ys * (3 - c) + (xs * ys) // (k + 7)) % 256
                    for c in range(3)
                ],
                axis=-1,
            ).astype(np.uint8)
            for k in range(16)
        ]

    def pick(self, prompt: str, seed: int) -> Any:
        key = hashlib.sha256(f"{prompt}|{seed}".encode()).digest()
        return self.bases[key[0] % len(self.bases)]


class FakeModels:
    """The painter and the captioner: `images` and `captions` as bench/gpu_images.HandWritten
    has them, so the hand-written loops of the GPU bench run them unchanged."""

    device = "cpu"

    def __init__(self, size: int, tokens: int = 20) -> None:
        self.pixels = Pixels(size)
        self.tokens = tokens

    def images(self, prompts: list[str], seeds: list[int], size: int) -> list[Any]:
        import numpy as np
        from PIL import Image

        from genarun.models.base import mark_prompt_tokens
        from genarun.models.pixels import attach_digest

        GPU.run(PAINT, len(prompts))
        # The 8-bit batch copied to the host as one array, then a PIL image per row (diffusers
        # provider's _to_pil) and each prompt's tokens counted (its tokenizer: Python).
        batch = np.stack([self.pixels.pick(p, s) for p, s in zip(prompts, seeds, strict=True)])
        out = []
        for prompt, array in zip(prompts, batch, strict=True):
            image = Image.fromarray(array)
            attach_digest(image, array)
            mark_prompt_tokens(image, len(_tokens(prompt)), 77)
            out.append(image)
        return out

    def captions(self, images: list[Any]) -> list[str]:
        import numpy as np
        from PIL import Image

        # BLIP's processor (torchvision-based in transformers 5): each image resized to 384,
        # then the batch rescaled and normalised at once.
        resized = np.stack(
            [np.asarray(im.convert("RGB").resize((384, 384), Image.BICUBIC)) for im in images]
        )
        pixels = (resized.astype(np.float32) / 255.0 - 0.48) / 0.27
        GPU.run(CAPTION, len(images))
        out = []
        for array in pixels:  # the tokenizer's decode of each row
            word = hashlib.sha256(array[::97, ::89].tobytes()).hexdigest()
            out.append(" ".join(word[i : i + 4] for i in range(0, 4 * self.tokens // 2, 4)))
        return out


class FakeClip:
    """The embedder: `texts` and `images` as bench/gpu_trajectories.HandClip has them."""

    device = "cpu"

    def texts(self, texts: list[str]) -> Any:
        import numpy as np

        tokens = [_tokens(t) for t in texts]  # open_clip's tokenizer: Python per text
        GPU.run(EMBED_TEXT, len(texts))
        return np.stack([_vector(" ".join(t).encode()) for t in tokens])

    def images(self, images: list[Any]) -> Any:
        import numpy as np

        from genarun.models.torch_model import map_images

        pixels = map_images(_clip_preprocess, images)  # as the open_clip provider does
        GPU.run(EMBED_IMAGE, len(images))
        return np.stack([_vector(p[::31, ::29].tobytes()) for p in pixels])


def _clip_preprocess(image: Any) -> Any:
    """open_clip's transform: resize to 224 (bicubic), centre crop, to float, normalise."""
    import numpy as np
    from PIL import Image

    small = image.convert("RGB").resize((224, 224), Image.BICUBIC)
    return (np.asarray(small, np.float32) / 255.0 - 0.45) / 0.27


def _tokens(text: str) -> list[str]:
    return [w.lower().strip(".,") for w in text.split()]


def _vector(data: bytes) -> Any:
    import numpy as np

    seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return v / np.linalg.norm(v)


def register_provider(size: int, tokens: int = 20) -> None:
    """Register the `bench-gil` provider (models fake-painter, fake-captioner, fake-embedder)
    with genarun's registry, running the same fakes as `FakeModels` and `FakeClip`."""
    from genarun.models.base import GeneratedText, LoadedModel, Provider
    from genarun.models.catalog import CatalogEntry
    from genarun.plugins import registry

    models, clip = FakeModels(size, tokens), FakeClip()

    class Loaded(LoadedModel):
        max_batch = 1024

        def __init__(self, spec: Any) -> None:
            self.spec = spec
            # Decoders ask for a high-priority stream (the real captioner does; no-op here).
            self.stream_priority = -1 if spec.id == "fake-captioner" else 0

        def run(self, task: str, batch: Any) -> list[Any]:
            inputs = [inv.input for inv in batch]
            if task == "image":
                return models.images(inputs, [inv.seed for inv in batch], size)
            if task == "caption":
                return [
                    GeneratedText(c, hit_limit=False, tokens=tokens)
                    for c in models.captions(inputs)
                ]
            vectors = clip.texts(inputs) if task == "embed_text" else clip.images(inputs)
            return list(vectors)

    class GilProvider(Provider):
        name = "bench-gil"
        uses_torch = False

        def tasks(self, spec: Any) -> frozenset[str]:
            return frozenset({"image", "caption", "embed_text", "embed_image"})

        def load(self, spec: Any, device: str) -> LoadedModel:
            return Loaded(spec)

        def weights_present(self, spec: Any) -> bool | None:
            return True

    reg = registry()
    if "bench-gil" in getattr(reg, "providers", {}):
        return
    reg.add_provider(GilProvider())
    for name, tasks in (
        ("fake-painter", {"image"}),
        ("fake-captioner", {"caption"}),
        ("fake-embedder", {"embed_text", "embed_image"}),
    ):
        reg.add_model(CatalogEntry(name, "bench-gil", name, frozenset(tasks), "dummy"))
