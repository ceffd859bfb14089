"""Every command's --help says what it does, names what each option does, and ends with
examples that are real invocations of that command (parsed here with its own options)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

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
