"""site-data.json from a stored run: its outputs shaped for a site (see `publish.schema`).

Outputs come from the run's executions in SQLite (tagged, so an image is known to be one), the
foreach items from the run folder's run.json, images from the run folder's assets/. Image paths
are data written by a run: each is read only as a plain file under the run folder, never through
a link; one that is not there is reported missing, like a failed or unfinished execution.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from genarun import __version__
from genarun.errors import PublishError, StoreError
from genarun.publish.files import read_inside
from genarun.publish.schema import SINGLE_NAME, published_nodes, site_schema

MAX_IMAGE_BYTES = 64 * 1024 * 1024
_ASSET = re.compile(r"assets/[A-Za-z0-9_.-]+\.png")


@dataclass
class SiteData:
    """What `export site` writes: site-data.json, its schema and the images beside them."""

    data: dict[str, Any]
    schema: dict[str, Any]
    images: dict[str, bytes] = field(default_factory=dict)  # path beside the data -> PNG
    missing: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing


def compile_run_tree(run: dict[str, Any]) -> Any:
    """The run's tree, exactly as it ran (runs.tree_text), compiled."""
    from genarun.graph.compile import compile_tree
    from genarun.tree.load import load_text
    from genarun.tree.validate import validate_document

    name = run["tree_path"] or f"{run['name']}.yaml"
    fmt: Literal["yaml", "json"] = "json" if name.lower().endswith(".json") else "yaml"
    return compile_tree(validate_document(load_text(run["tree_text"] or "", name, fmt)))


def slug(text: str) -> str:
    """An id made of a title: lower-case ASCII letters, digits and -, at most 60 characters."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60].strip("-")


def label_of(item: Any, node_id: str, index: int) -> str:
    """An entry's title: its item when that is text, or the item's title/name field."""
    if isinstance(item, dict):
        for key in ("title", "name", "label", "heading", "id", "key"):
            if isinstance(item.get(key), str | int) and str(item[key]).strip():
                return str(item[key]).strip()
    elif isinstance(item, str | int | float) and not isinstance(item, bool) and str(item).strip():
        return " ".join(str(item).split())[:200]
    return f"{node_id} {index + 1}"


def tags_of(item: Any) -> list[str]:
    if isinstance(item, dict) and isinstance(item.get("tags"), list):
        return [" ".join(str(t).split())[:60] for t in item["tags"] if str(t).strip()]
    return []


class _Builder:
    def __init__(self, compiled: Any, run: dict[str, Any], executions: list[dict[str, Any]]):
        self.compiled = compiled
        self.run = run
        self.folder = Path(run["out_dir"] or "")
        self.results: dict[tuple[str, tuple[int, ...]], dict[str, Any]] = {}
        for row in executions:  # the last row of an execution wins (a retry's, a resume's)
            self.results[(row["node_id"], tuple(json.loads(row["path"] or "[]")))] = row
        self.items = self._read_items()
        self.images: dict[str, bytes] = {}
        self.sizes: dict[str, tuple[int | None, int | None]] = {}
        self.missing: list[str] = []
        self.flat: dict[str, list[Any]] = {}  # node id -> every entry of it, in order
        self.used_ids: dict[str, set[str]] = {}
        self.entry_ids: dict[tuple[str, tuple[int, ...]], str] = {}

    def _read_items(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads((self.folder / "run.json").read_text())
        except (OSError, ValueError):
            return {}
        items = data.get("items") if isinstance(data, dict) else None
        return items if isinstance(items, dict) else {}

    # --- values ---------------------------------------------------------------------------
    def site_value(self, value: Any, where: str) -> Any:
        """A stored output as site-data shows it: images copied and described."""
        if isinstance(value, dict):
            if "$image" in value:
                return self.image(value["$image"], where)
            if "$embedding" in value:
                return {
                    "embedding": value.get("$embedding"),
                    "model": value.get("model"),
                    "dim": value.get("dim"),
                }
            return {str(k): self.site_value(v, where) for k, v in value.items()}
        if isinstance(value, list):
            return [self.site_value(v, where) for v in value]
        return value

    def image(self, rel: Any, where: str) -> dict[str, Any] | None:
        if not isinstance(rel, str) or not _ASSET.fullmatch(rel):
            self.missing.append(
                f"{where}: the image path {str(rel)[:80]!r} is not one of the run's assets (refused)"
            )
            return None
        if rel not in self.images:
            try:
                self.images[rel] = read_inside(self.folder, rel, limit=MAX_IMAGE_BYTES)
            except PublishError as exc:
                self.missing.append(f"{where}: image {exc}")
                return None
            self.sizes[rel] = _png_size(self.images[rel])
        width, height = self.sizes[rel]
        return {"kind": "image", "src": rel, "width": width, "height": height, "alt": None}

    # --- the tree -------------------------------------------------------------------------
    def output(self, node: Any, path: tuple[int, ...], where: str) -> Any:
        row = self.results.get((node.id, path))
        if row is None:
            self.missing.append(f"{where}: not run")
            return None
        if row["status"] == "skipped":
            return None
        if row["status"] != "done":
            error = " ".join(str(row["error"] or "").split())[:200]
            self.missing.append(f"{where}: {row['status']}" + (f" ({error})" if error else ""))
            return None
        stored = json.loads(row["output"]) if row["output"] else None
        return self.site_value(stored, where)

    def entry(self, node: Any, path: tuple[int, ...], where: str) -> Any:
        """What `node` holds at `path` (its foreach list, when it has a foreach)."""
        if node.foreach is None:
            return self.one(node, path, where, item=None)
        indexes = self._indexes(node, path)
        if indexes is None:  # an empty list, or a foreach that failed (recorded at its parent path)
            row = self.results.get((node.id, path))
            if row is not None and row["status"] == "failed":
                self.missing.append(f"{where}: its foreach failed ({row['error']})")
            return []
        entries = []
        parent_id = self._parent_entry_id(node, path)
        used = self.used_ids.setdefault(f"{node.id}/{parent_id}", set())
        for index in indexes:
            item_path = (*path, index)
            key = ".".join(map(str, item_path))
            item = self.items.get(node.id, {}).get(key)
            item = self.site_value(item, f"{node.id}[{index}] item") if item is not None else None
            entries.append(
                self.one(
                    node, item_path, f"{where}[{index}]", item=item, used=used, parent=parent_id
                )
            )
        return entries

    def _indexes(self, node: Any, path: tuple[int, ...]) -> list[int] | None:
        n = len(path)
        found = {
            p[n]
            for (node_id, p) in self.results
            if node_id == node.id and len(p) == n + 1 and p[:n] == path
        }
        prefix = ".".join(map(str, path))
        for key in self.items.get(node.id, {}):
            parts = key.split(".")
            if len(parts) == n + 1 and ".".join(parts[:n]) == prefix and parts[-1].isdigit():
                found.add(int(parts[-1]))
        if not found:
            return None
        top = max(found)
        return list(range(top + 1))

    def _parent_entry_id(self, node: Any, path: tuple[int, ...]) -> str:
        """The id of the entry this list is part of ('' at the top), to keep nested ids unique."""
        outer = node.loops[:-1] if node.foreach is not None else node.loops
        return self.entry_ids.get((outer[-1], path), "") if outer else ""

    def one(
        self,
        node: Any,
        path: tuple[int, ...],
        where: str,
        *,
        item: Any,
        used: set[str] | None = None,
        parent: str = "",
    ) -> Any:
        value = None if node.kind.name == "group" else self.output(node, path, where)
        if node.foreach is None and not node.children:
            self.flat.setdefault(node.id, []).append(value)
            return value
        out: dict[str, Any] = {}
        if node.foreach is not None:
            index = path[-1]
            label = label_of(item, node.id, index)
            base = slug(label) or f"{node.id}-{index + 1}"
            if parent:
                base = f"{parent}-{base}"
            entry_id = base
            n = 2
            while used is not None and entry_id in used:
                entry_id = f"{base}-{n}"
                n += 1
            if used is not None:
                used.add(entry_id)
            self.entry_ids[(node.id, path)] = entry_id
            out.update(
                {
                    "id": entry_id,
                    "index": index,
                    "label": label,
                    "tags": tags_of(item),
                    node.item_name: item,
                }
            )
        if node.kind.name != "group":
            out["value"] = value
        for child_id in node.children:
            child = self.compiled.nodes[child_id]
            if child.skip_reason:
                continue
            out[child_id] = self.entry(child, path, f"{where}.{child_id}")
        self._pair_alt_texts(node, out)
        self.flat.setdefault(node.id, []).append(out)
        return out

    def _pair_alt_texts(self, node: Any, out: dict[str, Any]) -> None:
        """A caption node that describes a sibling image (`image: "{{ cover }}"`) gives it its
        alt text."""
        for child_id in node.children:
            child = self.compiled.nodes[child_id]
            if child.kind.name != "caption":
                continue
            match = SINGLE_NAME.fullmatch(str(getattr(child.spec, "image", "")))
            target = out.get(match.group(1)) if match else None
            caption = out.get(child_id)
            is_image = isinstance(target, dict) and target.get("kind") == "image"
            if is_image and isinstance(caption, str) and isinstance(target, dict):
                target["alt"] = caption


def _png_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height from a PNG's header (no decoding of model-made bytes)."""
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None, None


def build_site_data(store: Any, run_ref: str) -> SiteData:
    """site-data.json, its schema and images for a stored run (id, prefix, latest, folder)."""
    from genarun.store.processes import display_status

    run = store.resolve_run(run_ref)
    if not run["out_dir"] or not Path(run["out_dir"]).is_dir():
        raise StoreError(
            f"run {run['id'][:8]}'s folder {run['out_dir'] or '(none)'} is gone: its images "
            "cannot be exported (rerun it: genarun rerun)"
        )
    compiled = compile_run_tree(run)
    schema = site_schema(compiled)
    builder = _Builder(compiled, run, store.run_executions(run["id"]))
    published = published_nodes(compiled)
    data: dict[str, Any] = {}
    for root_id in compiled.roots:  # walk everything once, in tree order
        node = compiled.nodes[root_id]
        if node.skip_reason:
            continue
        whole = builder.entry(node, (), root_id)
        if root_id in published:
            data[published[root_id]] = whole
    for node_id, name in published.items():
        if name not in data:  # a node published from inside a foreach: all its entries
            data[name] = list(builder.flat.get(node_id, []))
    status = display_status(run)
    missing = list(builder.missing)
    if status != "completed":
        missing.insert(0, f"the run is {status}" + (f": {run['error']}" if run["error"] else ""))
    spec = compiled.loaded.spec
    site = spec.site
    meta = {
        "title": (site.title if site and site.title else None) or spec.name,
        "description": (site.description if site and site.description else None)
        or spec.description,
        "tree": spec.name,
        "run": run["id"],
        "seed": run["seed"],
        "bindings": json.loads(run["bindings"]) if run["bindings"] else {},
        "status": status,
        "complete": not missing,
        "missing": missing,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run["started"])),
        "collections": schema["x-genarun-collections"],
        "generator": f"genarun {__version__}",
    }
    document = {"$schema": "./site-data.schema.json", "site": meta, "data": data}
    return SiteData(document, schema, builder.images, missing)
