"""The tree editor of `genarun serve` (`/trees/<file>/edit`) through Starlette's ASGI client on
real files: a save keeps comments, key order and quoting of what was not edited; a file changed
on disk since it was loaded is not overwritten; an invalid edit is reported on its node, with
`genarun validate`'s message, and not saved; the file path from the request never reaches
outside the trees folder; nothing changes without the page's CSRF token."""

from __future__ import annotations

import html as htmllib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import app_client

COMMENTED = """# The book tree: comments, key order and quoting are the author's.
genarun: 1
name: edit-book   # the output folder's name
seed: 2
vars:
  topics: ["geckos", 'skinks']   # flow style, mixed quotes
  mood: calm
nodes:
  # the title comes first
  - id: title
    kind: template
    text: "A {{ mood }} book"
    children:
      - id: chapter
        kind: template
        foreach: topics
        as: topic
        text: 'On {{ topic }}, {{ mood }}'
      - id: cover        # painted last
        kind: image
        model: dummy
        prompt: "Cover for {{ title }}"
        width: 32
        height: 32
  - id: blurb
    kind: template
    text: |
      {{ chapter | length }} chapters
      about {{ title }}
"""


def _form(page: str) -> dict[str, str]:
    """The editor form's hidden state, as a browser would send it back."""
    found = {
        key: htmllib.unescape(re.search(rf'name="{key}" value="([^"]*)"', page).group(1))  # type: ignore[union-attr]
        for key in ("csrf", "base", "crlf", "sel")
    }
    text = re.search(r'<textarea name="text" hidden>\n(.*?)</textarea>', page, re.S)
    assert text is not None, page[:2000]
    found["text"] = htmllib.unescape(text.group(1))
    return found


def _message(page: str) -> str:
    found = re.search(r'id="message" role="\w+">(.*?)</p>', page, re.S)
    return htmllib.unescape(re.sub(r"<[^>]+>", "", found.group(1))) if found else ""


def _node_problems(page: str, node: str) -> list[str]:
    item = re.search(rf'<li id="n-[0-9.]+" data-node="{node}".*?</li>', page, re.S)
    assert item is not None, f"no node {node} in the outline"
    return [htmllib.unescape(p) for p in re.findall(r'class="problem">(.*?)</div>', item.group())]


class Editor:
    """One open editor page: posts its form with a change, as the page's buttons do."""

    def __init__(self, client: Any, name: str) -> None:
        self.client, self.name = client, name
        answer = client.get(f"/trees/{name}/edit")
        assert answer.status_code == 200, answer.text
        self.page = answer.text
        self.status = 200

    def do(self, op: str, **fields: str) -> str:
        answer = self.client.post(
            f"/trees/{self.name}/edit", data={**_form(self.page), "op": op, **fields}
        )
        self.status, self.page = answer.status_code, answer.text
        return self.page

    @property
    def text(self) -> str:
        return _form(self.page)["text"]


@pytest.fixture
def trees(tmp_path: Path) -> Path:
    folder = tmp_path / "trees"
    folder.mkdir()
    (folder / "book.yaml").write_text(COMMENTED)
    return folder


@pytest.fixture
def client(trees: Path) -> Any:
    return app_client(trees.parent / "g.db", trees=trees)


def test_editing_one_field_and_saving_changes_that_line_only(trees: Path, client: Any) -> None:
    editor = Editor(client, "book.yaml")
    editor.do("select:0.1")
    assert 'id="f-prompt"' in editor.page and 'name="f.width"' in editor.page
    editor.do("apply", **{"f.width": "64", "f.prompt": "Cover for {{ title }}"})
    assert _message(editor.page) == "changed width"
    assert 'id="unsaved"' in editor.page
    assert (trees / "book.yaml").read_text() == COMMENTED  # nothing written before save
    editor.do("save")
    assert editor.status == 200 and _message(editor.page) == "saved book.yaml"
    assert (trees / "book.yaml").read_text() == COMMENTED.replace("width: 32", "width: 64")


def test_structural_edits_keep_every_untouched_comment_and_quote(trees: Path, client: Any) -> None:
    editor = Editor(client, "book.yaml")
    editor.do("add", add_kind="template", add_id="summary", add_parent="")
    editor.do("apply", **{"f.text": "In short: {{ title }}"})
    editor.do("toggle:0.0")  # chapter off
    editor.do("up:1")  # blurb above title
    editor.do("save")
    assert _message(editor.page) == "saved book.yaml", editor.page[-3000:]
    saved = (trees / "book.yaml").read_text()
    for line in COMMENTED.splitlines():
        assert line in saved, f"lost: {line!r}\n{saved}"
    assert "      - id: chapter\n        kind: template\n        enabled: false\n" not in saved
    assert "        enabled: false\n" in saved
    assert saved.index("- id: blurb") < saved.index("- id: title")
    assert saved.endswith(
        "  - id: summary\n    kind: template\n    text: 'In short: {{ title }}'\n"
    )


def test_a_json_tree_is_written_back_as_json_in_its_key_order(trees: Path, client: Any) -> None:
    tree = {
        "genarun": 1,
        "name": "j",
        "nodes": [{"kind": "template", "id": "a", "text": "x"}],
    }
    (trees / "j.json").write_text(json.dumps(tree, indent=4) + "\n")
    editor = Editor(client, "j.json")
    editor.do("select:0")
    editor.do("rename", new_id="first")
    editor.do("save")
    assert _message(editor.page) == "saved j.json"
    text = (trees / "j.json").read_text()
    assert json.loads(text)["nodes"] == [{"kind": "template", "id": "first", "text": "x"}]
    assert text.startswith('{\n    "genarun": 1,') and text.endswith("}\n")


def test_rename_updates_the_references_and_the_page_lists_them(trees: Path, client: Any) -> None:
    editor = Editor(client, "book.yaml")
    editor.do("select:0")
    editor.do("rename", new_id="heading")
    assert (
        _message(editor.page)
        == "renamed to heading; references updated in cover.prompt, blurb.text"
    )
    assert 'data-problems="0"' in editor.page
    text = editor.text
    assert 'prompt: "Cover for {{ heading }}"' in text and "about {{ heading }}" in text
    # a foreach naming a node follows too, and a name used as a plain word does not
    editor.do("select:0.0")
    editor.do("rename", new_id="topics_out")
    editor.do("add", add_kind="template", add_id="each", add_parent="")
    editor.do("apply", **{"f.text": "topics_out: {{ item }}", "f.foreach": "topics_out"})
    editor.do("rename", new_id="each2")
    editor.do("select:0.0")
    editor.do("rename", new_id="chapters")
    assert "foreach: chapters" in editor.text and "text: 'topics_out: {{ item }}'" in editor.text


def test_invalid_edits_show_validates_message_on_their_node_and_are_not_saved(
    trees: Path, client: Any, cli: Any
) -> None:
    editor = Editor(client, "book.yaml")
    editor.do("select:0.1")
    editor.do("apply", **{"f.steps": "many"})
    editor.do("select:1")
    editor.do("apply", **{"f.text": "{{ titel }}"})
    problems = _node_problems(editor.page, "cover") + _node_problems(editor.page, "blurb")
    assert len(problems) == 2 and 'id="problem-count">2 problems' in editor.page
    # the same messages `genarun validate` gives for that text
    copy = trees.parent / "copy.yaml"
    copy.write_text(editor.text)
    said = cli("validate", copy).output
    for problem in problems:
        assert problem.split(": ", 1)[1] in said, (problem, said)
    assert "did you mean 'title'" in " ".join(problems)
    editor.do("save")
    assert editor.status == 422 and _message(editor.page).startswith("not saved: 2 problems")
    assert (trees / "book.yaml").read_text() == COMMENTED
    # fixed, the problems go and it saves
    editor.do("apply", **{"f.text": COMMENTED.split("text: |\n")[1].replace("      ", "")})
    editor.do("select:0.1")
    editor.do("apply", **{"f.steps": ""})
    assert _node_problems(editor.page, "cover") == [] and 'data-problems="0"' in editor.page
    editor.do("save")
    assert editor.status == 200 and (trees / "book.yaml").read_text() == COMMENTED


def test_an_edit_that_cannot_be_made_says_why_and_keeps_the_text(client: Any) -> None:
    editor = Editor(client, "book.yaml")
    before = editor.text
    for op, fields, said in [
        ("add", {"add_kind": "template", "add_id": "title"}, "there is a node 'title' already"),
        ("add", {"add_kind": "nope", "add_id": "x"}, "unknown kind 'nope'"),
        ("add", {"add_kind": "template", "add_id": "9 x"}, "is no node id"),
        ("up:0", {}, "the node is first already"),
        ("remove:7.3", {}, "no such node"),
        ("select:../1", {}, "no node at"),
        ("rename", {"new_id": "x"}, "select a node first"),
    ]:
        editor.do(op, **fields)
        assert editor.status == 422 and said in _message(editor.page), (op, _message(editor.page))
        assert editor.text == before
    editor.do("select:0")
    editor.do("move", move_to="into:0.0")
    assert editor.status == 422 and "into itself" in _message(editor.page)
    editor.do("node_yaml", node_yaml="id: title\nkind: [")
    assert editor.status == 422 and "not valid YAML" in _message(editor.page)


def test_whole_text_and_node_yaml_edits(trees: Path, client: Any) -> None:
    editor = Editor(client, "book.yaml")
    editor.do("text", whole="genarun: 1\nname: x\nnodes: [\n")
    assert "the YAML does not parse" in editor.page and 'id="problem-count"' in editor.page
    editor.do("save")
    assert editor.status == 422 and (trees / "book.yaml").read_text() == COMMENTED
    editor.do("text", whole=COMMENTED)
    editor.do("select:1")
    editor.do("node_yaml", node_yaml="id: blurb\nkind: template  # kept\ntext: short\n")
    assert re.search(r"kind: template +# kept\n    text: short\n", editor.text)
    assert editor.text.count("- id:") == 4


def test_a_file_changed_on_disk_since_it_was_loaded_is_not_overwritten(
    trees: Path, client: Any
) -> None:
    editor = Editor(client, "book.yaml")
    editor.do("select:1")
    editor.do("apply", **{"f.text": "changed here"})
    theirs = COMMENTED.replace("mood: calm", "mood: stormy")
    (trees / "book.yaml").write_text(theirs)
    editor.do("save")
    assert editor.status == 409
    assert "changed on disk since you loaded it: not saved" in _message(editor.page)
    assert 'id="reload" href="/trees/book.yaml/edit"' in editor.page.replace(
        'href="/trees/book.yaml/edit" id="reload"', 'id="reload" href="/trees/book.yaml/edit"'
    )
    assert "changed here" in editor.text  # the edits stay on the page, to copy
    assert (trees / "book.yaml").read_text() == theirs
    reloaded = Editor(client, "book.yaml")
    assert "mood: stormy" in reloaded.text


def test_nothing_changes_without_the_pages_csrf_token_and_origin(trees: Path, client: Any) -> None:
    editor = Editor(client, "book.yaml")
    form = {**_form(editor.page), "op": "save", "text": "genarun: 1\nname: x\nnodes: []\n"}
    for forged, headers in [
        ({**form, "csrf": "0" * 64}, {}),
        ({k: v for k, v in form.items() if k != "csrf"}, {}),
        (form, {"origin": "http://evil.example"}),
    ]:
        answer = client.post("/trees/book.yaml/edit", data=forged, headers=headers)
        assert answer.status_code == 403
    rebound = client.post("/trees/book.yaml/edit", data=form, headers={"host": "evil.example"})
    assert rebound.status_code == 403
    assert client.get("/trees/book.yaml/edit", headers={"host": "evil.example"}).status_code == 403
    assert (trees / "book.yaml").read_text() == COMMENTED


def test_no_editor_in_read_only_mode(trees: Path) -> None:
    client = app_client(trees.parent / "g.db", trees=trees, read_only=True)
    assert client.get("/trees/book.yaml/edit").status_code == 404
    assert client.post("/trees/book.yaml/edit", data={}).status_code == 405
    assert "/edit" not in client.get("/trees/book.yaml").text


def test_the_tree_pages_link_to_the_editor_and_it_offers_a_start_once_saved(
    trees: Path, client: Any
) -> None:
    assert 'href="/trees/book.yaml/edit"' in client.get("/trees").text
    assert 'href="/trees/book.yaml/edit" id="edit-tree"' in client.get("/trees/book.yaml").text
    editor = Editor(client, "book.yaml")
    assert 'id="start-run"' in editor.page and 'action="/start"' in editor.page
    editor.do("select:1")
    editor.do("apply", **{"f.text": "edited"})
    assert 'id="start-run"' not in editor.page and "Save to start a run" in editor.page
    editor.do("save")
    assert 'id="start-run"' in editor.page


def test_the_form_follows_the_kinds_schema(client: Any) -> None:
    editor = Editor(client, "book.yaml")
    editor.do("add", add_kind="generate", add_id="g")
    page = editor.page
    # every registered kind can be added
    for kind in ("template", "generate", "image", "caption", "fetch", "human", "cycle"):
        assert f'<option value="{kind}"' in page
    assert re.search(r'for="f-prompt">prompt <span class="req" title="required">\*</span>', page)
    parse = re.search(r'<select name="f.parse" id="f-parse">(.*?)</select>', page, re.S)
    assert parse is not None and all(
        f"<option>{v}</option>" in parse.group(1) for v in ("json", "lines")
    )
    assert '<textarea name="f.schema"' in page  # an object: YAML
    assert '<select name="f.enabled" id="f-enabled">' in page  # a flag
    assert "Run once per item" in page  # descriptions shown
    editor.do("apply", **{"f.prompt": "hi", "f.max_tokens": "12", "f.schema": "type: object"})
    assert "max_tokens: 12\n" in editor.text and "schema:\n      type: object" in editor.text
    assert "prompt: hi\n" in editor.text


OUTSIDE = """genarun: 1
name: outside
nodes:
  - id: a
    kind: template
    text: secret
"""


def _attack_setup(trees: Path) -> dict[str, Path]:
    """Files an attacker would like written: beside and above the trees folder, through
    links, hidden, not trees, run copies."""
    outside = trees.parent / "outside.yaml"
    outside.write_text(OUTSIDE)
    (trees / "sub").mkdir()
    (trees / "sub" / "deep.yaml").write_text(COMMENTED)
    (trees / "link.yaml").symlink_to(outside)
    (trees / "inner_link.yaml").symlink_to(trees / "book.yaml")
    (trees / "linkdir").symlink_to(trees.parent)
    (trees / ".hidden.yaml").write_text(COMMENTED)
    (trees / "notes.txt").write_text(COMMENTED)
    (trees / "config.yaml").write_text("ci: true\n")
    run = trees / "book" / "2026-01-01_00-00-00"
    run.mkdir(parents=True)
    (run / "tree.yaml").write_text(COMMENTED)
    (run / "run.json").write_text(json.dumps({"run": "x", "tree": "book.yaml"}))
    return {"outside": outside}


# (`./x` and `a/./x` are normalised by the client to names inside: check_name's test has them.)
PAYLOADS = [
    "../outside.yaml",
    "..%2Foutside.yaml",
    "%2e%2e/outside.yaml",
    "%2E%2E%2Foutside.yaml",
    "sub/../../outside.yaml",
    "sub/%2e%2e/%2e%2e/outside.yaml",
    "sub//deep.yaml",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "%2F" + "tmp/outside.yaml",
    "..%5Coutside.yaml",
    "sub%5C..%5C..%5Coutside.yaml",
    "book.yaml%00.txt",
    "book%0a.yaml",
    "link.yaml",
    "inner_link.yaml",
    "linkdir/outside.yaml",
    "linkdir/trees/book.yaml",
    ".hidden.yaml",
    "notes.txt",
    "config.yaml",
    "book/2026-01-01_00-00-00/tree.yaml",
    "missing.yaml",
    "sub",
    "a" * 400 + ".yaml",
    "%C0%AE%C0%AE/outside.yaml",
    "book.yaml/",
    "~/outside.yaml",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_path_from_the_request_never_leaves_the_trees_folder(
    trees: Path, client: Any, payload: str
) -> None:
    files = _attack_setup(trees)
    before = {p: p.read_bytes() for p in trees.parent.rglob("*") if p.is_file()}
    page = client.get(f"/trees/{payload}/edit")
    assert page.status_code in (403, 404, 413), (payload, page.status_code)
    assert "secret" not in page.text
    # A forged post with a valid token and a full tree: refused before anything is read
    editor = Editor(client, "book.yaml")
    form = {**_form(editor.page), "op": "save", "text": OUTSIDE.replace("secret", "owned")}
    posted = client.post(f"/trees/{payload}/edit", data=form)
    assert posted.status_code in (403, 404, 405, 413), (payload, posted.status_code)
    after = {p: p.read_bytes() for p in trees.parent.rglob("*") if p.is_file()}
    assert after == before, payload
    assert files["outside"].read_text() == OUTSIDE
    assert not list(trees.parent.rglob("*.tmp"))


def test_names_the_editor_refuses_are_refused_by_the_name_check_itself() -> None:
    from genarun.server.edit_files import EditRefused, check_name

    for name in [
        "../x.yaml",
        "/x.yaml",
        "a\\b.yaml",
        "a\x00.yaml",
        "a\n.yaml",
        ".x.yaml",
        "x.txt",
        "a/../x.yaml",
        "a//x.yaml",
        "./x.yaml",
        "",
        "a/b/c/d/e.yaml",
        "-x.yaml",
        "x.yaml\x7f",
        "a" * 301,
        None,
        3,
        "sub/.git/x.yaml",
    ]:
        with pytest.raises(EditRefused):
            check_name(name)
    assert check_name("sub/my tree.yaml") == ["sub", "my tree.yaml"]


def test_a_save_replaces_a_link_planted_after_loading_never_writes_through_it(
    trees: Path, client: Any
) -> None:
    outside = trees.parent / "outside.yaml"
    outside.write_text(OUTSIDE)
    editor = Editor(client, "book.yaml")
    editor.do("select:1")
    editor.do("apply", **{"f.text": "edited"})
    (trees / "book.yaml").unlink()
    (trees / "book.yaml").symlink_to(outside)
    editor.do("save")
    assert editor.status in (403, 404, 409)
    assert outside.read_text() == OUTSIDE


def test_the_add_form_keeps_where_nodes_go_until_nodes_move(client: Any) -> None:
    editor = Editor(client, "book.yaml")
    assert '<option value="">(top level)</option><option value="0">' in editor.page
    editor.do("add", add_kind="template", add_id="one", add_parent="0.1")
    assert '<option value="0.1" selected>' in editor.page
    editor.do("add", add_kind="template", add_id="two", add_parent="0.1")
    assert "          - id: one\n            kind: template\n          - id: two\n" in editor.text
    editor.do("up:1", add_parent="0.1")
    assert "selected>" not in editor.page.split('id="add-parent">')[1].split("</select>")[0]


def test_the_pages_script_parses(client: Any, tmp_path: Path) -> None:
    """A syntax error in the script would leave the page working without it, silently."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):  # as the browser tests: CI has Node.js (the site builds use it)
            pytest.fail("CI is set and Node.js is missing")
        pytest.skip("needs Node.js to parse the page's script")
    page = Editor(client, "book.yaml").page
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    assert script is not None
    (tmp_path / "editor.js").write_text(script.group(1))
    checked = subprocess.run([node, "--check", str(tmp_path / "editor.js")], capture_output=True)
    assert checked.returncode == 0, checked.stderr.decode()


NOTED = """genarun: 1
name: noted
nodes:
  # about a
  - id: a
    kind: template
    text: A
    children:
      - id: a1
        kind: template
        text: A1   # a1's own
  # about b
  - id: b   # b's line
    kind: template
    text: B

  # about c
  - id: c
    kind: template
    text: C
# after the nodes
vars: {}
"""


@pytest.mark.parametrize(
    ("op", "order"),
    [
        ("up:2", "acb"),
        ("down:0", "bac"),
        ("remove:1", "ac"),
        ("remove:0", "bc"),
        ("remove:2", "ab"),
        ("toggle:1", "abc"),
    ],
)
def test_the_comment_lines_above_a_node_move_with_it(
    trees: Path, client: Any, op: str, order: str
) -> None:
    """ruamel keeps a node's leading comment on the previous node's last value: moved as it
    stands, a comment would end up above whichever node came there next."""
    (trees / "noted.yaml").write_text(NOTED)
    editor = Editor(client, "noted.yaml")
    editor.do(op)
    text = editor.text
    blocks = re.findall(r"\n  # about (\w)\n(?:\n)?  - id: (\w)", "\n" + text)
    assert [about for about, node in blocks] == [node for about, node in blocks], text
    assert "".join(node for _, node in blocks) == order, text
    assert ("text: A1   # a1's own\n" in text) == ("a" in order), text
    assert ("- id: b   # b's line\n" in text) == ("b" in order), text
    assert text.endswith("# after the nodes\nvars: {}\n"), text


def test_a_node_moved_into_another_takes_its_comment(trees: Path, client: Any) -> None:
    (trees / "noted.yaml").write_text(NOTED)
    editor = Editor(client, "noted.yaml")
    editor.do("select:2")
    editor.do("move", move_to="into:0")
    text = editor.text
    assert re.search(r"# about c\n +- id: c", text) and re.search(r"# about b\n  - id: b", text)
    assert text.index("- id: c") < text.index("- id: b"), text
    editor.do("select:0.1")
    editor.do("move", move_to="top")
    assert re.search(r"# about c\n  - id: c", editor.text), editor.text
    assert editor.text.endswith("    text: C\n# after the nodes\nvars: {}\n"), editor.text
