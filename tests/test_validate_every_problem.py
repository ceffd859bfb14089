"""A node with field mistakes (a misspelt required field, a value of the wrong type) is still
checked as far as it is valid: its undefined names, and its children's and its dependants',
come in the same pass as the misspelling, each with its did-you-mean (genarun/tree/validate.py
`_without_unknown_fields`). Before, a node that lacked a required field, or had any mistake
besides unknown fields, hid every name check of itself and its subtree, and names of it
elsewhere got no did-you-mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from genarun.errors import TreeError
from genarun.graph.compile import compile_tree
from genarun.tree.validate import read_tree

HEAD = "genarun: 1\nname: every\nvars:\n  topic: lizards\nnodes:\n"  # nodes start on line 6
SCOPE = "names in scope: run, seed, topic"
CASES = {
    "misspelt-required-beside-misspellings-and-names": (
        "  - id: plan\n"
        "    kind: generate\n"
        "    model: dummy\n"
        "    promt: 'About {{ topc }}'\n"
        "    systm: 'Be {{ tone }}'\n"
        "    colour: red\n"
        "    max_tokens: '{{ lenght }}'\n",
        [
            (9, "plan", "unknown field 'promt' (did you mean 'prompt'?)"),
            (9, "plan", f"field 'prompt': undefined name 'topc' (did you mean 'topic'? {SCOPE})"),
            (10, "plan", "unknown field 'systm' (did you mean 'system'?)"),
            (10, "plan", f"field 'system': undefined name 'tone' ({SCOPE})"),
            (11, "plan", "unknown field 'colour' (allowed fields: "),
            (12, "plan", f"field 'max_tokens': undefined name 'lenght' ({SCOPE})"),
        ],
    ),
    "misspelt-required-beside-a-wrong-value": (
        "  - id: word\n    kind: template\n    txt: '{{ topik }}'\n    parse: jsn\n",
        [
            (8, "word", "unknown field 'txt' (did you mean 'text'?)"),
            (8, "word", f"field 'text': undefined name 'topik' (did you mean 'topic'? {SCOPE})"),
            (9, "word", "field 'parse': expected 'text', 'json', 'lines' or 'yaml', got 'jsn'"),
        ],
    ),
    "wrong-value-beside-a-name": (
        "  - id: plan\n    kind: generate\n    model: dummy\n    prompt: 'About {{ topc }}'\n"
        "    temperature: hot\n",
        [
            (9, "plan", f"field 'prompt': undefined name 'topc' (did you mean 'topic'? {SCOPE})"),
            (10, "plan", "field 'temperature': expected a number or a template such as"),
        ],
    ),
    "two-misspellings-of-one-field: the first written is read as it": (
        "  - id: plan\n    kind: generate\n    model: dummy\n    promt: '{{ a1 }}'\n"
        "    prmpt: '{{ a2 }}'\n",
        [
            (9, "plan", "unknown field 'promt' (did you mean 'prompt'?)"),
            (9, "plan", f"field 'prompt': undefined name 'a1' ({SCOPE})"),
            (10, "plan", "unknown field 'prmpt' (did you mean 'prompt'?)"),
        ],
    ),
    "children-of-a-misspelt-node-see-its-vars": (
        "  - id: plan\n    kind: generate\n    model: dummy\n    vars:\n      tone: calm\n"
        "    promt: 'About {{ topic }}'\n    children:\n      - id: note\n"
        "        kind: template\n        text: '{{ tone }} {{ plan }} {{ missng }}'\n",
        [
            (11, "plan", "unknown field 'promt' (did you mean 'prompt'?)"),
            (
                15,
                "note",
                "field 'text': undefined name 'missng' (names in scope: plan, run, seed, tone,"
                " topic)",
            ),
        ],
    ),
    "a-name-of-a-misspelt-node-elsewhere-gets-its-did-you-mean": (
        "  - id: plan\n    kind: generate\n    modle: dummy\n    promt: '{{ topc }}'\n"
        "  - id: after\n    kind: template\n    text: '{{ plan }} {{ plann }}'\n",
        [
            (8, "plan", "unknown field 'modle' (did you mean 'model'?)"),
            (9, "plan", "unknown field 'promt' (did you mean 'prompt'?)"),
            (9, "plan", "field 'prompt': undefined name 'topc' (did you mean 'topic'?"),
            (12, "after", "field 'text': undefined name 'plann' (did you mean 'plan'?"),
        ],
    ),
    # A wrong field that brings names into scope is not left out: every name it brings would
    # be reported undefined, for a mistake already said.
    "a-wrong-scope-field-hides-no-mistake-and-invents-none": (
        '  - id: items\n    kind: template\n    parse: lines\n    text: "a\\nb"\n'
        "  - id: each\n    kind: template\n    foreach: items\n    as: 3\n"
        "    text: '{{ heading }}'\n",
        [(13, "each", "field 'as': expected text, got 3")],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_problem_of_the_tree_comes_in_one_pass(tmp_path: Path, name: str) -> None:
    nodes, expected = CASES[name]
    path = tmp_path / "every.yaml"
    path.write_text(HEAD + nodes)
    with pytest.raises(TreeError) as info:
        compile_tree(read_tree(path))
    found = sorted(
        (p.line, p.node, p.message + (f" ({p.hint})" if p.hint else ""))
        for p in info.value.problems
    )
    assert len(found) == len(expected), found
    for (line, node, message), (want_line, want_node, want) in zip(
        found, sorted(expected), strict=True
    ):
        assert (line, node) == (want_line, want_node), found
        assert message.startswith(want), found
