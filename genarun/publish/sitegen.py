"""Site-gen output, sandboxed: a node's `{files: {path: content}, commands: [...]}` applied to an
export folder.

The output is data a model may have written, so nothing in it is trusted: every path is checked
(`files.path_problem`) against an allowlist of globs before anything is written, and all of them
are checked before the first is written (one refused path writes nothing); files are written
without following links and never over existing files unless `--force` (files this same export
just wrote may be replaced: that is how a site-gen node customises the starter). Commands are
only printed unless `--run-commands`, and then each must be on the command allowlist; they run
in the export folder, without a shell, with an environment that holds no secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genarun.errors import PublishError
from genarun.publish.files import ExportFolder, path_problem

# What a site-gen node may write by default: the starter's theme (title, colours, about text),
# its custom stylesheet and plain-text files. Nothing that runs at build time (.astro, .js,
# .ts, .mjs, package.json, .npmrc) and no Markdown or SVG (they carry raw HTML and scripts).
DEFAULT_ALLOW = ("src/theme.json", "src/styles/custom.css", "public/*.txt", "README.md")
ALLOWED_COMMANDS = ("npm ci", "npm install", "npm run build", "npx astro build")
MAX_FILE_BYTES = 256 * 1024
MAX_TOTAL_BYTES = 4 * 1024 * 1024
MAX_FILES = 200
# The environment a command gets: what npm and node need to run, nothing else (no API keys,
# tokens or cloud credentials can reach a command a model wrote).
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TERM", "SYSTEMROOT")


@dataclass
class SiteGen:
    """A checked site-gen output: files to write and commands to offer."""

    files: dict[str, str]
    commands: list[str]


def parse_sitegen(value: Any, node_id: str, allow: Iterable[str]) -> SiteGen:
    """Check a site-gen output as a whole; PublishError listing every refusal."""
    if isinstance(value, str):  # a template's text that is JSON (parse: text)
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if not isinstance(value, dict) or not isinstance(value.get("files", {}), dict):
        raise PublishError(
            f"node '{node_id}''s output is not a site-gen output: expected an object "
            "{files: {path: content}, commands: [...]} (use parse: json or parse: yaml)"
        )
    extra = sorted(set(value) - {"files", "commands"})
    if extra:
        raise PublishError(
            f"node '{node_id}''s site-gen output has unknown keys {extra}: only files and commands"
        )
    files = value.get("files") or {}
    commands = value.get("commands") or []
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise PublishError(f"node '{node_id}': commands must be a list of strings")
    allow = list(allow)
    refusals = []
    total = 0
    if len(files) > MAX_FILES:
        refusals.append(f"{len(files)} files: at most {MAX_FILES}")
    for path, content in files.items():
        problem = path_problem(path, allow)
        if problem is None and not isinstance(content, str):
            problem = f"its content is {type(content).__name__}, not text"
        if problem is None:
            size = len(content.encode())
            total += size
            if size > MAX_FILE_BYTES:
                problem = f"it is {size} bytes (at most {MAX_FILE_BYTES})"
            elif path.endswith(".json"):  # a broken data file would only fail the build later
                try:
                    json.loads(content)
                except ValueError as exc:
                    problem = f"it is not valid JSON ({exc})"
        if problem:
            refusals.append(f"{path!r}: {problem}")
    if total > MAX_TOTAL_BYTES:
        refusals.append(f"the files hold {total} bytes in all (at most {MAX_TOTAL_BYTES})")
    if refusals:
        raise PublishError(
            f"node '{node_id}''s site-gen output was refused, nothing was written:\n  "
            + "\n  ".join(refusals)
        )
    return SiteGen(dict(files), list(commands))


def apply_sitegen(sitegen: SiteGen, folder: ExportFolder, *, replaceable: set[str]) -> list[str]:
    """Write the checked files; those in `replaceable` (this export's own) may be replaced."""
    for path in sitegen.files:
        if folder.existing(path) and path not in replaceable and not folder.force:
            raise PublishError(
                f"refused to write '{path}': the file exists (--force replaces it); nothing was written"
            )
    force = folder.force
    try:
        for path, content in sitegen.files.items():
            folder.force = force or path in replaceable
            folder.write(path, content)
    finally:
        folder.force = force
    return list(sitegen.files)


def command_problem(command: str) -> str | None:
    """Why a site-gen command may not run, or None."""
    normal = " ".join(command.split())
    if normal not in ALLOWED_COMMANDS:
        return f"not on the allowlist ({', '.join(ALLOWED_COMMANDS)})"
    return None


def clean_env() -> dict[str, str]:
    """The environment for site-gen commands: no secrets, telemetry off."""
    env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ}
    env["ASTRO_TELEMETRY_DISABLED"] = "1"
    env["NPM_CONFIG_FUND"] = "false"
    env["NPM_CONFIG_AUDIT"] = "false"
    return env


def run_commands(commands: list[str], cwd: Path, echo: Any) -> None:
    """Run the allowed commands in order; refuse all if any is not allowed."""
    refused = [f"{c!r}: {p}" for c in commands if (p := command_problem(c))]
    if refused:
        raise PublishError("refused to run site-gen commands:\n  " + "\n  ".join(refused))
    for command in commands:
        echo(f"$ {command}")
        result = subprocess.run(shlex.split(command), cwd=cwd, env=clean_env(), check=False)
        if result.returncode != 0:
            raise PublishError(f"'{command}' failed in {cwd} (exit {result.returncode})")
