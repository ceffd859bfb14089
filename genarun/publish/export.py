"""`genarun export site`: site-data.json and its schema, optionally inside a site template, and
optionally customised by a site-gen node's output; everything written inside one folder."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genarun.errors import PublishError
from genarun.publish.astro import content_config
from genarun.publish.data import SiteData, build_site_data, compile_run_tree
from genarun.publish.files import ExportFolder, path_problem
from genarun.publish.sitegen import DEFAULT_ALLOW, SiteGen, apply_sitegen, parse_sitegen

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
# Never copied out of a template folder: what npm and Astro make there.
_TEMPLATE_SKIP = {"node_modules", "dist", ".astro"}


@dataclass
class ExportOptions:
    out: Path
    template: str | None = None
    from_node: str | None = None
    force: bool = False
    allow: tuple[str, ...] = ()


@dataclass
class ExportResult:
    folder: Path
    site: SiteData
    template: Path | None
    written: list[str] = field(default_factory=list)
    sitegen: SiteGen | None = None
    removed: list[str] = field(default_factory=list)  # stale images of an earlier export

    @property
    def data_dir(self) -> str:
        return "public/data/" if self.template else ""


def template_names() -> list[str]:
    """The site templates shipped with genarun (folders of templates/ with a package.json)."""
    if not TEMPLATES.is_dir():
        return []
    return sorted(p.name for p in TEMPLATES.iterdir() if (p / "package.json").is_file())


def find_template(name: str) -> Path:
    """A template by name (templates/NAME) or as a folder path holding a package.json."""
    from genarun.errors import did_you_mean

    path = Path(name).expanduser()
    if ("/" in name or name.startswith(".")) and (path / "package.json").is_file():
        return path.resolve()
    if name in template_names():
        return TEMPLATES / name
    names = template_names()
    close = did_you_mean(name, names)
    raise PublishError(
        f"no site template '{name}'"
        + (f" ({close})" if close else "")
        + f": templates are {', '.join(names) or '(none found)'}, or a folder holding a package.json"
    )


def tree_template(name: str, tree_path: str | None) -> Path:
    """The template a tree's `site.template` names: a shipped one, or a folder inside the
    tree's own folder. A tree is data: it cannot have `export site` copy a folder from
    elsewhere on the machine (`/home/me/project`, `../..`, a link out) into the export, where
    its files (`.env`, `.npmrc`) would be published with the site."""
    if name in template_names():
        return TEMPLATES / name
    where = f"site.template '{name}'"
    problem = template_path_problem(name)
    if problem is not None:
        raise PublishError(f"{where}: {problem}")
    if not tree_path:
        raise PublishError(f"{where}: the run does not record its tree file, so no folder of it")
    base = Path(tree_path).parent.resolve()
    folder = (base / name).resolve()
    if not folder.is_relative_to(base):
        raise PublishError(
            f"{where} leads out of the tree's folder ({base}) through a link; a tree names a "
            "template inside its own folder (or give the folder with --template)"
        )
    return find_template(str(folder))


def template_path_problem(name: str) -> str | None:
    """Why a tree's `site.template` cannot name a folder (absolute, climbing out with '..',
    from the home folder), or None: a shipped name or a relative path below the tree."""
    if name in template_names() or re.fullmatch(r"[A-Za-z0-9_-]+", name):
        return None
    if name.startswith("~"):
        return "a tree names a template inside its own folder, not from the home folder"
    problem = path_problem(name.rstrip("/"), trusted=True)
    if problem is not None:
        return f"{problem}; a tree names a shipped template or a folder inside its own folder"
    return None


def _template_files(root: Path) -> list[tuple[str, bytes]]:
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in _TEMPLATE_SKIP or path.is_symlink() or not path.is_file():
            continue
        out.append((rel.as_posix(), path.read_bytes()))
    return out


def _sitegen_output(store: Any, run: dict[str, Any], node_id: str) -> Any:
    """The stored output of the site-gen node in a run."""
    from genarun.errors import did_you_mean

    compiled = compile_run_tree(run)
    node = compiled.nodes.get(node_id)
    if node is None:
        close = did_you_mean(node_id, set(compiled.nodes))
        raise PublishError(
            f"--from {node_id}: the run's tree has no node '{node_id}'"
            + (f" ({close})" if close else "")
        )
    if node.loops:
        raise PublishError(
            f"--from {node_id}: the node runs once per foreach item; a site-gen node runs once"
        )
    rows = [
        r for r in store.run_executions(run["id"]) if r["node_id"] == node_id and r["path"] == "[]"
    ]
    if not rows or rows[-1]["status"] != "done":
        state = rows[-1]["status"] if rows else "not run"
        raise PublishError(f"--from {node_id}: the node's execution is {state} in this run")
    return json.loads(rows[-1]["output"]) if rows[-1]["output"] else None


def export_site(store: Any, run_ref: str, options: ExportOptions) -> ExportResult:
    """Export a run's site: checks everything first, then writes only inside options.out."""
    run = store.resolve_run(run_ref)
    compiled_site = compile_run_tree(run).loaded.spec.site
    if options.template:  # the person's own choice: a shipped name or any folder
        template: Path | None = find_template(options.template)
    elif compiled_site is not None and compiled_site.template:
        template = tree_template(compiled_site.template, run.get("tree_path"))
    else:
        template = None
    from_node = options.from_node or (compiled_site.generator if compiled_site else None)
    site = build_site_data(store, run["id"])
    sitegen = None
    if from_node:
        allow = (*DEFAULT_ALLOW, *options.allow)
        sitegen = parse_sitegen(_sitegen_output(store, run, from_node), from_node, allow)

    folder = ExportFolder(options.out, force=options.force)
    if options.out.exists() and not options.out.is_dir():
        raise PublishError(f"{options.out} is a file, not a folder: choose another --out")
    busy = options.out.is_dir() and any(p.name not in _TEMPLATE_SKIP for p in options.out.iterdir())
    if busy and not options.force:
        raise PublishError(
            f"{options.out} is not empty: export into a new folder, or add --force to replace "
            "the files this export writes (nothing else there is touched)"
        )
    folder.ensure()
    prefix = "public/data/" if template else ""
    if template:
        for rel, content in _template_files(template):
            folder.write(rel, content, trusted=True)
        folder.write("src/content.config.ts", content_config(site.schema))
    folder.write(f"{prefix}site-data.json", _json(site.data))
    folder.write(f"{prefix}site-data.schema.json", _json(site.schema))
    for rel, content in site.images.items():
        folder.write(f"{prefix}{rel}", content)
    # Images an earlier export wrote here that this run does not have (a rerun with fewer
    # articles) would linger in the folder, and in what a workflow commits.
    keep = {f"{prefix}{rel}" for rel in site.images}
    removed = folder.prune(f"{prefix}assets", keep, ".png") if busy else []
    result = ExportResult(options.out, site, template, list(folder.written), sitegen, removed)
    if sitegen is not None:
        written = apply_sitegen(sitegen, folder, replaceable=set(result.written))
        result.written.extend(p for p in written if p not in result.written)
    return result


def site_schema_of_tree(path: Path) -> dict[str, Any]:
    """`genarun schema --site TREE`: the site-data schema of a tree, without a run."""
    from genarun.graph.compile import compile_tree
    from genarun.publish.schema import site_schema
    from genarun.tree.validate import read_tree

    return site_schema(compile_tree(read_tree(path)))


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
