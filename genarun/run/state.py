"""The state of one run while it executes: bindings, outputs, assets and its folder."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.errors import ModelError
from genarun.store.folders import write_json
from genarun.tree.picks import PickRecord, ReplayRandom
from genarun.tree.template_core import field_rng
from genarun.values import EmbeddingRef, ImageRef, to_json, to_plain

if TYPE_CHECKING:
    from genarun.graph.compiled import CompiledTree
    from genarun.models.base import ModelSpec
    from genarun.run.reuse import ReusePlan
    from genarun.store.db import Store
    from genarun.tree.template_core import Compiled


_NO_ITEM = object()  # an entry of a node that is not a foreach item


class Status(StrEnum):
    """How one execution of a node ended (executions.status); equal to its string."""

    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    # Parked on a `Wait` when the run stopped: its dependents did not run; resume re-enters it.
    WAITING = "waiting"


class RunStatus(StrEnum):
    """How a run ended (runs.status, run.json); equal to its string."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    WAITING = "waiting"  # nothing failed, and executions wait on the outside world


@dataclass(slots=True)  # one per execution, kept for the run: no __dict__ beside it
class NodeResult:
    """The outcome of one execution of a node."""

    status: Status | str  # done, failed, skipped, waiting
    value: Any = None
    error: str | None = None  # as stored: the message, then its hint in parentheses
    raw_output: str | None = None  # a failed execution's model text (or rendered text), as JSON
    hint: str | None = None  # how to fix it, when the error says


@dataclass(frozen=True)
class Failure:
    """One failure of a run: an execution's (node and foreach path), or the run's own (node
    None, e.g. a model that could not load); the CLI reports the first."""

    node: str | None
    path: tuple[int, ...]
    message: str
    hint: str | None = None

    @property
    def where(self) -> str:
        """`node[0][2]`, or "" for the run's own failure."""
        return f"{self.node}{''.join(f'[{i}]' for i in self.path)}" if self.node else ""

    @property
    def error(self) -> str:
        """The message with its hint, as stored and shown."""
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def __str__(self) -> str:
        return f"{self.where}: {self.error}" if self.node else self.error

    @classmethod
    def of(cls, node: str, path: tuple[int, ...], result: NodeResult) -> Failure:
        """The failure of a failed execution's result (its stored error ends with its hint)."""
        error = result.error or "failed"
        hint = result.hint
        suffix = f" ({hint})" if hint else ""
        if hint and error.endswith(suffix):
            error = error[: -len(suffix)]
        elif hint and hint in error:
            hint = None  # said inside the message already
        return cls(node, path, error, hint)


@dataclass
class RunState:
    """One run of a compiled tree as it executes: its seed, scope, results and failures."""

    id: str
    compiled: CompiledTree
    store: Store
    seed: int
    seed_is_random: bool
    bindings: dict[str, Any]  # matrix values for this run
    folder: Path
    started: float
    experiment_id: str | None = None
    label: str = ""
    scope: dict[str, Any] = field(default_factory=dict)  # tree vars, matrix values, seed, run
    # Random picks drawn in the tree's vars, by var name (runs.picks, run.json `picks`).
    var_picks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # node id -> foreach path -> result
    results: dict[str, dict[tuple[int, ...], NodeResult]] = field(default_factory=dict)
    # (node id, parent path) -> how many items its foreach gave; absent: never evaluated
    foreach_items: dict[tuple[str, tuple[int, ...]], int] = field(default_factory=dict)
    # (node id, path) -> the foreach item it ran for: run.json `items`, which site exports read
    # (the item, such as an article's title, is an input, in no execution's output)
    foreach_values: dict[tuple[str, tuple[int, ...]], Any] = field(default_factory=dict)
    failed: list[Failure] = field(default_factory=list)
    # ("node[path]", wait key) of each execution parked on a Wait when the run stopped
    waiting: list[tuple[str, str]] = field(default_factory=list)
    # (node id, foreach path) -> the answer token of each human request made by this process:
    # shown once, in the answer URL the CLI prints (only its hash is stored)
    answer_tokens: dict[tuple[str, tuple[int, ...]], str] = field(default_factory=dict)
    counts: dict[str, int] = field(
        default_factory=lambda: {"done": 0, "failed": 0, "skipped": 0, "reused": 0}
    )
    # What the run may take instead of executing (rerun, --only, resume, the cache).
    reuse: ReusePlan | None = None
    _models: dict[str, ModelSpec] = field(default_factory=dict)
    # Every model the run resolved, by the name the tree uses (runs.models).
    models_used: dict[str, ModelSpec] = field(default_factory=dict)
    _assets: set[str] = field(default_factory=set)
    writing: list[ImageRef] = field(default_factory=list)  # images whose PNG is being written

    @property
    def tree_dir(self) -> Path:
        return self.compiled.loaded.path.parent.resolve()

    @property
    def assets(self) -> Path:
        return self.folder / "assets"

    def draw_var(self, name: str, compiled: Compiled, scope: dict[str, Any]) -> Any:
        """Render one tree var and record its picks. A run that takes outputs from another run
        (rerun, --only, resume) replays that run's picks for the var, so what it reuses and
        what it runs anew saw the same draws; a var whose picks changed draws from the seed."""
        stored = self.reuse.var_picks.get(name) if self.reuse is not None else None
        picks: list[PickRecord] = []
        value: Any = None
        replayed = False
        if stored:
            replay = ReplayRandom(stored)
            value = compiled.evaluate(scope, replay, picks)
            replayed = replay.matches(picks)
        if not replayed:
            picks = []
            value = compiled.evaluate(scope, field_rng(self.seed, f"vars.{name}"), picks)
        if picks:
            self.var_picks[name] = [p.to_json() for p in picks]
        return value

    def resolve_model(self, ref: Any) -> ModelSpec:
        from genarun.models.catalog import resolve_model
        from genarun.models.key_hosts import with_key_hosts

        key = json.dumps(ref, sort_keys=True, default=str) if not isinstance(ref, str) else ref
        spec = self._models.get(key)
        if spec is None:
            spec = with_key_hosts(
                resolve_model(ref, self.compiled.loaded.spec.models), self.compiled.loaded.spec
            )
            self._models[key] = spec
            self.models_used[spec.label()] = spec
        return spec

    def models_json(self) -> str:
        """runs.models: each model name the run used -> what it resolved to."""
        if not self.models_used:  # a tree without models: nothing to import for it
            return "{}"
        from genarun.models.weights import resolved

        return json.dumps(
            {name: resolved(spec) for name, spec in sorted(self.models_used.items())},
            ensure_ascii=False,
        )

    def save_image(
        self, image: Any, *, node_id: str, path: tuple[int, ...], seed: int, **metadata: Any
    ) -> ImageRef:
        """Write a PNG with prompt, seed, model and run in its text chunks (on a writer
        thread); return its ref at once (its sha256 waits for the write)."""
        from genarun.run.assets import write_png

        text = {
            f"genarun:{key}": str(value)
            for key, value in {**metadata, "seed": seed, "run": self.id, "node": node_id}.items()
        }
        rel = self.asset_name(node_id, path)
        ref = ImageRef(rel, self.folder, write_png(image, self.folder, rel, text))
        self.writing.append(ref)
        return ref

    def wait_for_assets(self) -> None:
        """Block until every image this run started writing is on disk (errors are the
        nodes' to report: here they are only waited for)."""
        for ref in self.writing:
            with contextlib.suppress(Exception):
                ref.sha256  # noqa: B018
        self.writing.clear()

    def asset_name(self, node_id: str, path: tuple[int, ...]) -> str:
        """A new asset path in this run's folder (relative), unique within the run."""
        name = node_id + "".join(f"-{i}" for i in path)
        rel = f"assets/{name}.png"
        n = 2
        while rel in self._assets:
            rel = f"assets/{name}_{n}.png"
            n += 1
        self._assets.add(rel)
        return rel

    def adopted_asset_name(self, rel: str, node_id: str, path: tuple[int, ...]) -> str:
        """The name for a copy of another run's asset: its own name (`assets/traj-0-3.png`
        tells the step) when this run does not use it yet, else a new one."""
        if rel.startswith("assets/") and rel not in self._assets:
            self._assets.add(rel)
            return rel
        return self.asset_name(node_id, path)

    def claim_asset(self, rel: str) -> None:
        """Mark an existing file of this run's folder as used (resume keeps it)."""
        self._assets.add(rel)

    def load_image(self, value: Any) -> Any:
        """A PIL image from an image output or a path relative to the tree's folder.

        A string may come from a model or an API (`image: "{{ plan.cover }}"`), so it names
        only a file inside the tree's folder, reached without `..` or links: outputs never
        name a file elsewhere on the machine."""
        import io

        from PIL import Image

        from genarun.store.confined import UnsafePath, read_bytes

        if isinstance(value, ImageRef):
            return value.open()
        if isinstance(value, str):
            try:
                data = read_bytes(self.tree_dir, value)
            except UnsafePath:
                raise ValueError(
                    f"image {value[:200]!r} is not an image output or a file inside the tree's "
                    f"folder {self.tree_dir} (a relative path without '..' or symbolic links)"
                ) from None
            except OSError:
                raise ValueError(
                    f"image {value[:200]!r} is not an image output or an existing file "
                    f"in the tree's folder {self.tree_dir}"
                ) from None
            with Image.open(io.BytesIO(data)) as img:
                return img.convert("RGB")
        if hasattr(value, "convert"):
            return value.convert("RGB")
        raise ValueError(f"expected an image, got {type(value).__name__}: {str(value)[:60]!r}")

    def store_embeddings(
        self,
        vectors: list[Any],
        model: str,
        sources: list[str],
        *,
        node_id: str,
        path: tuple[int, ...],
        items: list[int] | None = None,
    ) -> list[EmbeddingRef]:
        import numpy as np

        rows: list[dict[str, Any]] = []
        for i, (vector, source) in enumerate(zip(vectors, sources, strict=True)):
            array = np.asarray(vector, dtype="<f4").ravel()
            rows.append(
                {
                    "run_id": self.id,
                    "node_id": node_id,
                    "path": json.dumps(list(path)),
                    "item": items[i] if items else i,
                    "model": model,
                    "dim": int(array.shape[0]),
                    "vector": array.tobytes(),
                    "source": source[:2000],
                }
            )
        ids = self.store.add_embeddings(rows)
        return [
            EmbeddingRef(id_, model, int(row["dim"])) for id_, row in zip(ids, rows, strict=True)
        ]

    # --- output folder --------------------------------------------------------------------
    def output_tree(self) -> dict[str, Any]:
        """output.json: mirrors the tree; a node with children holds {value, child...};
        a foreach node holds a list with one entry per item."""
        return self._level(self.compiled.roots, ())

    def _level(self, node_ids: list[str], parent_path: tuple[int, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for node_id in node_ids:
            node = self.compiled.nodes[node_id]
            if node.skip_reason:
                continue
            results = self.results.get(node_id, {})
            if node.foreach is not None:
                count = self.foreach_items.get((node_id, parent_path))
                if count is not None:  # one entry per item; an unfinished item is null
                    paths = [(*parent_path, index) for index in range(count)]
                    out[node_id] = [
                        self._entry(node_id, p, self.foreach_values.get((node_id, p), _NO_ITEM))
                        if p in results
                        else None
                        for p in paths
                    ]
                elif parent_path in results:  # its foreach failed: no items
                    out[node_id] = None
                # else it never ran (parent failed or skipped, run stopped first): absent,
                # unlike a foreach over an empty list, which holds []
            elif parent_path in results:
                out[node_id] = self._entry(node_id, parent_path)
        return out

    def _entry(self, node_id: str, path: tuple[int, ...], item: Any = _NO_ITEM) -> Any:
        """One execution's entry: its value; {value, child...} with children; and a foreach
        item's entry names its item (`item`, a reserved id, never a child's), so an article
        is found by its title, not paired with the plan by index."""
        node = self.compiled.nodes[node_id]
        result = self.results[node_id][path]
        value = to_plain(result.value) if result.status == "done" else None
        if not node.children and item is _NO_ITEM:
            return value
        entry: dict[str, Any] = {} if item is _NO_ITEM else {"item": to_plain(item)}
        if node.kind.name != "group":
            entry["value"] = value
        entry.update(self._level(node.children, path))
        return entry

    def write_folder(self, status: str, logs: list[dict[str, Any]]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / "output.json", self.output_tree(), outputs=True)
        write_json(self.folder / "logs.json", logs)
        write_json(self.folder / "run.json", self._run_json(status, ended=time.time()))

    def write_snapshot(self) -> None:
        """output.json with what has finished so far (run.json says `running` and `partial`
        since the start): a run killed from now on leaves them in its folder."""
        write_json(self.folder / "output.json", self.output_tree(), outputs=True)

    def start_folder(self) -> None:
        """Make the run's folder with a copy of the tree, marked as output from the start
        (run.json, status running): nothing that searches for trees takes the copy for one,
        even while the run goes on or after it was killed."""
        from genarun.store.confined import write_file

        source = self.compiled.loaded.path
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / "run.json", self._run_json("running", ended=None))
        # An output.json from the start: the folder always has one, holding what has finished
        # so far (nothing yet; snapshots and the end of the run rewrite it).
        write_json(self.folder / "output.json", {})
        write_file(self.folder, f"tree{source.suffix}", source.read_bytes())

    def _run_json(self, status: str, ended: float | None) -> dict[str, Any]:
        return {
            "run": self.id,
            "experiment": self.experiment_id,
            "tree": self.compiled.name,
            "tree_file": str(self.compiled.loaded.path.resolve()),
            "status": status,
            # output.json lacks outputs that a later run of this one (resume) would add: it is
            # a snapshot while the run goes on, and what an interrupted, failed or waiting run
            # finished.
            "partial": status != RunStatus.COMPLETED,
            "seed": self.seed,
            "seed_random": self.seed_is_random,
            "bindings": to_json(self.bindings),
            "picks": self.var_picks,
            "started": self.started,
            "ended": ended,
            "counts": self.counts,
            "items": self.items_json(),
        }

    def items_json(self) -> dict[str, dict[str, Any]]:
        """The foreach items, by node id then foreach path (`"2"`, `"2.0"` when nested)."""
        out: dict[str, dict[str, Any]] = {}
        for (node_id, path), item in sorted(self.foreach_values.items(), key=lambda kv: kv[0]):
            out.setdefault(node_id, {})[".".join(map(str, path))] = to_json(item)
        return out


def check_model_task(spec: ModelSpec, task: str, node_id: str) -> None:
    """Raise ModelError when a model cannot do what a node asks of it."""
    tasks = spec.tasks
    ok = bool(tasks & {"embed_text", "embed_image"}) if task == "embed" else task in tasks
    if not ok:
        can = ", ".join(sorted(tasks)) or "nothing known"
        raise ModelError(
            f"model '{spec.label()}' cannot do '{task}' (it does: {can}); pick a model that does {task} (genarun models list)"
        )
