"""The hand-written references of bench/gpu_trajectories.py that overlap models.

`pipelined`: runs split into cohorts; the painter (text to image, then the image's embedding)
and the captioner (image to text, then the text's embedding) each on its own thread and CUDA
stream, handing cohorts to each other through queues, so the painter paints cohort B while the
captioner captions cohort A. What a careful person writes by hand to keep both models busy.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any


def pipelined(
    way: Any,
    models: Any,
    clip: Any,
    seeds: list[int],
    steps: int,
    size: int,
    cohorts: int,
    prompt: str,
    sync: Callable[[str], None],
) -> Any:
    """Fill `way` (a gpu_trajectories.Way): R runs x `steps`, in `cohorts` cohorts."""
    import torch

    device = models.device
    cuda = device.startswith("cuda")
    n = len(seeds)
    size_of = -(-n // cohorts)
    groups = [list(range(i, min(n, i + size_of))) for i in range(0, n, size_of)]
    # cohort -> its runs' current values (prompt, image or caption)
    current: dict[int, list[Any]] = {c: [prompt] * len(g) for c, g in enumerate(groups)}
    captions: dict[int, list[str]] = {}
    lock = threading.Lock()
    inbox: dict[str, queue.Queue[tuple[int, int] | None]] = {
        "painter": queue.Queue(),
        "captioner": queue.Queue(),
    }
    done = threading.Event()
    left = [len(groups)]
    errors: list[BaseException] = []

    def work(stage: str) -> None:
        stream = torch.cuda.Stream(device) if cuda else None
        try:
            while True:
                job = inbox[stage].get()
                if job is None:
                    return
                cohort, step = job
                runs = groups[cohort]
                values = current[cohort]
                with torch.cuda.stream(stream) if stream is not None else _null():
                    if step == -1:  # the start prompt's embedding
                        clip.texts(values)
                        out = values
                    elif stage == "painter":
                        out = models.images(values, [seeds[r] for r in runs], size)
                        clip.images(out)
                    else:
                        out = models.captions(values)
                        clip.texts(out)
                    if stream is not None:
                        stream.synchronize()
                current[cohort] = out
                if stage == "captioner" and step >= 0:
                    with lock:
                        for r, caption in zip(runs, out, strict=True):
                            captions.setdefault(r, []).append(caption)
                nxt = step + 1
                if nxt >= steps:
                    with lock:
                        left[0] -= 1
                        if left[0] == 0:
                            done.set()
                    continue
                inbox["painter" if nxt % 2 == 0 else "captioner"].put((cohort, nxt))
        except BaseException as exc:
            errors.append(exc)
            done.set()

    sync(device)
    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in inbox]
    for t in threads:
        t.start()
    for c in range(len(groups)):
        inbox["painter"].put((c, -1))  # embed the prompt on the painter's thread, then paint
    done.wait()
    for q in inbox.values():
        q.put(None)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    sync(device)
    way.seconds = time.perf_counter() - start
    way.captions = captions
    way.invocations = n * steps
    way.embeddings = n * (steps + 1)
    return way


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
