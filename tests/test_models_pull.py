"""`genarun models pull`, `models list`'s revisions and sizes on disk, and a tree's `revision:`
pin, against a Hugging Face cache laid out by the test under a temporary HF_HOME (never a
download)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from genarun.models import weights
from genarun.models.catalog import resolve_model

REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"  # the catalog's clip-vit-b-32
MAIN = "a" * 40  # the commit refs/main points at
OLD = "b" * 40  # an older snapshot, tagged v1
CONFIG = b'{"model_cfg": {}}'
WEIGHTS_BYTES = 1234


def _blob(repo: Path, content: bytes, name: str) -> Path:
    blob = repo / "blobs" / name
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(content)
    return blob


def _snapshot(repo: Path, commit: str, files: dict[str, Path]) -> Path:
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, blob in files.items():
        # The Hub's layout: snapshot files are relative symlinks into blobs/.
        (snap / name).symlink_to(Path("..", "..", "blobs", blob.name))
    return snap


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """HF_HOME with clip-vit-b-32 cached at two commits: main (config + weights) and v1."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = home / "hub" / ("models--" + REPO.replace("/", "--"))
    config = _blob(repo, CONFIG, "c0nf")
    model = _blob(repo, b"\0" * WEIGHTS_BYTES, "w31ght")
    _snapshot(repo, MAIN, {"open_clip_config.json": config, "open_clip_model.safetensors": model})
    _snapshot(repo, OLD, {"open_clip_config.json": config})
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(MAIN)
    (repo / "refs" / "v1").write_text(OLD)
    weights.forget_fingerprints()
    yield repo
    weights.forget_fingerprints()


def test_models_list_shows_revision_and_size_on_disk(hub: Path, cli: Callable[..., Result]) -> None:
    result = cli("models", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    clip = rows["clip-vit-b-32"]
    assert clip["revision"] == "main"
    assert clip["commit"] == MAIN
    # huggingface_hub counts each blob of the snapshot once: config + weights.
    assert clip["size_on_disk"] == len(CONFIG) + WEIGHTS_BYTES
    assert clip["local"] is True
    # Not in this cache: no commit, no size; tiny models have no Hub revision.
    assert rows["qwen2.5-0.5b"]["commit"] is None
    assert rows["qwen2.5-0.5b"]["size_on_disk"] is None
    assert rows["tiny-clip"]["revision"] is None
    table = cli("models", "list").output
    line = next(x for x in table.splitlines() if x.startswith("clip-vit-b-32 "))
    assert f"main@{MAIN[:7]}" in line and "1.3 KB" in line


def test_pull_offline_reports_a_cached_snapshot(hub: Path, cli: Callable[..., Result]) -> None:
    result = cli("models", "pull", "clip-vit-b-32")
    assert result.exit_code == 0, result.output
    assert f"{REPO}@main ({MAIN[:12]}) already in the cache (HF_HUB_OFFLINE)" in result.output
    assert str(hub / "snapshots" / MAIN) in result.output
    # --revision takes a tag (through refs/) or a commit.
    for rev in ("v1", OLD):
        result = cli("models", "pull", "clip-vit-b-32", "--revision", rev)
        assert result.exit_code == 0, result.output
        assert f"({OLD[:12]})" in result.output


def test_pull_offline_of_a_missing_model_says_offline(
    hub: Path, cli: Callable[..., Result]
) -> None:
    before = sorted(p.relative_to(hub.parent) for p in hub.parent.rglob("*"))
    result = cli("models", "pull", "qwen2.5-0.5b")
    assert result.exit_code == 2
    assert "HF_HUB_OFFLINE is set" in result.output
    assert "Qwen/Qwen2.5-0.5B-Instruct@main cannot be downloaded" in result.output
    assert "Traceback" not in result.output
    # A revision the cache does not hold is missing too, not another snapshot.
    result = cli("models", "pull", "clip-vit-b-32", "--revision", "c" * 40)
    assert result.exit_code == 2 and "HF_HUB_OFFLINE is set" in result.output
    assert sorted(p.relative_to(hub.parent) for p in hub.parent.rglob("*")) == before


def test_pull_refuses_models_without_hub_weights(hub: Path, cli: Callable[..., Result]) -> None:
    result = cli("models", "pull", "tiny-clip")
    assert result.exit_code == 2
    assert "built-in tiny model" in result.output and "no Hub weights to pull" in result.output
    result = cli("models", "pull", "clip-vit-b-23")
    assert result.exit_code == 2
    assert "unknown model 'clip-vit-b-23'" in result.output and "clip-vit-b-32" in result.output


def test_tree_revision_pin_selects_the_snapshot(hub: Path) -> None:
    unpinned = resolve_model("clip-vit-b-32")
    assert unpinned.revision is None  # the catalog's `main`: keys stay what they were
    assert weights.locate(unpinned).folder == hub / "snapshots" / MAIN
    for ref in (
        {"id": "clip-vit-b-32", "revision": "v1"},
        {"provider": "open_clip", "id": "clip-vit-b-32", "revision": OLD},
    ):
        spec = resolve_model("clip", {"clip": ref})
        assert spec.revision == ref["revision"]
        assert spec.key != unpinned.key  # another execution-cache identity
        assert weights.locate(spec).folder == hub / "snapshots" / OLD
        assert weights.fingerprint(spec) == OLD
    # A pinned revision that is not cached is missing: never silently another snapshot.
    missing = resolve_model("clip", {"clip": {"id": "clip-vit-b-32", "revision": "c" * 40}})
    assert weights.locate(missing).folder is None
    assert not weights.present(missing)
    # A revision climbing out of refs/ names no ref.
    sneaky = resolve_model("clip", {"clip": {"id": "clip-vit-b-32", "revision": "../refs/v1"}})
    assert weights.locate(sneaky).folder is None
