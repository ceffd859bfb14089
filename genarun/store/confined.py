"""Reading and writing files inside one folder (a run's, an export's), never outside it.

A path that names a file of a run folder is relative, made of plain names (no `..`, no empty or
absolute part, no backslash or NUL), and is resolved one name at a time from the folder with
`O_NOFOLLOW`: a symlink planted anywhere below the folder (`assets -> /etc`, or
`.output.json.tmp -> ~/.bashrc` before a resume) is refused, never followed. Writes go to a new
temporary file created with `O_EXCL` (which fails on anything already there, a link included)
and are renamed over the target, which replaces a planted link instead of writing through it.
The folder itself is the user's choice (`--out`, a symlinked home) and is opened as given.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from genarun.errors import StoreError

# The only image references genarun writes: `assets/<node id>[-i...][_n].png`.
ASSET_REF = re.compile(r"assets/[A-Za-z0-9_-]+\.png")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafePath(StoreError):
    """A path that would leave its folder: absolute, `..`, or through a symlink."""


class FolderNotWritable(StoreError):
    """A run's folder cannot be written (made read-only, full): the run stops, resumable."""


# Errors of the folder rather than of one file: the run stops instead of failing node by node.
_FOLDER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def folder_error(root: Path, exc: OSError) -> FolderNotWritable | None:
    if exc.errno not in _FOLDER_ERRNOS:
        return None
    return FolderNotWritable(f"cannot write to the folder {root}: {exc.strerror}")


def as_folder_error(root: Path, exc: BaseException) -> FolderNotWritable:
    if isinstance(exc, FolderNotWritable):
        return exc
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return FolderNotWritable(f"cannot write to the folder {root}: {reason}")


def parts_of(rel: object) -> list[str]:
    """The names of a relative path inside a folder; UnsafePath for anything else."""
    if not isinstance(rel, str) or not rel:
        raise UnsafePath(f"{rel!r} is not a path inside the run folder")
    if "\x00" in rel or "\\" in rel or rel.startswith("/"):
        raise UnsafePath(f"{rel!r} is not a plain relative path inside the run folder")
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePath(f"{rel!r} leaves the run folder or is not a plain relative path")
    return parts


def is_asset_ref(rel: object) -> bool:
    """Whether `rel` has the form of an image genarun wrote (`assets/cover-3.png`)."""
    return isinstance(rel, str) and ASSET_REF.fullmatch(rel) is not None


@contextlib.contextmanager
def _dir_fd(root: Path, names: list[str], *, create: bool) -> Iterator[int]:
    """A descriptor of `root/names...`, each name opened without following a link."""
    fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for name in names:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=fd)
            try:
                child = os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if _is_link(fd, name):
                    raise UnsafePath(f"{root}: '{name}' is a symbolic link; not followed") from None
                raise exc
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _is_link(dir_fd: int, name: str) -> bool:
    import stat

    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def read_bytes(root: Path, rel: str) -> bytes:
    """The bytes of `root/rel`, refusing paths that leave `root` and symlinks on the way."""
    *dirs, name = parts_of(rel)
    with _dir_fd(root, dirs, create=False) as dfd:
        try:
            fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _CLOEXEC, dir_fd=dfd)
        except OSError:
            if _is_link(dfd, name):
                raise UnsafePath(f"{root / rel} is a symbolic link; not followed") from None
            raise
        with os.fdopen(fd, "rb") as fh:
            return fh.read()


def is_file(root: Path, rel: str) -> bool:
    """Whether `root/rel` is a regular file reached without links or `..`."""
    import stat

    try:
        *dirs, name = parts_of(rel)
        with _dir_fd(root, dirs, create=False) as dfd:
            mode = os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode
            return stat.S_ISREG(mode)
    except (OSError, UnsafePath):
        return False


def write_file(root: Path, rel: str, write: bytes | Callable[[BinaryIO], None]) -> str:
    """Write `root/rel` atomically (readers never see half a file) without following links;
    missing folders on the way are created. Returns the sha256 of the bytes written."""
    *dirs, name = parts_of(rel)
    try:
        return _write_file(root, dirs, name, write)
    except OSError as exc:
        error = folder_error(root, exc)
        if error is None:
            raise
        raise error from None


def _write_file(
    root: Path, dirs: list[str], name: str, write: bytes | Callable[[BinaryIO], None]
) -> str:
    with _dir_fd(root, dirs, create=True) as dfd:
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
        fd = os.open(tmp, flags, 0o666, dir_fd=dfd)
        try:
            with os.fdopen(fd, "w+b") as fh:
                if isinstance(write, bytes):
                    fh.write(write)
                else:
                    write(fh)
                fh.flush()
                fh.seek(0)
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
    return digest


def write_text(path: Path, text: str) -> None:
    """Write a file directly in a folder the user chose (output.json, run.json) atomically,
    through a new temporary file: a link planted at the name or its temporary is replaced."""
    write_file(path.parent, path.name, text.encode())
