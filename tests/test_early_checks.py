"""Mistakes of type known from the tree alone are errors at `validate` (file, line, node, fix),
not failures at run time: an image, a list or an object where text is due, a `foreach:` over
text or an image, and a model alias that names no model (at the alias's line, and where used).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

HEAD = "genarun: 1\nname: early\nseed: 1\n"


def _tree(workdir: Path, body: str) -> Path:
    path = workdir / "early.yaml"
    path.write_text(HEAD + body)
    return path


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


CASES = {
    "image into a prompt": (
        "nodes:\n"
        "  - id: cover\n    kind: image\n    model: dummy\n    prompt: a cat\n"
        "    children:\n"
        "      - id: describe\n        kind: generate\n        model: dummy\n"
        '        prompt: "{{ cover }}"\n',
        'prompt: "{{ cover }}"',
        "node 'describe': field 'prompt' is text, but '{{ cover }}' is an image, the output of "
        "image node 'cover' (to describe it, add a caption node with image: '{{ cover }}'",
    ),
    "list of a foreach into a system message": (
        "nodes:\n"
        "  - id: titles\n    kind: template\n    text: [a, b]\n"
        "    children:\n"
        "      - id: article\n        kind: generate\n        foreach: titles\n"
        "        model: dummy\n        prompt: Write {{ item }}\n"
        "  - id: summary\n    kind: generate\n    model: dummy\n    prompt: sum up\n"
        '    system: "{{ article }}"\n',
        'system: "{{ article }}"',
        "field 'system' is text, but '{{ article }}' is a list: every output of generate node "
        "'article', one per item (join it, '{{ article | join(\", \") }}'",
    ),
    "object into a cycle's start": (
        "nodes:\n"
        "  - id: traj\n    kind: cycle\n    network: [dummy-t2i, dummy-i2t]\n"
        "    start: a fox\n    steps: 2\n    embed: [dummy-embed]\n"
        "  - id: topo\n    kind: persistence\n    of: traj\n"
        "    children:\n"
        "      - id: again\n        kind: cycle\n        network: [dummy-t2i, dummy-i2t]\n"
        '        start: "{{ topo }}"\n        steps: 2\n',
        'start: "{{ topo }}"',
        "field 'start' is text, but '{{ topo }}' is an object, the output of persistence node "
        "'topo' (name the field you want: '{{ topo.field }}')",
    ),
    "foreach over text": (
        "nodes:\n"
        "  - id: plan\n    kind: generate\n    model: dummy\n    prompt: List 3 titles.\n"
        "    children:\n"
        "      - id: article\n        kind: generate\n        foreach: plan\n"
        "        model: dummy\n        prompt: Write {{ item }}\n",
        "foreach: plan",
        "node 'article': foreach: 'plan' is text, the output of generate node 'plan', not a "
        "list (write parse: json or parse: lines on 'plan' at line 5 so its output is a list, "
        "or split the text: foreach: plan.splitlines())",
    ),
    "foreach over an image": (
        "nodes:\n"
        "  - id: cover\n    kind: image\n    model: dummy\n    prompt: a cat\n"
        '  - id: each\n    kind: template\n    foreach: "{{ cover }}"\n    text: x\n',
        "foreach:",
        "foreach: 'cover' is an image, the output of image node 'cover', not a list",
    ),
    "alias of an unknown model": (
        "models:\n  writer: tiny-gtp2\n"
        "nodes:\n"
        "  - id: plan\n    kind: generate\n    model: writer\n    prompt: hello\n"
        "  - id: other\n    kind: generate\n    model: writer\n    prompt: hello\n",
        "writer: tiny-gtp2",
        "early.yaml:5: model alias 'writer': unknown model 'tiny-gtp2' (did you mean 'tiny-gpt2'?)",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_validate_reports_it_at_its_line_with_the_fix(
    case: str, cli: Callable[..., Result], workdir: Path
) -> None:
    body, at, message = CASES[case]
    path = _tree(workdir, body)
    for command in ("validate", "run"):
        result = cli(command, path)
        assert result.exit_code == 2, result.output
        assert f"{path}:{_line_of(path, at)} " in result.output or (
            f"{path}:{_line_of(path, at)}:" in result.output
        )
        assert message in result.output
        assert "Traceback" not in result.output
    assert not (workdir / "early").exists() and not (workdir / "genarun.db").exists()


def test_an_alias_of_an_unknown_model_is_also_reported_where_it_is_used(
    cli: Callable[..., Result], workdir: Path
) -> None:
    body, _at, _message = CASES["alias of an unknown model"]
    path = _tree(workdir, body)
    output = cli("validate", path).output
    for node, line in (("plan", 9), ("other", 13)):
        assert (
            f"{path}:{line} node '{node}': model 'writer': the alias defined on line 5 names no "
            "usable model (fix the alias on line 5)"
        ) in output
    assert output.count("unknown model 'tiny-gtp2'") == 1  # said once, where it is written


def test_an_alias_of_a_bad_alias_points_at_the_one_to_fix(
    cli: Callable[..., Result], workdir: Path
) -> None:
    path = _tree(
        workdir,
        "models:\n  writer: base\n  base: tiny-gtp2\n"
        "nodes:\n  - id: plan\n    kind: generate\n    model: writer\n    prompt: hello\n",
    )
    output = cli("validate", path).output
    assert f"{path}:6: model alias 'base': unknown model 'tiny-gtp2'" in output
    assert "model alias 'writer'" not in output
    assert "model 'writer': the alias defined on line 6 names no usable model" in output


# The same values where they are fine: no false alarm.
FINE = {
    "image path inside text": (
        "nodes:\n  - id: cover\n    kind: image\n    model: dummy\n    prompt: a cat\n"
        "    children:\n      - id: note\n        kind: generate\n        model: dummy\n"
        '        prompt: "A picture at {{ cover }}"\n'
    ),
    "a foreach item's text": (
        "nodes:\n  - id: plan\n    kind: generate\n    model: dummy\n"
        "    prompt: List 3 titles.\n    parse: lines\n    children:\n"
        "      - id: article\n        kind: generate\n        foreach: plan\n"
        "        model: dummy\n        prompt: Write {{ item }}\n"
        "        children:\n          - id: blurb\n            kind: generate\n"
        '            model: dummy\n            prompt: "{{ article }}"\n'
    ),
    "text split into a list": (
        "nodes:\n  - id: plan\n    kind: generate\n    model: dummy\n"
        "    prompt: List 3 titles.\n    children:\n"
        "      - id: article\n        kind: template\n        foreach: plan.splitlines()\n"
        "        text: '{{ item }}'\n"
    ),
    "parsed json, known only at run time": (
        "nodes:\n  - id: plan\n    kind: generate\n    model: dummy\n"
        "    prompt: List 3 titles.\n    parse: json\n    children:\n"
        "      - id: article\n        kind: generate\n        foreach: plan\n"
        "        model: dummy\n        prompt: Write {{ item }}\n"
    ),
    "an item named like nothing else": (
        "models:\n  writer: tiny-gpt2\n  painter: {provider: dummy, id: dummy}\n"
        "nodes:\n  - id: cover\n    kind: image\n    model: painter\n    prompt: a cat\n"
    ),
}


@pytest.mark.parametrize("case", FINE)
def test_the_same_values_where_they_fit_run(
    case: str, cli: Callable[..., Result], workdir: Path
) -> None:
    path = _tree(workdir, FINE[case])
    result = cli("validate", path)
    assert result.exit_code == 0, result.output
    if "tiny-gpt2" not in FINE[case]:
        assert cli("run", path).exit_code == 0
