"""`ExecutionContext`: what a node kind's run function may use besides its rendered fields.

Its seed, the model resolver, image and embedding storage, the rows of trajectories, and the
log. A kind goes through these methods, never through the run's state or the store: they are
the executor's (and, on the scheduler thread only, the store's) to change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genarun.models.base import ModelSpec
    from genarun.run.trajectory_rows import TrajectoryRows
    from genarun.store.responses import StoredResponse
    from genarun.values import EmbeddingRef, ImageRef


class ExecutionContext:
    """What a run function may use: its seed, the model resolver, asset and embedding storage."""

    def __init__(
        self,
        *,
        node_id: str,
        path: tuple[int, ...],
        seed: int,
        run: Any,
        log: Callable[[str, str], None],
        attempt: int = 1,
        on_defer: Callable[[ExecutionContext], None] | None = None,
    ):
        self.node_id = node_id
        self.path = path
        self.seed = seed
        # 1 for the first try, 2 for the first of `retries:`: a kind whose failure its seed
        # decides (an answer outside its schema) samples the retry with another seed.
        self.attempt = attempt
        # The executor's RunState. Kinds use the methods below.
        self.run = run
        self.log = log
        self.model_name: str | None = None
        # The executor's hook, told when a write is first deferred (it runs them after its
        # next dispatch); None: writes run at once.
        self._on_defer = on_defer
        self._deferred: list[Callable[[], None]] = []

    def defer(self, write: Callable[[], None]) -> None:
        """Run `write` (bookkeeping of what an earlier yield returned: rows, commits) once the
        effects of this execution's next yield have gone to their models, so the models never
        wait for it; always before the generator resumes, in the order given. An error it
        raises is thrown into the generator at that resumption. A run function that writes
        more itself before its next yield calls `run_deferred()` first. Without an executor
        that defers (a direct call), `write` runs at once."""
        if self._on_defer is None:
            write()
            return
        if not self._deferred:
            self._on_defer(self)
        self._deferred.append(write)

    def run_deferred(self) -> None:
        """Run the deferred writes now, in order; the first that raises drops the rest (they
        follow from it) and its error propagates."""
        writes, self._deferred = self._deferred, []
        for write in writes:
            write()

    def model(self, ref: Any) -> ModelSpec:
        """Resolve a model reference (alias, catalog name, id, path or spec)."""
        spec = self.run.resolve_model(ref)
        self.model_name = spec.label()
        return spec

    @property
    def seed_is_random(self) -> bool:
        """Whether the run draws a fresh seed (`--seed random`): nothing will repeat."""
        return bool(self.run.seed_is_random)

    def save_image(
        self, image: Any, *, step: int | None = None, seed: int | None = None, **metadata: Any
    ) -> ImageRef:
        """Save a PIL image as PNG in the run's assets/ with its metadata; return its ref.
        `step` (a trajectory's) names the file and is kept in the metadata; `seed`: the one
        that made it, when not the execution's."""
        path = self.path if step is None else (*self.path, step)
        if step is not None:
            metadata["step"] = step
        return self.run.save_image(
            image,
            node_id=self.node_id,
            path=path,
            seed=self.seed if seed is None else seed,
            **metadata,
        )

    def stored_image(self, rel: str) -> ImageRef:
        """An image this run saved before (a resumed trajectory's step), read only inside the
        run's folder; a missing or unsafe one has an empty digest."""
        from genarun.store.confined import UnsafePath, read_bytes
        from genarun.values import ImageRef

        folder = self.run.folder
        try:
            digest = hashlib.sha256(read_bytes(folder, rel)).hexdigest()
        except (OSError, UnsafePath):
            digest = ""
        return ImageRef(rel, folder, digest)

    def load_image(self, value: Any) -> Any:
        """A PIL image from an image output, or from a file path relative to the tree."""
        return self.run.load_image(value)

    def store_embeddings(
        self, vectors: list[Any], model: str, sources: list[str], items: list[int] | None = None
    ) -> list[EmbeddingRef]:
        """Store vectors in SQLite; `items` numbers them (a trajectory's step), default 0, 1, ..."""
        return self.run.store_embeddings(
            vectors, model, sources, node_id=self.node_id, path=self.path, items=items
        )

    def trajectory(self) -> TrajectoryRows:
        """This execution's trajectory rows (a cycle's)."""
        from genarun.run.trajectory_rows import TrajectoryRows
        from genarun.store.db import path_key

        return TrajectoryRows(self.run.store, self.run.id, self.node_id, path_key(self.path))

    def trajectory_of(self, node_id: str) -> TrajectoryRows:
        """The trajectory of cycle `node_id`'s finished execution that this one sees (under
        the foreach items they share); ValueError, saying why, when there is none."""
        from genarun.run.trajectory_rows import TrajectoryRows
        from genarun.store.db import path_key

        compiled = self.run.compiled.nodes.get(node_id)
        if compiled is None or compiled.kind.name != "cycle":
            raise ValueError(f"of: '{node_id}' is not a cycle node")
        prefix = self.path[: len(compiled.loops)]
        result = self.run.results.get(node_id, {}).get(prefix)
        if result is None or result.status != "done":
            raise ValueError(f"of: '{node_id}' has not run for this item")
        return TrajectoryRows(self.run.store, self.run.id, node_id, path_key(prefix))

    @property
    def tree_dir(self) -> Path:
        return self.run.tree_dir

    # --- what fetch needs -------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return str(self.run.id)

    @property
    def run_folder(self) -> Path:
        """The run's output folder (assets are written under it)."""
        return Path(self.run.folder)

    def secret_hosts(self) -> dict[str, list[str]]:
        """The tree's `secrets:`: each secret's name and the hosts it may be sent to."""
        spec = self.run.compiled.loaded.spec
        return {name: list(entry.hosts) for name, entry in spec.secrets.items()}

    def cached_response(self, cache_key: str, ttl: float) -> StoredResponse | None:
        """The newest stored response to the same request within `ttl` seconds, if any."""
        from genarun.store.responses import cached_response

        return cached_response(self.run.store, cache_key, ttl)

    def file_response(self, row: dict[str, Any]) -> None:
        """Store a response's row (made by genarun.store.responses.response_row) with this
        execution's commit."""
        from genarun.store.responses import file_response

        file_response(self.run.store, row)
