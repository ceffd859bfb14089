"""`genarun diff`: two stored runs compared per node and foreach item.

Each execution is same, changed or only in one run; texts differ by a unified diff, images by
their sha256, embeddings by their vectors.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from genarun.store.db import Store


@dataclass
class ExecutionDiff:
    node: str
    index: tuple[int, ...]
    status: str  # same, changed, only_a, only_b
    a: Any  # the stored output (tagged JSON) or None
    b: Any
    detail: str | None = None  # what changed: a unified diff, hashes or statuses

    @property
    def label(self) -> str:
        return self.node + "".join(f"[{i}]" for i in self.index)

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "index": list(self.index),
            "status": self.status,
            "a": self.a,
            "b": self.b,
            "diff": self.detail,
        }


def _final_executions(
    store: Store, run_id: str
) -> dict[tuple[str, tuple[int, ...]], dict[str, Any]]:
    """The last word on each (node, item): a done execution wins over earlier failed tries."""
    out: dict[tuple[str, tuple[int, ...]], dict[str, Any]] = {}
    for row in store.run_executions(run_id):
        key = (row["node_id"], tuple(json.loads(row["path"] or "[]")))
        if key not in out or out[key]["status"] != "done" or row["status"] == "done":
            out[key] = row
    return out


def diff_runs(store: Store, run_a: str, run_b: str) -> list[ExecutionDiff]:
    """Every (node, item) of either run, in the order the first run recorded them."""
    a, b = _final_executions(store, run_a), _final_executions(store, run_b)
    vectors = _VectorHashes(store)
    keys = list(a) + [k for k in b if k not in a]
    out = []
    for key in keys:
        row_a, row_b = a.get(key), b.get(key)
        value_a = _value(row_a)
        value_b = _value(row_b)
        if row_a is None or row_b is None:
            out.append(
                ExecutionDiff(
                    key[0], key[1], "only_b" if row_a is None else "only_a", value_a, value_b
                )
            )
            continue
        if row_a["status"] != row_b["status"]:
            detail = f"status {row_a['status']} -> {row_b['status']}"
            out.append(ExecutionDiff(key[0], key[1], "changed", value_a, value_b, detail))
        elif vectors.content(value_a) == vectors.content(value_b):
            out.append(ExecutionDiff(key[0], key[1], "same", value_a, value_b))
        else:
            out.append(
                ExecutionDiff(
                    key[0],
                    key[1],
                    "changed",
                    value_a,
                    value_b,
                    _describe(key, value_a, value_b, run_a, run_b),
                )
            )
    return out


def _value(row: dict[str, Any] | None) -> Any:
    if row is None:
        return None
    if row["status"] != "done":
        return {"status": row["status"], "error": row["error"]}
    return json.loads(row["output"]) if row["output"] else None


class _VectorHashes:
    """Compares outputs by content: images by sha256, embeddings by their stored vectors."""

    def __init__(self, store: Store):
        self.store = store
        self.cache: dict[int, str] = {}

    def content(self, value: Any) -> Any:
        if isinstance(value, dict):
            if "$image" in value:
                return {"$image": value.get("sha256")}
            if "$embedding" in value:
                return {"$embedding": self._vector_hash(int(value["$embedding"]))}
            return {k: self.content(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.content(v) for v in value]
        return value

    def _vector_hash(self, embedding_id: int) -> str:
        if embedding_id not in self.cache:
            vectors = self.store.embedding_vectors([embedding_id])
            vector = vectors.get(embedding_id)
            self.cache[embedding_id] = (
                hashlib.sha256(vector.tobytes()).hexdigest()
                if vector is not None
                else f"missing {embedding_id}"
            )
        return self.cache[embedding_id]


def _describe(key: tuple[str, tuple[int, ...]], a: Any, b: Any, run_a: str, run_b: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict) and "$image" in a and "$image" in b:
        return f"image sha256 {str(a.get('sha256'))[:12]} -> {str(b.get('sha256'))[:12]}"
    label = key[0] + "".join(f"[{i}]" for i in key[1])
    text_a = (
        a if isinstance(a, str) else json.dumps(a, indent=2, ensure_ascii=False, sort_keys=True)
    )
    text_b = (
        b if isinstance(b, str) else json.dumps(b, indent=2, ensure_ascii=False, sort_keys=True)
    )
    lines = difflib.unified_diff(
        text_a.splitlines(),
        text_b.splitlines(),
        f"{run_a[:8]} {label}",
        f"{run_b[:8]} {label}",
        lineterm="",
    )
    return "\n".join(lines)


def render_diff(
    run_a: dict[str, Any],
    run_b: dict[str, Any],
    entries: list[ExecutionDiff],
    *,
    show_same: bool = False,
) -> str:
    """The text report: one line per (node, item), unified diffs indented under changes."""
    names = {"same": "same", "changed": "changed", "only_a": "only A", "only_b": "only B"}
    lines = [f"A {run_a['id'][:8]} ({run_a['name']})", f"B {run_b['id'][:8]} ({run_b['name']})", ""]
    for entry in entries:
        if entry.status == "same" and not show_same:
            continue
        lines.append(
            f"{names[entry.status]:<8} {entry.label}"
            + (f"  {entry.detail}" if entry.detail and "\n" not in entry.detail else "")
        )
        if entry.detail and "\n" in entry.detail:
            lines.extend("    " + line for line in entry.detail.splitlines())
    counts = summary(entries)
    lines.append(
        f"{counts['same']} same, {counts['changed']} changed, {counts['only_a']} only in A, {counts['only_b']} only in B"
    )
    return "\n".join(lines)


def diff_document(
    run_a: dict[str, Any], run_b: dict[str, Any], entries: list[ExecutionDiff]
) -> dict[str, Any]:
    """`genarun diff --json`'s document (also `GET /api/v1/diff`)."""
    return {
        "a": run_a["id"],
        "b": run_b["id"],
        "summary": summary(entries),
        "executions": [e.to_json() for e in entries],
    }


def summary(entries: list[ExecutionDiff]) -> dict[str, int]:
    counts = {"same": 0, "changed": 0, "only_a": 0, "only_b": 0}
    for entry in entries:
        counts[entry.status] += 1
    return counts
