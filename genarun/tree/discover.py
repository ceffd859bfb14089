"""Finding tree files in folders, for commands and tests that take a folder of trees.

Run outputs are never trees: a run writes `tree.yaml` (a copy of the tree that ran), and
`output.json`, `logs.json`, `run.json` beside it, in a folder marked as an output folder
(`genarun.store.folders.is_output_folder`). Those folders, `latest/` among them, are skipped
when searching, and named as a mistake when given directly.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from genarun.errors import UserError
from genarun.store.folders import is_output_folder, output_folder_of, read_marker

TREE_SUFFIXES = (".yaml", ".yml", ".json")
_TREE_START = re.compile(r'^\s*(genarun\s*:|\{?\s*"genarun"\s*:)', re.MULTILINE)


def is_tree_text(text: str) -> bool:
    """Whether a file's text starts a tree (has a top-level 'genarun:' key)."""
    return bool(_TREE_START.search(text))


def trees_in(folder: Path) -> tuple[list[Path], list[Path]]:
    """The YAML and JSON files directly in a folder: (trees, others), a tree being a file
    with a 'genarun:' key (not a CI config, ...). A run's output folder is refused."""
    check_not_output(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TREE_SUFFIXES)
    trees = [p for p in files if is_tree_text(p.read_text(errors="replace"))]
    return trees, [p for p in files if p not in trees]


def find_trees(root: Path) -> tuple[list[Path], list[Path]]:
    """The YAML and JSON files under `root`, at any depth: (trees, others). Output folders
    (and hidden ones, such as a `latest/` being copied) are skipped with all they hold."""
    trees: list[Path] = []
    others: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        if is_output_folder(folder):
            dirnames.clear()
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = folder / name
            if path.suffix.lower() not in TREE_SUFFIXES:
                continue
            text = path.read_text(errors="replace")
            (trees if is_tree_text(text) else others).append(path)
    return trees, others


def check_not_output(path: Path) -> None:
    """Refuse a path that lies in a run's output folder: what is there was written by a run."""
    folder = output_folder_of(path)
    if folder is None:
        return
    source = _source_tree(folder)
    fix = f"name the tree itself ({source})" if source else "name the tree itself"
    raise UserError(
        f"{path} is in the output folder of a run ({folder}): its tree file is a copy of the "
        f"tree that ran, and its JSON files are outputs; {fix}, or run part of that run again "
        "with genarun rerun RUN --node ID"
    )


def _source_tree(folder: Path) -> str | None:
    """The tree file a run folder came from, as its run.json records it (any run under it)."""
    for marker in (folder / "run.json", *sorted(folder.glob("*/run.json"))):
        data = read_marker(marker)
        tree_file = data.get("tree_file") if isinstance(data, dict) else None
        if isinstance(tree_file, str):
            return tree_file
    return None


def no_trees_message(folder: Path, *, several: bool = False) -> str:
    """Why a folder given as TREE holds no tree, naming those of its sub-folders (a folder of
    examples, one tree each): commands read only the folder itself. `several`: the command
    takes several trees (validate), so a glob of them is the fix."""
    message = (
        f"{folder} is a folder, and holds no tree file (a .yaml, .yml or .json file with a "
        "'genarun:' key)"
    )
    deeper, _others = find_trees(folder)
    if not deeper:
        return f"{message}: name a tree file"
    shown = ", ".join(str(p) for p in deeper[:5]) + (", ..." if len(deeper) > 5 else "")
    count = f"{len(deeper)} tree{'s' if len(deeper) != 1 else ''}"
    one_level = all(len(p.relative_to(folder).parts) == 2 for p in deeper)
    if several and one_level and len({p.name for p in deeper}) == 1:
        how = f"name them: {folder / '*' / deeper[0].name}"
    else:
        how = f"name {'them' if several else 'one'}: {deeper[0]}" + (" ..." if several else "")
    return f"{message}; its sub-folders hold {count} ({shown}): {how}"
