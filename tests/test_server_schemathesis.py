"""Schemathesis against `genarun serve`'s OpenAPI document (GET /api/v1/openapi.json): cases
generated from every documented operation, sent to the ASGI app; none may answer 5xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from genarun.server.app import ServeOptions, create_app
from tests.human_helpers import make_request

EXAMPLES = 30  # per operation (11 operations): ~13 s of CPU in all


def _as_loopback(app: Any) -> Any:
    """The app as reached at 127.0.0.1: schemathesis's client sends Host `testserver`, which a
    server without a token refuses (genarun/server/hosts.py)."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
            scope = {**scope, "headers": [(b"host", b"127.0.0.1"), *headers]}
        await app(scope, receive, send)

    return asgi


@pytest.mark.slow  # ~13 s of CPU; minutes of wall time on a loaded machine
def test_no_documented_operation_answers_a_server_error(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    # A run that waits on a poll (answers keep being accepted) and a second, plain request:
    # something for every route to find. No trees folder: starts and reruns are refused (403)
    # rather than spawning a worker process for every generated case.
    make_request(db, collect=1000)
    make_request(db, node_id="other")
    app = create_app(ServeOptions(db=db, auto_resume=False))
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", _as_loopback(app))
    # (The pytest plugin's lazy fixture loader does not run under pytest 9: operations are
    # driven here one by one, each a hypothesis test of its own.)
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        no_server_error()
        tested.append(operation.label)
    assert "POST /api/v1/runs/{run_id}/pause" in tested and len(tested) >= 11, tested
