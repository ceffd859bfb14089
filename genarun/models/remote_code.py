"""Whether a model may run its own Python code (transformers' `trust_remote_code`).

Loading a model with remote code imports the `.py` files beside its weights: whoever wrote the
folder runs code on this machine. A tree is data (docs/security.md), so a tree cannot turn that
on: its `options: {trust_remote_code: true}`, a `kind` that needs remote code, or a folder whose
config.json asks for it (a Moondream `model_type`) load only when

- the model is a catalog entry that needs its code (`moondream2`, `nomic-text`, ...) loaded by
  its Hugging Face id from the cache: genarun's catalog names the repository, and the person
  running fetched it (a local folder that happens to have the same name does not count), or
- the person running genarun allows it for the run: `GENARUN_TRUST_REMOTE_CODE=1`.

Otherwise the model is refused before anything loads, with that fix in the message.
"""

from __future__ import annotations

import os
from typing import Any

from genarun.errors import ModelError
from genarun.models.base import ModelSpec

GRANT = "GENARUN_TRUST_REMOTE_CODE"
# `options.kind` values whose loader runs the repository's own code.
REMOTE_KINDS = frozenset({"moondream"})


def granted() -> bool:
    """Whether the person running genarun allows models' own code for this process."""
    return os.environ.get(GRANT, "").strip().lower() in ("1", "true", "yes")


def _catalog_needs_code(spec: ModelSpec) -> bool:
    from genarun.plugins import registry

    for entry in registry().catalog.values():
        if entry.source == "hub" and (entry.provider, entry.id) == (spec.provider, spec.id):
            return bool(entry.options.get("trust_remote_code"))
    return False


def allowed(spec: ModelSpec, source_kind: str, why: str) -> bool:
    """True when `spec` may load with its own code; ModelError saying how to allow it when it
    may not. `why` says what asks for the code (an option, the model's config.json)."""
    if granted() or (source_kind == "hub" and _catalog_needs_code(spec)):
        return True
    raise ModelError(
        f"model '{spec.label()}': {why}, so loading it would run the Python code that comes with"
        f" the model ({spec.id}); a tree cannot allow that (a tree is data, docs/security.md). If"
        f" you trust that code, run with {GRANT}=1"
    )


def wants_code(options: dict[str, Any], kind: str | None) -> str | None:
    """What in a model's options or detected kind asks for its own code, or None."""
    if options.get("trust_remote_code"):
        return "its options set trust_remote_code"
    if kind in REMOTE_KINDS:
        return f"it is a '{kind}' model, whose loader runs the model's own code"
    return None
