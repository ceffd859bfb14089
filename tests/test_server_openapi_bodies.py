"""The OpenAPI document lists what every operation with a body answers to a body it refuses
before reading it: one over the size limit (413) and, for the JSON API, one of another type
(415). Each documented POST operation is called on the real app with both."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from genarun.server.hooks import MAX_BODY
from genarun.server.openapi import openapi_document
from tests.helpers import app_client


def _posts() -> list[str]:
    return [path for path, item in openapi_document()["paths"].items() if "post" in item]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    folder = tmp_path_factory.mktemp("serve")
    return app_client(folder / "g.db", trees=folder)


@pytest.mark.parametrize("path", _posts())
def test_every_refused_body_is_answered_as_documented(client: TestClient, path: str) -> None:
    responses = openapi_document()["paths"][path]["post"]["responses"]
    url = re.sub(r"\{[^}]+\}", "x", path)
    too_big = client.post(
        url, content=b"{" + b" " * MAX_BODY + b"}", headers={"content-type": "application/json"}
    )
    assert too_big.status_code == 413 and "413" in responses, too_big.text
    typed = client.post(url, content=b'{"node": ["a"]}', headers={"content-type": "text/plain"})
    assert str(typed.status_code) in responses, (typed.status_code, typed.text)
    if path.startswith("/api/"):
        assert typed.status_code == 415
