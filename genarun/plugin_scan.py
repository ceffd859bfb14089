"""Which entry points the installed distributions declare, read straight from their files.

`importlib.metadata.entry_points()` builds a Distribution for each of the ~150 installed
packages, parses all their entry points and deduplicates them by normalised name: about 3 % of
a one-node `genarun run` for genarun's plugin group, and as much again for pydantic's, which
scans when it builds its first validator. Most installations declare no plugin for either, and
answering that needs only each distribution's entry_points.txt, looked at once for both groups.

The answer is a superset of what importlib.metadata finds (no deduplication of shadowed
copies), so a caller may skip its scan when a group declares nothing new, and scans with
importlib.metadata, as before, whenever it may find something. Where the files could be
missed (a finder that finds distributions its own way, a zip file or an egg on sys.path) the
answer is None: scan as before.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable


def declared_entry_points(groups: Iterable[str]) -> dict[str, set[str]] | None:
    """group -> the values (`module:attr`) that the distributions on sys.path declare for it,
    for each group of `groups`; None when that cannot be known this way."""
    wanted = {group: set[str]() for group in groups}
    for finder in sys.meta_path:
        # The standard path finder is the only one here that finds distributions (pip's,
        # setuptools' editable finders only find modules).
        if hasattr(finder, "find_distributions") and not _is_path_finder(finder):
            return None
    for entry in sys.path:
        if not isinstance(entry, str):
            return None
        root = entry or "."
        if root.lower().endswith(".egg"):
            return None  # its EGG-INFO counts as metadata
        try:
            children = os.listdir(root)
        except NotADirectoryError:
            return None  # a zip file: importlib.metadata looks inside it
        except OSError:
            if os.path.isfile(root):
                return None
            continue  # absent (python311.zip, an editable finder's hook name): nothing there
        for child in children:
            if not child.lower().endswith((".dist-info", ".egg-info")):
                continue
            if not _read_groups(os.path.join(root, child, "entry_points.txt"), wanted):
                return None
    return wanted


def _is_path_finder(finder: object) -> bool:
    from importlib.machinery import PathFinder

    return finder is PathFinder


def _read_groups(path: str, wanted: dict[str, set[str]]) -> bool:
    """Add the values `path` declares for the wanted groups; False where the file cannot be
    read as importlib.metadata reads it."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except (FileNotFoundError, NotADirectoryError):
        return True  # no entry points (or an .egg-info file, which holds none)
    except OSError:
        return False
    if not any(group.encode() in data for group in wanted):
        return True
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    # The format as importlib.metadata.Sectioned reads it: stripped lines, `#` comments,
    # `[group]` headers, `name = value` entries.
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
        elif section in wanted:
            _name, sep, value = line.partition("=")
            if not sep:
                return False
            wanted[section].add(value.strip())
    return True
