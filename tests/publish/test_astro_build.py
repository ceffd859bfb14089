"""The astro-blog template builds for real: `npm ci && npm run build` against the registry, on
the export of a run, and the built HTML is checked (pages, images, alt texts, links, escaping)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import Result

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("npm") is None, reason="needs Node.js and npm on PATH"),
]


class Page(HTMLParser):
    """Every start tag with its attributes, and the text, of one built page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


ENV = {**os.environ, "ASTRO_TELEMETRY_DISABLED": "1", "NPM_CONFIG_AUDIT": "false"}
TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "astro-blog"


def _npm(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        ["npm", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"npm {args}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`npm ci` from the starter's own package.json and lockfile, once for this module."""
    folder = tmp_path_factory.mktemp("npm")
    for name in ("package.json", "package-lock.json"):
        shutil.copy(TEMPLATE / name, folder / name)
    _npm("ci", "--no-fund", cwd=folder)
    return folder / "node_modules"


def build(out: Path, node_modules: Path) -> Path:
    """`npm run build` in an export, with the packages `npm ci` installed from the same lockfile.
    It runs as a first-time user would (a fresh home, no ASTRO_TELEMETRY_DISABLED in the
    environment): the starter itself turns telemetry off, so Astro records nothing (its debug
    log says so; Astro's first-run notice still prints before the config is read)."""
    for name in ("package.json", "package-lock.json"):
        assert (out / name).read_bytes() == (TEMPLATE / name).read_bytes()
    (out / "node_modules").symlink_to(node_modules, target_is_directory=True)
    home = out.parent / "fresh-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in ENV.items() if "TELEMETRY" not in k}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), DEBUG="astro:telemetry")
    done = subprocess.run(
        ["npm", "run", "build"], cwd=out, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    records = [line for line in (done.stdout + done.stderr).splitlines() if "[record]" in line]
    assert records and all("telemetry has been disabled" in line for line in records), records
    return out / "dist"


def pages(dist: Path) -> dict[str, Page]:
    out = {}
    for path in dist.rglob("index.html"):
        rel = path.parent.relative_to(dist).as_posix()
        out["/" if rel == "." else f"/{rel}/"] = Page(path.read_text())
    return out


def check_links(dist: Path, built: dict[str, Page]) -> None:
    """Every internal link and image of every page resolves to a built file."""
    for url, page in built.items():
        for attrs in page.all("a"):
            href = attrs.get("href") or ""
            if href.startswith("/"):
                target = dist / href.lstrip("/")
                assert (target / "index.html").is_file() or target.is_file(), (url, href)
        for attrs in page.all("img"):
            src = attrs.get("src") or ""
            assert (dist / src.lstrip("/")).is_file(), (url, src)


def test_astro_blog_builds_one_page_per_article(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path, node_modules: Path
) -> None:
    assert cli("run", tree("site_blog.yaml")).exit_code == 0
    out = workdir / "site"
    result = cli("export", "site", "latest", "--out", out, "--template", "astro-blog")
    assert result.exit_code == 0, result.output
    assert "npm ci && npm run build" in result.output
    assert not (out / "node_modules").exists()  # never copied from the template
    data = json.loads((out / "public/data/site-data.json").read_text())
    dist = build(out, node_modules)
    built = pages(dist)
    articles = data["data"]["articles"]
    article_pages = sorted(u for u in built if u.startswith("/articles/"))
    assert article_pages == sorted(f"/articles/{a['id']}/" for a in articles)
    for article in articles:
        page = built[f"/articles/{article['id']}/"]
        images = page.all("img")
        assert [i["alt"] for i in images] == [article["alt_text"]]
        assert images[0]["src"] == f"/data/{article['cover']['src']}"
        assert (dist / "data" / article["cover"]["src"]).read_bytes() == (
            out / "public/data" / article["cover"]["src"]
        ).read_bytes()
        text = " ".join(page.text)
        assert article["value"] in text
        assert all(s["value"] in text for s in article["section"])
    home = built["/"]
    assert {a["href"] for a in home.all("a")} >= {f"/articles/{a['id']}/" for a in articles}
    assert "3 articles about geckos" in " ".join(home.text)
    assert "Gecko notes" in " ".join(home.text)
    # Tag pages: one per tag, listing the articles that carry it.
    assert set(u for u in built if u.startswith("/tags/")) == {
        "/tags/",
        "/tags/care/",
        "/tags/food/",
        "/tags/tanks-heat/",
    }
    food = {a["href"] for a in built["/tags/food/"].all("a")}
    assert {"/articles/feeding-geckos/", "/articles/feeding-geckos-2/"} <= food
    check_links(dist, built)


def test_model_text_is_escaped_in_every_page(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path, node_modules: Path
) -> None:
    """Markup in model outputs (titles, bodies, tags, alt texts, fake image objects, a theme
    written by a site-gen node) reaches the pages as text: no script, handler or javascript:
    URL appears, and the payloads are readable on the page."""
    path = tree("site_hostile.yaml")
    theme = {
        "title": "</title><script>alert(7)</script>",
        "tagline": "<b onmouseover=alert(8)>x</b>",
        "colors": {"accent": "red;} body{display:none", "background": "#fff", "text": "black"},
        "about": "<script>alert(9)</script>",
    }
    gen = json.dumps({"files": {"src/theme.json": json.dumps(theme)}})
    path.write_text(
        path.read_text()
        + "  - id: gen\n    kind: template\n    parse: json\n    text: |\n      "
        + gen.replace("[", "\\[").replace("]", "\\]").replace("|", "\\|")
        + "\n"
    )
    assert cli("run", path).exit_code == 0
    out = workdir / "site"
    result = cli(
        "export", "site", "latest", "--out", out, "--template", "astro-blog", "--from", "gen"
    )
    assert result.exit_code == 0, result.output
    dist = build(out, node_modules)
    built = pages(dist)
    assert len([u for u in built if u.startswith("/article/")]) == 2
    for url, page in built.items():
        for tag, attrs in page.tags:
            assert tag not in {"script", "iframe", "svg", "object", "embed"}, (url, tag)
            for name, value in attrs.items():
                assert not name.startswith("on"), (url, tag, name)
                assert not (value or "").strip().lower().startswith("javascript:"), (url, value)
        assert not [a for a in page.all("img") if "javascript" in (a.get("src") or "")], url
        style = " ".join(str(a.get("style")) for a in page.all("body"))
        assert "display:none" not in style and "--accent: #2f6f4f" in style
    everything = " ".join(" ".join(p.text) for p in built.values())
    for payload in [
        "<script>alert('title')</script>",
        "</p><script>alert('body')</script>",
        "<style>body{display:none}</style><iframe src=//evil></iframe>",
        "</title><script>alert(7)</script>",
        "<script>alert(9)</script>",
    ]:
        assert payload in everything, payload
    check_links(dist, built)


def test_lizard_example_builds_offline_with_its_theme(
    cli: Callable[..., Result], workdir: Path, node_modules: Path
) -> None:
    """examples/lizard-site on the tiny models: run, export (template and site-gen node from
    its `site:`), build; the pages carry the theme the site-gen node wrote."""
    import jsonschema

    tree = workdir / "lizard" / "tree.yaml"
    tree.parent.mkdir()
    shutil.copy(TEMPLATE.parents[1] / "examples/lizard-site/tree.yaml", tree)
    assert cli("run", tree).exit_code == 0
    out = workdir / "site"
    result = cli("export", "site", "latest", "--out", out)
    assert result.exit_code == 0, result.output
    assert "site-gen: wrote src/theme.json" in result.output
    schema = json.loads((out / "public/data/site-data.schema.json").read_text())
    data = json.loads((out / "public/data/site-data.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(data)
    dist = build(out, node_modules)
    built = pages(dist)
    ids = [a["id"] for a in data["data"]["articles"]]
    assert ids[:2] == ["feeding-leopard-geckos", "housing-bearded-dragons"]
    assert sorted(u for u in built if u.startswith("/articles/")) == sorted(
        f"/articles/{i}/" for i in ids
    )
    theme = json.loads((out / "src/theme.json").read_text())
    home = built["/"]
    assert "Lizard care" in home.text
    assert f"--accent: {theme['colors']['accent']}" in str(home.all("body")[0]["style"])
    assert "Written and illustrated by models" in " ".join(built["/about/"].text)
    for article in data["data"]["articles"]:
        (image,) = built[f"/articles/{article['id']}/"].all("img")
        assert image["alt"] == article["alt_text"] and article["alt_text"]
    check_links(dist, built)
