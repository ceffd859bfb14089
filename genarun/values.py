"""Values that flow between nodes besides plain JSON: images and embedding references.

Both are stored as tagged JSON objects (`{"$image": ...}`, `{"$embedding": ...}`) in SQLite and
shown as plain strings in `output.json` and in rendered templates.

Only genarun makes tags. Outputs of models, APIs and templates are data: a key of theirs that
starts with `$` is stored with one more `$` (`{"$image": "/etc/passwd"}` from a model is stored
as `{"$$image": ...}` and read back as the plain dict it was), so no output can pose as an
image or embedding reference and make a later run read or copy a file.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Future


class ImageRef:
    """A PNG in a run folder's assets/: `path` is relative to the run folder.

    `sha256` (of the file's bytes) may be given as a future while the PNG is still being
    written off the scheduler thread; reading it waits for the write and raises its error.
    """

    __slots__ = ("_sha256", "path", "root")

    def __init__(self, path: str, root: Path, sha256: str | Future[str]) -> None:
        self.path = path
        self.root = root
        self._sha256 = sha256

    @property
    def sha256(self) -> str:
        if not isinstance(self._sha256, str):
            self._sha256 = self._sha256.result()
        return self._sha256

    @property
    def written(self) -> bool:
        """Whether the file is complete (a pending write has finished)."""
        return isinstance(self._sha256, str) or self._sha256.done()

    @property
    def file(self) -> Path:
        return self.root / self.path

    def open(self) -> Any:
        """The image as a PIL image (RGB), read only from inside the run folder."""
        import io

        from PIL import Image

        from genarun.store.confined import read_bytes

        self.sha256  # noqa: B018 (a pending write must finish before the file is read)
        with Image.open(io.BytesIO(read_bytes(self.root, self.path))) as img:
            return img.convert("RGB")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageRef):
            return NotImplemented
        return (self.path, self.root, self.sha256) == (other.path, other.root, other.sha256)

    def __hash__(self) -> int:
        return hash((self.path, self.root))

    def __repr__(self) -> str:
        # A template printing a list of images (`{{ covers }}`, `pprint`, `'{!r}'`) shows
        # their paths, as output.json does: the run folder's absolute path (a user's home)
        # must not reach prompts sent to an API, nor published outputs.
        return repr(self.path)

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
    # Most values come first. (A tuple of types, not `str | int | ...`, which builds a union
    # object, and looks each type's `__parameters__` up, at every call.)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, ImageRef):
        return {"$image": value.path, "sha256": value.sha256}
    if isinstance(value, EmbeddingRef):
        return {"$embedding": value.id, "model": value.model, "dim": value.dim}
    if isinstance(value, dict):
        return {
            _escape(str(k)): v if v.__class__ in _PLAIN else to_json(v) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [v if v.__class__ in _PLAIN else to_json(v) for v in value]
    return str(value)


# Types whose values to_json and to_plain return as they are, tested inline in containers (a
# call per item cost more than the item).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _escape(key: str) -> str:
    return "$" + key if key.startswith("$") else key


def _unescape(key: str) -> str:
    return key[1:] if key.startswith("$$") else key


def _encoder(*, sort_keys: bool) -> Callable[[Any], str]:
    """`json.JSONEncoder(ensure_ascii=False, sort_keys=...).encode`, the same text and errors:
    json.dumps with any option builds a new JSONEncoder per call, and `encode` goes through
    `iterencode`, which defines a closure before it makes the C encoder; this calls the C
    encoder at once (a fresh circular-reference memo each time, as `encode` has)."""
    encoder = json.JSONEncoder(ensure_ascii=False, sort_keys=sort_keys)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the pure-Python encoder
        return encoder.encode
    default, quote = encoder.default, json.encoder.encode_basestring

    def encode(value: Any) -> str:
        if isinstance(value, str):
            return quote(value)
        return "".join(make({}, default, quote, None, ": ", ", ", sort_keys, False, True)(value, 0))

    return encode


# Prebuilt: one execution's values are short, and the layers around the C encoder cost more.
_ENCODE = _encoder(sort_keys=False)
_ENCODE_SORTED = _encoder(sort_keys=True)


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """`json.dumps(value, ensure_ascii=False, sort_keys=...)` for plain JSON values, faster."""
    return (_ENCODE_SORTED if sort_keys else _ENCODE)(value)


def json_text(value: Any, *, sort_keys: bool = False) -> str:
    """`json.dumps(to_json(value), ensure_ascii=False, sort_keys=...)`, faster."""
    return (_ENCODE_SORTED if sort_keys else _ENCODE)(to_json(value))


def embedding_ids(value: Any) -> list[int]:
    """The embedding ids that tagged JSON refers to."""
    if isinstance(value, dict):
        if "$embedding" in value:
            return [int(value["$embedding"])]
        return [i for v in value.values() for i in embedding_ids(v)]
    if isinstance(value, list):
        return [i for v in value for i in embedding_ids(v)]
    return []


def renumber_embeddings(value: Any, ids: dict[int, int]) -> Any:
    """Tagged JSON with its embedding refs pointing at the ids `ids` maps them to."""
    if isinstance(value, dict):
        if "$embedding" in value:
            return {**value, "$embedding": ids.get(value["$embedding"], value["$embedding"])}
        return {k: renumber_embeddings(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [renumber_embeddings(v, ids) for v in value]
    return value


def from_json(value: Any, root: Path) -> Any:
    """Decode a stored output; images resolve against the run folder `root`."""
    if isinstance(value, dict):
        if "$image" in value:
            return ImageRef(value["$image"], root, value.get("sha256", ""))
        if "$embedding" in value:
            return EmbeddingRef(int(value["$embedding"]), value["model"], int(value["dim"]))
        return {_unescape(k): from_json(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v, root) for v in value]
    return value


def to_plain(value: Any) -> Any:
    """The value as output.json shows it: images as relative paths, embeddings as ids."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, ImageRef):
        return value.path
    if isinstance(value, EmbeddingRef):
        return {"embedding": value.id, "model": value.model, "dim": value.dim}
    if isinstance(value, dict):
        return {str(k): v if v.__class__ in _PLAIN else to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if v.__class__ in _PLAIN else to_plain(v) for v in value]
    return str(value)
