"""Every command's --help says what it does, names what each option does, and ends with
examples that are real invocations of that command (parsed here with its own options)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner

from genarun.cli import main
from genarun.cli.examples import EXAMPLES


def _commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group, info_name="genarun")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def _invocation(example: str) -> list[str]:
    """The arguments of an example line, without `genarun` and its trailing comment."""
    words = shlex.split(example, comments=True)
    assert words[0] == "genarun", example
    return words[1:]


def test_every_command_has_a_description_and_examples() -> None:
    commands = dict(_commands(main))
    assert len(commands) > 40
    assert set(EXAMPLES) == set(commands), "cli/examples.py: commands without examples, or gone"
    for path, command in commands.items():
        assert (command.help or "").strip(), f"genarun {path}: no description"
        shown = CliRunner().invoke(main, [*path.split(), "--help"])
        assert shown.exit_code == 0, shown.output
        assert "Examples:\n" in shown.output, path
        for example in EXAMPLES[path]:
            assert example in shown.output, (path, example)


def test_every_example_is_an_invocation_of_its_command() -> None:
    """Its words name the command, and its options and arguments parse as that command's
    (an option renamed or misspelt in an example fails here)."""
    for path, command in _commands(main):
        for example in EXAMPLES[path]:
            words = _invocation(example)
            assert words[: len(path.split())] == path.split(), (path, example)
            args = words[len(path.split()) :]
            ctx = click.Context(command, info_name=path, resilient_parsing=True)
            parser = command.make_parser(ctx)
            try:
                values, positional, _order = parser.parse_args(args)
            except click.UsageError as exc:
                raise AssertionError(f"genarun {path}: example {example!r}: {exc}") from None
            declared = [p for p in command.params if isinstance(p, click.Argument)]
            wanted = sum(max(p.nargs, 1) for p in declared if p.required)
            unlimited = any(p.nargs == -1 for p in declared)
            given = sum(1 for p in declared if values.get(p.name) not in (None, ()))
            assert given >= len([p for p in declared if p.required]), (path, example)
            assert unlimited or len(positional) + wanted <= sum(max(p.nargs, 1) for p in declared)


def test_every_option_says_what_it_does() -> None:
    missing = [
        f"genarun {path} {param.opts[0]}"
        for path, command in _commands(main)
        for param in command.params
        if isinstance(param, click.Option) and param.name != "help" and not param.help
    ]
    assert missing == [], "options without a help text: " + ", ".join(missing)


ROOT = Path(__file__).resolve().parent.parent


def _doc_command_lines() -> Iterator[tuple[str, str]]:
    """Every `genarun ...` the README, docs/ and the examples' READMEs tell a reader to type:
    lines of code blocks, and inline `genarun ...` spans; with where each is."""
    pages = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "examples").rglob("*.md")]
    for page in pages:
        in_code = False
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if line.strip().startswith("```"):
                in_code = not in_code
                continue
            found = [line.strip()] if in_code and line.strip().startswith("genarun ") else []
            found += re.findall(r"`(genarun [^`]+)`", line)
            for text in found:
                yield f"{page.relative_to(ROOT)}:{number}", text


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The command that `genarun WORDS...` runs, and the words left for it."""
    command: click.Command = main
    while isinstance(command, click.Group) and words:
        ctx = click.Context(command, info_name="genarun", resilient_parsing=True)
        sub = command.get_command(ctx, words[0])
        if sub is None:  # a group that routes other words to a default (`cluster REFS`)
            command.parse_args(ctx, list(words))
            routed = [*ctx._protected_args, *ctx.args]  # where click keeps the routed name
            if routed == words:
                break
            words = routed
            continue
        command, words = sub, words[1:]
    return command, words


def test_every_command_line_in_the_docs_parses() -> None:
    """A documented command names a real command, and its options and arguments parse (docs
    that drift from the CLI fail here); placeholders such as RUN or ID[3] pass as values."""
    checked, wrong = 0, []
    for where, text in _doc_command_lines():
        try:
            words = shlex.split(text, comments=True)[1:]
        except ValueError:  # an unbalanced quote in prose: not a command line
            continue
        cut = next((i for i, w in enumerate(words) if w in ("|", ">", ">>", "&&", ";")), None)
        command, args = _resolve(words[:cut])
        if isinstance(command, click.Group):
            if args:
                wrong.append(f"{where}: {text}: no command {args[0]!r}")
            continue
        try:
            command.make_parser(click.Context(command)).parse_args(args)
        except click.UsageError as exc:
            wrong.append(f"{where}: {text}: {exc}")
        checked += 1
    assert checked > 150
    assert wrong == []
