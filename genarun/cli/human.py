"""`genarun inbox`, `genarun answer` and `genarun serve`: people answering human steps."""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import click

from genarun.cli.common import NumberRange, WholeNumber, db_flag, db_option, handle_errors, with_db

DEFAULT_PORT = 8765
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _expiry(request: Any, now: float) -> str:
    if request.expires is None:
        return "never"
    left = request.expires - now
    return f"in {_age(left)}" if left > 0 else f"passed {_age(-left)} ago"


@click.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="The pending requests as JSON.")
@handle_errors
def inbox(db: Path | None, as_json: bool) -> None:
    """Human requests waiting for an answer: run, node and item, question, options, age,
    expiry, and how to answer."""
    from genarun.human.inbox import inbox_row, shown_images
    from genarun.store.db import Store
    from genarun.store.human import vote_count, waiting_requests

    store = Store.existing(db)
    requests = waiting_requests(store)
    now = time.time()
    if as_json:
        rows = [inbox_row(store, r) for r in requests]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not requests:
        click.echo("no requests waiting for an answer")
        return
    for r in requests:
        poll = ""
        if r.collect:  # a poll without a count (only `until`) closes when its time is up
            wanted = f"/{r.collect}" if r.collect < 2**31 else ""
            poll = f", poll {vote_count(store, r.id)}{wanted} answers"
        click.echo(
            f"run {r.run_id[:8]}  {r.target}  ({r.ask}; asked {_age(now - r.created)} ago, "
            f"expires {_expiry(r, now)}{poll})"
        )
        click.echo(f"  {r.question}")
        for index, option in enumerate(r.options or []):
            click.echo(f"    {index}: {_option_text(option)[:200]}")
        for image in shown_images(r):
            click.echo(f"    image: {image}")
        if r.notify_status and not r.notify_status.startswith("sent"):
            click.echo(f"  notify: {r.notify_status}")
        click.echo(with_db(f"  answer: genarun answer {r.run_id[:8]} {r.target} VALUE", db))


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("target", metavar="NODE[INDEX]")
@click.argument("value")
@db_option
@click.option(
    "--as", "responder", help="Who answers (default: user@host); a poll counts one vote each."
)
@click.option("--resume", "resume_now", is_flag=True, help="Continue the run at once.")
@handle_errors
def answer(
    run_ref: str, target: str, value: str, db: Path | None, responder: str | None, resume_now: bool
) -> None:
    """Answer a human request: VALUE is checked against what the question accepts (a choice,
    a number, true/false, JSON...) and recorded with who and when."""
    from genarun.errors import UserError
    from genarun.graph.plan import parse_node_ref
    from genarun.human.answers import AnswerInvalid, read_cli_value, typed_forms
    from genarun.store.db import Store
    from genarun.store.human import locate, record_answer

    node_id, path = parse_node_ref(target)
    store = Store.existing(db)
    request = locate(store, run_ref, node_id, path)
    try:
        answer_value = read_cli_value(value, request.schema)
        recorded = record_answer(
            store,
            request,
            answer_value,
            responder=responder or f"{getpass.getuser()}@{socket.gethostname()}",
            via="cli",
        )
    except AnswerInvalid as exc:
        forms = typed_forms(request.schema)
        raise UserError(f"{request.target} of run {request.run_id[:8]}: {exc}{forms}") from None
    store.close()
    short = request.run_id[:8]
    if not recorded.closed:
        from genarun.store.human import vote_count

        store = Store(db)
        votes = vote_count(store, request.id)
        store.close()
        click.echo(f"vote recorded for {request.target} of run {short} ({votes}/{request.collect})")
        return
    click.echo(
        f"answered {request.target} of run {short}: {json.dumps(recorded.request.result, default=str)}"
    )
    if not resume_now:
        click.echo(f"to continue: genarun resume {short}{db_flag(db)}")
        return
    from genarun.cli.history import echo_outcome
    from genarun.run.progress import Progress
    from genarun.run.rerun import resume_runs
    from genarun.run.runner import RunOptions

    result = resume_runs([request.run_id], db=db, options=RunOptions(progress=Progress()))
    echo_outcome(result.outcome, db)


@click.command("hook-url")
@click.argument("run_ref", metavar="RUN")
@click.argument("target", metavar="NODE[INDEX]")
@db_option
@handle_errors
def hook_url(run_ref: str, target: str, db: Path | None) -> None:
    """A fresh answer URL (webhook with a new token) for a waiting request: the token is shown
    only when it is made, and only its hash is stored; the old URL stops working."""
    from genarun.errors import UserError
    from genarun.graph.plan import parse_node_ref
    from genarun.human.notify import answer_url
    from genarun.store.db import Store
    from genarun.store.human import locate, rotate_token

    node_id, path = parse_node_ref(target)
    store = Store.existing(db)
    try:
        request = locate(store, run_ref, node_id, path)
        if request.status != "waiting":
            raise UserError(
                f"{request.target} of run {request.run_id[:8]} is {request.status}: "
                "it takes no more answers"
            )
        token = rotate_token(store, request.id)
    finally:
        store.close()
    click.echo(answer_url(request.hook_path, token))


@click.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=WholeNumber(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--token",
    envvar="GENARUN_TOKEN",
    help="Token the API and pages require (needed to listen beyond 127.0.0.1; or "
    "$GENARUN_TOKEN). Webhooks use each request's own token or a signature.",
)
@click.option(
    "--no-auto-resume",
    is_flag=True,
    help="Only record answers; continue runs with `genarun resume` yourself.",
)
@click.option(
    "--sweep",
    type=NumberRange(0.1, 86400),
    default=15.0,
    show_default=True,
    help="Seconds between looks for requests whose timeout passed.",
)
@click.option(
    "--trees",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=".",
    show_default=True,
    help="The folder whose tree files the API and the start page may start runs of.",
)
@click.option(
    "--read-only",
    is_flag=True,
    help="Serve pages and GET routes only: no answers, starts, stops or webhooks "
    "(and no auto-resume).",
)
@handle_errors
def serve(
    db: Path | None,
    host: str,
    port: int,
    token: str | None,
    no_auto_resume: bool,
    sweep: float,
    trees: Path,
    read_only: bool,
) -> None:
    """Serve the web pages, the JSON API and the answer webhooks on http://HOST:PORT.

    \b
    Pages: /runs, /inbox, /start, /trees, /diff, /experiments.
    JSON API: /api/v1 (its OpenAPI document at /api/v1/openapi.json).
    Webhooks: POST /runs/RUN/NODE[/INDEX]/hook?token=...

    Answered runs continue in the server's worker. Signed webhooks use the secret in
    $GENARUN_WEBHOOK_SECRET. See docs/serve.md."""
    from genarun.errors import UserError
    from genarun.extras import require_extra

    require_extra("genarun serve", "web")
    import uvicorn

    from genarun.server.app import ServeOptions, create_app
    from genarun.store.db import Store, default_db_path

    if host not in LOCAL_HOSTS and not token:
        raise UserError(
            f"--host {host}: listening beyond this machine needs --token (or "
            "$GENARUN_TOKEN), which the API and pages then require"
        )
    secret = os.environ.get("GENARUN_WEBHOOK_SECRET") or None
    if secret is not None:
        from standardwebhooks.webhooks import Webhook

        try:
            Webhook(secret)
        except Exception as exc:
            raise UserError(
                f"$GENARUN_WEBHOOK_SECRET is not a Standard Webhooks secret (whsec_ and base64): {exc}"
            ) from None
    path = (db or default_db_path()).absolute()
    if path.exists():  # a bad or read-only database is said now, not per request
        Store(path, writing=not read_only).close()
    # A missing one is not created by serving: the first run started makes it.
    app = create_app(
        ServeOptions(
            db=path,
            auto_resume=not no_auto_resume,
            webhook_secret=secret,
            token=token,
            sweep_every=sweep,
            trees=trees.absolute(),
            read_only=read_only,
        )
    )
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"serving {path} on http://{shown}:{port} (Ctrl-C to stop)", err=True)
    sys.stderr.flush()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def echo_requests(runs: list[Any], db: Path | None) -> None:
    """After a run that waits: each human request it waits for, and how to answer it (the
    webhook URL carries the token only in the process that made the request)."""
    from genarun.human.notify import answer_url
    from genarun.store.db import Store
    from genarun.store.human import run_requests

    store = Store(db)
    try:
        for state in runs:
            for request in run_requests(store, state.id):
                if request.status != "waiting":
                    continue
                short = state.id[:8]
                db_part = db_flag(db)
                token = state.answer_tokens.get((request.node_id, request.path))
                click.echo(f"{request.target} asks ({request.ask}): {request.question[:200]}")
                if request.options and request.ask in ("choice", "multi", "best"):
                    shown = [_option_text(o) for o in request.options[:10]]
                    more = " ..." if len(request.options) > 10 else ""
                    click.echo("  options: " + ", ".join(shown) + more)
                click.echo(f"  answer: genarun answer {short} {request.target} VALUE{db_part}")
                url = answer_url(request.hook_path, token)
                note = "" if token else " (with the token it was given when asked)"
                click.echo(f"  webhook: POST {url}{note}")
    finally:
        store.close()


def _option_text(option: Any) -> str:
    if isinstance(option, dict) and "$image" in option:
        return str(option["$image"])
    return option if isinstance(option, str) else json.dumps(option, default=str)


def register(main: click.Group) -> None:
    for command in (inbox, answer, hook_url, serve):
        main.add_command(command)
