"""The execution cache tells weights apart by their fingerprint, not only their name."""

from __future__ import annotations

import os
from pathlib import Path

from genarun.models.base import ModelSpec
from genarun.models.tiny import BUILD_VERSION
from genarun.models.weights import fingerprint, forget_fingerprints


def test_tiny_models_are_told_apart_by_build_version() -> None:
    assert fingerprint(ModelSpec("diffusers", "tiny-sd")) == f"tiny-v{BUILD_VERSION}"


def test_apis_and_dummy_have_none() -> None:
    assert fingerprint(ModelSpec("dummy", "dummy")) == ""
    assert fingerprint(ModelSpec("openai", "gpt-4o-mini")) == ""


def test_a_local_folder_changes_with_its_files(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    weights = folder / "model.safetensors"
    weights.write_bytes(b"0" * 64)
    spec = ModelSpec("transformers", str(folder))
    before = fingerprint(spec)
    assert before and fingerprint(spec) == before  # stable
    weights.write_bytes(b"1" * 65)  # other weights under the same path
    os.utime(weights, ns=(10**18, 10**18))
    forget_fingerprints()  # computed once per process: a new process sees the change
    assert fingerprint(spec) != before


def test_a_spec_whose_options_hold_a_list_has_a_fingerprint() -> None:
    """Options such as `fail_calls: [5]` made the spec unhashable for the fingerprint's cache:
    the execution cache silently skipped such models, and recording the resolved model failed."""
    spec = ModelSpec("diffusers", "tiny-sd", options=(("fail_calls", [5]),))
    assert fingerprint(spec) == f"tiny-v{BUILD_VERSION}"
