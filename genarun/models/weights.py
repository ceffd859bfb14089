"""Where a model's weights live: a built-in tiny model, a local folder, or the HF cache.

Shared by the transformers, open_clip and sentence-transformers providers (as
`LocalWeightsProvider`) so that they tell about missing weights in the same words, before any
weight loads.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genarun.errors import ModelError
from genarun.models.base import ModelSpec, Provider
from genarun.models.catalog import local_model_dir


@dataclass(frozen=True)
class WeightsSource:
    """How to hand a model to its library's loader."""

    kind: str  # "builtin", "local" or "hub"
    ref: str  # tiny name, folder/file path, or Hugging Face id
    folder: Path | None  # the folder holding the files, when present locally


def is_tiny(spec: ModelSpec) -> bool:
    """Whether `spec.id` names a built-in tiny model."""
    from genarun.models import tiny

    tiny._import_builders()
    return spec.id in tiny.BUILDERS


def is_local_path(ref: str) -> bool:
    """Whether a model `id:` names a file or folder (rather than a Hugging Face id)."""
    return ref.startswith((".", "/", "~")) or Path(ref).expanduser().exists()


def locate(spec: ModelSpec) -> WeightsSource:
    """Where the weights are, without building or loading anything (folder None if absent)."""
    if is_tiny(spec):
        from genarun.models.tiny import tiny_model_dir

        return WeightsSource("builtin", spec.id, tiny_model_dir(spec.id))
    if is_local_path(spec.id):
        path = Path(os.path.expanduser(spec.id))
        return WeightsSource("local", str(path), path if path.exists() else None)
    return WeightsSource("hub", spec.id, local_model_dir(spec.id, spec.revision))


def present(spec: ModelSpec) -> bool:
    """Tiny models are always buildable; others must be on disk."""
    source = locate(spec)
    return source.kind == "builtin" or source.folder is not None


def require(spec: ModelSpec) -> WeightsSource:
    """The weights' location, building a tiny model on first use; ModelError if missing."""
    source = locate(spec)
    if source.kind == "builtin":
        from genarun.models.tiny import ensure_tiny_model

        return WeightsSource("builtin", spec.id, ensure_tiny_model(spec.id))
    if source.folder is None:
        raise missing_weights(spec, source)
    return source


def missing_weights(spec: ModelSpec, source: WeightsSource | None = None) -> ModelError:
    """The one message for absent weights: which model, where we looked, how to get them."""
    source = source or locate(spec)
    name = spec.label()
    shown = f"'{name}'" if name == spec.id else f"'{name}' ({spec.id})"
    if source.kind == "local":
        return ModelError(
            f"model {shown}: no model files at {source.ref}; point `id:` at a folder that"
            " holds the model (config and weights)"
        )
    return ModelError(
        f"model {shown}: weights are not in the local Hugging Face cache ({hub_cache_dir()})."
        f" Fetch them on a machine with network access with `huggingface-cli download {spec.id}`"
        " and copy the cache here (or set HF_HOME to it), or point `id:` at a local copy of"
        " the model folder"
    )


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, as huggingface_hub resolves it."""
    env = os.environ.get("HF_HUB_CACHE")
    if env:
        return Path(env)
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home) / "hub"


class LocalWeightsProvider(Provider):
    """A provider whose models load from weights on this machine: a built-in tiny model, a
    local folder, or the Hugging Face cache. `check` tells how to get missing ones."""

    def weights_present(self, spec: ModelSpec) -> bool | None:
        return present(spec)

    def check(self, spec: ModelSpec) -> None:
        if not present(spec):
            raise missing_weights(spec)


def fingerprint(spec: ModelSpec) -> str:
    """What tells these weights from others under the same name, for the execution cache:
    a tiny model's build version, a Hub snapshot's commit, a local folder's files (names,
    sizes, modification times: hashing gigabytes would cost more than it saves). Empty for
    models without local weights (APIs, dummy). Computed once per process and weights."""
    # Keyed by what locates the weights: a spec's options may hold lists (unhashable), and
    # they never change which files are loaded.
    return _fingerprint(spec.provider, spec.id, spec.revision)


def forget_fingerprints() -> None:
    """Compute fingerprints afresh (they are computed once per process: a new one sees a change)."""
    _fingerprint.cache_clear()


@functools.lru_cache(maxsize=256)
def _fingerprint(provider: str, model_id: str, revision: str | None) -> str:
    if provider in ("openai", "dummy"):
        return ""
    source = locate(ModelSpec(provider, model_id, revision=revision))
    if source.kind == "builtin":
        from genarun.models.tiny import BUILD_VERSION

        return f"tiny-v{BUILD_VERSION}"
    if source.folder is None:
        return ""
    if source.kind == "hub":
        return source.folder.name  # the snapshot's commit
    files = (
        [source.folder]
        if source.folder.is_file()
        else sorted(f for f in source.folder.rglob("*") if f.is_file())
    )
    digest = hashlib.sha256()
    for f in files:
        stat = f.stat()
        digest.update(
            f"{f.relative_to(source.folder.parent)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
        )
    return digest.hexdigest()[:16]


def resolved(spec: ModelSpec) -> dict[str, str]:
    """What a tree's name for a model (`painter`) resolved to, recorded beside that name in
    outputs (PNG metadata, `runs show --json`, exports, plots): the catalog name or id, the
    provider, the revision asked for, and the weights' fingerprint (a tiny model's build, a Hub
    snapshot's commit, a local folder's files), so a figure names the weights that made it."""
    return {
        "model": spec.id,
        "provider": spec.provider,
        "revision": spec.revision or "",
        "weights": fingerprint(spec),
    }


def resolved_text(name: str, record: dict[str, str] | None) -> str:
    """`painter = tiny-sd (diffusers, tiny-v1)`: a name with what it resolved to, for labels."""
    if not record:
        return name
    detail = ", ".join(
        v for v in (record.get("provider"), record.get("revision"), record.get("weights")) if v
    )
    target = record.get("model") or name
    head = target if target == name else f"{name} = {target}"
    return f"{head} ({detail})" if detail else head


def metadata_fields(spec: ModelSpec) -> dict[str, Any]:
    """An image's model metadata: the tree's name for it (`model`) and what that resolved to
    (`model_id`, `provider`, `revision`, `weights`; empty ones left out)."""
    record = resolved(spec)
    fields = {"model": spec.label(), "model_id": record["model"], "provider": record["provider"]}
    fields.update({k: record[k] for k in ("revision", "weights") if record[k]})
    return fields
