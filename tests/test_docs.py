"""docs/reference.md stays in step with the JSON Schema: every kind and field is documented."""

from __future__ import annotations

import re
from pathlib import Path

from genarun.plugins import registry
from genarun.tree.jsonschema import tree_json_schema

REFERENCE = (Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text()


def _documented_fields(section: str) -> set[str]:
    return set(re.findall(r"`([a-z_]+)`", section))


def test_every_kind_and_field_is_in_the_reference() -> None:
    schema = tree_json_schema()
    missing = []
    for name in registry().kinds:
        match = re.search(
            rf"^### {name}\n(.*?)(?=^### |^## )", REFERENCE, flags=re.MULTILINE | re.DOTALL
        )
        if match is None:
            missing.append(f"kind {name}")
            continue
        documented = _documented_fields(match.group(1))
        own = set(schema["$defs"][f"{name}_node"]["properties"]) - set(
            schema["$defs"]["Node"]["properties"]
        )
        common = set(
            registry().kinds["group"].params.model_json_schema(by_alias=True)["properties"]
        )
        for field in sorted(own - common - {"kind", "children"}):
            if field not in documented:
                missing.append(f"{name}.{field}")
    assert not missing, f"document these in docs/reference.md: {missing}"


def test_common_and_top_level_fields_are_in_the_reference() -> None:
    schema = tree_json_schema()
    common = registry().kinds["group"].params.model_json_schema(by_alias=True)["properties"]
    top = schema["properties"]
    for field in [*common, *top]:
        assert f"`{field}`" in REFERENCE, field


def test_ci_does_what_the_readme_quick_start_says_in_order() -> None:
    """The README tells a new user `make demo`, then `make test`, in one clone: CI does the
    same, so a test that trips over the demo's outputs fails in CI, not on a newcomer's
    machine."""
    repo = Path(__file__).resolve().parents[1]
    readme = (repo / "README.md").read_text()
    quick = re.search(r"^## Quick start.*?(?=^## )", readme, flags=re.MULTILINE | re.DOTALL)
    assert quick is not None
    steps = re.findall(r"```bash\n(make \w+)\n```", quick.group(0))
    assert steps == ["make demo", "make test"]
    ci = (repo / ".ci" / "run").read_text()
    made = [
        target
        for line in ci.splitlines()
        if re.match(r"\s*make\s", line)
        for target in line.split()[1:]
    ]
    wanted = [step.split()[1] for step in steps]
    assert [t for t in made if t in wanted] == wanted, f".ci/run makes {made}"
