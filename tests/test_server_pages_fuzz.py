"""No input makes the tree, diff and experiments pages (or their JSON) answer 500: random
paths and queries (hypothesis), against a database with a run and an experiment."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from genarun.server.app import ServeOptions, create_app
from tests.helpers import LOCAL
from tests.human_helpers import make_request

_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, str]:
    folder = tmp_path_factory.mktemp("fuzz-pages")
    request, _ = make_request(folder / "g.db")
    (folder / "tree.yaml").write_text("genarun: 1\nname: t\nnodes:\n  - id: a\n    kind: nope\n")
    app = create_app(ServeOptions(db=folder / "g.db", auto_resume=False, trees=folder))
    return TestClient(app, raise_server_exceptions=False, base_url=LOCAL), request.run_id


@pytest.mark.slow
@_SETTINGS
@given(ref=st.text(max_size=300), other=st.text(max_size=40), show=st.text(max_size=3))
def test_page_reads_never_fail_with_500(served, ref: str, other: str, show: str) -> None:
    client, run_id = served
    path = quote(ref, safe="/")
    one = quote(ref, safe="")
    for url, params in (
        (f"/trees/{path}", {}),
        (f"/api/v1/trees/{path}", {}),
        (f"/runs/{run_id}/nodes/{one}", {}),
        (f"/runs/{one}/nodes/a", {}),
        (f"/api/v1/runs/{one}/graph", {}),
        ("/diff", {"a": ref, "b": other, "all": show}),
        ("/diff", {"a": run_id, "b": ref}),
        ("/api/v1/diff", {"a": ref, "b": run_id}),
        (f"/experiments/{one}", {}),
        (f"/experiments/latest/plots/{one}", {}),
    ):
        reply = client.get(url, params=params)
        assert reply.status_code < 500, (url, params, reply.text[:300])
