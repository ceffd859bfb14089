"""A price file named by $GENARUN_PRICES that cannot be used: every command that prices says
so as a user error (file, line where known, what is wrong, how to go on; exit 2, no
traceback, nothing written), and `genarun serve` says it before serving instead of answering
500 on every page that shows a cost."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from genarun.errors import PriceTableError
from genarun.server.app import ServeOptions, create_app
from genarun.usage import prices

TREE = """\
genarun: 1
name: priced
seed: 3
models:
  writer: {provider: dummy, id: writer}
nodes:
  - id: story
    kind: generate
    model: writer
    prompt: "a story in five words"
    max_tokens: 10
"""

# name, content (None: no such file), what the message says, the line it names (None: none)
BROKEN: list[tuple[str, bytes | None, str, int | None]] = [
    ("syntax.json", b'{"as_of": "2026-01-01",\n "models": [{"provider": "x"', "not valid JSON", 2),
    ("syntax.yaml", b"as_of: '2026-01-01'\nmodels: [\n", "not valid YAML", 3),
    ("latin1.json", b'\xff{"as_of": "2026-01-01"}', "not UTF-8 text (byte 0 is 0xff)", None),
    ("numbers.yaml", b"as_of: '2026-01-01'\n1: 2\n", "unknown key '1'", None),
    (
        "infinite.yaml",
        b"as_of: '2026-01-01'\nmodels:\n  - {provider: dummy, id: writer, input_per_1m: .inf}\n",
        "models entry 1 (dummy/writer): price.input_per_1m must be a number of at least 0",
        None,
    ),
    (
        "nan.json",
        b'{"as_of": "2026-01-01", "devices": [{"device": "H100", "per_gpu_hour": NaN}]}',
        "price.per_gpu_hour must be a number of at least 0",
        None,
    ),
    ("dated.yaml", b"as_of: [2026]\n", "needs an as_of date", None),
    ("nameless.json", b'{"as_of": "2026-01-01", "hosts": [{"host": 7}]}', "needs host", None),
    ("missing.json", None, "cannot read it (No such file or directory)", None),
]


@pytest.fixture(autouse=True)
def fresh_price_table() -> Iterator[None]:
    """The table is read once per process and file: each test reads its own."""
    prices._load.cache_clear()
    yield
    prices._load.cache_clear()


def _broken(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, name: str, content: bytes | None
) -> Path:
    path = workdir / name
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setenv("GENARUN_PRICES", str(path))
    return path


def _said_as_a_user_error(result: Result, path: Path, says: str, line: int | None) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: "), result.output
    where = f"{path}:{line}: " if line else f"{path}: "
    assert where + "price table ($GENARUN_PRICES): " in result.output
    assert says in result.output
    assert "unset GENARUN_PRICES" in result.output
    assert "internal error" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("name", "content", "says", "line"), BROKEN, ids=[b[0] for b in BROKEN])
def test_runs_show_and_estimate_say_what_is_wrong_with_the_file(
    workdir: Path,
    cli: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    content: bytes | None,
    says: str,
    line: int | None,
) -> None:
    (workdir / "tree.yaml").write_text(TREE)
    assert cli("run", "tree.yaml").exit_code == 0  # run with genarun's own table
    path = _broken(workdir, monkeypatch, name, content)
    _said_as_a_user_error(cli("runs", "show", "latest"), path, says, line)
    _said_as_a_user_error(cli("runs", "show", "latest", "--json"), path, says, line)
    _said_as_a_user_error(cli("estimate", "tree.yaml"), path, says, line)


def test_a_priced_run_with_a_broken_file_writes_nothing(
    workdir: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "tree.yaml").write_text(TREE)
    path = _broken(workdir, monkeypatch, "syntax.json", BROKEN[0][1])
    for args in (["--dry-run"], ["--budget", "5"]):
        _said_as_a_user_error(cli("run", "tree.yaml", *args), path, "not valid JSON", 2)
        assert not (workdir / "genarun.db").exists()
        assert not (workdir / "priced").exists()


def test_serve_says_it_before_serving_instead_of_500_on_pages(
    workdir: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "tree.yaml").write_text(TREE)
    assert cli("run", "tree.yaml").exit_code == 0
    path = _broken(workdir, monkeypatch, "syntax.yaml", BROKEN[1][1])
    with pytest.raises(PriceTableError) as raised:
        create_app(ServeOptions(db=workdir / "genarun.db", auto_resume=False))
    assert raised.value.problem.file == str(path) and raised.value.problem.line == 3
    # The command returns at once (it never listens) with the same message.
    _said_as_a_user_error(cli("serve", "--port", "1"), path, "not valid YAML", 3)
