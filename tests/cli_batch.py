"""Run many `genarun` command lines in one process, for tests that try many payloads.

    python tests/cli_batch.py [--limit=NAME=VALUE ...] < jobs.jsonl

Each stdin line is a JSON list of arguments; each stdout line is a JSON object with the exit
code, the seconds it took and what it printed. The CLI is the real one (click's main, as the
`genarun` script calls it); one process for many command lines keeps a test of a hundred
payloads fast, and the limits the caller sets on this process (memory, time) bound each.
`--limit=iterations=20000` (any field of genarun.tree.limits.Limits) sets a template limit.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time


def run(args: list[str]) -> dict[str, object]:
    from genarun.cli import main

    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    code: object = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args, prog_name="genarun")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:
            code = f"crash: {type(exc).__name__}: {exc}"[:2000]
    return {
        "args": args,
        "code": code,
        "seconds": round(time.monotonic() - started, 3),
        "stdout": out.getvalue()[-20000:],
        "stderr": err.getvalue()[-20000:],
    }


if __name__ == "__main__":
    import dataclasses

    from genarun.tree import limits

    for flag in sys.argv[1:]:
        name, _, value = flag.removeprefix("--limit=").partition("=")
        kind = type(getattr(limits.LIMITS, name))
        limits.LIMITS = dataclasses.replace(limits.LIMITS, **{name: kind(value)})
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run(json.loads(line))), flush=True)
