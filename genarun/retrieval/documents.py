"""The tree's base documents (`documents:`): files, folders and globs inside the tree's folder,
read and chunked. Vectors are stored per (content hash, model) in `document_vectors`, so a
chunk is embedded once whatever run, tree or file it comes from.
"""

from __future__ import annotations

import glob
import threading
from dataclasses import dataclass
from pathlib import Path

from genarun.retrieval.chunking import (
    IMAGE_SUFFIXES,
    TEXT_SUFFIXES,
    Chunk,
    chunk_text,
    image_hash,
    text_hash,
    text_of,
)
from genarun.store.confined import UnsafePath, is_file, parts_of, read_bytes
from genarun.tree.schema import DocumentsSpec

SUFFIXES = TEXT_SUFFIXES | IMAGE_SUFFIXES
_KINDS = "files, folders or globs of .md, .txt, .json, .html and images (.png, .jpg, .webp)"


@dataclass(frozen=True)
class DocumentProblem:
    entry: int  # the position of the entry in `documents:` (its line is looked up from it)
    message: str
    hint: str


def documents_spec(value: list[str] | DocumentsSpec | None) -> DocumentsSpec | None:
    """The tree's `documents:` in its long form."""
    if value is None or isinstance(value, DocumentsSpec):
        return value
    return DocumentsSpec.model_validate({"paths": list(value)})


def document_files(tree_dir: Path, spec: DocumentsSpec) -> tuple[list[str], list[DocumentProblem]]:
    """The files the entries name (relative to the tree's folder, sorted, each once), and the
    entries that name none."""
    found: dict[str, None] = {}
    problems: list[DocumentProblem] = []
    for position, entry in enumerate(spec.paths):
        try:
            files = _expand(tree_dir, entry)
        except UnsafePath:
            problems.append(
                DocumentProblem(
                    position,
                    f"documents: '{entry}' is not inside the tree's folder",
                    "name files below the tree's folder, relative to it, without '..' (a tree "
                    "never reads files elsewhere on the machine)",
                )
            )
            continue
        if not files:
            what = "matches no file" if glob.has_magic(entry) else "does not exist"
            problems.append(
                DocumentProblem(
                    position,
                    f"documents: '{entry}' {what} in {tree_dir}",
                    f"give {_KINDS}, relative to the tree's folder",
                )
            )
        for rel in files:
            if Path(rel).suffix.lower() not in SUFFIXES:
                if not glob.has_magic(entry) and rel == entry.rstrip("/"):
                    problems.append(
                        DocumentProblem(
                            position,
                            f"documents: '{entry}' is not a kind of file genarun reads",
                            f"give {_KINDS}",
                        )
                    )
                continue
            found[rel] = None
    return sorted(found), problems


def _expand(tree_dir: Path, entry: str) -> list[str]:
    cleaned = entry.strip().rstrip("/")
    if glob.has_magic(cleaned):
        parts_of(cleaned.replace("**", "x").replace("*", "x").replace("?", "x"))
        matches = glob.glob(cleaned, root_dir=tree_dir, recursive=True)
        return [m for m in sorted(matches) if is_file(tree_dir, m)]
    parts_of(cleaned)
    target = tree_dir / cleaned
    if target.is_dir() and not target.is_symlink():
        return [
            p.relative_to(tree_dir).as_posix()
            for p in sorted(target.rglob("*"))
            if is_file(tree_dir, p.relative_to(tree_dir).as_posix())
        ]
    return [cleaned] if is_file(tree_dir, cleaned) else []


# Chunks of a file by (path, modification time, size, chunk settings): a foreach of retrieve
# nodes reads each document once, not once per item.
_chunk_cache: dict[tuple[str, int, int, int, int], list[Chunk]] = {}
_chunk_lock = threading.Lock()


def load_chunks(tree_dir: Path, spec: DocumentsSpec) -> list[Chunk]:
    """Every chunk of every document, in file order; a ValueError names a file it cannot read."""
    files, problems = document_files(tree_dir, spec)
    if problems:
        raise ValueError(f"{problems[0].message} ({problems[0].hint})")
    chunks: list[Chunk] = []
    for rel in files:
        stat = (tree_dir / rel).stat()
        key = (str(tree_dir / rel), stat.st_mtime_ns, stat.st_size, spec.chunk_size, spec.overlap)
        with _chunk_lock:
            cached = _chunk_cache.get(key)
        if cached is None:
            cached = _file_chunks(tree_dir, rel, spec)
            with _chunk_lock:
                _chunk_cache[key] = cached
        chunks.extend(cached)
    return chunks


def _file_chunks(tree_dir: Path, rel: str, spec: DocumentsSpec) -> list[Chunk]:
    data = read_bytes(tree_dir, rel)
    suffix = Path(rel).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return [Chunk(rel, 0, None, image_hash(data))]
    try:
        text = text_of(suffix, data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"document '{rel}' is not UTF-8 text") from None
    except ValueError as exc:
        raise ValueError(f"document '{rel}': {exc}") from None
    pieces = chunk_text(text, spec.chunk_size, spec.overlap)
    return [Chunk(rel, i, piece, text_hash(piece)) for i, piece in enumerate(pieces)]
