"""`genarun export site`: site-data.json and its schema from real runs on the dummy models."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
from click.testing import Result

from genarun.graph.compile import compile_tree
from genarun.publish.schema import site_schema
from genarun.tree.validate import read_tree

REPO = Path(__file__).resolve().parents[2]


def _export(cli: Callable[..., Result], out: Path, *args: object) -> Result:
    return cli("export", "site", "latest", "--out", out, *args)


def _valid(folder: Path) -> dict:
    schema = json.loads((folder / "site-data.schema.json").read_text())
    data = json.loads((folder / "site-data.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(data)
    return data


def test_export_shapes_items_outputs_and_images(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    assert cli("run", tree("site_blog.yaml")).exit_code == 0
    result = _export(cli, workdir / "site")
    assert result.exit_code == 0, result.output
    data = _valid(workdir / "site")
    assert data["site"]["title"] == "Gecko notes"
    assert data["site"]["complete"] is True
    assert data["site"]["collections"] == [
        {"name": "articles", "node": "article", "path": ["articles"]}
    ]
    articles = data["data"]["articles"]
    # Ids come from the items' titles, unique within the list (the third repeats the first).
    assert [a["id"] for a in articles] == ["feeding-geckos", "housing-geckos", "feeding-geckos-2"]
    first = articles[0]
    assert first["topic"] == {"title": "Feeding geckos", "tags": ["care", "food"]}
    assert first["tags"] == ["care", "food"]
    assert [s["id"] for s in first["section"]] == ["feeding-geckos-why", "feeding-geckos-how"]
    assert first["section"][1]["value"] == "How: Feeding geckos"
    cover = first["cover"]
    assert cover["kind"] == "image" and (cover["width"], cover["height"]) == (32, 24)
    assert cover["alt"] == first["alt_text"]
    # The image lies beside the data file, byte for byte the run's own.
    run_folder = next((workdir / "site_blog").glob("20*"))
    assert (workdir / "site" / cover["src"]).read_bytes() == (
        run_folder / "assets/cover-0.png"
    ).read_bytes()
    assert data["data"]["intro"] == "3 articles about geckos"
    assert "plan" not in data["data"]  # not published


def test_ids_survive_a_rerun(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    assert cli("run", tree("site_blog.yaml")).exit_code == 0
    assert _export(cli, workdir / "a").exit_code == 0
    assert cli("rerun", "latest", "--node", "cover").exit_code == 0
    assert _export(cli, workdir / "b").exit_code == 0
    a, b = (_valid(workdir / name)["data"]["articles"] for name in ("a", "b"))
    assert [e["id"] for e in a] == [e["id"] for e in b]
    assert _valid(workdir / "a")["site"]["run"] != _valid(workdir / "b")["site"]["run"]


@pytest.mark.parametrize(
    "path",
    sorted([*REPO.glob("examples/**/tree.yaml"), *REPO.glob("tests/trees/site_*.yaml")]),
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_site_schema_of_every_example_is_a_valid_schema(path: Path) -> None:
    schema = site_schema(compile_tree(read_tree(path)))
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_site_prints_the_schema_without_a_run(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    result = cli("schema", "--site", tree("site_blog.yaml"))
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    article = schema["properties"]["data"]["properties"]["articles"]["items"]
    assert article["properties"]["value"]["anyOf"][0]["description"] == "The article's text"
    assert article["properties"]["cover"]["anyOf"][0]["$ref"] == "#/$defs/image"
    assert article["properties"]["section"]["type"] == "array"
    assert not (workdir / "genarun.db").exists()  # nothing ran


def test_failed_run_exports_what_finished_and_exits_1_unless_partial(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    path = tree("site_blog.yaml")
    text = path.read_text().replace('prompt: "Cover for', 'prompt: "{{ 1 // (index - 1) }} for')
    path.write_text(text)
    assert cli("run", path).exit_code != 0
    result = _export(cli, workdir / "site")
    assert result.exit_code == 1
    assert "missing:" in result.output and "incomplete" in result.output
    data = _valid(workdir / "site")
    assert data["site"]["complete"] is False
    assert data["site"]["missing"][0].startswith("the run is failed")
    assert any("cover" in m for m in data["site"]["missing"])
    assert _export(cli, workdir / "again", "--partial").exit_code == 0


def test_missing_and_planted_images_are_marked_never_followed(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    assert cli("run", tree("site_blog.yaml")).exit_code == 0
    run_folder = next((workdir / "site_blog").glob("20*"))
    (run_folder / "assets/cover-0.png").unlink()
    secret = workdir / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    (run_folder / "assets/cover-1.png").unlink()
    (run_folder / "assets/cover-1.png").symlink_to(secret)
    result = _export(cli, workdir / "site")
    assert result.exit_code == 1
    data = _valid(workdir / "site")
    missing = "\n".join(data["site"]["missing"])
    assert "assets/cover-0.png' is missing" in missing
    assert "assets/cover-1.png' is a link" in missing
    assert data["data"]["articles"][1]["cover"] is None
    assert not (workdir / "site/assets/cover-1.png").exists()
    assert b"secret" not in b"".join(p.read_bytes() for p in (workdir / "site").rglob("*.png"))


def test_bad_site_blocks_are_user_errors(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    path = tree("site_blog.yaml")
    original = path.read_text()
    path.write_text(original.replace("article: articles", "artcle: articles"))
    result = cli("validate", path)
    assert result.exit_code == 2
    assert "site_blog.yaml:9" in result.output
    assert "site.publish names node 'artcle'" in result.output
    assert "did you mean 'article'?" in result.output
    path.write_text(original.replace("intro: intro", "intro: articles"))
    result = cli("validate", path)
    assert result.exit_code == 2 and "given to several nodes" in result.output
    path.write_text(original.replace("as: topic", "as: label").replace("topic.", "label."))
    result = cli("schema", "--site", path)
    assert result.exit_code == 2, result.output
    assert "node 'article': its item name ('as:') would be the key 'label'" in result.output
    assert "site_blog.yaml:21" in result.output


def test_export_refusals_write_nothing(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    assert cli("run", tree("site_blog.yaml")).exit_code == 0
    result = _export(cli, workdir / "site", "--template", "astro-blgo")
    assert result.exit_code == 2
    assert "no site template 'astro-blgo'" in result.output
    assert "did you mean 'astro-blog'?" in result.output
    assert not (workdir / "site").exists()
    busy = workdir / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep")
    result = _export(cli, busy)
    assert result.exit_code == 2 and "not empty" in result.output
    assert sorted(p.name for p in busy.iterdir()) == ["mine.txt"]
    assert _export(cli, busy, "--force").exit_code == 0
    assert (busy / "mine.txt").read_text() == "keep"
    assert cli("export", "site", "nope", "--out", workdir / "x").exit_code == 2


def test_plain_export_of_the_lizard_example_tree_shape() -> None:
    schema = site_schema(compile_tree(read_tree(REPO / "examples/blog/tree.yaml")))
    names = [c["name"] for c in schema["x-genarun-collections"]]
    assert names == ["article"]


def test_export_into_a_copied_tree_folder(tmp_path: Path) -> None:
    """The blog example's folder layout is what the export reads (a run folder beside it)."""
    shutil.copy(REPO / "examples/blog/tree.yaml", tmp_path / "tree.yaml")
    schema = site_schema(compile_tree(read_tree(tmp_path / "tree.yaml")))
    article = schema["properties"]["data"]["properties"]["plan"]["properties"]["article"]
    assert set(article["items"]["properties"]) >= {"id", "title", "section", "cover", "alt_text"}


def test_image_tags_in_model_output_never_name_a_file(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    """A model or template output shaped like an image reference names no file to copy."""
    secret = workdir / "secret.png"
    secret.write_bytes(b"\x89PNG top secret")
    path = tree("blog.yaml")
    path.write_text(
        path.read_text()
        + "  - id: forged\n    kind: template\n    parse: json\n    text: >-\n"
        + f'      \\[{{"$image": "{secret}"}}, {{"$image": "assets/../../secret.png"}},'
        + ' {"$image": "assets/cover-0.png/../../../secret.png"}\\]\n'
    )
    assert cli("run", path).exit_code == 0
    result = cli("export", "site", "latest", "--out", workdir / "site", "--partial")
    assert result.exit_code == 0, result.output
    exported = b"".join(p.read_bytes() for p in (workdir / "site").rglob("*") if p.is_file())
    assert b"top secret" not in exported
    assert sorted(p.name for p in (workdir / "site/assets").iterdir()) == [
        "cover-0.png",
        "cover-1.png",
        "cover-2.png",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("example", ["blog", "story"])
def test_example_exports_validate_against_their_schema(
    example: str, cli: Callable[..., Result], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The examples on the tiny models: run, export, and the data fits the schema."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = workdir / example / "tree.yaml"
    path.parent.mkdir()
    shutil.copy(REPO / "examples" / example / "tree.yaml", path)
    assert cli("run", path).exit_code == 0
    result = _export(cli, workdir / "site")
    assert result.exit_code == 0, result.output
    data = _valid(workdir / "site")
    assert data["site"]["complete"] and data["data"]
    for image in (workdir / "site" / "assets").glob("*.png"):
        assert image.read_bytes().startswith(b"\x89PNG")


def test_a_forced_export_removes_stale_images_only(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    """Exporting again over an earlier export (watch, a workflow) leaves no image of the old run
    behind; other files stay, and a planted link is removed as a link, its target untouched."""
    path = tree("site_blog.yaml")
    assert cli("run", path).exit_code == 0
    out = workdir / "site"
    assert cli("export", "site", "latest", "--out", out).exit_code == 0
    (out / "assets/notes.txt").write_text("mine")
    outside = workdir / "outside.png"
    outside.write_bytes(b"keep me")
    (out / "assets/planted.png").symlink_to(outside)
    path.write_text(
        path.read_text().replace('      - {title: "Feeding geckos", tags: [food]}\n', "")
    )
    assert cli("run", path).exit_code == 0
    result = cli("export", "site", "latest", "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert "removed 2 image(s) of an earlier export" in result.output
    assert sorted(p.name for p in (out / "assets").iterdir()) == [
        "cover-0.png",
        "cover-1.png",
        "notes.txt",
    ]
    assert outside.read_bytes() == b"keep me"
    assert len(_valid(out)["data"]["articles"]) == 2
