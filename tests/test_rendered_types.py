"""A field whose template renders a value of the wrong type (known only when the node runs:
parsed YAML, a var) fails its node with the field, the template, what it gave and the fix,
never pydantic's words ("Input should be a valid string")."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.helpers import query

TREE = """\
genarun: 1
name: types
seed: 1
models:
  writer: {provider: dummy, id: w}
vars:
  n: 5
  zero: 0
  obj: {title: a, tags: [x]}
nodes:
  - id: plan
    kind: template
    parse: yaml
    text: "[alpha, beta]"
  - id: as_list
    kind: generate
    model: writer
    prompt: "{{ plan }}"
  - id: as_slice
    kind: generate
    model: writer
    prompt: "{{ plan[1:] }}"
  - id: as_object
    kind: generate
    model: writer
    prompt: "{{ obj }}"
  - id: as_number
    kind: generate
    model: writer
    prompt: "{{ n }}"
  - id: too_small
    kind: generate
    model: writer
    prompt: x
    max_tokens: "{{ zero }}"
  - id: wrong_number
    kind: generate
    model: writer
    prompt: x
    max_tokens: "{{ plan }}"
"""


def test_a_rendered_value_of_the_wrong_type_names_field_template_value_and_fix(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    (workdir / "tree.yaml").write_text(TREE)
    result = cli("run", "tree.yaml")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = {
        row["node_id"]: row["error"]
        for row in query(workdir / "genarun.db", "SELECT node_id, error FROM executions")
        if row["error"]
    }
    assert errors["as_list"] == (
        "field 'prompt' is text, but '{{ plan }}' gave a list of 2 items ([\"alpha\", \"beta\"])"
        " (join it, '{{ plan | join(\", \") }}', or take one item, '{{ plan[0] }}')"
    )
    assert "'{{ plan[1:] | join(\", \") }}'" in errors["as_slice"]
    assert errors["as_object"] == (
        "field 'prompt' is text, but '{{ obj }}' gave an object with keys title, tags"
        " (name the field you want, '{{ obj.title }}', or write it as JSON, '{{ obj | json }}')"
    )
    assert errors["as_number"] == (
        "field 'prompt' is text, but '{{ n }}' gave the number 5 (convert it, '{{ n | string }}')"
    )
    assert errors["too_small"] == (
        "field 'max_tokens' must be at least 1, but '{{ zero }}' gave the number 0"
    )
    assert errors["wrong_number"].startswith(
        "field 'max_tokens' takes a whole number, but '{{ plan }}' gave a list of 2 items"
    )
    for error in errors.values():
        assert "Input should be" not in error and "rendered values" not in error
    # the node that rendered fine is kept
    folder = next((workdir / "types").glob("2*"))
    assert json.loads((folder / "output.json").read_text())["plan"] == ["alpha", "beta"]


def test_the_suggested_fix_runs(workdir: Path, cli: Callable[..., Result]) -> None:
    fixed = (
        TREE.replace(
            '"{{ plan }}"\n  - id: as_slice', '"{{ plan | join(\\", \\") }}"\n  - id: as_slice'
        )
        .replace('"{{ obj }}"', '"{{ obj.title }}"')
        .replace('"{{ n }}"', '"{{ n | string }}"')
    )
    fixed = fixed[: fixed.index("  - id: as_slice")] + fixed[fixed.index("  - id: as_object") :]
    fixed = fixed[: fixed.index("  - id: too_small")]
    (workdir / "tree.yaml").write_text(fixed)
    result = cli("run", "tree.yaml")
    assert result.exit_code == 0, result.output
