"""The tree editor of `genarun serve`: `/trees/<file>/edit`.

The page holds the working copy of the tree's text (and the digest of the file it was loaded
from); every change is a POST of the page's one form, with its CSRF token, naming the change
(`op`): add, remove, rename, move, enable/disable a node, set its fields, replace its YAML or the
whole text. The server makes the change on the text with ruamel.yaml's round trip
(genarun/server/tree_doc.py), validates the result as `genarun validate` does and answers
the page again, problems on their nodes. Nothing is written until `save`, which refuses a tree
with problems and a file changed on disk since it was loaded (edit_files.py). The page works
without script (each change reloads it); its script sends the same form in the background,
swaps the page in place and applies a field as soon as it changes.

Not served in read-only mode, nor without a trees folder.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from genarun.server.edit_check import Checked, check_text
from genarun.server.edit_files import (
    EditRefused,
    TreeFile,
    digest_of,
    read_tree_file,
    save_tree_file,
)
from genarun.server.edit_form import (
    FormField,
    for_value,
    kind_fields,
    kinds,
    read_field,
    shown_value,
)
from genarun.server.edit_template import render_editor
from genarun.server.tree_doc import EditError, Loc, TreeDoc, loc_text, parse_loc

NODE_OPS = ("select", "up", "down", "remove", "toggle")


@dataclass
class Working:
    """What the page carries between requests: the working text and where it came from."""

    name: str
    text: str
    base: str  # digest of the file as loaded: a save must still find it on disk
    crlf: bool = False  # the file's lines end in CRLF: the page edits LF, a save writes CRLF
    sel: Loc | None = None
    message: str = ""
    failed: bool = False
    status: int = 200
    saved: bool = False
    add_parent: str = ""  # the add form's "under" as chosen: kept while no node moves
    notes: list[str] = field(default_factory=list)

    @property
    def fmt(self) -> Literal["yaml", "json"]:
        return "json" if self.name.lower().endswith(".json") else "yaml"

    def disk_text(self) -> str:
        return self.text.replace("\n", "\r\n") if self.crlf else self.text

    @property
    def dirty(self) -> bool:
        return digest_of(self.disk_text().encode()) != self.base


def from_file(found: TreeFile) -> Working:
    crlf = "\r\n" in found.text
    return Working(found.name, found.text.replace("\r\n", "\n"), found.digest, crlf)


def apply(work: Working, op: str, form: dict[str, str], root: Path) -> Working:
    """Make the change `op` names on the working text (or save it); a change that cannot be
    made leaves the text as it was and says why."""
    try:
        if op == "text":
            work.text = form.get("whole", "").replace("\r\n", "\n")
            work.message = "text applied"
            return work
        try:
            doc = TreeDoc(work.text, work.fmt)
        except EditError:
            if op == "save":  # refused there, with the problems validation finds
                return _save(work, root)
            raise
        # The selected node's fields as the form holds them go first, whatever the button: a
        # field typed and then Save (or another node) clicked, without script, is not lost.
        pending = ""
        if work.sel is not None and op != "node_yaml" and any(k.startswith("f.") for k in form):
            try:
                node = doc.node(work.sel)
            except EditError:
                work.sel = None
            else:
                pending = _apply_fields(doc, work.sel, node, form)
        if op == "save":
            work.text = doc.text()
            return _save(work, root)
        message = _change(doc, work, op, form) if op != "apply" else ""
        work.text = doc.text()
        work.message = "; ".join(m for m in (pending, message) if m)
    except EditError as exc:
        work.message, work.failed, work.status = str(exc), True, 422
    return work


def _change(doc: TreeDoc, work: Working, op: str, form: dict[str, str]) -> str:
    verb, _, where = op.partition(":")
    if verb in ("up", "down", "remove", "move"):  # positions shift: "under" would point elsewhere
        work.add_parent = ""
    if verb in NODE_OPS:
        loc = parse_loc(where)
        node = doc.node(loc)
        name = node.get("id") or "the node"
        if verb == "select":
            work.sel = loc
            return ""
        if verb in ("up", "down"):
            work.sel = doc.move(loc, verb)
            return f"moved {name} {verb}"
        if verb == "remove":
            doc.remove(loc)
            work.sel = None
            return f"removed {name} and its children"
        on = doc.toggle(loc)
        work.sel = loc
        return f"{name} {'enabled' if on else 'disabled (enabled: false)'}"
    if verb == "add":
        parent = parse_loc(form["add_parent"]) if form.get("add_parent") else None
        kind = form.get("add_kind", "")
        if kind not in dict(kinds()):
            raise EditError(f"unknown kind {kind[:40]!r}: pick one from the list")
        work.sel = doc.add(parent, kind, form.get("add_id", "").strip())
        return f"added {form.get('add_id', '').strip()} ({kind}): fill in its fields"
    if work.sel is None:
        raise EditError("select a node first")
    node = doc.node(work.sel)
    if verb == "rename":
        new_id = form.get("new_id", "").strip()
        places = doc.rename(work.sel, new_id)
        follow = f"; references updated in {', '.join(places)}" if places else ""
        return f"renamed to {new_id}{follow}"
    if verb == "move":
        work.sel = doc.move(work.sel, form.get("move_to", ""))
        return f"moved {node.get('id') or 'the node'}"
    if verb == "node_yaml":
        from genarun.server.tree_doc import parse_yaml_value

        mapping = parse_yaml_value(form.get("node_yaml", "").replace("\r\n", "\n"))
        if not isinstance(mapping, dict):
            raise EditError("a node's YAML is a mapping of its fields (id: ..., kind: ...)")
        doc.replace_fields(work.sel, mapping)
        return "node YAML applied"
    raise EditError(f"unknown change {op[:40]!r}: reload the page")


def _apply_fields(doc: TreeDoc, loc: Loc, node: Any, form: dict[str, str]) -> str:
    fields = kind_fields(str(node.get("kind") or "")) or []
    values: dict[str, Any] = {}
    for f in fields:
        sent = form.get(f"f.{f.name}")
        if sent is None:
            continue
        f = for_value(f, node.get(f.name))
        if form.get(f"t.{f.name}", f.widget) != f.widget:
            raise EditError(f"{f.name} changed meanwhile: reload the page")
        if sent.replace("\r\n", "\n") == shown_value(f, node.get(f.name), f.name in node):
            continue  # untouched: the file keeps it as written
        values[f.name] = read_field(f, sent)
    changed = doc.set_fields(loc, values)
    return f"changed {', '.join(changed)}" if changed else ""


def _save(work: Working, root: Path) -> Working:
    checked = check_text(work.text, work.name, work.fmt)
    if not checked.valid:
        work.message = (
            f"not saved: {checked.count} problem{'s' if checked.count != 1 else ''} "
            "(fix them first; the file on disk is unchanged)"
        )
        work.failed, work.status = True, 422
        return work
    try:
        saved = save_tree_file(root, work.name, work.disk_text(), work.base)
    except EditRefused as exc:
        work.message, work.failed, work.status = str(exc), True, exc.status
        return work
    work.base, work.saved = saved.digest, True
    work.message = f"saved {work.name}"
    return work


# --- the page -------------------------------------------------------------------------------
def page_context(work: Working, checked: Checked) -> dict[str, Any]:
    """What the template shows: the outline, the selected node's form, the drawing."""
    try:
        doc: TreeDoc | None = TreeDoc(work.text, work.fmt)
    except EditError as exc:
        doc = None
        work.notes.append(f"{exc}: edit the text below")
    outline: list[dict[str, Any]] = []
    selected = None
    if doc is not None:
        seen: set[str] = set()
        for n in doc.flat():
            first = n.id not in seen
            seen.add(n.id)
            outline.append(
                {
                    "key": n.key,
                    "id": n.id or "(no id)",
                    "kind": n.kind or "?",
                    "depth": n.depth,
                    "enabled": n.enabled,
                    "foreach": n.foreach,
                    "problems": checked.of(n.id) if first and n.id else [],
                    "uses": checked.uses(n.id) if n.id else [],
                    "selected": n.loc == work.sel,
                }
            )
        if work.sel is not None:
            selected = _selected(doc, work.sel)
    return {
        "tree": work.name,
        "work": work,
        "outline": outline,
        "selected": selected,
        "checked": checked,
        "kinds": kinds(),
        "parents": [(o["key"], "  " * o["depth"] + o["id"]) for o in outline],
    }


def _selected(doc: TreeDoc, loc: Loc) -> dict[str, Any] | None:
    try:
        node = doc.node(loc)
    except EditError:
        return None
    kind = str(node.get("kind") or "")
    fields = kind_fields(kind)
    shown: list[FormField] = []
    for f in fields or []:
        f = for_value(f, node.get(f.name))
        f.value = shown_value(f, node.get(f.name), f.name in node)
        shown.append(f)
    here = loc_text(loc)
    targets = [
        (n.key, "  " * n.depth + (n.id or "?"))
        for n in doc.flat()
        if not (n.key == here or n.key.startswith(here + ".")) and n.loc != loc[:-1]
    ]
    return {
        "key": here,
        "id": node.get("id") or "",
        "kind": kind,
        "known": fields is not None,
        "fields": [f for f in shown if not f.common],
        "common": [f for f in shown if f.common],
        "yaml": doc.node_text(loc),
        "targets": targets,
        "top": len(loc) > 1,
    }


def edit_page_routes(pages: Any, trees: Path | None) -> list[Route]:
    """GET and POST /trees/{tree}/edit, behind the pages' session, Origin and CSRF checks."""
    if trees is None or pages.read_only:
        return []
    root = trees

    def render(request: Request, work: Working) -> Response:
        checked = check_text(work.text, work.name, work.fmt)
        context = page_context(work, checked)
        context["csrf"] = pages.csrf(request)
        context["can_start"] = pages.start is not None and checked.valid and not work.dirty
        context["start_href"] = "/start?" + urllib.parse.urlencode({"tree": work.name})
        return HTMLResponse(render_editor(context), work.status)

    def refused(exc: EditRefused) -> Response:
        from genarun.server.graph_pages import missing_page

        page = missing_page(str(exc), "/trees", "All tree files")
        page.status_code = exc.status
        return page

    async def edit_form(request: Request) -> Response:
        if not pages.signed_in(request):
            return pages.refused()
        name = request.path_params["tree"]
        try:
            found = await run_in_threadpool(read_tree_file, root, name)
        except EditRefused as exc:
            return refused(exc)
        work = from_file(found)
        if work.fmt == "yaml":
            await run_in_threadpool(_round_trip_note, work)
        return await run_in_threadpool(render, request, work)

    async def edit(request: Request) -> Response:
        form = await pages.check_form(request)
        if isinstance(form, Response):
            return form
        field = {k: v[-1] for k, v in cast(dict[str, list[str]], form).items()}
        name = request.path_params["tree"]
        try:  # the file must be one the editor may open, whatever the form says
            await run_in_threadpool(read_tree_file, root, name)
        except EditRefused as exc:
            if exc.status != 409:
                return refused(exc)
        sel = field.get("sel", "")
        work = Working(
            name,
            field.get("text", "").replace("\r\n", "\n"),
            field.get("base", ""),
            crlf=field.get("crlf") == "1",
            sel=parse_loc(sel) if sel and _is_loc(sel) else None,
            add_parent=field.get("add_parent", "") if _is_loc(field.get("add_parent", "")) else "",
        )
        work = await run_in_threadpool(apply, work, field.get("op", ""), field, root)
        return await run_in_threadpool(render, request, work)

    return [
        Route("/trees/{tree:path}/edit", edit_form, methods=["GET"]),
        Route("/trees/{tree:path}/edit", edit, methods=["POST"]),
    ]


def _is_loc(text: str) -> bool:
    try:
        parse_loc(text)
    except EditError:
        return False
    return True


def _round_trip_note(work: Working) -> None:
    """Say so when saving would re-lay-out parts of the file nobody touched (rare YAML)."""
    try:
        same = TreeDoc(work.text, "yaml").text() == work.text
    except EditError:
        return
    if not same:
        work.notes.append(
            "this file's layout is not kept exactly by the editor: saving rewrites the "
            "indentation or quoting of some untouched lines (comments and key order stay)"
        )
