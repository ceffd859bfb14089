"""Random picks in template strings: `[a | b | c]` chooses one alternative.

Syntax (see DESIGN.md, "Random picks"):

- `[a | b]` picks one alternative; alternatives are trimmed of surrounding whitespace.
- Picks nest: `[a [big | small] dog | a cat]`; an inner pick is drawn only if its
  alternative is chosen.
- `[3::common | rare]` weighs alternatives (int or float >= 0, default 1); weight 0 is
  never chosen, and all-zero weights are an error.
- `\\[`, `\\]`, `\\|` produce the literal character and `\\\\` a backslash; any other
  backslash is kept as written.
- A bracket group without a top-level `|` is literal text, brackets included (`item [1]`),
  though picks nested inside it are still drawn.
- Jinja regions (`{{ }}`, `{% %}`, `{# #}`) are opaque and copied verbatim, because Jinja
  renders after picks and its own brackets and filters must survive untouched.

A template is parsed once into an immutable `Template`; rendering draws one `rng.random()`
per pick made, so a seeded `random.Random` reproduces the picks exactly.
"""

from __future__ import annotations

import json
import math
import random
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any

__all__ = [
    "Pick",
    "PickRecord",
    "PickSyntaxError",
    "ReplayRandom",
    "Template",
    "expand_picks",
    "parse_picks",
]


class PickSyntaxError(ValueError):
    """A template whose random-pick syntax is malformed; `.position` is the 0-based offset."""

    def __init__(self, message: str, position: int, text: str):
        self.position = position
        self.text = text
        super().__init__(message)


@dataclass(slots=True)
class PickRecord:
    """One pick made while rendering: its alternatives, weights, and what was chosen."""

    alternatives: list[str]
    weights: list[float]
    chosen: int
    value: str
    # The start of its JSON up to `"chosen": `, from the Pick that made it (see picks_json).
    json_head: str | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """This record as a JSON-ready dict, for storage with the execution."""
        return {
            "alternatives": list(self.alternatives),
            "weights": list(self.weights),
            "chosen": self.chosen,
            "value": self.value,
        }


@dataclass(frozen=True, slots=True)
class Pick:
    """One `[a | b]` group: each option is a sequence of parts, drawn by weight."""

    position: int
    alternatives: tuple[str, ...]
    options: tuple[tuple[str | Pick, ...], ...]
    weights: tuple[float, ...]
    cumulative: tuple[float, ...]
    last_choosable: int
    # Its alternatives and weights as the start of a record's JSON, encoded once.
    json_head: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        head = {"alternatives": list(self.alternatives), "weights": list(self.weights)}
        object.__setattr__(self, "json_head", _ENCODE(head)[:-1] + ', "chosen": ')

    def draw(self, rng: random.Random, records: list[PickRecord]) -> str:
        """Choose an option with `rng`, render it, and record the pick."""
        total = self.cumulative[-1]
        # bisect_right skips zero-weight options (their cumulative equals the previous one);
        # the clamp guards the float edge where random() * total rounds up to total.
        chosen = min(bisect_right(self.cumulative, rng.random() * total), self.last_choosable)
        slot = len(records)
        records.append(_PENDING)  # keeps records in draw order: outer pick before inner ones
        value = _render_parts(self.options[chosen], rng, records)
        records[slot] = PickRecord(
            alternatives=list(self.alternatives),
            weights=list(self.weights),
            chosen=chosen,
            value=value,
            json_head=self.json_head,
        )
        return value


_PENDING = PickRecord(alternatives=[], weights=[], chosen=-1, value="")

_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def picks_json(records: list[PickRecord]) -> str:
    """`json.dumps([r.to_json() for r in records], ensure_ascii=False)`, stored with each
    execution: a record drawn by a Pick starts with that Pick's alternatives and weights,
    encoded once, instead of every time (its floats cost most of the encoding)."""
    parts = []
    for record in records:
        if (
            record.json_head is not None
            and type(record.chosen) is int
            and type(record.value) is str
        ):
            value = encode_basestring(record.value)
            parts.append(f'{record.json_head}{record.chosen}, "value": {value}}}')
        else:
            parts.append(_ENCODE(record.to_json()))
    return f"[{', '.join(parts)}]"


class ReplayRandom(random.Random):
    """Reproduces stored picks: the n-th draw lands in the n-th record's chosen alternative.

    A rerun, `--only` or resume renders a tree var with this to get exactly the draws its
    source run made, whatever that run's seed. `matches(records)` says whether the render drew
    the same picks (the var's text may have changed since); when it did not, draw afresh.
    """

    def __init__(self, stored: list[dict[str, Any]]):
        super().__init__(0)
        self._points: list[float] = []
        self._stored = stored
        self._draws = 0
        for record in stored:
            weights = [float(w) for w in record.get("weights", [])]
            chosen = int(record.get("chosen", -1))
            total = sum(weights)
            if not 0 <= chosen < len(weights) or weights[chosen] <= 0 or total <= 0:
                self._points.append(math.nan)  # unusable record: matches() will say no
                continue
            low = sum(weights[:chosen])
            self._points.append((low + weights[chosen] / 2) / total)  # mid-interval

    def random(self) -> float:
        self._draws += 1
        if self._draws > len(self._points) or math.isnan(self._points[self._draws - 1]):
            return 0.0
        return self._points[self._draws - 1]

    def matches(self, records: list[PickRecord]) -> bool:
        """Whether rendering drew exactly the stored picks, no more and no fewer."""
        return len(records) == len(self._stored) == self._draws and all(
            record.alternatives == stored.get("alternatives")
            and record.chosen == stored.get("chosen")
            for record, stored in zip(records, self._stored, strict=True)
        )


def _render_parts(
    parts: tuple[str | Pick, ...], rng: random.Random, records: list[PickRecord]
) -> str:
    out: list[str] = []
    for part in parts:
        out.append(part if isinstance(part, str) else part.draw(rng, records))
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal text and picks; render it with a seeded rng."""

    source: str
    parts: tuple[str | Pick, ...]
    has_picks: bool
    # The rendered text when there are no picks, so rendering is a constant-time return.
    static_text: str | None = field(default=None, repr=False)

    def render(self, rng: random.Random) -> tuple[str, list[PickRecord]]:
        """Draw every pick with `rng`; return the text and the picks made, in draw order."""
        if self.static_text is not None:
            return self.static_text, []
        records: list[PickRecord] = []
        return _render_parts(self.parts, rng, records), records


# Characters that start syntax; everything between them is copied in one slice.
_SPECIAL = re.compile(r"[\[\]|\\{]")
_ESCAPABLE = frozenset("[]|\\")
_JINJA_OPENERS = frozenset("{%#")
_WEIGHT = re.compile(r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*::")
_BRACKET_CLOSERS = {"(": ")", "[": "]", "{": "}"}


# How deeply picks (and literal brackets) may nest in one template.
MAX_PICK_DEPTH = 50


def parse_picks(text: str) -> Template:
    """Parse `text` into an immutable Template; raise PickSyntaxError on malformed picks."""
    if _SPECIAL.search(text) is None:
        return Template(source=text, parts=(text,), has_picks=False, static_text=text)
    parts, _ = _Parser(text).parse_sequence(0, top_level=True)
    if any(isinstance(part, Pick) for part in parts):
        return Template(source=text, parts=parts, has_picks=True)
    literal = "".join(part for part in parts if isinstance(part, str))
    return Template(source=text, parts=parts, has_picks=False, static_text=literal)


@lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Template:
    return parse_picks(text)


def expand_picks(text: str, rng: random.Random) -> tuple[str, list[PickRecord]]:
    """Parse `text` (cached) and render it with `rng`: the text and the picks made."""
    return _parse_cached(text).render(rng)


class _Parser:
    """Recursive descent over one template string; positions are offsets into it."""

    def __init__(self, text: str):
        self.text = text
        self.depth = 0  # brackets open at the current position

    def error(self, message: str, position: int) -> PickSyntaxError:
        # A short excerpt around the offending character, which a message alone cannot show.
        start = max(0, position - 15)
        excerpt = self.text[start : position + 15]
        return PickSyntaxError(f"{message}; near {excerpt!r}", position, self.text)

    def parse_sequence(self, start: int, *, top_level: bool) -> tuple[tuple[str | Pick, ...], int]:
        """Parse parts from `start` up to a top-level `|` or `]` (or the end at top level)."""
        text = self.text
        parts: list[str | Pick] = []
        literal: list[str] = []
        i = start
        while True:
            match = _SPECIAL.search(text, i)
            if match is None:
                literal.append(text[i:])
                i = len(text)
                break
            j = match.start()
            literal.append(text[i:j])
            char = text[j]
            if char == "\\":
                following = text[j + 1 : j + 2]
                if following and following in _ESCAPABLE:
                    literal.append(following)
                    i = j + 2
                else:
                    literal.append("\\")
                    i = j + 1
            elif char == "{":
                if j + 1 < len(text) and text[j + 1] in _JINJA_OPENERS:
                    end = _skip_jinja(text, j)
                    literal.append(text[j:end])
                    i = end
                else:
                    literal.append("{")
                    i = j + 1
            elif char == "|":
                if top_level:
                    literal.append("|")
                    i = j + 1
                else:
                    i = j
                    break
            elif char == "]":
                if top_level:
                    raise self.error(
                        "unbalanced ']': no '[' opens it (write '\\]' for a literal ']')", j
                    )
                i = j
                break
            else:  # "["
                if literal:
                    parts.append("".join(literal))
                    literal = []
                group, i = self.parse_group(j)
                for part in group:
                    if isinstance(part, str) and parts and isinstance(parts[-1], str):
                        parts[-1] += part
                    elif isinstance(part, Pick) or part:
                        parts.append(part)
        if literal:
            text_run = "".join(literal)
            if parts and isinstance(parts[-1], str):
                parts[-1] += text_run
            elif text_run:
                parts.append(text_run)
        return tuple(parts), i

    def parse_group(self, open_at: int) -> tuple[tuple[str | Pick, ...], int]:
        """Parse `[ ... ]` at `open_at`: a Pick, or literal brackets around its contents."""
        if self.depth >= MAX_PICK_DEPTH:
            # Parsing and drawing recurse once per level: bounded far below Python's limit.
            raise self.error(f"brackets nest more than {MAX_PICK_DEPTH} levels deep", open_at)
        self.depth += 1
        try:
            return self._parse_group(open_at)
        finally:
            self.depth -= 1

    def _parse_group(self, open_at: int) -> tuple[tuple[str | Pick, ...], int]:
        text = self.text
        options: list[tuple[tuple[str | Pick, ...], int, int]] = []
        i = open_at + 1
        while True:
            parts, end = self.parse_sequence(i, top_level=False)
            options.append((parts, i, end))
            if end >= len(text):
                raise self.error(
                    "unbalanced '[': no ']' closes it "
                    "(close the pick with ']', or write '\\[' for a literal '[')",
                    open_at,
                )
            if text[end] == "]":
                i = end + 1
                break
            i = end + 1  # past a top-level "|"
        if len(options) == 1:
            parts, _, _ = options[0]
            return ("[", *parts, "]"), i
        return (self.make_pick(open_at, options),), i

    def make_pick(
        self, open_at: int, options: list[tuple[tuple[str | Pick, ...], int, int]]
    ) -> Pick:
        sources: list[str] = []
        trimmed: list[tuple[str | Pick, ...]] = []
        weights: list[float] = []
        for parts, start, end in options:
            source = self.text[start:end].strip()
            parts = _trim(parts)
            weight = 1.0
            if parts and isinstance(parts[0], str):
                match = _WEIGHT.match(parts[0])
                if match is not None:
                    weight = float(match.group(1))
                    if weight < 0 or not math.isfinite(weight):
                        indent = len(self.text[start:end]) - len(self.text[start:end].lstrip())
                        raise self.error(
                            f"weight {match.group(1)} must be a number >= 0 (like '2::text')",
                            start + indent,
                        )
                    parts = _trim((parts[0][match.end() :], *parts[1:]))
                    source_match = _WEIGHT.match(source)
                    if source_match is not None:
                        source = source[source_match.end() :].lstrip()
            sources.append(source)
            trimmed.append(parts)
            weights.append(weight)
        if not any(w > 0 for w in weights):
            raise self.error(
                "every alternative of this pick has weight 0 (give at least one a weight > 0)",
                open_at,
            )
        cumulative: list[float] = []
        total = 0.0
        for w in weights:
            total += w
            cumulative.append(total)
        last_choosable = max(k for k, w in enumerate(weights) if w > 0)
        return Pick(
            position=open_at,
            alternatives=tuple(sources),
            options=tuple(trimmed),
            weights=tuple(weights),
            cumulative=tuple(cumulative),
            last_choosable=last_choosable,
        )


def _trim(parts: tuple[str | Pick, ...]) -> tuple[str | Pick, ...]:
    """Strip whitespace at the outer ends of an alternative, dropping emptied literals."""
    items = list(parts)
    if items and isinstance(items[0], str):
        items[0] = items[0].lstrip()
    if items and isinstance(items[-1], str):
        items[-1] = items[-1].rstrip()
    return tuple(p for p in items if not isinstance(p, str) or p)


def _skip_jinja(text: str, start: int) -> int:
    """The offset just past the Jinja region opening at `start` (the end if unclosed)."""
    opener = text[start + 1]
    if opener == "#":
        close = text.find("#}", start + 2)
        return len(text) if close < 0 else close + 2
    closer = "}}" if opener == "{" else "%}"
    # Like Jinja's lexer: strings and bracket nesting hide a closer (`{{ {'a': 1}}}`).
    expected: list[str] = []
    i = start + 2
    n = len(text)
    while i < n:
        char = text[i]
        if char in "\"'":
            i += 1
            while i < n and text[i] != char:
                i += 2 if text[i] == "\\" else 1
            i += 1
            continue
        if not expected and text.startswith(closer, i):
            return i + 2
        if char in _BRACKET_CLOSERS:
            expected.append(_BRACKET_CLOSERS[char])
        elif expected and char == expected[-1]:
            expected.pop()
        i += 1
    # Unclosed: keep the rest opaque so Jinja, not picks, reports the real problem.
    return n
