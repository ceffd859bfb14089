"""Read YAML and JSON tree files into plain Python data, remembering each value's line.

Both formats produce only JSON types (dict, list, str, int, float, bool, None), so a tree means
the same whichever format it is written in. YAML plain scalars follow the YAML 1.2 core schema
rather than PyYAML's YAML 1.1 rules: `no`, `on` and `2024-01-01` stay text, `010` is ten, and
`1:30` is not sixty-base arithmetic. Mapping keys are always text, as written. Duplicate keys,
non-finite numbers and exotic tags are errors, reported with their line, never silently dropped.

This module is the entry point and checks the top level; `json_reader` and `yaml_reader` read
the formats (YAML syntax errors are put in plain words by `yaml_errors`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from genarun.errors import Problem, TreeError
from genarun.tree.json_reader import JsonReader
from genarun.tree.reader_common import EMPTY, PathKey
from genarun.tree.yaml_reader import YamlReader

__all__ = ["Document", "PathKey", "load_document", "load_text", "read_set_value"]


@dataclass
class Document:
    """A loaded tree file: its plain data, its source text, and the line of every value."""

    path: Path
    data: Any
    text: str
    lines: dict[PathKey, int] = field(default_factory=dict, repr=False)

    def line(self, path: PathKey) -> int | None:
        """The 1-based line of the key or item at `path`, else of its nearest existing ancestor."""
        key = tuple(path)
        while True:
            found = self.lines.get(key)
            if found is not None or not key:
                return found
            key = key[:-1]


def _missing_hint(path: Path) -> str:
    """How to fix a tree path that names nothing: the first part of it that is missing, with
    the closest name in the folder that exists (`examples/stroy`: did you mean 'story'?)."""
    import difflib

    folder = Path(path.anchor) if path.is_absolute() else Path(".")
    for part in path.parts[1:] if path.is_absolute() else path.parts:
        step = folder / part
        if step.exists():
            folder = step
            continue
        try:
            names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        except OSError:
            return "check the path"
        where = "this folder" if str(folder) == "." else str(folder)
        # Names compared without their suffixes: `nope.yaml` is not close to `tree.yaml`.
        stems = {Path(name).stem: name for name in names}
        close = difflib.get_close_matches(Path(part).stem, list(stems), n=1, cutoff=0.6)
        if close:
            return f"{where} has no '{part}': did you mean '{stems[close[0]]}'?"
        trees = [n for n in names if Path(n).suffix.lower() in (".yaml", ".yml", ".json")]
        if trees:
            return f"{where} has no '{part}'; its tree files: {', '.join(trees[:5])}"
        return f"{where} has no '{part}'; check the path"
    return "check the path"


def load_document(path: Path) -> Document:
    """Load a tree file (.json as JSON, anything else as YAML); its top level must be a mapping."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TreeError(
            Problem(f"tree file not found: {path}", file=str(path), hint=_missing_hint(path))
        ) from None
    except IsADirectoryError:
        raise TreeError(
            Problem(f"{path} is a directory, not a tree file", file=str(path))
        ) from None
    except OSError as exc:
        raise TreeError(Problem(f"cannot read {path}: {exc.strerror}", file=str(path))) from None
    try:
        # utf-8-sig drops a byte-order mark, which JSON would otherwise reject.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TreeError(
            Problem(
                f"invalid UTF-8 at byte {exc.start}",
                file=str(path),
                line=line,
                hint="save the file as UTF-8",
            )
        ) from None
    fmt: Literal["yaml", "json"] = "json" if path.suffix.lower() == ".json" else "yaml"
    return _load(text, path, fmt, require_mapping=True)


def load_text(
    text: str, name: str, fmt: Literal["yaml", "json"], *, require_mapping: bool = True
) -> Document:
    """Load tree text named `name` (for messages); with require_mapping=False any value loads."""
    if fmt not in ("yaml", "json"):
        raise ValueError(f"fmt must be 'yaml' or 'json', not {fmt!r}")
    return _load(text, Path(name), fmt, require_mapping=require_mapping)


def read_set_value(raw: str) -> Any:
    """A `--set name=value` value: read as YAML by the same rules as a tree's values (YAML 1.2
    plain scalars, bounded nesting and numbers, no tags); what they do not read is text."""
    if not raw.strip():
        return ""
    try:
        return load_text(raw, "--set", "yaml", require_mapping=False).data
    except TreeError:
        return raw


def _load(
    text: str, path: Path, fmt: Literal["yaml", "json"], *, require_mapping: bool
) -> Document:
    name = str(path)
    if fmt == "json":
        data, lines = JsonReader(text, name).read()
    else:
        data, lines = YamlReader(text, name).read()
    if require_mapping:
        if data is EMPTY:
            raise TreeError(
                Problem(
                    "the file is empty",
                    file=name,
                    line=1,
                    hint="a tree starts with 'genarun: 1', 'name:' and 'nodes:'",
                )
            )
        if not isinstance(data, dict):
            raise TreeError(
                Problem(
                    f"the top level must be a mapping of keys to values, not {_kind(data)}",
                    file=name,
                    line=lines.get(()),
                    hint="a tree starts with 'genarun: 1', 'name:' and 'nodes:'",
                )
            )
    elif data is EMPTY:
        data = None
    return Document(path=path, data=data, text=text, lines=lines)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "a mapping",
        list: "a list",
        str: "text",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)
