"""Reusing finished work: stored executions, reuse plans and the content-addressed cache.

A `ReusePlan` tells the executor, for one run, what it may take instead of running:
- *kept*: the run's own finished executions (resume); they are not recorded again;
- *prior*: a source run's finished executions (rerun, --only), recorded with `reused_from`;
- the *cache*: any stored done execution with the same key (kind, rendered parameters with the
  hashes of their inputs, model identity, seed), recorded with `reused_from` too.
Executions matched by `rerun` are never taken from the source run; those matched by `no_cache`
never come from the cache either (the user asked for them to run again).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.graph.plan import Target, covers
from genarun.run.seeds import derive_seed
from genarun.run.trajectory_rows import TrajectoryRows
from genarun.store import confined
from genarun.store.confined import is_asset_ref
from genarun.store.db import path_key
from genarun.store.schema_sql import COLUMNS
from genarun.values import embedding_ids, from_json, renumber_embeddings, to_json

if TYPE_CHECKING:
    from genarun.graph.compiled import CompiledNode
    from genarun.run.state import RunState
    from genarun.store.db import Store

# Bump when the meaning of a key changes, so old cache entries stop matching.
CACHE_VERSION = 1

Key = tuple[str, tuple[int, ...]]


@dataclass(frozen=True)
class StoredExecution:
    """A finished execution read back from SQLite, with the folder its assets live in."""

    id: int
    run_id: str
    node_id: str
    path: tuple[int, ...]
    status: str
    output: Any  # tagged JSON, as stored
    seed: int | None
    params: str | None
    input_hash: str | None
    cache_key: str | None
    model: str | None
    picks: str | None
    reused_from: int | None
    folder: Path | None

    @property
    def origin(self) -> int:
        """The execution that really ran (reuse of a reuse points at the original)."""
        return self.reused_from if self.reused_from is not None else self.id

    @classmethod
    def from_row(cls, row: dict[str, Any], folder: str | Path | None) -> StoredExecution:
        return cls(
            id=row["id"],
            run_id=row["run_id"],
            node_id=row["node_id"],
            path=tuple(json.loads(row["path"] or "[]")),
            status=row["status"],
            output=json.loads(row["output"]) if row["output"] else None,
            seed=row["seed"],
            params=row["params"],
            input_hash=row["input_hash"],
            cache_key=row["cache_key"],
            model=row["model"],
            picks=row["picks"],
            reused_from=row["reused_from"],
            folder=Path(folder) if folder else None,
        )


def finished_executions(
    store: Store, run_id: str, statuses: tuple[str, ...] = ("done",)
) -> dict[Key, StoredExecution]:
    """A run's finished executions by (node, path): the newest done one wins over others."""
    run_row = store.query("SELECT out_dir FROM runs WHERE id = ?", (run_id,))
    folder = run_row[0]["out_dir"] if run_row else None
    out: dict[Key, StoredExecution] = {}
    for row in store.run_executions(run_id):
        if row["status"] not in statuses:
            continue
        stored = StoredExecution.from_row(row, folder)
        key = (stored.node_id, stored.path)
        current = out.get(key)
        if current is None or current.status != "done" or stored.status == "done":
            out[key] = stored
    return out


@dataclass
class ReusePlan:
    """What one run may reuse instead of executing; stored on the run (runs.plan) for resume."""

    cache: bool = True
    source_run_id: str | None = None
    rerun: list[Target] = field(default_factory=list)
    no_cache: list[Target] = field(default_factory=list)
    fresh_seeds: list[Target] = field(default_factory=list)  # rerun targets drawing new seeds
    seed_salt: int | None = None
    same_seed: bool = False
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    prior: dict[Key, StoredExecution] = field(default_factory=dict)
    kept: dict[Key, StoredExecution] = field(default_factory=dict)
    # The tree-var picks of the run whose outputs are taken (its runs.picks), replayed so
    # reused and new executions saw the same vars; not stored in runs.plan.
    var_picks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def must_rerun(self, node_id: str, path: tuple[int, ...]) -> bool:
        return any(covers(t, (node_id, path)) for t in self.rerun)

    def prior_for(self, node_id: str, path: tuple[int, ...]) -> StoredExecution | None:
        if self.must_rerun(node_id, path):
            return None
        return self.prior.get((node_id, path))

    def cache_allowed(self, node_id: str, path: tuple[int, ...]) -> bool:
        return self.cache and not any(covers(t, (node_id, path)) for t in self.no_cache)

    def seed_for(self, node: CompiledNode, path: tuple[int, ...]) -> int | None:
        """A rerun's seed for an execution, or None for the usual one."""
        if not self.fresh_seeds:  # every execution asks: most runs have no such targets
            return None
        if not any(covers(t, (node.id, path)) for t in self.fresh_seeds):
            return None
        if self.same_seed:
            before = self.prior.get((node.id, path))
            return before.seed if before is not None else None
        if self.seed_salt is not None:
            return derive_seed(self.seed_salt, node.node_path, path)
        return None

    def to_json(self) -> str:
        return json.dumps(
            {
                "cache": self.cache,
                "source_run": self.source_run_id,
                "rerun": _targets(self.rerun),
                "no_cache": _targets(self.no_cache),
                "fresh_seeds": _targets(self.fresh_seeds),
                "seed_salt": self.seed_salt,
                "same_seed": self.same_seed,
                "only": self.only,
                "skip": self.skip,
            }
        )

    @classmethod
    def from_json(cls, text: str | None, store: Store) -> ReusePlan:
        """The plan a run was started with, its source run's executions loaded again."""
        data = json.loads(text) if text else {}
        plan = cls(
            cache=data.get("cache", True),
            source_run_id=data.get("source_run"),
            rerun=_untargets(data.get("rerun")),
            no_cache=_untargets(data.get("no_cache")),
            fresh_seeds=_untargets(data.get("fresh_seeds")),
            seed_salt=data.get("seed_salt"),
            same_seed=data.get("same_seed", False),
            only=data.get("only", []),
            skip=data.get("skip", []),
        )
        if plan.source_run_id:
            plan.prior = finished_executions(store, plan.source_run_id)
        return plan


def stored_var_picks(run: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A stored run's tree-var picks (runs.picks); {} for runs stored before they were kept."""
    text = run.get("picks")
    value = json.loads(text) if text else {}
    return value if isinstance(value, dict) else {}


def _targets(targets: list[Target]) -> list[list[Any]]:
    return [[node_id, list(path)] for node_id, path in targets]


def _untargets(data: list[list[Any]] | None) -> list[Target]:
    return [(node_id, tuple(path)) for node_id, path in data or []]


# --- the content-addressed cache --------------------------------------------------------------
def model_identity(
    run: RunState, node: CompiledNode, params: dict[str, Any], scope: dict[str, Any] | None = None
) -> str | None:
    """What identifies the models an execution uses: the resolved spec's key (provider, id,
    revision, options) and its weights' fingerprint; for kinds naming other models (a cycle's
    network and embedders), each of those, and the tree's model aliases."""
    from genarun.models.weights import fingerprint

    def identity(ref: Any) -> str:
        spec = run.resolve_model(ref)
        return f"{spec.key}#{fingerprint(spec)}"

    parts: list[str] = []
    if node.kind.model_task and params.get("model") is not None:
        parts.append(identity(params["model"]))
    if node.kind.model_refs is not None:
        if scope is not None:
            parts += [identity(m.ref) for m in node.kind.model_refs(node=node, scope=scope)]
        parts.append(json.dumps(run.compiled.loaded.spec.models, sort_keys=True, default=str))
    return "|".join(parts) or None


def cache_key(
    kind: str,
    params: dict[str, Any],
    model: str | None,
    seed: int,
    files: dict[str, str] | None = None,
) -> str:
    """The content address of an execution; `files`: the local files its parameters name, by
    content hash (`file_inputs`), so an edited file is not a match."""
    parts: list[Any] = [CACHE_VERSION, kind, _content(to_json(params)), model, seed]
    if files:  # only then, so keys of executions that read no file stay as they were
        parts.append(files)
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


# (path, mtime_ns, size) -> sha256 of the file, so a file is hashed once while unchanged.
_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_inputs(params: dict[str, Any], base: Path) -> dict[str, str]:
    """The local files an execution's parameters name (a caption's `image: photo.png`, resolved
    like the kinds resolve them: relative to the tree's folder), path -> sha256 of the bytes.
    A parameter that only looks like a file name adds its file's hash, which is harmless."""
    out: dict[str, str] = {}
    for text in _param_strings(params):
        if not text or "\n" in text or len(text) > 500:
            continue
        path = Path(text).expanduser()
        path = path if path.is_absolute() else base / path
        try:
            info = path.stat()
        except (OSError, ValueError):
            continue
        if not path.is_file():
            continue
        key = (str(path), info.st_mtime_ns, info.st_size)
        if key not in _FILE_HASHES:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            _FILE_HASHES[key] = digest.hexdigest()
        out[text] = _FILE_HASHES[key]
    return out


def _param_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _param_strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _param_strings(v)]
    return []


def _content(value: Any) -> Any:
    """Images by their bytes' hash only: the same picture from another run has another path."""
    if isinstance(value, dict):
        if "$image" in value:
            return {"$image": value.get("sha256") or value["$image"]}
        return {k: _content(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_content(v) for v in value]
    return value


def cached_executions(store: Store, key: str, limit: int = 5) -> list[StoredExecution]:
    """Stored done executions with this key, newest first. A row whose stored JSON no longer
    parses (damaged bytes inside a value, which SQLite's page checks cannot see) is not reused:
    the cache is only a shortcut, so the node runs again instead of failing."""
    rows = store.query(
        f"SELECT {_EXECUTION_COLUMNS}, runs.out_dir FROM executions "
        "JOIN runs ON runs.id = executions.run_id "
        "WHERE executions.cache_key = ? AND executions.status = 'done' "
        "ORDER BY executions.id DESC LIMIT ?",
        (key, limit),
    )
    out = []
    for row in rows:
        try:
            out.append(StoredExecution.from_row(row, row["out_dir"]))
        except json.JSONDecodeError:
            continue
    return out


_EXECUTION_COLUMNS = ", ".join(f"executions.{name}" for name in COLUMNS["executions"])


# --- taking a stored output into a run --------------------------------------------------------
def adopt_output(
    run: RunState, stored: StoredExecution, node_id: str, path: tuple[int, ...]
) -> tuple[bool, Any]:
    """The stored output as a value of `run`, its images copied into the run's folder so each
    run folder is self-contained, and the rows its kind keeps outside the executions table
    copied to the run (NodeKind.adopt). (False, None) when an image is missing or was
    overwritten; nothing is copied then."""
    images: dict[str, str] = {}  # the stored run's image paths -> their copies in `run`

    def image(rel: str) -> str:
        if rel not in images:
            _adopt_image(run, stored, {"$image": rel}, node_id, path, images)
        return images[rel]

    try:
        adopted = _adopt(run, stored, stored.output, node_id, path, images)
        kind = run.compiled.nodes[node_id].kind
        own = (stored.run_id, stored.node_id, stored.path) == (run.id, node_id, path)
        if kind.adopt is not None and not own:  # resume keeps the run's own rows as they are
            from genarun.nodes.hooks import Adoption

            adopted = kind.adopt(
                Adoption(
                    stored=stored,
                    output=adopted,
                    image=image,
                    trajectory=TrajectoryRows(run.store, run.id, node_id, path_key(path)),
                )
            )
        if not own:
            # Vectors it names that are another run's are copied too: a run owns what its
            # outputs point at (its export has them; deleting the source cannot break it).
            copies = run.store.copy_embeddings(
                embedding_ids(adopted), run_id=run.id, node_id=node_id, path=path_key(path)
            )
            adopted = renumber_embeddings(adopted, copies)
    except _AssetMissing:
        return False, None
    return True, from_json(adopted, run.folder)


class _AssetMissing(Exception):
    pass


def _adopt(
    run: RunState,
    stored: StoredExecution,
    value: Any,
    node_id: str,
    path: tuple[int, ...],
    images: dict[str, str],
) -> Any:
    if isinstance(value, dict):
        if "$image" in value:
            return _adopt_image(run, stored, value, node_id, path, images)
        return {k: _adopt(run, stored, v, node_id, path, images) for k, v in value.items()}
    if isinstance(value, list):
        return [_adopt(run, stored, v, node_id, path, images) for v in value]
    return value


def _adopt_image(
    run: RunState,
    stored: StoredExecution,
    value: dict[str, Any],
    node_id: str,
    path: tuple[int, ...],
    images: dict[str, str],
) -> dict[str, Any]:
    # Only references of the form genarun writes, read only from inside the stored run's
    # folder without following links: a stored value naming any other file is not an image.
    rel = value["$image"]
    if stored.folder is None or not is_asset_ref(rel):
        raise _AssetMissing
    try:
        data = confined.read_bytes(stored.folder, rel)
    except (OSError, confined.UnsafePath):
        raise _AssetMissing from None
    if value.get("sha256") and hashlib.sha256(data).hexdigest() != value["sha256"]:
        raise _AssetMissing
    if stored.folder.resolve() == run.folder.resolve():
        run.claim_asset(rel)  # this run's own file (resume, or a cache hit in the run)
        images[rel] = rel
        return value
    new = run.adopted_asset_name(rel, node_id, path)
    confined.write_file(run.folder, new, data)
    images[rel] = new
    return {**value, "$image": new}
