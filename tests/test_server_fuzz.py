"""No input makes `genarun serve` answer 500: random bodies, queries and paths (hypothesis)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.helpers import app_client
from tests.human_helpers import make_request

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_bodies = st.one_of(
    _json.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.fixed_dictionaries(
        {"node": st.sampled_from(["pick", "nope", ""]), "answer": _json},
        optional={"path": _json, "responder": _json},
    ).map(lambda v: json.dumps(v).encode()),
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, str, str]:
    db = tmp_path_factory.mktemp("fuzz") / "g.db"
    request, token = make_request(db, collect=1000)  # a poll: answers keep being accepted
    client = app_client(Path(db))
    return client, request.run_id, token


_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.slow
@_SETTINGS
@given(body=_bodies, content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_api_answers_never_fail_with_500(served, body: bytes, content_type: str) -> None:
    client, run_id, _ = served
    reply = client.post(
        f"/api/v1/runs/{run_id}/answers", content=body, headers={"content-type": content_type}
    )
    assert reply.status_code < 500, reply.text


@pytest.mark.slow
@_SETTINGS
@given(body=_bodies, token=st.booleans(), path=st.text(max_size=30))
def test_hooks_never_fail_with_500(served, body: bytes, token: bool, path: str) -> None:
    client, run_id, good = served
    params = {"token": good} if token else {}
    for url in (f"/runs/{run_id}/pick/hook", f"/runs/{run_id}/{quote(path, safe='/')}/hook"):
        reply = client.post(url, content=body, params=params)
        assert reply.status_code < 500, reply.text


@pytest.mark.slow
@_SETTINGS
@given(
    query=st.dictionaries(
        st.sampled_from(["status", "tree", "q", "limit", "experiment", "after"]),
        st.text(max_size=20),
        max_size=4,
    ),
    ref=st.text(max_size=40),
)
def test_reads_never_fail_with_500(served, query: dict[str, str], ref: str) -> None:
    client, _, _ = served
    ref = quote(ref, safe="")
    for url in ("/api/v1/runs", "/runs", "/inbox", f"/api/v1/runs/{ref}", f"/runs/{ref}"):
        reply = client.get(url, params=query)
        assert reply.status_code < 500, (url, reply.text)
