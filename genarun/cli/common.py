"""Helpers shared by the command modules: error rendering, --set parsing, common options."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from genarun.errors import GenarunError


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """User errors become a message and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GenarunError as exc:
            click.secho(f"error: {exc}" if exc.exit_code != 130 else str(exc), fg="red", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # The reader went away (`genarun tda compare latest | head`): not a bug. Point
            # stdout at /dev/null so the flush at exit does not fail again; exit as SIGPIPE would.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:
            if os.environ.get("GENARUN_DEBUG"):
                raise
            click.secho(f"internal error: {type(exc).__name__}: {exc}", fg="red", err=True)
            click.echo("(this is a bug in genarun; set GENARUN_DEBUG=1 to see the traceback)", err=True)
            sys.exit(1)

    return wrapper


def parse_set(values: tuple[str, ...]) -> dict[str, Any]:
    """`--set name=value` pairs; values are read as YAML scalars (42 is a number)."""
    import yaml

    from genarun.errors import UserError

    out: dict[str, Any] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--set {item!r}: expected name=value")
        try:
            out[name.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[name.strip()] = raw
    return out


db_option = click.option("--db", type=click.Path(dir_okay=False, path_type=Path), envvar="GENARUN_DB", help="SQLite database (default genarun.db here; or $GENARUN_DB).")


