"""Helpers shared by the command modules: error rendering, --set parsing, common options."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from genarun.errors import GenarunError
from genarun.redaction import redact


@contextlib.contextmanager
def startup_objects_frozen() -> Iterator[None]:
    """While a command executes a tree: every object that exists when it starts (modules,
    classes, functions: what the command imported) is out of the cyclic garbage collector's
    reach.

    The run creates 10,000s of objects, and each full collection walked the 100,000s of
    start-up objects too: about a tenth of a 10,000-execution run's CPU. They are handed back
    afterwards (gc.unfreeze), so a process that runs commands in turn (tests, CliRunner) keeps
    collecting what became garbage before the run."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# A command that a message tells the user to type next, with the run or experiment ids (or
# `latest`) that follow it: the database they are in must go with it. Compiled when first
# used (re caches it): a run that succeeds, or has no --db, never needs it.
_HINT = (
    r"\bgenarun (?:answer (?:[0-9a-f]{4,32}|latest) \S+ VALUE"
    r"|(?:resume|rerun|answer|hook-url|inbox|doctor|runs (?:show|list|pause|unpause|stop)"
    r"|experiments (?:show|list)|tda compute)(?: (?:[0-9a-f]{4,32}|latest|RUN)\b)*)"
)


def db_flag(db: Path | None) -> str:
    """` --db DB` for a command the user is told to type next, as they gave it; "" for the
    default, and for $GENARUN_DB (click reads it into --db), which the next command finds too."""
    if db is None or str(db) == os.environ.get("GENARUN_DB"):
        return ""
    import shlex  # only for a message: a run's start does not need the module

    return f" --db {shlex.quote(str(db))}"


def with_db(text: str, db: Path | None) -> str:
    """`text` whose `genarun resume 3f2a`-like hints carry `--db DB` (db_flag): the core
    writes them for the default database, and copied without it they find no run."""
    flag = db_flag(db)
    if not flag or "--db" in text:
        return text
    return re.sub(_HINT, lambda m: m.group(0) + flag, text)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """User errors become a message and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GenarunError as exc:
            # Messages are masked once more here: a secret or its echo never reaches the screen.
            message = with_db(redact(str(exc)), kwargs.get("db"))
            click.secho(
                f"error: {message}" if exc.exit_code != 130 else message, fg="red", err=True
            )
            if exc.exit_code == 130:
                from genarun.run.interrupts import exit_interrupted

                exit_interrupted()
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except click.Abort:
            # A question (delete? [y/N]) whose input closed before an answer: not a bug.
            click.echo(
                "\nno answer (the input closed); nothing was changed: answer the question, or "
                "pass --yes to skip it",
                err=True,
            )
            sys.exit(1)
        except click.ClickException:
            raise  # click's own usage errors: click prints them with the usage line
        except BrokenPipeError:
            # The reader went away (`genarun tda compare latest | head`): not a bug. Point
            # stdout at /dev/null so the flush at exit does not fail again; exit as SIGPIPE would.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:
            if os.environ.get("GENARUN_DEBUG"):
                raise
            # Garbled bytes of a damaged database can surface anywhere (text that is no
            # longer JSON deep in a reader): if a database this command opened is damaged,
            # that is the message, naming the file.
            from genarun.store.opening import diagnose

            damage = diagnose(exc)
            if damage is not None:
                click.secho(f"error: {damage}", fg="red", err=True)
                sys.exit(damage.exit_code)
            click.secho(
                f"internal error: {type(exc).__name__}: {redact(str(exc))}", fg="red", err=True
            )
            click.echo(
                "(this is a bug in genarun; set GENARUN_DEBUG=1 to see the traceback)", err=True
            )
            sys.exit(1)
        finally:
            # Several commands in one process (tests, a server): close what this one opened.
            opening = sys.modules.get("genarun.store.opening")
            if opening is not None:
                opening.forget()

    return wrapper


def parse_set(values: tuple[str, ...]) -> dict[str, Any]:
    """`--set name=value` pairs; values are read as YAML, as in a tree (42 is a number)."""
    from genarun.errors import UserError
    from genarun.tree.load import read_set_value

    out: dict[str, Any] = {}
    for item in values:
        # Only with --set: the limits module loads Jinja, which a tree without Jinja never needs.
        from genarun.tree.limits import LIMITS

        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            example = item.strip() if item.strip().isidentifier() else "topic"
            raise UserError(
                f"--set {item!r}: expected NAME=VALUE, a var or matrix key of the tree and its "
                f"value (read as YAML), such as --set {example}=geckos or --set {example}='[1, 2]'"
            )
        value = read_set_value(raw)
        big = (
            value.bit_length() > LIMITS.int_bits
            if isinstance(value, int) and not isinstance(value, bool)
            else isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9_]+\s*", raw) is not None
        )
        if big:  # templates compute with integers of at most LIMITS.int_bits
            raise UserError(
                f"--set {name.strip()}: a whole number of {len(raw.strip()):,} digits is over "
                f"the limit of {LIMITS.int_bits:,} bits (about 1,233 digits) templates compute with"
            )
        out[name.strip()] = value
    return out


def one_tree(path: Path) -> Path:
    """A command's TREE argument: a folder is named as a mistake, with the trees in it."""
    if not path.is_dir():
        return path
    from genarun.errors import UserError
    from genarun.tree.discover import no_trees_message, trees_in

    found, _others = trees_in(path)
    if not found:
        raise UserError(no_trees_message(path))
    shown = ", ".join(str(p) for p in found[:5]) + (
        f" ... ({len(found)} in all)" if len(found) > 5 else ""
    )
    raise UserError(f"{path} is a folder: name a tree file in it ({shown})")


class SeedType(click.ParamType):
    """`--seed`: a whole number, or `random` for fresh entropy (drawn and recorded, as the
    tree's `seed: random` is)."""

    name = "seed"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "INTEGER|random"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | str:
        from genarun.tree.schema import seed_problem

        if isinstance(value, int) or value == "random":
            return value
        try:
            seed: int | str = int(str(value).strip())
        except ValueError:
            seed = str(value)
        problem = seed_problem(seed)
        if problem:
            example = "" if isinstance(seed, int) else " (for example --seed 42, or --seed random)"
            self.fail(problem + example, param, ctx)
        return seed


class _Explained(click.ParamType):
    """A number type whose mistakes say what the option accepts, with an example: click's own
    message (`Invalid value for '--budget': 'lots' is not a valid float.`) said neither."""

    whole: bool = False
    example: str | None = None  # a value shown in the example; default: the option's default

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            number = "whole number" if self.whole else "number"
            reason = exc.message.rstrip(".")
            if "is not a valid" in reason:  # click names the Python type: say what it means
                reason = f"{value!r} is not a {number}"
            self.fail(f"{reason}; give {self.accepted()}{self._example(param)}", param, ctx)

    def accepted(self) -> str:
        """What the option accepts, in words."""
        number = "a whole number" if self.whole else "a number"
        low, high = getattr(self, "min", None), getattr(self, "max", None)
        if low is not None and high is not None:
            return f"{number} from {low} to {high}"
        if low is not None:
            return (
                f"{number} above {low}"
                if getattr(self, "min_open", False)
                else (f"{number} of {low} or more")
            )
        if high is not None:
            return f"{number} of {high} or less"
        return number

    def _example(self, param: click.Parameter | None) -> str:
        if param is None or not param.opts:
            return ""
        example = self.example
        if example is None and param.default is not None and not callable(param.default):
            example = str(param.default)
        if example is None:
            low = getattr(self, "min", None)
            example = str(low if low is not None else 1)
        return f", such as {param.opts[0]} {example}"


class WholeNumber(_Explained, click.IntRange):
    """A whole-number option (optionally bounded) with messages that say what it accepts."""

    whole = True

    def __init__(self, min: int | None = None, max: int | None = None, **kwargs: Any) -> None:
        self.example = kwargs.pop("example", None)
        super().__init__(min, max, **kwargs)


class NumberRange(_Explained, click.FloatRange):
    """A bounded number option with messages that say what it accepts."""

    def __init__(self, min: float | None = None, max: float | None = None, **kwargs: Any) -> None:
        self.example = kwargs.pop("example", None)
        super().__init__(min, max, **kwargs)


class Number(_Explained, click.types.FloatParamType):
    """A number option (any value) with messages that say what it accepts."""

    def __init__(self, example: str | None = None) -> None:
        self.example = example


class DeviceType(click.ParamType):
    """`--device`: cpu, cuda, cuda:N or mps, checked before anything runs (torch's own
    message for `gpu` came from the first model's load, after the run had started)."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from genarun.errors import did_you_mean

        device = str(value).strip().lower()
        if re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
            return device
        gpu = "gpu" in device or "nvidia" in device  # 'gpu' is closer to 'cpu' in spelling
        close = "did you mean 'cuda'?" if gpu else did_you_mean(device, ["cpu", "cuda", "mps"])
        self.fail(
            f"'{value}' is not a device: use cpu, cuda, cuda:N (one GPU of several) or mps"
            + (f" ({close})" if close else ""),
            param,
            ctx,
        )


def executor_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`--executor local|ray`, `--ray-address` and `--ray-actors` (also GENARUN_EXECUTOR,
    RAY_ADDRESS, GENARUN_RAY_ACTORS)."""
    fn = click.option(
        "--ray-actors",
        type=click.Choice(["per-model", "per-gpu"]),
        envvar="GENARUN_RAY_ACTORS",
        default="per-model",
        show_default=True,
        help="With --executor ray: an actor per model, or one actor per GPU holding every "
        "model placed on that GPU (one CUDA context, like the local executor).",
    )(fn)
    fn = click.option(
        "--ray-address",
        envvar="RAY_ADDRESS",
        help="With --executor ray: the cluster to join (default: start Ray on this machine).",
    )(fn)
    return click.option(
        "--executor",
        type=click.Choice(["local", "ray"]),
        envvar="GENARUN_EXECUTOR",
        default="local",
        show_default=True,
        help="Where model batches, I/O calls and CPU work run: threads here, or Ray.",
    )(fn)


device_option = click.option(
    "--device", type=DeviceType(), help="cuda, cuda:1, mps or cpu (default: the best available)."
)

# A run's model batches (run, rerun, resume); other commands word their own batch sizes.
batch_size_option = click.option(
    "--batch-size",
    type=WholeNumber(1, 4096),
    default=16,
    show_default=True,
    help="Most invocations sent to a model at once.",
)

db_option = click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="GENARUN_DB",
    help="SQLite database (default: $GENARUN_DB, else the nearest genarun.db here or above).",
)

# How many of the newest rows a list command shows (runs, experiments, clusterings).
limit_option = click.option(
    "--limit",
    type=WholeNumber(1),
    default=30,
    show_default=True,
    help="Show at most this many, newest first.",
)


def verbosity_options(command: Any) -> Any:
    """`--quiet` / `--verbose` of the commands that run trees (run, rerun, resume): the
    command receives `verbosity` ("quiet", "normal" or "verbose")."""
    command = click.option(
        "--verbose",
        "-v",
        "verbosity",
        flag_value="verbose",
        help="Also a line per finished node, info logs and the summary table, on a terminal or not.",
    )(command)
    return click.option(
        "--quiet",
        "-q",
        "verbosity",
        flag_value="quiet",
        help="No progress bars, lines or summary table; errors and the outcome only.",
    )(command)
