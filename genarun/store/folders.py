"""Output folders: `<root>/<tree name>/<YYYY-MM-DD_HH-MM-SS>/` with output.json, logs.json,
assets/ and a copy of the tree; `latest/` is refreshed when a run completes.

A matrix experiment gets one dated folder holding `experiment.json` and one sub-folder per run,
named by its position and matrix values (`01_style-watercolor/`).

Every output folder is marked from the moment it is made: a run folder holds `run.json` (status
`running` until the run ends), an experiment folder `experiment.json`. Whatever looks for trees
skips marked folders (`is_output_folder`): their `tree.yaml` is a copy of the tree that ran and
their JSON files are outputs, never trees.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

# The marker file of each kind of output folder, and keys its JSON always has (a stray file
# of the same name that someone else wrote is not taken for a marker).
OUTPUT_MARKERS = {"run.json": ("run", "tree"), "experiment.json": ("experiment", "runs")}


def read_marker(marker: Path) -> Any:
    """The JSON in a run's or experiment's marker file; None when it is missing, unreadable,
    not JSON, or nested or long past what json reads (anyone can write one)."""
    try:
        return json.loads(marker.read_text(errors="replace"))
    except (OSError, ValueError, RecursionError):
        return None


def is_output_folder(folder: Path) -> bool:
    """Whether `folder` is a run's or an experiment's output folder (or `latest/`, a copy of one)."""
    for name, keys in OUTPUT_MARKERS.items():
        marker = folder / name
        if not marker.is_file():
            continue
        data = read_marker(marker)
        if isinstance(data, dict) and all(key in data for key in keys):
            return True
    return False


def output_folder_of(path: Path) -> Path | None:
    """The output folder that `path` is or lies inside (the outermost), else None."""
    path = Path(os.path.abspath(path))
    start = path if path.is_dir() else path.parent
    found = None
    for folder in (start, *start.parents):
        if is_output_folder(folder):
            found = folder
    return found


def dated_folder(parent: Path, started: float) -> Path:
    """A new folder named by the start time; a suffix keeps two runs in one second apart."""
    from genarun.errors import StoreError

    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(started))
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            folder = parent / (stamp if n == 1 else f"{stamp}_{n}")
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                continue
    except OSError as exc:  # read-only, a file in the way, no permission: the user's to fix
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError | NotADirectoryError):
            reason = "a folder on its path is a file"
        raise StoreError(
            f"cannot create the output folder {parent}: {reason} "
            "(choose a writable place with --out)"
        ) from None
    raise RuntimeError(f"cannot create a run folder in {parent}")


def run_label(position: int, bindings: dict[str, Any]) -> str:
    """The sub-folder name of one run of a matrix experiment."""
    parts = [f"{key}-{_slug(value)}" for key, value in bindings.items()]
    return f"{position:02d}_" + "_".join(parts) if parts else f"{position:02d}"


def _slug(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", "-"))
    text = re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-")
    return text[:40] or "x"


def write_json(path: Path, data: Any, *, outputs: bool = False) -> None:
    """Write JSON atomically (readers never see half a file), never through a link planted at
    the name. `outputs`: the data is model and node outputs, masked by secret value only (see
    genarun.redaction.redact)."""
    from genarun.redaction import redact
    from genarun.store.confined import write_text

    # Secrets and their echoes never reach the output folder (output.json, logs.json, run.json).
    text = json_text(data)
    write_text(path, redact(text, patterns=not outputs) + "\n")


class _NotPlainJson(Exception):
    pass


def _refuse(value: Any) -> Any:
    raise _NotPlainJson


# Plain JSON values only (no NaN or infinities, no objects that need `default=str`), checked at
# the C encoder's speed: those are what orjson writes exactly as json.dumps does.
_PLAIN_CHECK = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=False, default=_refuse
)


def json_text(data: Any) -> str:
    """`json.dumps(data, indent=2, ensure_ascii=False, default=str)`, parsed back the same, at C
    speed: with `indent` json uses its pure-Python encoder (about a tenth of a 10,000-node run
    went to output.json). orjson writes plain JSON values with the same text except how some
    floats are spelled (`0.00001` for `1e-05`); anything else (NaN, which orjson writes as
    null; datetimes and enums, which it writes its own way; integers past 64 bits; non-string
    keys; lone surrogates; deep nesting; cycles) takes json's own route, errors included."""
    import orjson

    try:
        _PLAIN_CHECK.encode(data)
        return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    except (_NotPlainJson, ValueError, TypeError, RecursionError, orjson.JSONEncodeError):
        return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def refresh_latest(tree_folder: Path, source: Path) -> Path:
    """Make `<tree folder>/latest/` a copy of `source` (a run or experiment folder).

    Two processes finishing at once both refresh it: each copies into its own temporary folder
    and swaps it in by renames, retrying when the other's `latest/` appears in between; the
    last one wins and neither fails.
    """
    latest = tree_folder / "latest"
    unique = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = tree_folder / f".latest.tmp-{unique}"
    old = tree_folder / f".latest.old-{unique}"
    try:
        # Links in the source are left out: copying them would copy what a link planted in a
        # run folder points at (any file of the machine) into latest/.
        shutil.copytree(source, tmp, ignore=_links, copy_function=_link_images)
        for _attempt in range(100):
            with contextlib.suppress(FileNotFoundError):
                latest.rename(old)
            try:
                tmp.rename(latest)
                return latest
            except OSError:  # another process's latest/ arrived after ours moved away
                time.sleep(0.01)
            finally:
                shutil.rmtree(old, ignore_errors=True)
        raise OSError(f"could not replace {latest}: other processes keep replacing it")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _link_images(src: str, dst: str) -> Any:
    """Images are hard-linked rather than copied: a trajectory experiment's latest/ held a
    second copy of every PNG (100 MB for 64 runs x 10 steps), written at the end of each run.
    PNGs are written once, by rename, and never changed in place, so the link cannot show a
    later change; other files (JSON that a resume rewrites) are copied."""
    if src.endswith(".png"):
        try:
            os.link(src, dst)
            return dst
        except OSError:  # another file system, or links not allowed: copy
            pass
    return shutil.copy2(src, dst)


def _links(folder: str, names: list[str]) -> set[str]:
    return {name for name in names if os.path.islink(os.path.join(folder, name))}
