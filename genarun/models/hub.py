"""Catalog models in the Hugging Face cache: `genarun models pull` and what `models list`
reports of the cache (revision present, size on disk).

huggingface_hub comes with the `local` extra (transformers brings it); it is imported only here,
inside the functions, so the core install and `genarun --help` never load it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genarun.errors import ModelError, UserError, did_you_mean
from genarun.models.catalog import DEFAULT_REVISION, CatalogEntry, local_model_dir
from genarun.models.weights import hub_cache_dir

# The values huggingface_hub reads as "on" for HF_HUB_OFFLINE (its constants._is_true).
_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class Pulled:
    """A pulled (or already present) snapshot."""

    name: str
    repo_id: str
    revision: str  # what was asked for: the catalog's pin or --revision
    commit: str  # the snapshot's commit
    folder: Path
    size_on_disk: int
    downloaded: bool  # False when the snapshot was already in the cache (offline)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def catalog_entry(name: str) -> CatalogEntry:
    from genarun.plugins import registry

    catalog = registry().catalog
    if name not in catalog:
        hint = did_you_mean(name, set(catalog))
        raise UserError(
            f"unknown model '{name}'"
            + (f" ({hint})" if hint else "")
            + "; `genarun models list` names the catalog's models"
        )
    return catalog[name]


def pull(name: str, revision: str | None = None) -> Pulled:
    """Download catalog model `name` at its pinned revision (or `revision`) into the Hugging
    Face cache (HF_HOME / HF_HUB_CACHE). Under HF_HUB_OFFLINE a snapshot already cached is
    reported as is; a missing one is an error saying so, since nothing may be downloaded."""
    from genarun.extras import require_extra

    entry = catalog_entry(name)
    if entry.source != "hub":
        where = {
            "builtin": "a built-in tiny model, built on this machine on first use",
            "package": "installed as a Python package",
            "api": "served by an API",
            "dummy": "a dummy model with no weights",
        }.get(entry.source, f"from source '{entry.source}'")
        raise UserError(f"model '{name}' is {where}: there are no Hub weights to pull")
    rev = revision or entry.revision
    wanted = None if rev == DEFAULT_REVISION else rev
    if offline():
        folder = local_model_dir(entry.id, wanted)
        if folder is None:
            raise ModelError(
                f"model '{name}': HF_HUB_OFFLINE is set, so {entry.id}@{rev} cannot be"
                f" downloaded, and it is not in the cache ({hub_cache_dir()}). Unset"
                " HF_HUB_OFFLINE on a machine with network access and pull again, or copy a"
                " Hugging Face cache that holds it here (or point HF_HOME at it)"
            )
        return Pulled(name, entry.id, rev, folder.name, folder, _size(folder), False)
    require_extra("`genarun models pull`", "local", ("huggingface_hub",))
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = Path(str(snapshot_download(entry.id, revision=rev, cache_dir=hub_cache_dir())))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as e:
        # Unknown repository or revision, gated model, no network: the library's message
        # says which; ours says which model and where it was going.
        raise ModelError(
            f"model '{name}': could not download {entry.id}@{rev} into {hub_cache_dir()}: {e}"
        ) from e
    return Pulled(name, entry.id, rev, path.name, path, _size(path), True)


def _size(folder: Path) -> int:
    """Bytes of a snapshot's files (symlinks into blobs/ followed, each blob counted once)."""
    seen: set[Path] = set()
    total = 0
    for f in folder.rglob("*"):
        real = f.resolve()
        if real.is_file() and real not in seen:
            seen.add(real)
            total += real.stat().st_size
    return total


@dataclass(frozen=True)
class CachedRepo:
    """A model repository in the Hugging Face cache, as huggingface_hub's scan sees it."""

    size_on_disk: int
    revisions: dict[str, int]  # commit -> size on disk of that snapshot
    refs: dict[str, str]  # branch or tag -> commit


def scan_hub_cache() -> dict[str, CachedRepo] | None:
    """The cache's model repositories by id, from huggingface_hub's `scan_cache_dir`; None when
    huggingface_hub is not installed (the core install)."""
    from genarun.extras import module_available

    if not module_available("huggingface_hub"):
        return None
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(hub_cache_dir())
    except CacheNotFound:
        return {}
    repos: dict[str, CachedRepo] = {}
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        refs = {r: rev.commit_hash for rev in repo.revisions for r in rev.refs}
        sizes = {rev.commit_hash: rev.size_on_disk for rev in repo.revisions}
        repos[repo.repo_id] = CachedRepo(repo.size_on_disk, sizes, refs)
    return repos


def cached_revision(entry: CatalogEntry, repos: dict[str, CachedRepo]) -> dict[str, Any]:
    """The entry's pinned revision as the cache holds it: the commit and its size on disk
    (both None when that revision is not cached)."""
    repo = repos.get(entry.id)
    if repo is None:
        return {"commit": None, "size_on_disk": None}
    commit = repo.refs.get(entry.revision, entry.revision)
    if commit not in repo.revisions:
        return {"commit": None, "size_on_disk": None}
    return {"commit": commit, "size_on_disk": repo.revisions[commit]}


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
