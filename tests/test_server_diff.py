"""The diff page of `genarun serve` and /api/v1/diff agree with `genarun diff`: the same
entries, texts side by side line by line, images side by side. ASGI test client."""

from __future__ import annotations

import json
import re
from pathlib import Path

from genarun.server.diff_page import side_by_side
from tests.helpers import app_client, query

TREE = """genarun: 1
name: compared
seed: 3
vars:
  topic: geckos
nodes:
  - id: intro
    kind: template
    text: "Chapter one\\nAll about {{ topic }}\\nThe end"
  - id: cover
    kind: image
    model: dummy
    prompt: "A drawing of {{ topic }}"
    width: 16
    height: 16
  - id: fixed
    kind: template
    text: "unchanged"
"""


def _labels_in_cli(output: str) -> dict[str, str]:
    """`genarun diff`'s lines 'changed  intro' as {label: status}."""
    names = {"changed": "changed", "only A": "only_a", "only B": "only_b", "same": "same"}
    found = {}
    for line in output.splitlines():
        match = re.match(r"^(changed|only A|only B|same)\s+(\S+)", line)
        if match:
            found[match.group(2)] = names[match.group(1)]
    return found


def test_the_diff_page_shows_what_genarun_diff_says_texts_and_images_side_by_side(
    workdir: Path, cli, ran
) -> None:
    a = ran("compared.yaml", TREE)
    footer = "  - id: footer\n    kind: template\n    text: the end\n"
    b = ran("compared.yaml", TREE + footer, "--set", "topic=skinks")
    db = workdir / "genarun.db"
    said = cli("diff", a, b, "--all")
    assert said.exit_code == 0
    expected = _labels_in_cli(said.output)
    assert expected == {"intro": "changed", "cover": "changed", "fixed": "same", "footer": "only_b"}

    client = app_client(db)
    form = client.get("/diff").text
    assert f'<option value="{a}"' in form and f'<option value="{b}"' in form
    page = client.get("/diff", params={"a": a[:8], "b": b[:8], "all": "1"}).text
    shown = dict(re.findall(r'<section class="entry" id="([^"]+)" data-status="([^"]+)"', page))
    assert shown == expected
    assert "3 same" not in page and "1 same, 2 changed, 0 only in A, 1 only in B" in page
    # The text, line by line: the changed line beside its counterpart, the rest equal.
    assert '<td class="rep">All about geckos</td><td class="rep">All about skinks</td>' in page
    assert '<td class="equal">Chapter one</td><td class="equal">Chapter one</td>' in page
    # The images, each from its own run's folder.
    (img_a,) = query(
        db, f"SELECT output FROM executions WHERE run_id = '{a}' AND node_id = 'cover'"
    )
    (img_b,) = query(
        db, f"SELECT output FROM executions WHERE run_id = '{b}' AND node_id = 'cover'"
    )
    src_a = f"/runs/{a}/files/{json.loads(img_a[0])['$image']}"
    src_b = f"/runs/{b}/files/{json.loads(img_b[0])['$image']}"
    assert f'<img src="{src_a}" alt="A cover">' in page
    assert f'<img src="{src_b}" alt="B cover">' in page
    assert client.get(src_b).content.startswith(b"\x89PNG")
    # Without "all", unchanged executions are left out, as the CLI does.
    short = client.get("/diff", params={"a": a, "b": b}).text
    assert 'id="fixed"' not in short and 'id="intro"' in short

    api = client.get("/api/v1/diff", params={"a": a, "b": b}).json()
    assert api == json.loads(cli("diff", a, b, "--json").output)
    assert client.get("/api/v1/diff", params={"a": a}).status_code == 422
    assert client.get("/api/v1/diff", params={"a": a, "b": "ffff0000"}).status_code == 404
    assert "/api/v1/diff" in client.get("/api/v1/openapi.json").json()["paths"]

    missing = client.get("/diff", params={"a": a, "b": "ffff0000"})
    assert missing.status_code == 404
    assert "no run matches" in missing.text and 'href="/diff"' in missing.text


def test_side_by_side_pairs_changed_lines_and_pads_the_shorter_side() -> None:
    rows, cut = side_by_side("a\nb\nc", "a\nB\nc\nd")
    assert rows == [
        ("a", "a", "equal"),
        ("b", "B", "rep"),
        ("c", "c", "equal"),
        (None, "d", "ins"),
    ]
    assert cut == 0
    rows, _ = side_by_side({"k": 1}, None)  # only in A: JSON as genarun diff writes it
    assert rows == [("{", None, "del"), ('  "k": 1', None, "del"), ("}", None, "del")]
    rows, cut = side_by_side("\n".join(map(str, range(1000))), "x")
    assert len(rows) == 400 and cut == 600
