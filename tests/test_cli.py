"""The command line, in-process and as a real process; light commands never import torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.helpers import PATIENCE, TREES, genarun_subprocess

HEAVY = ("torch", "diffusers", "transformers", "open_clip", "sentence_transformers")

# Runs the click entry point in this process, then reports which heavy modules got imported.
PROBE = """
import json, sys
from genarun.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "heavy": sorted(m for m in HEAVY if m in sys.modules)}))
""".replace("HEAVY", repr(HEAVY))


def probe(args: list[str], cwd: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--help"], 0),
        (["validate", str(TREES / "blog.yaml")], 0),
        (["graph", str(TREES / "blog.yaml")], 0),
        (["validate", str(TREES / "invalid" / "cycle.yaml")], 2),
        (["schema"], 0),
        (["runs", "list"], 0),
        (["runs", "show", "latest"], 0),
    ],
    ids=lambda a: " ".join(Path(x).name for x in a) if isinstance(a, list) else str(a),
)
def test_light_commands_never_import_torch(
    args: list[str],
    code: int,
    tree: Callable[[str], Path],
    cli: Callable[..., Result],
    workdir: Path,
) -> None:
    if args[0] == "runs":  # reading commands need a database with a run in it
        assert cli("run", tree("blog.yaml")).exit_code == 0
    report = probe(args, workdir)
    assert report["heavy"] == []
    # click's standalone_mode=False returns None or 0 for success
    assert (report["code"] or 0) == code


def test_a_dummy_run_imports_no_torch(tree: Callable[[str], Path], workdir: Path) -> None:
    report = probe(["run", str(tree("blog.yaml"))], workdir)
    assert report == {"code": 0, "heavy": []}


def test_help_import_time_has_no_heavy_module(workdir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "genarun", "--help"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert proc.returncode == 0
    assert "Usage:" in proc.stdout
    imported = {
        line.split("|")[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "genarun.cli" in imported
    assert not {m for m in imported if m.split(".")[0] in HEAVY}


def test_help_and_version(cli: Callable[..., Result]) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("run", "validate", "graph", "schema", "runs"):
        assert f"  {command}" in result.stdout
    assert cli("--version").stdout.startswith("genarun, version ")


def test_run_in_a_subprocess(tree: Callable[[str], Path], workdir: Path) -> None:
    proc = genarun_subprocess("run", tree("scope.yaml"), "--seed", "3", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.match(r"^run [0-9a-f]{8}: 12 done$", lines[0])
    assert lines[1].startswith(f"output: {workdir / 'scope'}/")
    assert proc.stderr == ""  # no progress drawing when stderr is not a terminal
    shown = genarun_subprocess("runs", "show", "latest", "--json", cwd=workdir)
    assert json.loads(shown.stdout)["seed"] == 3


@pytest.mark.slow
def test_failures_in_a_subprocess(tree: Callable[[str], Path], workdir: Path) -> None:
    failing = genarun_subprocess("run", tree("failing.yaml"), cwd=workdir)
    assert failing.returncode == 1
    assert "failing.yaml:13 node 'bad' failed: output is not valid JSON" in failing.stderr
    assert "Traceback" not in failing.stderr

    invalid = genarun_subprocess("run", TREES / "invalid" / "misspelt_field.yaml", cwd=workdir)
    assert invalid.returncode == 2
    assert "unknown field 'promt' (did you mean 'prompt'?)" in invalid.stderr
    assert "Traceback" not in invalid.stderr
    assert not (TREES / "invalid" / "misspelt").exists()  # nothing written beside the tree

    bad_set = genarun_subprocess("run", tree("typed.yaml"), "--set", "novalue", cwd=workdir)
    assert bad_set.returncode == 2
    assert "--set 'novalue': expected NAME=VALUE" in bad_set.stderr
    assert "such as --set novalue=geckos" in bad_set.stderr


def test_dry_run_runs_nothing(
    cli: Callable[..., Result], tree: Callable[[str], Path], workdir: Path
) -> None:
    result = cli("run", tree("blog.yaml"), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "nothing was run (--dry-run)" in result.stdout
    assert not (workdir / "blog").exists()
    assert not (workdir / "genarun.db").exists()


def test_schema_is_json_schema(cli: Callable[..., Result]) -> None:
    schema = json.loads(cli("schema").stdout)
    assert "$schema" in schema or "properties" in schema
    assert "nodes" in json.dumps(schema)


def test_db_option_and_env(
    cli: Callable[..., Result], tree: Callable[[str], Path], workdir: Path
) -> None:
    path = tree("typed.yaml")
    assert cli("run", path, "--db", workdir / "other.db").exit_code == 0
    assert (workdir / "other.db").is_file() and not (workdir / "genarun.db").exists()
    assert "typed" in cli("runs", "list", "--db", workdir / "other.db").stdout
    # $GENARUN_DB (the workdir fixture's genarun.db) does not exist: said, not created.
    assert "no database at" in cli("runs", "list").output
    assert not (workdir / "genarun.db").exists()


def test_a_reader_that_goes_away_is_not_an_internal_error(tmp_path: Path) -> None:
    # `genarun tda compare latest | head`: head exits, the next write raises BrokenPipeError.
    code = (
        "import sys\n"
        "from genarun.cli.common import handle_errors\n"
        "@handle_errors\n"
        "def command():\n"
        "    while True:  # until the pipe breaks, whatever its buffer's size\n"
        "        sys.stdout.write('x' * 65536)\n"
        "        sys.stdout.flush()\n"
        "command()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()  # the reader goes away with most of the output unread
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=PATIENCE) == 141
    assert "internal error" not in err and "Traceback" not in err and "Exception" not in err
