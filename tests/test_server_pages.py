"""The inbox page of `genarun serve`: forms from answer schemas, CSRF, sessions, run images."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image
from starlette.testclient import TestClient

from tests.helpers import app_client, query
from tests.human_helpers import make_request


def _client(db: Path, token: str | None = None) -> TestClient:
    return app_client(db, token=token)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html
    return found.group(1)


def _run_folder_with_covers(db: Path, folder: Path) -> tuple[object, list[str]]:
    from genarun.human.answers import answer_schema
    from genarun.store.db import Store, runs

    (folder / "assets").mkdir(parents=True)
    paths = []
    for i in range(3):
        Image.new("RGB", (8, 8), (80 * i, 0, 0)).save(folder / "assets" / f"cover-{i}.png")
        paths.append(f"assets/cover-{i}.png")
    options = [{"$image": p, "sha256": "x"} for p in paths]  # as the node stores images

    request, _ = make_request(
        db,
        node_id="best_cover",
        ask="best",
        options=options,
        images=paths,
        schema=answer_schema("best", paths, None),
    )
    store = Store(db)
    store._write(runs.update().where(runs.c.id == request.run_id).values(out_dir=str(folder)))
    store.close()
    return request, paths


def test_the_inbox_shows_a_form_for_each_kind_of_question(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    make_request(db)  # a choice
    make_request(db, node_id="ok", ask="approve", options=None)
    make_request(db, node_id="many", ask="multi", options=["a", "b"])
    make_request(db, node_id="count", ask="number", options=None)
    make_request(db, node_id="words", ask="text", options=None, question="Say <b>hi</b>")
    request, paths = _run_folder_with_covers(db, tmp_path / "run")
    html = _client(db).get("/inbox").text
    assert '<button name="answer" value="&#34;green&#34;">green</button>' in html
    assert 'value="true">Approve</button>' in html and 'value="false">Reject</button>' in html
    assert 'type="checkbox" name="item" value="&#34;b&#34;"' in html
    assert 'type="number"' in html and '<textarea name="text"' in html
    assert "Say &lt;b&gt;hi&lt;/b&gt;" in html  # questions are escaped
    for index, path in enumerate(paths):
        assert f'value="{index}" aria-label="pick {index}"' in html
        assert f"/runs/{request.run_id}/files/{path}" in html


def test_answering_from_the_page(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    choice, _ = make_request(db)
    request, paths = _run_folder_with_covers(db, tmp_path / "run")
    multi, _ = make_request(db, node_id="many", ask="multi", options=["a", "b", "c"])
    client = _client(db)
    csrf = _csrf(client.get("/inbox").text)
    form = {"csrf": csrf, "request": str(request.id), "answer": "1", "responder": "ed"}
    reply = client.post("/answer", data=form)
    assert (
        reply.status_code == 200 and "best_cover of run" in reply.text and "answered" in reply.text
    )
    assert query(db, "SELECT result FROM human_requests WHERE id = ?", request.id)[0][0] == (
        '{"$image": "assets/cover-1.png", "sha256": "x"}'
    )
    bad = client.post("/answer", data={**form, "request": str(choice.id), "answer": '"teal"'})
    assert "accepted: &#34;red&#34;" in bad.text
    late = client.post("/answer", data=form)
    assert "answered already by ed via page" in late.text
    items = {"csrf": csrf, "request": str(multi.id), "item": ['"a"', '"c"'], "answer": "[]"}
    assert "many of run" in client.post("/answer", data=items).text
    assert (
        query(db, "SELECT result FROM human_requests WHERE id = ?", multi.id)[0][0] == '["a", "c"]'
    )
    image = client.get(f"/runs/{request.run_id}/files/{paths[2]}")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


def test_forged_or_cross_site_forms_and_files_outside_the_run_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, _ = _run_folder_with_covers(db, tmp_path / "run")
    (tmp_path / "secret.png").write_bytes(b"\x89PNG secret")
    (tmp_path / "run" / "assets" / "link.png").symlink_to(tmp_path / "secret.png")
    client = _client(db)
    csrf = _csrf(client.get("/inbox").text)
    form = {"csrf": "0" * 64, "request": str(request.id), "answer": "1"}
    assert client.post("/answer", data=form).status_code == 403
    other_site = client.post(
        "/answer", data={**form, "csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert other_site.status_code == 403
    for rel in (
        "../secret.png",
        "assets/../../secret.png",
        "assets/%2E%2E/%2E%2E/secret.png",
        "assets/link.png",
        "output.json",
    ):
        reply = client.get(f"/runs/{request.run_id}/files/{rel}")
        assert reply.status_code in (404, 405) and b"secret" not in reply.content, rel
    assert query(db, "SELECT count(*) FROM human_answers")[0][0] == 0


def test_with_a_token_pages_need_a_session(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, paths = _run_folder_with_covers(db, tmp_path / "run")
    client = _client(db, token="s3cret")
    assert client.get("/inbox").status_code == 401
    assert client.get(f"/runs/{request.run_id}/files/{paths[0]}").status_code == 401
    assert client.get("/login", params={"token": "nope"}).status_code == 403
    signed = client.get("/login", params={"token": "s3cret"})
    assert signed.status_code == 200 and "Which colour?" in signed.text
    assert client.get(f"/runs/{request.run_id}/files/{paths[0]}").status_code == 200
