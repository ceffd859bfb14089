"""The model catalog and model references: catalog name, Hugging Face id, local path or spec."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genarun.errors import ModelError, did_you_mean
from genarun.models.base import ModelSpec
from genarun.tree.schema import model_ref_problem

DEFAULT_REVISION = "main"


@dataclass(frozen=True)
class CatalogEntry:
    """A named model genarun knows: where its weights come from and what it can do."""

    name: str
    provider: str
    id: str  # Hugging Face id, built-in tiny name, package name or API model name
    tasks: frozenset[str]
    source: str  # "builtin" (tiny, built locally), "hub", "package", "api", "dummy"
    size: str = ""  # human-readable weight size, e.g. "1.7 GB"
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    # The Hub revision `genarun models pull` fetches and the loaders use: a commit where the
    # catalog pins one, else the default branch.
    revision: str = DEFAULT_REVISION

    def spec(
        self,
        name: str | None = None,
        options: dict[str, Any] | None = None,
        revision: str | None = None,
    ) -> ModelSpec:
        """The spec a tree gets for this entry; `revision` (a tree's pin) overrides the
        catalog's."""
        merged = {**self.options, **(options or {})}
        rev = revision or self.revision
        return ModelSpec(
            provider=self.provider,
            id=self.id,
            name=name or self.name,
            tasks=self.tasks,
            options=tuple(sorted(merged.items())),
            # The default branch is what no revision resolves to (refs/main): kept None so
            # that spec keys (the execution cache, stored vectors) stay what they were.
            revision=None if rev == DEFAULT_REVISION else rev,
        )


def resolve_model(ref: str | dict[str, Any], aliases: dict[str, Any] | None = None) -> ModelSpec:
    """Turn a model reference from a tree into a ModelSpec, without loading anything.

    `ref` is an alias from the tree's `models:`, a catalog name, a Hugging Face id
    (`org/name`), a local path, or a spec `{provider, id, options}`.
    """
    from genarun.plugins import registry

    reg = registry()
    aliases = aliases or {}
    seen: set[str] = set()
    name = ref if isinstance(ref, str) else ""
    while isinstance(ref, str) and ref in aliases and ref not in seen:
        seen.add(ref)
        ref = aliases[ref]
    # A reference comes from the tree or from a template's value: anything may arrive here.
    problem = model_ref_problem(ref)
    if problem:
        raise ModelError(f"model '{name}': {problem[1]}" if name else problem[1])
    if isinstance(ref, dict):
        return _spec_from_dict(ref, name, aliases)
    if ref in reg.catalog:
        return reg.catalog[ref].spec(name=name or ref)
    # A Hugging Face id or local path: the provider is read from the files when present.
    if path_exists(ref) or "/" in ref:
        provider = detect_provider(ref)
        if provider is None:
            raise ModelError(
                f"model '{ref}': cannot tell which provider loads it (its weights are not present"
                " locally). Write it as {provider: diffusers|transformers|open_clip|"
                f"sentence-transformers|openai, id: {ref}}}, or download it first with"
                f" `huggingface-cli download {ref}` on a machine with network access"
            )
        prov = reg.providers[provider]
        spec = ModelSpec(provider=provider, id=ref, name=name or ref)
        return ModelSpec(provider=provider, id=ref, name=spec.name, tasks=prov.tasks(spec))
    hint = did_you_mean(ref, set(reg.catalog) | set(aliases))
    raise ModelError(
        f"unknown model '{ref}'"
        + (f" ({hint})" if hint else "")
        + "; use a name from `genarun models list`, a Hugging Face id (org/name) or a local path"
    )


def _spec_from_dict(ref: dict[str, Any], name: str, aliases: dict[str, Any]) -> ModelSpec:
    spec = _spec_of_dict(ref, name, aliases)
    price = ref.get("price")
    if isinstance(price, dict) and price:  # checked by model_ref_problem
        spec = dataclasses.replace(spec, price=tuple(sorted(price.items())))
    return spec


def _spec_of_dict(ref: dict[str, Any], name: str, aliases: dict[str, Any]) -> ModelSpec:
    from genarun.plugins import registry

    reg = registry()
    model_id = str(ref["id"])
    options = dict(ref.get("options") or {})
    provider = ref.get("provider")
    if provider is None:
        base = resolve_model(model_id, aliases)
        merged = {**dict(base.options), **options}  # placement options too
        return ModelSpec(
            base.provider,
            base.id,
            name or model_id,
            base.tasks,
            tuple(sorted(merged.items())),
            ref.get("revision") or base.revision,
            base.price,  # an alias's price stays with what names it
        )
    if provider not in reg.providers:
        hint = did_you_mean(provider, set(reg.providers))
        raise ModelError(
            f"model '{name or model_id}': unknown provider '{provider}'"
            + (f" ({hint})" if hint else "")
            + f"; known: {', '.join(sorted(reg.providers))}"
        )
    if model_id in reg.catalog and reg.catalog[model_id].provider == provider:
        return reg.catalog[model_id].spec(
            name=name or model_id, options=options, revision=ref.get("revision")
        )
    spec = ModelSpec(
        provider,
        model_id,
        name or model_id,
        frozenset(),
        tuple(sorted(options.items())),
        ref.get("revision"),
    )
    return ModelSpec(
        provider,
        model_id,
        spec.name,
        reg.providers[provider].tasks(spec),
        spec.options,
        spec.revision,
    )


def detect_provider(ref: str) -> str | None:
    """Guess the provider of a local folder or cached Hugging Face snapshot from its files."""
    folder = local_model_dir(ref)
    if folder is None:
        return None
    if (folder / "model_index.json").exists():
        return "diffusers"
    if (folder / "open_clip_config.json").exists():
        return "open_clip"
    if (folder / "modules.json").exists():
        return "sentence-transformers"
    if (folder / "config.json").exists():
        return "transformers"
    return None


def path_exists(ref: str) -> bool:
    """Whether a model reference names a local file or folder. A name no file system takes
    (too long, a NUL byte) names none: it is reported as an unknown model, not an OS error."""
    try:
        return Path(os.path.expanduser(ref)).exists()
    except (OSError, ValueError):
        return False


def local_model_dir(ref: str, revision: str | None = None) -> Path | None:
    """The local folder holding a model: the path itself, or its Hugging Face cache snapshot."""
    try:
        return _local_model_dir(ref, revision)
    except (OSError, ValueError):  # not a name a file system takes (see path_exists)
        return None


def _local_model_dir(ref: str, revision: str | None) -> Path | None:
    path = Path(os.path.expanduser(ref))
    if path.is_dir():
        return path
    if "/" not in ref or ref.startswith((".", "/", "~")):
        return None
    hub = Path(
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    )
    repo = hub / ("models--" + ref.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    pinned = revision is not None
    # A branch or tag name resolves through refs/ to the commit its snapshot is named by.
    name = revision or DEFAULT_REVISION
    ref_file = repo / "refs" / name
    # A revision comes from a tree: one climbing out of refs/ names no ref.
    is_ref = ".." not in Path(name).parts and ref_file.is_file()
    commit = ref_file.read_text().strip() if is_ref else revision
    if commit and (snapshots / commit).is_dir():
        return snapshots / commit
    if pinned:
        # A pinned revision that is not cached is missing: loading another snapshot would
        # silently give other weights than the tree asked for.
        return None
    found = sorted(snapshots.iterdir())
    return found[-1] if found else None
