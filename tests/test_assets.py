"""Image assets are written off the scheduler thread: the ref's sha256 waits for the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from genarun.run.assets import write_png
from genarun.values import ImageRef, to_json


def test_sha256_is_the_written_file_and_metadata_is_kept(tmp_path: Path) -> None:
    image = Image.new("RGB", (32, 16), (200, 30, 60))
    ref = ImageRef(
        "assets/a.png", tmp_path, write_png(image, tmp_path, "assets/a.png", {"genarun:seed": "7"})
    )
    assert ref.sha256 == hashlib.sha256((tmp_path / "assets/a.png").read_bytes()).hexdigest()
    assert ref.written
    assert to_json(ref) == {"$image": "assets/a.png", "sha256": ref.sha256}
    with Image.open(tmp_path / "assets/a.png") as png:
        assert png.text == {"genarun:seed": "7"}
        assert png.size == (32, 16)
    assert ref.open().getpixel((0, 0)) == (200, 30, 60)
    assert not list(
        tmp_path.glob("assets/.*.tmp")
    )  # written through a temporary name, then renamed


def test_a_failed_write_raises_where_the_hash_is_read(tmp_path: Path) -> None:
    image = Image.new("RGB", (8, 8))
    missing = tmp_path / "missing"
    ref = ImageRef("assets/a.png", missing, write_png(image, missing, "assets/a.png", {}))
    with pytest.raises(FileNotFoundError):
        ref.sha256  # noqa: B018
    assert not missing.exists()


def test_refs_compare_by_path_and_content(tmp_path: Path) -> None:
    image = Image.new("RGB", (8, 8), (1, 2, 3))
    a = ImageRef("a.png", tmp_path, write_png(image, tmp_path, "a.png", {}))
    b = ImageRef("a.png", tmp_path, a.sha256)
    assert a == b and hash(a) == hash(b)
    assert "a.png" in repr(b) and str(b) == "a.png"
