"""YAML syntax errors in plain words, located where the mistake was made.

PyYAML notices many mistakes lines after they were made (an unclosed quote swallows the rest of
the file) and words them in its grammar's terms (`expected <block end>, but found '<scalar>'`).
The common ones are recognised and reported at the line that needs the fix, with the fix.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.tokens import ScalarToken

from genarun.errors import Problem

_YAML_HINTS = {
    "found character '\\t' that cannot start any token": "indent with spaces, not tabs",
    "mapping values are not allowed here": (
        "quote a value that contains ': ', or check the indentation of this line"
    ),
    "could not find expected ':'": "a key needs ':' after it; check this line's indentation",
    "found undefined alias": "define the anchor (&name) before using it (*name)",
    "expected a single document in the stream": "a tree file holds one document; remove '---'",
    "found unexpected end of stream": "close the quote or bracket that starts here",
    "did not find expected node content": (
        "a value is missing; to start text with '[' or '{' (a random pick), quote it"
    ),
}


_QUOTE_INSIDE = (
    "inside \"...\" write \\\" for a quote, inside '...' write '' for an apostrophe, "
    "or use the other kind of quotes around the value"
)
_FOUND_WORDS = {
    "'<scalar>'": "text",
    "'<block sequence start>'": "a list item",
    "'<block mapping start>'": "a mapping",
    "'<block end>'": "the end of a block",
    "'<stream end>'": "the end of the file",
    "'<flow mapping start>'": "'{'",
    "'<flow sequence start>'": "'['",
    "'?'": "a key",
    "'-'": "a list item",
}


def _found_words(problem: str) -> str:
    """`found '<scalar>'` in plain words: what PyYAML found where it expected something else."""
    match = re.search(r"but (?:found|got) (.+)$", problem)
    found = match.group(1) if match else "something else"
    return _FOUND_WORDS.get(found, found)


def syntax_problem(exc: yaml.MarkedYAMLError, text: str, name: str) -> Problem:
    """A located, plain-words problem for a YAML syntax error: the common mistakes are
    reported where they were made (often before where PyYAML notices them), with a fix.
    `text` is the file's text, `name` its name for the message."""
    known = _known_mistake(exc, text)
    if known is not None:
        line, column, message, hint = known
        return Problem(
            f"YAML syntax error at line {line}, column {column}: {message}",
            file=name,
            line=line,
            hint=hint,
        )
    mark = exc.problem_mark or exc.context_mark
    mark_line = mark.line + 1 if mark is not None else None
    where = f" at line {mark_line}, column {mark.column + 1}" if mark is not None else ""
    message = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        context = exc.context
        if exc.context_mark is not None and exc.context_mark is not mark:
            context += f" at line {exc.context_mark.line + 1}"
        # Scanner and parser contexts say what was being read ("while scanning a quoted
        # scalar"); composer contexts state the problem itself ("found duplicate anchor").
        if context.startswith("while "):
            message = f"{exc.problem} ({context})"
        else:
            message = f"{context}, {exc.problem}"
    pyyaml_words = f"{exc.problem or ''} {exc.context or ''}"
    found_hint = next((h for m, h in _YAML_HINTS.items() if m in pyyaml_words), None)
    return Problem(
        f"YAML syntax error{where}: {message}", file=name, line=mark_line, hint=found_hint
    )


def _known_mistake(exc: yaml.MarkedYAMLError, text: str) -> tuple[int, int, str, str] | None:
    """(line, column, message, fix) for an unclosed quote or bracket, text after a closing
    quote, a key without ':' or a line indented out of step; None for anything else."""
    problem, context = exc.problem or "", exc.context or ""
    opened, found = exc.context_mark, exc.problem_mark
    if opened is None or found is None:
        return None
    at = (opened.line + 1, opened.column + 1)
    if "quoted scalar" in context and "end of stream" in problem:
        quote = text[opened.index] if opened.index < len(text) else '"'
        return (
            *at,
            f"the quote {quote} opened here is never closed",
            f"end the value with {quote} on this line; {_QUOTE_INSIDE}",
        )
    if "quoted scalar" in context and "escape character" in problem:
        return (
            found.line + 1,
            found.column + 1,
            f"{problem} in double quotes",
            'in double quotes a backslash starts an escape (\\n, \\"): write \\\\ for '
            "a backslash, or use single quotes, where '\\[' stays as written",
        )
    if context.startswith("while parsing a flow") and problem.startswith("expected ','"):
        bracket = text[opened.index] if opened.index < len(text) else "["
        closer = "]" if bracket == "[" else "}"
        if found.line != opened.line:
            what = _found_words(problem)
            where = (
                "the file ends"
                if "<stream end>" in problem
                else f"line {found.line + 1} has {what}"
            )
            return (
                *at,
                f"the '{bracket}' opened here is not closed ({where} where YAML expected "
                f"',' or '{closer}')",
                f"close it with '{closer}'; to start text with '{bracket}' (a random pick "
                "or a template), quote the whole value",
            )
    if "simple key" in context and "expected ':'" in problem:
        return (
            *at,
            "this line is neither 'key: value' nor a list item '- ...'",
            "add ':' after the key (a space must follow it), or indent a continuation "
            "of the line above",
        )
    if not problem.startswith("expected <block end>"):
        return None
    before = _token_before(text, found.index)
    if isinstance(before, ScalarToken) and before.style in ('"', "'"):
        quote = before.style
        start = before.start_mark
        if start.line != before.end_mark.line:  # the quote swallowed the lines below it
            return (
                start.line + 1,
                start.column + 1,
                f"the quote {quote} opened here is not closed on this line (the quoted "
                f"text runs on to line {before.end_mark.line + 1})",
                f"end the value with {quote} on this line; {_QUOTE_INSIDE}",
            )
        return (
            found.line + 1,
            found.column + 1,
            f"text follows the closing {quote} of a quoted value",
            f"quote the whole value; {_QUOTE_INSIDE}",
        )
    return (
        found.line + 1,
        found.column + 1,
        f"{_found_words(problem)} is indented differently from the block that starts "
        f"at line {opened.line + 1}",
        "items of one list and keys of one mapping start in the same column, and a "
        "child block is indented further than its parent; indent with spaces",
    )


def _token_before(text: str, index: int) -> Any:
    """The last YAML token that starts before character `index`, or None."""
    last = None
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if token.start_mark.index >= index:
                break
            last = token
    except yaml.YAMLError:
        pass
    return last
