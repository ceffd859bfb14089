"""The `dummy` provider: deterministic and instant, for trying a tree's shape.

Texts derive from a hash of the prompt and seed; images are small deterministic PNGs; text
vectors are hashed bags of words, so texts that share words have nearby vectors. When a node
asks for `parse: json` or `lines`, the dummy answers in that format (a list of short titles,
as many as the first number in the prompt, default 3) so trees that plan lists run end to end;
under a `schema:` it answers with a value valid under the schema (genarun.models.dummy_json).
The spec option `delay` (seconds per invocation) makes it slow on purpose, for tests that
interrupt or kill runs: `{provider: dummy, id: dummy, options: {delay: 0.05}}`; `words` (how
many distinct words its texts use, default 36) makes captions repeat, so a trajectory with a
fixed seed soon enters a loop, as small real models do. `max_ok_batch` makes a larger batch
raise a (simulated) CUDA out-of-memory error, as a GPU would: the executor then halves it.
For fault tests: `load_delay` (seconds) makes loading slow; `fail_on: TEXT` makes every
invocation whose text input (for an image input, its `prompt` setting) contains TEXT raise, as
a model that keeps failing would (`fail_on: ""` fails every one); `fail_while: PATH` fails
every invocation while the file PATH exists (a fault that a fix then removes); `crash_on: TEXT` ends the process instead, as a CUDA error that takes
it down does, but only in a Ray model actor (`GENARUN_RAY_ACTOR`): anywhere else that would end
the driver, so it raises there like `fail_on`. `fail_load: TEXT` makes loading raise with the
message TEXT, as a model whose weights are missing or broken does; `crash_load: true` ends the
process while loading instead, in a Ray model actor only (as `crash_on`). `batch_log: PATH`
appends a line (`TASK SIZE`) to the file PATH as each batch starts, before its delay: a test
waits for it to know that a batch is in flight (and that the run took over Ctrl-C), where a
fixed sleep guessed, and guessed wrong on a slower machine. A tree is data and touches no file
(DESIGN.md, "Security model"): the two options that name a file, `fail_while` and `batch_log`,
work only where the person running sets GENARUN_DUMMY_FILES=1 (the test suite does); elsewhere
a tree naming them is refused at validation, before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from genarun.errors import ModelError
from genarun.models.base import (
    TASKS,
    GeneratedText,
    Invocation,
    LoadedModel,
    ModelSpec,
    Provider,
    mark_prompt_tokens,
)
from genarun.models.catalog import CatalogEntry

if TYPE_CHECKING:
    from genarun.plugins import Registry

WORDS = [
    "amber",
    "river",
    "lantern",
    "quiet",
    "falcon",
    "meadow",
    "copper",
    "whisper",
    "harbor",
    "velvet",
    "ember",
    "orchard",
    "glacier",
    "saffron",
    "thunder",
    "willow",
    "marble",
    "compass",
    "lizard",
    "gecko",
    "sunlit",
    "moss",
    "canyon",
    "tide",
    "paper",
    "garden",
    "signal",
    "mirror",
    "cobalt",
    "feather",
    "silver",
    "dragon",
    "morning",
    "voyage",
    "echo",
    "pebble",
]


def _digest(*parts: Any) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.digest()


def _words(seed_bytes: bytes, count: int, vocabulary: Sequence[str] = WORDS) -> list[str]:
    out: list[str] = []
    block = seed_bytes
    while len(out) < count:
        block = hashlib.sha256(block).digest()
        out.extend(vocabulary[b % len(vocabulary)] for b in block[: count - len(out)])
    return out


def _image_bytes(image: Any) -> bytes:
    return image.convert("RGB").tobytes()


class DummyModel(LoadedModel):
    max_batch = 64

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.dim = int(spec.option_dict.get("dim", 32))
        # Seconds per invocation: a real wait, so tests can interrupt and kill slow runs.
        self.delay = float(spec.option_dict.get("delay", 0))
        self.vocabulary = WORDS[: max(1, int(spec.option_dict.get("words", len(WORDS))))]
        self.max_ok_batch = int(spec.option_dict.get("max_ok_batch", 0)) or None
        self.fail_on = spec.option_dict.get("fail_on")
        self.crash_on = spec.option_dict.get("crash_on")
        self.fail_while = spec.option_dict.get("fail_while")
        self.batch_log = spec.option_dict.get("batch_log")

    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        if self.max_ok_batch is not None and len(batch) > self.max_ok_batch:
            raise RuntimeError(
                f"CUDA out of memory (simulated: batch of {len(batch)} > max_ok_batch "
                f"{self.max_ok_batch})"
            )
        for inv in batch:
            self._maybe_fail(inv)
        if self.batch_log is not None:
            with open(str(self.batch_log), "a", encoding="utf-8") as log:
                log.write(f"{task} {len(batch)}\n")
        if self.delay > 0:
            time.sleep(self.delay * len(batch))
        return [getattr(self, f"_{task}")(inv) for inv in batch]

    def token_counts(
        self, task: str, inv: Invocation, result: Any
    ) -> tuple[int | None, int | None]:
        """Deterministic token counts (genarun.usage.meter): words stand in for tokens, a
        system text's included; an image has no prompt tokens, a vector no completion."""
        prompt: int | None = None
        if task in ("generate", "image", "embed_text"):
            system = inv.settings.get("system") if task == "generate" else None
            prompt = len(str(inv.input).split()) + len(str(system or "").split())
        completion: int | None = None
        if task in ("generate", "caption"):
            completion = getattr(result, "tokens", None)
            if completion is None:  # a format or schema answer: a plain text
                completion = len(re.findall(r"\w+", str(result)))
        return prompt, completion

    def _maybe_fail(self, inv: Invocation) -> None:
        text = inv.input if isinstance(inv.input, str) else str(inv.settings.get("prompt") or "")
        if self.crash_on is not None and str(self.crash_on) in text:
            if os.environ.get("GENARUN_RAY_ACTOR"):
                os._exit(3)  # the process dies mid-batch, as on a CUDA error
            raise RuntimeError(f"simulated crash on {self.crash_on!r} (crash_on)")
        if self.fail_on is not None and str(self.fail_on) in text:
            raise RuntimeError(f"simulated failure on {self.fail_on!r} (fail_on)")
        if self.fail_while is not None and os.path.exists(str(self.fail_while)):
            raise RuntimeError(f"simulated failure while {self.fail_while} exists (fail_while)")

    def _generate(self, inv: Invocation) -> str:
        prompt = str(inv.input)
        fmt = inv.settings.get("format")
        digest = _digest(self.spec.id, prompt, inv.seed, inv.settings.get("system"))
        match = re.search(r"\b(\d{1,2})\b", prompt)
        count = max(1, min(int(match.group(1)) if match else 3, 20))
        schema = inv.settings.get("schema")
        if schema is not None:
            from genarun.models.dummy_json import schema_instance

            return json.dumps(schema_instance(schema, digest, WORDS, count))
        if fmt in ("json", "lines", "yaml"):
            titles = [" ".join(_words(_digest(digest, i), 3)).title() for i in range(count)]
            if fmt == "lines":
                return "\n".join(titles)
            if fmt == "yaml":
                return "\n".join(f"- {t}" for t in titles)
            return json.dumps(titles)
        limit = int(inv.settings.get("max_tokens", 32))
        natural = 12 + digest[0] % 12  # words, standing in for tokens
        count = max(1, min(limit, natural))
        text = " ".join(_words(digest, count, self.vocabulary)).capitalize() + "."
        # Carried on the text too, for the Ray executor's driver (it cannot ask the model).
        words = len(prompt.split()) + len(str(inv.settings.get("system") or "").split())
        return GeneratedText(text, hit_limit=count < natural, tokens=count, prompt_tokens=words)

    def _image(self, inv: Invocation) -> Any:
        import numpy as np
        from PIL import Image

        width = int(inv.settings.get("width") or 64)
        height = int(inv.settings.get("height") or 64)
        rng = np.random.default_rng(
            int.from_bytes(_digest(self.spec.id, inv.input, inv.seed)[:8], "little")
        )
        base = rng.integers(0, 256, size=3)
        ys, xs = np.mgrid[0:height, 0:width]
        pixels = np.stack(
            [(base[c] + xs * (c + 1) * 3 + ys * (3 - c) * 2) % 256 for c in range(3)], axis=-1
        ).astype(np.uint8)
        image = Image.fromarray(pixels, "RGB")
        # Words stand in for tokens, against CLIP's 77 (start and end tokens included), so
        # trees can see a long prompt reported as cut, as a real painter's would be.
        mark_prompt_tokens(image, len(str(inv.input).split()) + 2, 77)
        return image

    def _caption(self, inv: Invocation) -> str:
        digest = _digest(
            self.spec.id,
            hashlib.sha256(_image_bytes(inv.input)).hexdigest(),
            inv.settings.get("prompt"),
        )
        count = max(1, min(int(inv.settings.get("max_tokens", 1024)), 6))  # 6 words naturally
        words = " ".join(_words(digest, count, self.vocabulary))
        return GeneratedText(f"A picture of {words}.", hit_limit=count < 6, tokens=count + 3)

    def _embed_text(self, inv: Invocation) -> Any:
        import numpy as np

        vector = np.zeros(self.dim, dtype=np.float32)
        for word in re.findall(r"\w+", str(inv.input).lower()) or [""]:
            rng = np.random.default_rng(int.from_bytes(_digest(word)[:8], "little"))
            vector += rng.standard_normal(self.dim).astype(np.float32)
        return vector / (np.linalg.norm(vector) or 1.0)

    def _embed_image(self, inv: Invocation) -> Any:
        import numpy as np

        rng = np.random.default_rng(int.from_bytes(_digest(_image_bytes(inv.input))[:8], "little"))
        vector = rng.standard_normal(self.dim).astype(np.float32)
        return vector / np.linalg.norm(vector)


# The options that name a file on this machine (gated by GENARUN_DUMMY_FILES, see above).
FILE_OPTIONS = ("fail_while", "batch_log")


class DummyProvider(Provider):
    name = "dummy"
    uses_torch = False

    def tasks(self, spec: ModelSpec) -> frozenset[str]:
        return spec.tasks or frozenset(TASKS)

    def check(self, spec: ModelSpec) -> None:
        named = [o for o in FILE_OPTIONS if spec.option_dict.get(o) is not None]
        if named and os.environ.get("GENARUN_DUMMY_FILES") != "1":
            raise ModelError(
                f"model '{spec.id}': the dummy option {' and '.join(named)} names a file, which "
                "a tree may not touch; these options are for tests: the person running sets "
                "GENARUN_DUMMY_FILES=1 to allow them"
            )

    def load(self, spec: ModelSpec, device: str) -> LoadedModel:
        self.check(spec)
        time.sleep(float(spec.option_dict.get("load_delay", 0)))
        if spec.option_dict.get("crash_load") and os.environ.get("GENARUN_RAY_ACTOR"):
            os._exit(3)  # the process dies while loading, as on a CUDA error
        if spec.option_dict.get("fail_load") is not None:
            raise RuntimeError(str(spec.option_dict["fail_load"]))
        return DummyModel(spec)

    def weights_present(self, spec: ModelSpec) -> bool | None:
        return True


def register(registry: Registry) -> None:
    registry.add_provider(DummyProvider())
    entries = [
        ("dummy", frozenset(TASKS), "every task: text, images, captions and embeddings"),
        ("dummy-llm", frozenset({"generate"}), "text generation"),
        ("dummy-t2i", frozenset({"image"}), "text to image"),
        ("dummy-i2t", frozenset({"caption"}), "image to text"),
        ("dummy-embed", frozenset({"embed_text", "embed_image"}), "joint text/image embeddings"),
        ("dummy-text-embed", frozenset({"embed_text"}), "text embeddings"),
    ]
    for name, tasks, description in entries:
        registry.add_model(
            CatalogEntry(
                name, "dummy", name, tasks, "dummy", "0 B", f"Deterministic fake: {description}"
            )
        )
