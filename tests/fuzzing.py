"""Tree mutations for the fuzzer (tests/test_fuzz.py): a corpus of real trees and the hostile
edits made to them.

The corpus is every example tree (examples/) and scenario tree (tests/trees/), read with
genarun's own loader so the data is exactly what a tree holds. A mutation picks a place in a
tree and puts something there a careless or hostile author might write: a value of the wrong
type, deep nesting, a long or strange string, a key with brackets, a Jinja or pick fragment, a
number too large to print. The mutated tree is written back as JSON or YAML; numbers past
Python's int-to-text digit limit are spliced in as raw digits, since neither json nor PyYAML
can print them.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from genarun.tree.load import load_document

ROOT = Path(__file__).resolve().parent.parent
CORPUS_GLOBS = ("examples/*/tree.yaml", "tests/trees/*.yaml", "tests/trees/*.json")


@cache
def corpus() -> dict[str, Any]:
    """The trees to mutate, by path relative to the repository, as plain data."""
    trees: dict[str, Any] = {}
    for pattern in CORPUS_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            trees[str(path.relative_to(ROOT))] = load_document(path).data
    return trees


@dataclass(frozen=True)
class BigInt:
    """A whole number written as its digits, past what Python will print (4300 digits)."""

    digits: str


def _nested_list(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def _nested_map(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


def _nested_nodes(depth: int, kind: str = "group") -> Any:
    """A chain of nodes, each the only child of the one above."""
    node: dict[str, Any] = {"id": f"n{depth}", "kind": "template", "text": "leaf"}
    for i in range(depth - 1, -1, -1):
        node = {"id": f"n{i}", "kind": kind, "children": [node]}
    return node


# Fragments of template syntax that have crashed or hung template engines and parsers.
TEMPLATE_FRAGMENTS = [
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "{{ }}",
    "{{ x }}",
    "{{ plan }}",
    "{{ seed }}",
    "{{ run.id }}",
    "{{ item }}",
    "{{ nope | nofilter }}",
    "{{ 1 is nosuchtest }}",
    "{% for x in y %}",
    "{% endfor %}",
    "{% if %}",
    "{% raw %}{{ x }}",
    "{% set a = 1 %}{{ a }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ 10**5000 }}",
    "{{ 10 ** 400 }}",
    "{{ 2**64 }}",
    "{{ -(2**63) }}",
    "{{ 1e308 * 10 }}",
    # Work that must be refused (or left to run time), never done while validating.
    "{{ 2**99999999999 }}",
    "{{ 9**9**9**9 }}",
    "{{ 'a' * 10**9 }}",
    "{{ [1] * 10**8 }}",
    "{{ (1,) * 10**9 }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ 'ab' | center(10**9) }}",
    "{{ range(10**9) | list }}",
    "{{ lipsum(10**6) }}",
    "{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}",
    "{{ 1/0 }}",
    "{{ 1 // 0 }}",
    "{{ 1 % 0 }}",
    "{{ '%s' % 1 }}",
    "{{ '{:>20}'.format(1) }}",
    "{{ [1, 2][5] }}",
    "{{ {}['a'] }}",
    "{{ range(5) | list }}",
    "{{ 'a' ~ 1 }}",
    "{{ x if x }}",
    "{{ (((1))) }}",
    "{{ " + "(" * 150 + "1" + ")" * 150 + " }}",
    "{{ " + "(" * 1500 + "1" + ")" * 1500 + " }}",
    "{{ " + "[" * 400 + "1" + "]" * 400 + " }}",
    "{{ " + "-" * 3000 + "1 }}",
    "{{ " + "not " * 2000 + "1 }}",
    "{{ 1" + " + 1" * 2000 + " }}",
    "{{ x" + ".a" * 2000 + " }}",
    "{{ x" + " | upper" * 2000 + " }}",
    "{% if 1 %}" * 300 + "{% endif %}" * 300,
    "[a | b]",
    "[a | [b | c]]",
    "[3::a | b]",
    "[0::a | b]",
    "[-1::a | b]",
    "[99999999999999999999999::a | b]",
    "[1e999::a | b]",
    "[::a | ]",
    "[ | ]",
    "[|]",
    "[a |",
    "a | b]",
    "\\[",
    "\\]",
    "\\|",
    "[" * 300 + "a | b" + "]" * 300,
    "[" * 3000 + "a | b" + "]" * 3000,
    "[a | " * 1000 + "b" + "]" * 1000,
    "[a|" * 200 + "b" + "|c]" * 200,
    "[" * 500,
    "]" * 500,
]

# Keys that are not identifiers or that look like syntax.
ODD_KEYS = [
    "",
    " ",
    "a[0]",
    "[",
    "]",
    "kind[",
    "[a | b]",
    "{{ x }}",
    "a.b",
    "a-b",
    "1",
    "__class__",
    "__init__",
    "self",
    "model_config",
    "as",
    "as_",
    "seed",
    "children",
    "kind",
    "id",
    "$image",
    "\u00e9t\u00e9",
    "\u202eevil",
    "k" * 300,
    "x\n",
    "x\x00",
]

ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "\x1b[31mred\x1b[0m",
    "\r",
    "a\rb",
    "\u0085",
    "\u2028",
    "\ufeff",
    "\u202e",
    "\u200b",
    "e\u0301\u0301\u0301\u0301",
    "\U0001f98e",
    "\uffff",
    "\U0010ffff",
    "x\n",
    "\n",
    "-",
    "null",
    "true",
    "1",
    "1e999",
    "NaN",
    "random",
    "dummy",
    "tiny-gpt2",
    "/",
    "/etc/passwd",
    "../../..",
    "~",
    "a/b",
    "C:\\x",
    ".",
    "..",
    "dummy:",
    "openai:",
    "hf:",
    "local:/nonexistent",
    "x" * 300,
    "m" * 5000,
    "a/" * 200,
    "y" * 100_000,
    "%s%s%n",
    "{0}{1}",
]


@cache
def field_names() -> list[str]:
    """Every field a node of a registered kind, or the tree's top level, may have."""
    from genarun.plugins import registry
    from genarun.tree.schema import TreeSpec

    names = {f.alias or n for n, f in TreeSpec.model_fields.items()}
    for kind in registry().kinds.values():
        names |= {f.alias or n for n, f in kind.params.model_fields.items()}
    return sorted(names)


KINDS = [
    "template",
    "group",
    "generate",
    "image",
    "caption",
    "embed",
    "cycle",
    "persistence",
    "Template",
    "nope",
]


def wrong_types() -> st.SearchStrategy[Any]:
    """Plain values of every JSON type, including ones no field expects."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.sampled_from(ODD_STRINGS),
    )
    return st.one_of(
        scalars,
        st.lists(scalars, max_size=3),
        st.dictionaries(st.text(max_size=8), scalars, max_size=3),
        st.sampled_from(
            [
                [],
                {},
                [[]],
                [{}],
                {"provider": "dummy"},
                {"provider": ["dummy"]},
                {"provider": {"a": 1}},
                {"provider": "dummy", "id": ["x"]},
                {"provider": "dummy", "options": "fast"},
                {"provider": "dummy", "options": [1]},
                {"provider": "dummy", "options": {"steps": {"a": 1}}},
                {"provider": "nope", "id": "x"},
                {"id": "x" * 300},
                {"provider": "openai", "id": "gpt", "options": {"base_url": 5}},
                {"id": "a", "kind": "template"},
                [{"id": "a", "kind": "template", "text": "x"}],
            ]
        ),
    )


def huge_numbers() -> st.SearchStrategy[Any]:
    return st.sampled_from(
        [
            2**63,
            -(2**63) - 1,
            2**64,
            10**20,
            -(10**30),
            10**400,
            1e308,
            -1e308,
            5e-324,
            BigInt("1" + "0" * 5000),
            BigInt("-" + "9" * 4500),
            BigInt("1" + "0" * 100_000),
        ]
    )


def deep_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(10, 2000).map(_nested_list),
        st.integers(10, 2000).map(_nested_map),
        st.sampled_from([50, 300, 1200]).map(_nested_nodes),
        st.sampled_from([50, 300]).map(lambda d: [_nested_nodes(d, "template")]),
    )


def hostile_values() -> st.SearchStrategy[Any]:
    """What a mutation puts in place of a value."""
    return st.one_of(
        wrong_types(),
        huge_numbers(),
        deep_values(),
        st.sampled_from(ODD_STRINGS),
        st.sampled_from(TEMPLATE_FRAGMENTS),
        st.sampled_from(KINDS),
        st.text(min_size=1, max_size=40),
    )


def _places(data: Any, most_depth: int = 40) -> list[tuple[Any, ...]]:
    """Every path to a value in the tree (the root is ()), not below `most_depth` levels: the
    inside of an already deep value is no more interesting than its top."""
    out: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        out.append(path)
        if len(path) >= most_depth:
            continue
        if isinstance(value, dict):
            stack.extend(((*path, k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*path, i), v) for i, v in reversed(list(enumerate(value))))
    return out


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(data, path[:-1])[path[-1]] = value
    return data


def same_type_values(value: Any) -> st.SearchStrategy[Any]:
    """Hostile values of the type `value` has, which pass the format's type checks and so
    reach the later stages (compiling templates, resolving models)."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.one_of(st.integers(), huge_numbers().filter(lambda v: isinstance(v, int)))
    if isinstance(value, float):
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(value, str):
        fragment = st.sampled_from(TEMPLATE_FRAGMENTS + ODD_STRINGS)
        return st.one_of(
            fragment,
            st.tuples(fragment, fragment).map("".join),
            fragment.map(lambda f: value + " " + f),
            st.sampled_from(KINDS),
            st.text(max_size=30),
        )
    if isinstance(value, list):
        return st.lists(st.one_of(st.sampled_from(value or ["x"]), hostile_values()), max_size=5)
    return hostile_values()


def _names(data: Any) -> list[str]:
    """The node ids, var names and matrix keys of a tree: what its templates may name."""
    names = []
    for path in _places(data):
        value = _get(data, path)
        if isinstance(value, dict):
            if isinstance(value.get("id"), str) and "kind" in value:
                names.append(value["id"])
            if path and path[-1] in ("vars", "matrix"):
                names.extend(str(k) for k in value)
    return names or ["x"]


def _gentle_edit(draw: st.DrawFn, data: Any) -> Any:
    """One edit that keeps the value's type, at a leaf; or one that names another node, var
    or matrix key (dependency edges, cycles, foreach over anything)."""
    leaves = [p for p in _places(data) if p and not isinstance(_get(data, p), dict)]
    path = draw(st.sampled_from(leaves))
    if isinstance(_get(data, path), str) and draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(_names(data)))
        form = draw(st.sampled_from(["{{ %s }}", "%s", "{{ %s[0] }}", "{{ %s.x }}", "[%s | b]"]))
        return _set(data, path, form % name)
    return _set(data, path, draw(same_type_values(_get(data, path))))


@st.composite
def mutated_trees(draw: st.DrawFn) -> tuple[str, Any]:
    """(name of the corpus tree, its data after one to four hostile edits)."""
    trees = corpus()
    name = draw(st.sampled_from(sorted(trees)))
    data = copy.deepcopy(trees[name])
    if draw(st.booleans()):  # edits of the same type: most trees stay well formed
        for _ in range(draw(st.integers(1, 3))):
            data = _gentle_edit(draw, data)
        return name, data
    for _ in range(draw(st.integers(1, 4))):
        places = _places(data)
        # Edits near the leaves are the interesting ones; the root is rarely worth replacing.
        path = draw(st.sampled_from(places[1:] or places))
        target = _get(data, path)
        edit = draw(
            st.sampled_from(
                ["replace", "replace", "insert", "add_key", "rename", "delete", "kind", "field"]
            )
        )
        if edit == "replace":
            data = _set(data, path, draw(hostile_values()))
        elif edit == "insert" and isinstance(target, str):
            fragment = draw(st.sampled_from(TEMPLATE_FRAGMENTS + ODD_STRINGS))
            at = draw(st.integers(0, len(target)))
            data = _set(data, path, target[:at] + fragment + target[at:])
        elif edit == "add_key" and isinstance(target, dict):
            key = draw(st.one_of(st.sampled_from(ODD_KEYS), st.text(max_size=10)))
            target[key] = draw(hostile_values())
        elif edit == "rename" and path and isinstance(_get(data, path[:-1]), dict):
            parent = _get(data, path[:-1])
            key = draw(st.sampled_from(ODD_KEYS))
            parent[key] = parent.pop(path[-1])
        elif edit == "delete" and path:
            parent = _get(data, path[:-1])
            del parent[path[-1]]
        elif edit == "field" and isinstance(target, dict):
            # A field some kind (or the tree) has, with a value it does not expect.
            target[draw(st.sampled_from(field_names()))] = draw(hostile_values())
        elif edit == "kind" and isinstance(target, dict) and "kind" in target:
            target["kind"] = draw(st.sampled_from(KINDS))
        else:
            data = _set(data, path, draw(hostile_values()))
    return name, data


def tree_text(data: Any, fmt: str) -> str:
    """`data` as a JSON or YAML tree file; BigInt values are written as their raw digits."""
    bigs: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, BigInt):
            bigs.append(value.digits)
            return f"BIGINT{len(bigs) - 1}X"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # the deep values are deeper than the default
    try:
        return _dump(swap(data), fmt, bigs)
    finally:
        sys.setrecursionlimit(limit)


def _dump(plain: Any, fmt: str, bigs: list[str]) -> str:
    if fmt == "json":
        text = json.dumps(plain, ensure_ascii=False, indent=1)
        return re.sub(r'"BIGINT(\d+)X"', lambda m: bigs[int(m.group(1))], text)
    text = yaml.safe_dump(plain, allow_unicode=True, sort_keys=False, width=10_000)
    return re.sub(r"\bBIGINT(\d+)X\b", lambda m: bigs[int(m.group(1))], text)


# `--set` values are command-line text, read as YAML: YAML syntax that is hostile to readers.
SET_VALUES = [
    "",
    "42",
    "-1",
    "1" + "0" * 5000,
    "1e999",
    ".inf",
    ".nan",
    "no",
    "2024-01-01",
    "[a | b]",
    "[" * 3000,
    "[" * 120 + "]" * 120,
    "{a: " * 200,
    "&a [*a, *a]",
    "&a [&b [*b, *b], *a]",
    "!!python/object/apply:os.system [ls]",
    "!!binary aGk=",
    "a: b: c",
    "a\n---\nb",
    "{{ x }}",
    "{{ " + "(" * 2000 + " }}",
    "- a\n- b",
    "'unclosed",
]


def set_args(data: Any) -> st.SearchStrategy[list[str]]:
    """Zero to two `--set NAME=VALUE` arguments: names of the tree's vars and matrix keys
    (and some that are none), hostile values."""
    names = ["seed", "x", "", "a b", "[", "vars"]
    if isinstance(data, dict):
        for section in ("vars", "matrix"):
            if isinstance(data.get(section), dict):
                names.extend(str(k) for k in data[section])
    value = st.one_of(
        st.sampled_from(SET_VALUES), st.sampled_from(ODD_STRINGS), st.text(max_size=20)
    )
    pair = st.tuples(st.sampled_from(names), value).map(lambda nv: f"{nv[0]}={nv[1]}")
    return st.lists(pair, max_size=2).map(lambda pairs: [a for p in pairs for a in ("--set", p)])


# Pieces of YAML and JSON syntax that readers and their error messages must survive.
SYNTAX_PIECES = [
    ":",
    ": ",
    "-",
    "- ",
    "?",
    "? ",
    ",",
    "[",
    "]",
    "{",
    "}",
    "'",
    '"',
    "\\",
    "#",
    "&a ",
    "*a",
    "*nope",
    "!",
    "!!str ",
    "!!int ",
    "!tag ",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "<<: *a\n",
    "|",
    ">",
    "|-\n",
    "\t",
    "  ",
    "\n",
    "\r\n",
    "\r",
    "\x00",
    "\ufeff",
    "\u2028",
    "\x85",
    "\x7f",
    "\ud7ff",
    "\U0001f98e",
    "@",
    "`",
    "%",
    "a: b: c",
    '"\\x"',
    '"\\uZZZZ"',
    "'a''",
    "1e999",
    "0o9",
    "0x",
    "~",
    "=",
    "<<",
    "{{",
    "}}",
    "[a | b]",
]


@st.composite
def mangled_texts(draw: st.DrawFn) -> tuple[str, str, str]:
    """(name of the corpus tree, its text after one to three character-level edits, format):
    syntax errors of every kind, for the readers and the messages that explain them."""
    trees = corpus()
    name = draw(st.sampled_from(sorted(trees)))
    fmt = draw(st.sampled_from(["yaml", "json"]))
    text = tree_text(trees[name], fmt)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "insert", "delete", "line", "indent"]))
        if edit == "insert":
            text = text[:at] + draw(st.sampled_from(SYNTAX_PIECES)) + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        else:
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            if edit == "line":  # a line repeated or moved
                lines.insert(draw(st.integers(0, len(lines))), lines[i])
            else:  # a line indented out of step
                lines[i] = " " * draw(st.integers(1, 5)) + lines[i]
            text = "\n".join(lines)
    return name, text, fmt
