"""Values that flow between nodes besides plain JSON: images and embedding references.

Both are stored as tagged JSON objects (`{"$image": ...}`, `{"$embedding": ...}`) in SQLite and
shown as plain strings in `output.json` and in rendered templates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ImageRef:
    """A PNG in a run folder's assets/: `path` is relative to the run folder."""

    path: str
    root: Path
    sha256: str

    @property
    def file(self) -> Path:
        return self.root / self.path

    def open(self) -> Any:
        """The image as a PIL image (RGB)."""
        from PIL import Image

        with Image.open(self.file) as img:
            return img.convert("RGB")

    def __str__(self) -> str:
        return self.path


@dataclass(frozen=True)
class EmbeddingRef:
    """A float32 vector stored in SQLite's embeddings table."""

    id: int
    model: str
    dim: int

    def __str__(self) -> str:
        return f"<embedding {self.id}: {self.model}, {self.dim}-d>"


def to_json(value: Any) -> Any:
    """Encode a node output for SQLite (tagged objects keep images and embeddings typed)."""
    if value is None or isinstance(value, str | int | float | bool):  # most values: first
        return value
    if isinstance(value, ImageRef):
        return {"$image": value.path, "sha256": value.sha256}
    if isinstance(value, EmbeddingRef):
        return {"$embedding": value.id, "model": value.model, "dim": value.dim}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return str(value)


# Prebuilt encoders: json.dumps with any option builds a new JSONEncoder per call, which
# cost more than encoding the short values of one execution.
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
_ENCODE_SORTED = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """`json.dumps(value, ensure_ascii=False, sort_keys=...)` for plain JSON values, faster."""
    return (_ENCODE_SORTED if sort_keys else _ENCODE)(value)


def json_text(value: Any, *, sort_keys: bool = False) -> str:
    """`json.dumps(to_json(value), ensure_ascii=False, sort_keys=...)`, faster."""
    return (_ENCODE_SORTED if sort_keys else _ENCODE)(to_json(value))


def from_json(value: Any, root: Path) -> Any:
    """Decode a stored output; images resolve against the run folder `root`."""
    if isinstance(value, dict):
        if "$image" in value:
            return ImageRef(value["$image"], root, value.get("sha256", ""))
        if "$embedding" in value:
            return EmbeddingRef(int(value["$embedding"]), value["model"], int(value["dim"]))
        return {k: from_json(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v, root) for v in value]
    return value


def to_plain(value: Any) -> Any:
    """The value as output.json shows it: images as relative paths, embeddings as ids."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, ImageRef):
        return value.path
    if isinstance(value, EmbeddingRef):
        return {"embedding": value.id, "model": value.model, "dim": value.dim}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return str(value)
