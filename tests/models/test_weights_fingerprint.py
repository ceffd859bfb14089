"""The execution cache tells weights apart by their fingerprint, not only their name."""

from __future__ import annotations

import os
from pathlib import Path

from genarun.models.base import ModelSpec
from genarun.models.tiny import BUILD_VERSION
from genarun.models.weights import fingerprint


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
    fingerprint.cache_clear()  # computed once per process: a new process sees the change
    assert fingerprint(spec) != before
