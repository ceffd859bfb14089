"""The 10,000-node benchmark's kind of tree (bench/core_templates.py), small, with its outputs,
seeds, picks and store rows pinned byte for byte: the executor's per-execution hot path
(rendering, seeding, rows, redaction, batched inserts) is optimised, and must not change what
a run makes or stores."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from genarun.run.runner import RunOptions, run_tree

# Groups with a foreach child each, as in the benchmark, plus what the hot path must keep:
# tree and node vars with picks, weighted and nested picks, `when`, a failing item, texts that
# redaction masks in the store (but not in outputs), a literal node, and a JSON-parsed one.
TREE = """\
genarun: 1
name: pinned
seed: 7
vars:
  topic: "[lizards | newts | 2:: toads]"
  thing: gecko
nodes:
"""
GROUP = """\
  - id: group_{g}
    kind: template
    text: "{{{{ range({items}) | list }}}}"
    children:
      - id: line_{g}
        kind: template
        foreach: group_{g}
        as: n
        vars:
          mood: "[calm | wild [ly | er]] {{{{ n }}}}"
        text: "Item {{{{ n }}}} of {{{{ topic }}}}: a [red | 3:: green | 0.5:: blue] {{{{ thing }}}}, {{{{ mood }}}}"
        children:
          - id: key_{g}
            kind: template
            when: "{{{{ n % 3 != 0 }}}}"
            text: "token=abcd{{{{ n }}}}efgh5678 sk-live{{{{ n }}}}abcdefgh [x | y]"
          - id: div_{g}
            kind: template
            text: "{{{{ 12 // (n - 5) }}}}"
"""
TAIL = """\
  - id: fixed
    kind: template
    text: plain words
  - id: parsed
    kind: template
    parse: json
    text: '{"a": [1, 2, "[b | c]"], "n": null}'
"""

# Columns that do not depend on time, ids or the machine.
COLUMNS = (
    "node_id, path, kind, params, input_hash, cache_key, output, seed, model, status, error,"
    " raw_output, picks, reused_from, attempts, usage"
)

# Recorded from main before the per-node optimisations (issue 18 item 4, sixth pass).
PINNED_ROWS = "4961cc24790693a131001f3d69b8b98a31cecb3d5e33a972af1a201ff3b57c3e"
PINNED_OUTPUT = "5b839bc6c02d41e090fe1211340c0259d8adce82b654741bed4761feea25cbd5"
PINNED_ORDER = "b9c237767f47fb0c979d9343fa8d656379da024c85a6ee5652990ffda8248cf6"  # the rows' ids: the order they were written in
PINNED_LOGS = "7c553e8747f7288c2d4f16b697e7c1df6acdd26dd2f7a26787b45324e0a27885"


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False).encode()).hexdigest()


def test_template_tree_outputs_and_rows_are_pinned(tmp_path: Path) -> None:
    groups, items = 3, 12
    text = TREE + "".join(GROUP.format(g=g, items=items) for g in range(groups)) + TAIL
    tree = tmp_path / "pinned.yaml"
    tree.write_text(text)
    db, out = tmp_path / "genarun.db", tmp_path / "out"
    outcome = run_tree(tree, RunOptions(db=db, out=out))
    run = outcome.runs[0]
    # (info lines carry times: only warnings and errors are pinned)
    # Item 5 of each group divides by zero: its failure is a row and a log line.
    assert run.counts["failed"] == groups
    assert run.counts["done"] == groups * (1 + items + items - 1 + 8) + 2
    assert run.counts["skipped"] == groups * 4
    conn = sqlite3.connect(db)
    rows = conn.execute(f"SELECT {COLUMNS} FROM executions ORDER BY node_id, path").fetchall()
    order = conn.execute("SELECT id, node_id, path FROM executions ORDER BY id").fetchall()
    logs = conn.execute(
        "SELECT node_id, path, level, message FROM logs WHERE level != 'info' ORDER BY id"
    ).fetchall()
    conn.close()
    assert len(rows) == groups * (1 + 3 * items) + 2
    # The store masks credentials in params; outputs keep them (values are data).
    key_row = next(r for r in rows if r[0] == "key_0" and r[1] == "[1]")
    assert "abcd1efgh5678" not in key_row[3] and "abcd1efgh5678" in key_row[6]
    output = (next(out.rglob("output.json"))).read_bytes()
    assert _digest([list(r) for r in rows]) == PINNED_ROWS
    assert hashlib.sha256(output).hexdigest() == PINNED_OUTPUT
    assert _digest([list(r) for r in logs]) == PINNED_LOGS
    assert _digest([list(r) for r in order]) == PINNED_ORDER


def test_a_rendered_spec_is_what_model_copy_makes() -> None:
    """The executor's copy of a node's spec with its rendered fields (instance_start.
    _with_fields) equals pydantic's model_copy: fields, fields set, extra and private state."""
    from pydantic import BaseModel, ConfigDict, PrivateAttr

    from genarun.nodes.template import TemplateNode
    from genarun.run.instance_start import _with_fields

    class WithPrivate(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text: str = "a"
        count: int = 1
        _retries: int = PrivateAttr(3)

    class WithUnsetPrivate(BaseModel):  # its private state is an empty dict, not None
        text: str = "a"
        _seen: int = PrivateAttr()

    class WithExtra(BaseModel):
        model_config = ConfigDict(extra="allow")
        text: str = "a"

    specs: list[BaseModel] = [
        TemplateNode.model_validate({"id": "a", "kind": "template", "text": "x {{ n }}"}),
        WithPrivate(count=2),
        WithUnsetPrivate(),
        WithExtra(other=1),
    ]
    for spec in specs:
        expected, made = spec.model_copy(update={"text": "y"}), _with_fields(spec, {"text": "y"})
        assert made == expected and made.__dict__ == expected.__dict__
        assert made.__pydantic_fields_set__ == expected.__pydantic_fields_set__
        assert made.__pydantic_private__ == expected.__pydantic_private__
        assert made.__pydantic_extra__ == expected.__pydantic_extra__
        assert made is not spec and spec.text != "y"  # type: ignore[attr-defined]
