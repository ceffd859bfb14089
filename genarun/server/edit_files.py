"""The tree files the server's editor may read and write: existing tree files of the trees
folder, named by a plain relative path, reached without a link, never anything else.

The path comes from the request (the page's URL), so it is an attacker's choice: it must be
relative and made of plain names (no `..`, `.`, empty or hidden part, no absolute path,
backslash, NUL or control character), end in .yaml, .yml or .json, lie outside any run output
folder, and name a regular file that starts a tree (`genarun:`). It is opened one name at a
time from the trees folder with O_NOFOLLOW (genarun/store/confined.py), so a symlink anywhere
on the way, in or out of the folder, is refused rather than followed, and a save writes a new
file renamed over the old one, which never writes through a link planted at the name.

A save states the digest of the text it was loaded from; when the file on disk has changed
since (another editor, a `git pull`), it is refused (409) instead of overwriting that change.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from genarun.server.start_page import TREE_SUFFIXES

MAX_NAME = 300
MAX_TREE_BYTES = 256 * 1024  # posted back twice (state and text box), URL-encoded, under 1 MiB
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_. +@,=-]{0,127}")
_save_lock = threading.Lock()  # check-then-write of two saves in this server never interleave


class EditRefused(Exception):
    """A file the editor will not read or write; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TreeFile:
    name: str  # relative to the trees folder, as given
    text: str
    digest: str  # sha256 of the bytes on disk: what a save must still find there

    @property
    def fmt(self) -> str:
        return "json" if self.name.lower().endswith(".json") else "yaml"


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_name(name: object) -> list[str]:
    """The parts of an editable tree file's name; EditRefused for any other name."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise EditRefused(404, "name a tree file of the trees folder")
    shown = name[:100]
    if name.startswith("/") or "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise EditRefused(403, f"{shown!r} is not a plain relative path in the trees folder")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise EditRefused(403, f"{shown!r} leaves the trees folder or is not a plain path")
    if len(parts) > 4 or not all(_PART.fullmatch(p) for p in parts):
        raise EditRefused(403, f"{shown!r}: the editor opens plain file names only")
    if not name.lower().endswith(TREE_SUFFIXES):
        raise EditRefused(403, f"{shown!r} is not a tree file (.yaml, .yml or .json)")
    return parts


def read_tree_file(root: Path, name: object) -> TreeFile:
    """An editable tree file's text and digest (EditRefused: why it is not one)."""
    from genarun.store.confined import UnsafePath, is_file, read_bytes
    from genarun.store.folders import is_output_folder
    from genarun.tree.discover import is_tree_text

    parts = check_name(name)
    assert isinstance(name, str)
    root = Path(root)
    if not is_file(root, name):
        raise EditRefused(404, f"no tree file {name[:100]} in the trees folder")
    for depth in range(len(parts)):  # a run's copy of its tree is a record, not a source
        if is_output_folder(root.joinpath(*parts[:depth])):
            raise EditRefused(
                403, f"{name[:100]} is in a run's output folder: edit the tree itself"
            )
    try:
        data = read_bytes(root, name)
    except (OSError, UnsafePath):
        raise EditRefused(404, f"cannot read {name[:100]} in the trees folder") from None
    if len(data) > MAX_TREE_BYTES:
        raise EditRefused(
            413, f"{name[:100]} is over {MAX_TREE_BYTES // 1024} KiB: edit it as text"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise EditRefused(422, f"{name[:100]} is not UTF-8 text") from None
    if not is_tree_text(text):
        raise EditRefused(403, f"{name[:100]} does not start a tree (no 'genarun:' key)")
    return TreeFile(name, text, digest_of(data))


def save_tree_file(root: Path, name: str, text: str, loaded_digest: str) -> TreeFile:
    """Write `text` over the tree file if it still holds what was loaded (`loaded_digest`);
    EditRefused(409) when it changed on disk since. Keeps the file's permission bits."""
    from genarun.store.confined import write_file

    data = text.encode()
    if len(data) > MAX_TREE_BYTES:
        raise EditRefused(413, f"the tree is over {MAX_TREE_BYTES // 1024} KiB: not saved")
    with _save_lock:
        current = read_tree_file(root, name)
        if current.digest != loaded_digest:
            raise EditRefused(
                409,
                f"{name[:100]} changed on disk since you loaded it: not saved. Reload it to "
                "see the change (your edits are lost on reload: copy them from the text first)",
            )
        mode = _mode(Path(root) / name)
        digest = write_file(Path(root), name, data)
        if mode is not None:
            _chmod(Path(root) / name, mode)
    return TreeFile(name, text, digest)


def _mode(path: Path) -> int | None:
    try:
        return path.stat(follow_symlinks=False).st_mode & 0o7777
    except OSError:
        return None


def _chmod(path: Path, mode: int) -> None:
    try:  # the file just written, opened without following a link that replaced it since
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
