"""`--limit` of the list commands (runs, experiments, clusterings) is one option: the newest N,
N at least 1 (a negative limit listed everything, 0 nothing)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import Result


@pytest.mark.parametrize(
    "command", [["runs", "list"], ["experiments", "list"], ["cluster", "list"]]
)
@pytest.mark.parametrize("limit", ["0", "-1"])
def test_a_limit_under_one_is_refused(
    cli: Callable[..., Result], command: list[str], limit: str
) -> None:
    result = cli(*command, "--limit", limit)
    assert result.exit_code == 2
    assert "Invalid value for '--limit'" in result.output and "x>=1" in result.output


def test_the_limit_shows_the_newest(
    cli: Callable[..., Result], tree: Callable[[str], object]
) -> None:
    for _ in range(2):
        assert cli("run", tree("blog.yaml")).exit_code == 0
    shown = cli("runs", "list", "--limit", "1").output.splitlines()
    assert len(shown) == 2  # the header and the newest run
    assert "--limit INTEGER RANGE" in cli("experiments", "list", "--help").output
