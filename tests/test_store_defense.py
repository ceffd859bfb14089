"""The store defends itself: a schema version (a newer genarun's database is refused, unchanged),
damaged files named in a message (never an internal error), read-only files and folders (reading
works, writing explains), and a run folder made unwritable mid-run (a message, a resumable run).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from genarun.store.opening import SCHEMA_VERSION
from tests.helpers import PATIENCE, TREES, query

BLOG = "rerun_blog.yaml"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stored_run(workdir: Path, cli: Callable[..., Result]) -> tuple[Path, Path, str]:
    tree = workdir / BLOG
    shutil.copy(TREES / BLOG, tree)
    assert cli("run", tree).exit_code == 0
    db = workdir / "genarun.db"
    return tree, db, query(db, "SELECT id FROM runs")[0]["id"]


def _clean(result: Result) -> None:
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output


def test_a_new_database_records_its_schema_version(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    _tree, db, _run = _stored_run(workdir, cli)
    assert query(db, "PRAGMA user_version")[0][0] == SCHEMA_VERSION


def test_a_database_from_before_versions_is_upgraded(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    tree, db, _run = _stored_run(workdir, cli)
    with sqlite3.connect(db) as conn:  # as an older genarun left it: no version, a column less
        conn.execute("PRAGMA user_version = 0")
        conn.execute("ALTER TABLE runs DROP COLUMN heartbeat")
    assert cli("runs", "list").exit_code == 0
    assert query(db, "PRAGMA user_version")[0][0] == SCHEMA_VERSION
    assert "heartbeat" in {r["name"] for r in query(db, "PRAGMA table_info(runs)")}
    assert cli("run", tree).exit_code == 0


@pytest.mark.parametrize(
    "command",
    [
        ("runs", "list"),
        ("runs", "show", "latest"),
        ("run", "{tree}"),
        ("rerun", "latest", "--node", "summary"),
        ("resume", "latest"),
        ("diff", "latest", "latest"),
        ("experiments", "list"),
        ("export", "images", "latest", "--out", "{out}"),
    ],
)
def test_a_database_from_a_newer_genarun_is_refused_and_left_as_it_is(
    command: tuple[str, ...], workdir: Path, cli: Callable[..., Result]
) -> None:
    tree, db, _run = _stored_run(workdir, cli)
    with sqlite3.connect(db) as conn:  # a future layout: a version, a table and a column more
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.execute("CREATE TABLE future_things (id INTEGER PRIMARY KEY)")
        conn.execute("ALTER TABLE runs ADD COLUMN future_column TEXT")
        conn.execute("PRAGMA journal_mode = DELETE")  # one file: its bytes tell every change
    before = _sha(db)
    args = [a.format(tree=tree, out=workdir / "exported") for a in command]
    result = cli(*args)
    assert result.exit_code == 2, result.output
    _clean(result)
    assert f"the database {db} was written by a newer genarun" in result.output
    assert _sha(db) == before
    assert query(db, "PRAGMA user_version")[0][0] == SCHEMA_VERSION + 1
    assert query(db, "PRAGMA journal_mode")[0][0] == "delete"
    assert not (workdir / "exported").exists()


def _flip(data: bytes, rng: random.Random, count: int, start: int = 100) -> bytes:
    out = bytearray(data)
    for _ in range(count):
        i = rng.randrange(start, len(out))
        out[i] ^= rng.randrange(1, 256)
    return bytes(out)


# Damage of every kind: flipped bytes anywhere (few, many), in the header, on the first page
# (the schema), a truncated file, zeroed pages, a file of text.
DAMAGE: list[tuple[str, Callable[[bytes], bytes]]] = [
    *[
        (f"flip{n}x{seed}", lambda d, n=n, seed=seed: _flip(d, random.Random(seed), n))
        for n, seed in [(1, 1), (4, 2), (32, 3), (256, 4), (2000, 5)]
    ],
    ("schema-page", lambda d: _flip(d, random.Random(6), 40, start=100)[:4096] + d[4096:]),
    (
        "header",
        lambda d: b"SQLite format 3\x00" + _flip(d[16:100], random.Random(7), 30, 0) + d[100:],
    ),
    ("truncated", lambda d: d[: len(d) // 3]),
    ("zeroed", lambda d: d[:4096] + bytes(8192) + d[12288:]),
    ("text", lambda d: b"this is not a database\n" * 50),
    ("utf8", lambda d: d.replace(b"Write about", "Wr\xffte about".encode("latin-1"))),
    # Sound pages whose stored JSON no longer parses (a flip inside a value: SQLite cannot see it)
    ("json", lambda d: d.replace(b'": "', b'":\x01"')),
]


@pytest.mark.parametrize(("name", "damage"), DAMAGE, ids=[n for n, _ in DAMAGE])
def test_a_damaged_database_is_named_never_an_internal_error(
    name: str, damage: Callable[[bytes], bytes], workdir: Path, cli: Callable[..., Result]
) -> None:
    tree, db, run_id = _stored_run(workdir, cli)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
    pristine = db.read_bytes()
    outcomes = Counter()
    for command in (
        ("runs", "list"),
        ("runs", "show", run_id[:8]),
        ("runs", "show", run_id[:8], "--json"),
        ("diff", run_id[:8], run_id[:8]),
        ("rerun", run_id[:8], "--node", "summary"),
        ("run", tree),
    ):
        for extra in ("-wal", "-shm"):  # the last command's, of the file as it was
            Path(f"{db}{extra}").unlink(missing_ok=True)
        db.write_bytes(damage(pristine))
        result = cli(*command)
        _clean(result)
        assert result.exit_code in (0, 1, 2), (command, result.output)
        if result.exit_code != 0 and "is damaged" in result.output:
            assert str(db) in result.output
        outcomes[result.exit_code] += 1
    if name in ("text", "header", "truncated"):
        assert outcomes[0] == 0  # such damage is always found


def _unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (root ignores them: drop the
    capabilities that let it), or skip the test where that cannot be done."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        pytest.skip("running as root without setpriv: file permissions cannot be tested")
    return prefix


def _genarun(prefix: list[str], *args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "genarun", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GENARUN_DEVICE": "cpu"},
    )


@pytest.mark.slow  # real processes under dropped privileges
@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_database_reads_and_explains_writes(
    what: str, workdir: Path, cli: Callable[..., Result]
) -> None:
    prefix = _unprivileged()
    tree, db, run_id = _stored_run(workdir, cli)
    failing = workdir / "failing.yaml"
    shutil.copy(TREES / "resume_failing.yaml", failing)
    assert cli("run", failing).exit_code == 1  # a run to resume
    store_dir = workdir / "store"
    store_dir.mkdir()
    ro_db = store_dir / "genarun.db"
    shutil.move(db, ro_db)
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    os.chmod(ro_db, 0o444)
    if what == "folder":
        os.chmod(store_dir, 0o555)
    before = _sha(ro_db)
    outputs = sorted((workdir / "rerun-blog").iterdir())
    try:
        for args in (
            ("runs", "list"),
            ("runs", "show", run_id[:8]),
            ("runs", "show", "latest", "--json"),
            ("diff", run_id[:8], "latest"),
            ("experiments", "list"),
        ):
            result = _genarun(prefix, *args, "--db", ro_db, cwd=workdir)
            assert result.returncode == 0, (args, result.stderr)
        assert run_id[:8] in _genarun(prefix, "runs", "list", "--db", ro_db, cwd=workdir).stdout
        for args in (
            ("run", tree),
            ("resume", "latest"),
            ("rerun", run_id[:8], "--node", "summary"),
        ):
            result = _genarun(prefix, *args, "--db", ro_db, cwd=workdir)
            assert result.returncode == 2, (args, result.stdout, result.stderr)
            assert f"cannot write to the database {ro_db}" in result.stderr
            assert "read-only" in result.stderr and "Traceback" not in result.stderr
    finally:
        os.chmod(store_dir, 0o755)
        os.chmod(ro_db, 0o644)
    assert _sha(ro_db) == before
    if what == "folder":  # nothing could be written beside it (a WAL reader's -shm included)
        assert sorted(p.name for p in store_dir.iterdir()) == ["genarun.db"]
    assert sorted((workdir / "rerun-blog").iterdir()) == outputs  # no run folder was started


@pytest.mark.slow  # real processes under dropped privileges
def test_a_run_folder_made_unwritable_mid_run_stops_with_a_message_and_resumes(
    workdir: Path,
) -> None:
    prefix = _unprivileged()
    tree = workdir / "slow.yaml"
    tree.write_text((TREES / "resume_slow.yaml").read_text().replace("0.08", "0.25"))
    db = workdir / "genarun.db"
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "genarun", "run", tree, "--db", db],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GENARUN_DEVICE": "cpu"},
    )
    deadline = time.time() + PATIENCE
    while True:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        try:
            done = query(db, "SELECT count(*) AS n FROM executions WHERE status = 'done'")
            if done[0]["n"] >= 3:
                break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.02)
    (folder,) = (workdir / "resume-slow").iterdir()
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            os.chmod(path, 0o555)
    _out, err = proc.communicate(timeout=120)
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            os.chmod(path, 0o755)
    assert proc.returncode == 2, err
    assert f"cannot write to the folder {folder}" in err and "genarun resume" in err
    assert "Traceback" not in err and "internal error" not in err
    (run,) = query(db, "SELECT id, status FROM runs")
    assert run["status"] == "interrupted"
    result = _genarun([], "resume", run["id"], "--db", db, cwd=workdir)
    assert result.returncode == 0, result.stderr
    rows = query(
        db, "SELECT node_id, path FROM executions WHERE status = 'done' AND reused_from IS NULL"
    )
    counts = Counter((r["node_id"], r["path"]) for r in rows)
    assert len(counts) == 21 and set(counts.values()) == {1}
    assert (folder / "output.json").is_file()
    assert query(db, "SELECT status FROM runs")[0]["status"] == "completed"
