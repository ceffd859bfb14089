"""Every path genarun reads or writes stays inside its folder.

Outputs of models, APIs and templates are data: an output shaped like an image reference never
makes a later run (cache hit, rerun, --only, resume) read or copy a file. Image references are
made only by genarun and read only from the run's assets/, never through a planted link; string
image paths name only files inside the tree's folder. Names reject trailing newlines.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from PIL import Image

from tests.helpers import query

# What a model, an API or a template could answer to pose as an image: every way out of the
# run folder that a path can take.
PATH_PAYLOADS = [
    "{secret}",  # absolute
    "../../secret.png",
    "assets/../../../secret.png",
    "assets/../../outside/secret.png",
    "./assets/../../secret.png",
    "assets//../../secret.png",
    "assets/%2e%2e/%2e%2e/secret.png",  # URL-encoded dots are names, never decoded
    "assets/..%2f..%2fsecret.png",
    "assets\\..\\..\\secret.png",
    "assets/link.png",  # a symlink planted in assets/
    "assets/cover.png\n",
    "assets/cover.png\x00.txt",
    "~/secret.png",
    "file:///{secret}",
    "",
]


def _secret(workdir: Path) -> tuple[Path, bytes]:
    """A PNG outside every run folder: reading it would succeed, so only refusal keeps it out."""
    outside = workdir / "outside"
    outside.mkdir(exist_ok=True)
    secret = outside / "secret.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(secret)
    return secret, secret.read_bytes()


def _files_with(root: Path, data: bytes, *, skip: Path) -> list[Path]:
    """Files under `root` (links not followed) whose bytes are `data`, except `skip`."""
    found = []
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path == skip or path.is_symlink() or path.suffix == ".db":
                continue
            if path.read_bytes() == data:
                found.append(path)
    return found


def _tree(workdir: Path, text: str, name: str = "t.yaml") -> Path:
    path = workdir / name
    path.write_text(text)
    return path


FAKE_TREE = """\
genarun: 1
name: fake-image
seed: 1
nodes:
  - id: fake
    kind: template
    parse: json
    text: '{payload}'
  - id: after
    kind: generate
    model: dummy
    prompt: "Say something about {{{{ fake }}}}."
"""


@pytest.mark.parametrize("payload", PATH_PAYLOADS)
def test_an_output_shaped_like_an_image_is_never_a_file(
    payload: str, cli: Callable[..., Result], workdir: Path
) -> None:
    secret, data = _secret(workdir)
    digest = hashlib.sha256(data).hexdigest()
    value = {"$image": payload.format(secret=secret), "sha256": digest}
    # Backslashes as \u005c: the picks syntax reads `\\` as an escape in the template.
    text = json.dumps(value).replace("\\\\", "\\u005c").replace("'", "''")
    path = _tree(workdir, FAKE_TREE.format(payload=text))
    db = workdir / "genarun.db"
    first = cli("run", path)
    assert first.exit_code == 0, first.output
    (run,) = query(db, "SELECT * FROM runs")
    link = Path(run["out_dir"]) / "assets" / "link.png"
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(secret)
    # Every way a stored output is taken again: a cache hit, a rerun, --only and a resume.
    for args in (
        ("run", path),
        ("rerun", run["id"], "--node", "after"),
        ("run", path, "--only", "after"),
    ):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)
    query_db = query(db, "SELECT output FROM executions WHERE node_id = 'fake'")
    assert len(query_db) >= 2
    for row in query_db:
        assert "$image" not in json.loads(row["output"])  # stored escaped, as data
    for folder in {r["out_dir"] for r in query(db, "SELECT out_dir FROM runs")}:
        out = json.loads((Path(folder) / "output.json").read_text())
        assert out["fake"] == value  # the model's dict, shown as the data it is
    assert _files_with(workdir, data, skip=secret) == []


IMAGE_TREE = """\
genarun: 1
name: covers
seed: 2
nodes:
  - id: cover
    kind: image
    model: dummy
    prompt: "A cover"
  - id: after
    kind: caption
    model: dummy
    image: "{{ cover }}"
"""


@pytest.mark.parametrize("payload", PATH_PAYLOADS)
def test_a_stored_reference_outside_the_assets_is_never_read(
    payload: str, cli: Callable[..., Result], workdir: Path
) -> None:
    """A database written by an older genarun, or edited, may hold any tag: reuse reads only
    `assets/<name>.png` inside the stored run's folder, without links; else it runs again."""
    import sqlite3

    secret, data = _secret(workdir)
    path = _tree(workdir, IMAGE_TREE)
    db = workdir / "genarun.db"
    assert cli("run", path).exit_code == 0
    (run,) = query(db, "SELECT * FROM runs")
    folder = Path(run["out_dir"])
    (folder / "assets" / "link.png").symlink_to(secret)
    tag = {"$image": payload.format(secret=secret), "sha256": hashlib.sha256(data).hexdigest()}
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE executions SET output = ? WHERE node_id = 'cover'", (json.dumps(tag),))
    for args in (("run", path), ("rerun", run["id"], "--node", "after")):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)
    rows = query(db, "SELECT id, reused_from FROM executions WHERE node_id = 'cover' ORDER BY id")
    # The tampered row is never taken (a fresh execution may be, from the cache).
    assert rows[1]["reused_from"] is None
    assert rows[0]["id"] not in {r["reused_from"] for r in rows}
    assert _files_with(workdir, data, skip=secret) == []


def test_a_planted_asset_link_is_not_followed_on_reuse(
    cli: Callable[..., Result], workdir: Path
) -> None:
    """The real asset swapped for a link to another file with the same bytes' hash stored."""
    import sqlite3

    secret, data = _secret(workdir)
    path = _tree(workdir, IMAGE_TREE)
    db = workdir / "genarun.db"
    assert cli("run", path).exit_code == 0
    (run,) = query(db, "SELECT * FROM runs")
    cover = Path(run["out_dir"]) / "assets" / "cover.png"
    cover.unlink()
    cover.symlink_to(secret)
    tag = {"$image": "assets/cover.png", "sha256": hashlib.sha256(data).hexdigest()}
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE executions SET output = ? WHERE node_id = 'cover'", (json.dumps(tag),))
    for args in (("run", path), ("rerun", run["id"], "--node", "after")):
        assert cli(*args).exit_code == 0
    latest = workdir / "covers" / "latest"
    assert not any(p.is_symlink() for p in latest.rglob("*"))
    assert _files_with(workdir, data, skip=secret) == []


def test_planted_links_in_a_run_folder_are_replaced_not_written_through(
    cli: Callable[..., Result], workdir: Path
) -> None:
    """Links planted before `resume` (at output.json, its old temporary name, logs.json and
    run.json) are replaced, never written through."""
    victims = workdir / "victims"
    victims.mkdir()
    path = _tree(workdir, IMAGE_TREE.replace('image: "{{ cover }}"', "image: photo.png"))
    db = workdir / "genarun.db"
    assert cli("run", path).exit_code == 1  # no photo.png yet: resumable
    (run,) = query(db, "SELECT * FROM runs")
    folder = Path(run["out_dir"])
    planted = {}
    for name in ("output.json", ".output.json.tmp", "logs.json", ".logs.json.tmp", "run.json"):
        victim = victims / name.strip(".")
        victim.write_text("untouched")
        (folder / name).unlink(missing_ok=True)
        (folder / name).symlink_to(victim)
        planted[name] = victim
    Image.new("RGB", (8, 8), (9, 9, 9)).save(workdir / "photo.png")
    result = cli("resume", run["id"])
    assert result.exit_code == 0, result.output
    for victim in planted.values():
        assert victim.read_text() == "untouched"
    assert not (folder / "output.json").is_symlink()
    assert json.loads((folder / "output.json").read_text())["after"] is not None


def test_a_planted_assets_link_fails_the_image_and_the_run_stays_resumable(
    cli: Callable[..., Result], workdir: Path
) -> None:
    path = _tree(workdir, IMAGE_TREE.replace('image: "{{ cover }}"', "image: photo.png"))
    db = workdir / "genarun.db"
    assert cli("run", path).exit_code == 1  # no photo.png yet
    (run,) = query(db, "SELECT * FROM runs")
    folder = Path(run["out_dir"])
    outside = workdir / "victims"
    outside.mkdir()
    (folder / "assets").rename(workdir / "assets.moved")
    (folder / "assets").symlink_to(outside)
    Image.new("RGB", (8, 8), (9, 9, 9)).save(workdir / "photo.png")
    result = cli("resume", run["id"])
    # The stored cover is behind a link now: it runs again, and its file cannot go there.
    assert result.exit_code == 1
    assert "symbolic link" in result.output, result.output
    assert list(outside.iterdir()) == []
    (folder / "assets").unlink()
    result = cli("resume", run["id"])
    assert result.exit_code == 0, result.output
    assert (folder / "assets" / "cover.png").is_file()


@pytest.mark.parametrize(
    "payload",
    [
        "{secret}",
        "../outside/secret.png",
        "outside/../../outside/secret.png",
        "link.png",
        "inner/link.png",
        "~/secret.png",
        "photo.png\x00",
        "outside\\secret.png",
        "",
    ],
)
def test_an_image_path_names_only_files_in_the_tree_folder(
    payload: str, cli: Callable[..., Result], workdir: Path
) -> None:
    """`image:` rendered from an output or --set (a string) is a file inside the tree's
    folder, reached without `..` or links; the outside PNG would decode, so failing proves
    it was not read."""
    secret, _data = _secret(workdir)
    trees = workdir / "trees"
    (trees / "inner").mkdir(parents=True)
    (trees / "link.png").symlink_to(secret)
    (trees / "inner" / "link.png").symlink_to(secret)
    Image.new("RGB", (8, 8)).save(trees / "inner" / "ok.png")
    path = _tree(
        trees,
        "genarun: 1\nname: paths\nvars:\n  where: x\nnodes:\n"
        "  - id: look\n    kind: caption\n    model: dummy\n    image: '{{ where }}'\n",
    )
    result = cli("run", path, "--set", f"where={json.dumps(payload.format(secret=secret))}")
    assert result.exit_code == 1, result.output
    assert "inside the tree's folder" in result.output or "existing file" in result.output
    ok = cli("run", path, "--set", "where=inner/ok.png")
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    "rel",
    ["/etc/passwd", "..", "../x", "a/../../x", "a//b", "./a", "a\\b", "a\x00b", "", "a/"],
)
def test_confined_paths_refuse_every_way_out(rel: str, tmp_path: Path) -> None:
    from genarun.store import confined

    with pytest.raises(confined.UnsafePath):
        confined.parts_of(rel)
    with pytest.raises(confined.UnsafePath):
        confined.write_file(tmp_path, rel, b"x")
    assert list(tmp_path.iterdir()) == []


def test_confined_writes_replace_links_and_reads_refuse_them(tmp_path: Path) -> None:
    from genarun.store import confined

    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    root = tmp_path / "run"
    root.mkdir()
    (root / "out.json").symlink_to(outside)
    confined.write_file(root, "out.json", b"new")
    assert outside.read_text() == "keep"
    assert (root / "out.json").read_bytes() == b"new" and not (root / "out.json").is_symlink()
    (root / "sub").symlink_to(tmp_path)
    with pytest.raises(confined.UnsafePath):
        confined.write_file(root, "sub/outside.txt", b"x")
    with pytest.raises(confined.UnsafePath):
        confined.read_bytes(root, "sub/outside.txt")
    (root / "l.png").symlink_to(outside)
    with pytest.raises(confined.UnsafePath):
        confined.read_bytes(root, "l.png")
    assert not confined.is_file(root, "l.png") and confined.is_file(root, "out.json")
    assert outside.read_text() == "keep"


NAME_TREE = """\
genarun: 1
name: {name}
matrix:
  {key}: [1]
vars:
  {var}: x
nodes:
  - id: {node}
    kind: template
    foreach: "[1]"
    as: {as_}
    text: hi
"""


@pytest.mark.parametrize(
    "field",
    ["name", "key", "var", "node", "as_"],
)
@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\n\n", " \n", "\x00", "\u2028", "$"])
def test_names_with_a_trailing_newline_or_junk_are_refused(
    field: str, suffix: str, cli: Callable[..., Result], workdir: Path
) -> None:
    names = {"name": "blog", "key": "style", "var": "topic", "node": "intro", "as_": "entry"}
    good = _tree(workdir, NAME_TREE.format(**names), "good.yaml")
    assert cli("validate", good).exit_code == 0
    names[field] = json.dumps(names[field] + suffix)
    bad = _tree(workdir, NAME_TREE.format(**names), "bad.yaml")
    result = cli("validate", bad)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
