"""Writing inside one folder only: the export folder of `genarun export site`.

Paths come from runs (a site-gen node's `files:`, which a model may have written), so each is
checked as text first (relative, plain ASCII names, no `..`, no hidden or device names, on an
allowlist of globs, not too large), then written without following links: every folder on the
way is opened with O_NOFOLLOW relative to the one before it, and files are created with
O_EXCL|O_NOFOLLOW (or swapped in by a rename inside their folder with --force), so a link planted
in the folder, even between the check and the write, never leads outside it.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from genarun.errors import PublishError

# One name of a path: ASCII letters, digits and . _ - + @ only. Look-alike letters (fullwidth
# dots and slashes, the one-dot leader), NUL, control characters, backslashes and colons never
# reach the file system.
_NAME = re.compile(r"[A-Za-z0-9_+@-][A-Za-z0-9._+@-]*")
# Names Windows reserves (with any extension): a file called con.txt breaks a checkout there.
_ROUTE = re.compile(r"[A-Za-z0-9._+@\[\]-]+")
_DEVICE = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9]|conin\$|conout\$)(\..*)?", re.IGNORECASE)
MAX_NAME = 100
MAX_PATH = 240
MAX_DEPTH = 12


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob over /-separated paths: `*` within a name, `**/` any folders, `{a,b}` choices."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:[^/]+/)*"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "{":
            end = pattern.index("}", i)
            out += "(?:" + "|".join(re.escape(x) for x in pattern[i + 1 : end].split(",")) + ")"
            i = end + 1
            continue
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)


def path_problem(
    path: object, allow: Iterable[str] | None = None, *, trusted: bool = False
) -> str | None:
    """Why `path` may not be written in an export folder, or None (`trusted`: genarun's own
    template files, which may be hidden (.gitignore) or Astro routes ([id].astro))."""
    if not isinstance(path, str):
        return f"a path is a string, not {type(path).__name__}"
    if not path:
        return "the path is empty"
    if "\x00" in path:
        return "it holds a NUL character"
    if path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", path):
        return "it is absolute: paths are relative to the export folder"
    if "\\" in path:
        return "it holds a backslash: separate folders with /"
    if len(path) > MAX_PATH:
        return f"it is longer than {MAX_PATH} characters"
    parts = path.split("/")
    if len(parts) > MAX_DEPTH:
        return f"it is more than {MAX_DEPTH} folders deep"
    for part in parts:
        if part in ("", "."):
            return "it has an empty or '.' part (// or /./)"
        if part == "..":
            return "it climbs out with '..'"
        if part.startswith(".") and not trusted:
            return f"'{part}' is a hidden name"
        if len(part) > MAX_NAME:
            return f"the name '{part[:20]}...' is longer than {MAX_NAME} characters"
        if not (_ROUTE if trusted else _NAME).fullmatch(part):
            bad = sorted({c for c in part if not re.fullmatch(r"[A-Za-z0-9._+@-]", c)})
            shown = ", ".join(repr(c) for c in bad[:5])
            return f"the name {part!r} holds characters other than ASCII letters, digits and . _ - + @ ({shown})"
        if _DEVICE.fullmatch(part):
            return f"'{part}' is a device name on Windows"
        if part.endswith((".", " ")):
            return f"'{part}' ends with a dot"
    if allow is not None:
        patterns = list(allow)
        if not any(glob_regex(p).fullmatch(path) for p in patterns):
            return f"it is not on the allowlist ({', '.join(patterns)})"
    return None


@dataclass
class ExportFolder:
    """A folder that files are written into, and never out of."""

    root: Path
    force: bool = False
    written: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def ensure(self) -> None:
        """Create the folder (the one the user named; a link there is theirs to make)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise PublishError(
                f"{self.root} is a file, not a folder: choose another --out"
            ) from None
        except OSError as exc:
            raise PublishError(f"cannot create {self.root}: {exc.strerror or exc}") from None

    def existing(self, path: str) -> bool:
        """Whether something (a file, a folder, a link) is at `path` already."""
        try:
            fd = self._open_parent(path, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            os.stat(PurePosixPath(path).name, dir_fd=fd, follow_symlinks=False)
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(fd)

    def write(
        self,
        path: str,
        content: bytes | str,
        *,
        allow: Iterable[str] | None = None,
        trusted: bool = False,
    ) -> None:
        """Write one file at `path` (relative, checked) inside the folder."""
        problem = path_problem(path, allow, trusted=trusted)
        if problem:
            raise PublishError(f"refused to write '{path}': {problem}")
        data = content.encode() if isinstance(content, str) else content
        fd = self._open_parent(path, create=True)
        try:
            self._write_at(fd, path, data)
        finally:
            os.close(fd)
        self.written.append(path)

    def prune(self, folder: str, keep: set[str], suffix: str) -> list[str]:
        """Remove the files named `*suffix` in `folder` (relative) that are not in `keep`
        (paths relative to the root): what an earlier export left that this one did not
        write. Links are removed as links; nothing outside the folder is touched."""
        try:
            fd = self._open_parent(f"{folder}/x", create=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        removed = []
        try:
            for entry in os.scandir(fd):
                rel = f"{folder}/{entry.name}"
                if entry.name.endswith(suffix) and rel not in keep:
                    if entry.is_dir(follow_symlinks=False):
                        continue
                    os.unlink(entry.name, dir_fd=fd)
                    removed.append(rel)
        finally:
            os.close(fd)
        return removed

    def _open_parent(self, path: str, *, create: bool) -> int:
        """An fd of the folder that will hold `path`, reached without following any link."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in PurePosixPath(path).parts[:-1]:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, mode=0o755, dir_fd=fd)
                try:
                    child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    if not create and isinstance(exc, FileNotFoundError | NotADirectoryError):
                        raise
                    raise PublishError(
                        f"refused to write '{path}': '{part}' on its way is a link or a file, "
                        "not a folder (links are never followed out of the export folder)"
                    ) from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _write_at(self, fd: int, path: str, data: bytes) -> None:
        name = PurePosixPath(path).name
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            current = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is not None:
            if not stat.S_ISREG(current.st_mode):
                what = "a link" if stat.S_ISLNK(current.st_mode) else "a folder or special file"
                raise PublishError(
                    f"refused to write '{path}': {what} is there (never followed or replaced)"
                )
            if not self.force:
                raise PublishError(
                    f"refused to write '{path}': the file exists (--force replaces it)"
                )
        # A new file under a temporary name, then a rename within the same folder: readers never
        # see half a file, and a link planted at `name` in between is replaced, not followed.
        tmp = f".{name}.genarun-{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=fd)
        out = os.open(tmp, flags, 0o644, dir_fd=fd)
        try:
            with os.fdopen(out, "wb", closefd=False) as handle:
                handle.write(data)
        finally:
            os.close(out)
        if current is None and not self.force:
            try:  # without --force, what appeared meanwhile is not replaced either
                os.link(tmp, name, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                raise PublishError(
                    f"refused to write '{path}': the file exists (--force replaces it)"
                ) from None
            finally:
                os.unlink(tmp, dir_fd=fd)
            return
        os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)


def read_inside(root: Path, rel: object, *, limit: int) -> bytes:
    """The bytes of a file a run names (an image's path) inside `root`: a regular file, reached
    without following any link, at most `limit` bytes; PublishError saying why not."""
    problem = path_problem(rel)
    if problem:
        raise PublishError(f"'{rel}': {problem}")
    assert isinstance(rel, str)
    parts = rel.split("/")
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        raise PublishError(f"the run folder {root} is gone") from None
    try:
        for part in parts[:-1]:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
        file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except FileNotFoundError:
        raise PublishError(f"'{rel}' is missing from the run folder {root}") from None
    except OSError:
        raise PublishError(f"'{rel}' is a link or not a file (links are never followed)") from None
    finally:
        os.close(fd)
    try:
        info = os.fstat(file_fd)
        if not stat.S_ISREG(info.st_mode):
            raise PublishError(f"'{rel}' is not a regular file")
        if info.st_size > limit:
            raise PublishError(f"'{rel}' is larger than {limit} bytes")
        with os.fdopen(file_fd, "rb", closefd=False) as handle:
            return handle.read(limit + 1)[:limit]
    finally:
        os.close(file_fd)
