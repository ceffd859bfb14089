"""A malformed option value names what the option accepts, with an example (click said only
`'lots' is not a valid float.`), for every number option of every command."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
import pytest
from click.testing import CliRunner

from genarun.cli import main
from genarun.cli.common import Number, NumberRange, WholeNumber


def _options() -> Iterator[tuple[tuple[str, ...], click.Option]]:
    def walk(group: click.Group, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        ctx = click.Context(group, info_name="genarun")
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            if isinstance(command, click.Group):
                yield from walk(command, (*path, name))
                continue
            for param in command.params:
                if isinstance(param, click.Option):
                    yield (*path, name), param

    yield from walk(main, ())


NUMBER_OPTIONS = [
    (cmd, opt) for cmd, opt in _options() if isinstance(opt.type, click.types._NumberParamTypeBase)
]


def test_every_number_option_explains_its_mistakes() -> None:
    """No option takes click's bare INT, FLOAT or ranges: each uses a type of cli/common.py."""
    plain = [
        f"genarun {' '.join(cmd)} {opt.opts[0]}"
        for cmd, opt in NUMBER_OPTIONS
        if not isinstance(opt.type, WholeNumber | NumberRange | Number)
    ]
    assert plain == []
    assert len(NUMBER_OPTIONS) > 20


@pytest.mark.parametrize(
    ("cmd", "opt"),
    NUMBER_OPTIONS,
    ids=lambda v: v.opts[0] if isinstance(v, click.Option) else " ".join(v),
)
def test_a_word_for_a_number_says_what_is_accepted_with_an_example(
    cmd: tuple[str, ...], opt: click.Option
) -> None:
    result = CliRunner().invoke(main, [*cmd, opt.opts[0], "lots"])
    assert result.exit_code == 2, result.output
    number = "whole number" if isinstance(opt.type, WholeNumber) else "number"
    assert f"'lots' is not a {number}; give a" in result.output
    assert f", such as {opt.opts[0]} " in result.output
    assert "not a valid" not in result.output and "Traceback" not in result.output


def test_the_budget_and_a_range_say_their_accepted_forms() -> None:
    runner = CliRunner()
    budget = runner.invoke(main, ["run", "tree.yaml", "--budget", "lots"])
    assert budget.exit_code == 2
    assert (
        "Invalid value for '--budget': 'lots' is not a number; give a number, such as --budget 5"
        in budget.output
    )
    batch = runner.invoke(main, ["run", "tree.yaml", "--batch-size", "0"])
    assert batch.exit_code == 2
    assert (
        "0 is not in the range 1<=x<=4096; give a whole number from 1 to 4096, "
        "such as --batch-size 16"
    ) in batch.output
    port = runner.invoke(main, ["serve", "--port", "-1"])
    assert "give a whole number from 0 to 65535, such as --port " in port.output
