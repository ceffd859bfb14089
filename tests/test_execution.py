"""Executing trees with the dummy provider: templates, picks, scope, seeds, matrix, failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from PIL import Image

from tests.helpers import query

Run = Callable[..., "Ran"]


class Ran:
    """One `genarun run` through the CLI, and what it stored."""

    def __init__(self, result: Result, db: Path):
        self.result = result
        self.db = db
        rows = query(db, "SELECT * FROM runs ORDER BY started, rowid") if db.exists() else []
        self.runs = [dict(r) for r in rows]

    @property
    def run(self) -> dict[str, Any]:
        return self.runs[-1]

    def executions(self, run_id: str | None = None) -> dict[str, dict[str, Any]]:
        """`node[i][j]` -> the execution row (output, params and picks decoded)."""
        rows = query(
            self.db,
            "SELECT * FROM executions WHERE run_id = ? ORDER BY id",
            run_id or self.run["id"],
        )
        out = {}
        for row in rows:
            e = dict(row)
            for key in ("output", "params", "picks"):
                e[key] = json.loads(e[key]) if e[key] else None
            out[e["node_id"] + "".join(f"[{i}]" for i in json.loads(e["path"]))] = e
        return out

    def outputs(self, run_id: str | None = None) -> dict[str, Any]:
        return {k: e["output"] for k, e in self.executions(run_id).items() if e["status"] == "done"}

    def output_json(self) -> Any:
        return json.loads((Path(self.run["out_dir"]) / "output.json").read_text())


@pytest.fixture
def run(cli: Callable[..., Result], tree: Callable[[str], Path], workdir: Path) -> Run:
    def invoke(name: str, *args: object, expect: int = 0) -> Ran:
        path = workdir / name if (workdir / name).exists() else tree(name)
        result = cli("run", path, *args)
        assert result.exit_code == expect, result.output
        assert "Traceback" not in result.output
        return Ran(result, workdir / "genarun.db")

    return invoke


def test_single_expression_fields_keep_their_type(run: Run) -> None:
    out = run("typed.yaml").outputs()
    assert out["same_plan"] == ["alpha", "beta", "gamma"]
    assert out["first_two"] == ["alpha", "beta"]
    assert out["as_text"] == "plan: alpha,beta,gamma"
    assert out["record"] == {"title": "alpha", "count": 3, "tags": ["alpha", "beta", "gamma"]}


def test_templated_int_fields_reach_the_model_as_ints(run: Run) -> None:
    ran = run("typed.yaml")
    picture = ran.executions()["picture"]
    assert picture["params"]["width"] == 32 and picture["params"]["height"] == 16
    with Image.open(Path(ran.run["out_dir"]) / picture["output"]["$image"]) as image:
        assert image.size == (32, 16)


def test_picks_are_reproducible_and_recorded(run: Run) -> None:
    first = run("picks.yaml").executions()
    again = run("picks.yaml").executions()
    assert {k: e["output"] for k, e in first.items()} == {k: e["output"] for k, e in again.items()}
    assert {k: e["picks"] for k, e in first.items()} == {k: e["picks"] for k, e in again.items()}

    story = first["story"]
    weather, time_of_day = story["picks"]
    assert weather["alternatives"] == ["sunny", "rainy", "windy", "misty"]
    assert time_of_day["alternatives"] == ["morning", "evening", "night"]
    assert f"on a {weather['value']} {time_of_day['value']}." in story["output"]
    for i in range(6):
        (pick,) = first[f"colours[{i}]"]["picks"]
        assert pick["value"] == first[f"colours[{i}]"]["output"]
        assert pick["alternatives"][pick["chosen"]] == pick["value"]
    (size,) = first["poem"]["picks"]
    assert size["weights"] == [2.0, 1.0]
    assert f"A poem about a {size['value']} " in first["poem"]["params"]["prompt"]


def test_another_seed_gives_other_picks(run: Run) -> None:
    base = run("picks.yaml").outputs()
    other = run("picks.yaml", "--seed", "7").outputs()
    assert run("picks.yaml", "--seed", "7").outputs() == other
    colours = [base[f"colours[{i}]"] for i in range(6)]
    assert colours != [other[f"colours[{i}]"] for i in range(6)]
    assert base["poem"] != other["poem"]


def test_seed_option_is_the_run_seed(run: Run) -> None:
    ran = run("picks.yaml", "--seed", "7")
    assert ran.run["seed"] == 7


def test_a_var_is_drawn_once_per_scope(run: Run) -> None:
    for seed in range(5):
        ran = run("picks.yaml", "--seed", seed)
        story = ran.outputs()["story"]
        words = story.split()
        animal = words[1]
        assert words[4] == animal, story  # "The X met another X on ..."
        assert ran.executions()["poem"]["params"]["prompt"].endswith(f" {animal}")


def test_node_vars_are_drawn_once_per_execution(run: Run, workdir: Path) -> None:
    (workdir / "node_vars.yaml").write_text(
        "genarun: 1\nname: node-vars\nseed: 4\nnodes:\n"
        "  - id: each\n    kind: template\n    foreach: [0, 1, 2, 3, 4, 5, 6, 7]\n"
        "    vars:\n      pet: '[cat | dog | newt | owl | eel | yak | gnu | ant]'\n"
        "    text: '{{ pet }}={{ pet }}'\n"
        "    children:\n      - id: child\n        kind: template\n        text: '{{ pet }}'\n"
    )
    out = run("node_vars.yaml").outputs()
    pets = []
    for i in range(8):
        left, right = out[f"each[{i}]"].split("=")
        assert left == right == out[f"child[{i}]"]
        pets.append(left)
    assert len(set(pets)) > 1  # each iteration draws its own


def test_nested_foreach_with_as_and_index(run: Run) -> None:
    out = run("scope.yaml").outputs()
    assert out["shelf[0]"] == "reptiles"
    assert out["shelf[1]"] == "birds"
    assert out["book[0][0]"] == "hello reptiles/geckos at 0.0"
    assert out["book[0][1]"] == "hello reptiles/iguanas at 0.1"
    assert out["book[1][2]"] == "hello birds/wrens at 1.2"
    assert sum(1 for key in out if key.startswith("book[")) == 5


def test_names_inside_an_iteration_and_from_outside(run: Run) -> None:
    out = run("scope.yaml").outputs()
    # Inside shelf[i], `book` is the list of that shelf's books only.
    assert out["shelf_summary[1]"] == (
        "birds holds 3: hello birds/owls at 1.0 + hello birds/finches at 1.1 + hello birds/wrens at 1.2"
    )
    # From outside every foreach, the nested list of all items' outputs.
    assert out["catalogue"] == [
        ["hello reptiles/geckos at 0.0", "hello reptiles/iguanas at 0.1"],
        ["hello birds/owls at 1.0", "hello birds/finches at 1.1", "hello birds/wrens at 1.2"],
    ]
    assert out["names"] == ["reptiles", "birds"]


def test_a_sibling_inside_a_foreach_sees_its_own_iteration(run: Run) -> None:
    ran = run("blog.yaml")
    ex = ran.executions()
    for i in range(3):
        cover = ex[f"cover[{i}]"]["output"]["$image"]
        assert ex[f"alt_text[{i}]"]["params"]["image"] == {
            "$image": cover,
            "sha256": ex[f"cover[{i}]"]["output"]["sha256"],
        }
    index_page = ex["index_page"]["output"]
    assert index_page.startswith("3 articles: ")
    assert index_page.endswith("covers assets/cover-0.png assets/cover-1.png assets/cover-2.png")


def test_foreach_over_a_referenced_node_waits_for_it(run: Run) -> None:
    out = run("references.yaml").outputs()
    assert out["per_item[0]"] == "geckos (0)"
    assert out["per_item[1]"] == "skinks (1)"
    assert out["report"] == "notes about 2 topics / geckos (0), skinks (1)"


def test_when_skips_a_subtree_and_disabled_nodes_do_not_run(run: Run) -> None:
    ran = run("conditions.yaml")
    ex = ran.executions()
    assert ex["final_only"]["status"] == "skipped"
    assert "final_child" not in ex
    assert ex["draft_only"]["status"] == "done"
    assert ex["switched_off"]["status"] == "skipped"
    assert ex["switched_off"]["error"] == "disabled (enabled: false)"
    assert "under_switched_off" not in ex
    assert [ex[f"items[{i}]"]["status"] for i in range(4)] == ["skipped", "done", "skipped", "done"]
    assert ex["items[3]"]["output"] == "even 4"
    assert "3 skipped" in ran.result.stdout or "skipped" in ran.result.stdout


def test_set_overrides_a_var(run: Run) -> None:
    ex = run("conditions.yaml", "--set", "mode=final").executions()
    assert ex["final_only"]["status"] == "done"
    assert ex["final_child"]["output"] == "child of final text"
    assert ex["draft_only"]["status"] == "skipped"


def test_set_of_an_unknown_var_exits_2(run: Run) -> None:
    ran = run("conditions.yaml", "--set", "mood=final", expect=2)
    assert (
        "--set mood: the tree has no var or matrix key 'mood' (did you mean 'mode'?)"
        in ran.result.stderr
    )
    assert ran.runs == []
    assert not ran.db.exists()


def test_node_seeds_fixed_and_random_are_recorded(run: Run) -> None:
    first = run("conditions.yaml").executions()
    second = run("conditions.yaml").executions()
    assert first["fixed"]["seed"] == second["fixed"]["seed"] == 99
    assert first["fixed"]["output"] == second["fixed"]["output"]
    assert first["fresh"]["seed"] != second["fresh"]["seed"]
    assert first["draft_only"]["seed"] == second["draft_only"]["seed"]


def test_random_run_seed_is_recorded(run: Run, workdir: Path) -> None:
    (workdir / "unseeded.yaml").write_text(
        "genarun: 1\nname: unseeded\nseed: random\nnodes:\n"
        "  - id: pick\n    kind: template\n    text: '[a | b | c | d | e | f | g | h | i | j]'\n"
    )
    first = run("unseeded.yaml")
    second = run("unseeded.yaml")
    assert first.runs[0]["seed"] != second.runs[1]["seed"]
    run_json = json.loads((Path(second.run["out_dir"]) / "run.json").read_text())
    assert run_json["seed"] == second.run["seed"] and run_json["seed_random"] is True
    # The recorded seed reproduces the run.
    again = run("unseeded.yaml", "--seed", second.run["seed"])
    assert again.outputs() == second.outputs(second.runs[1]["id"])


def test_adding_a_node_changes_no_other_seed_or_pick(run: Run) -> None:
    before = run("picks.yaml").executions()
    after = run("picks_added.yaml").executions()
    assert set(after) - set(before) == {"intro"}
    for key, execution in before.items():
        assert after[key]["seed"] == execution["seed"], key
        assert after[key]["picks"] == execution["picks"], key
        assert after[key]["output"] == execution["output"], key


def test_matrix_expands_into_runs_of_one_experiment(run: Run, workdir: Path) -> None:
    ran = run("matrix.yaml")
    assert len(ran.runs) == 4
    assert len({r["experiment_id"] for r in ran.runs}) == 1
    bindings = [json.loads(r["bindings"]) for r in ran.runs]
    assert bindings == [
        {"style": "watercolor", "animal": "gecko"},
        {"style": "watercolor", "animal": "bearded dragon"},
        {"style": "photo", "animal": "gecko"},
        {"style": "photo", "animal": "bearded dragon"},
    ]
    for r, b in zip(ran.runs, bindings, strict=True):
        assert ran.outputs(r["id"])["caption"].startswith(f"a {b['style']} {b['animal']}, ")

    stamps = [p for p in (workdir / "matrix").iterdir() if p.name != "latest"]
    assert len(stamps) == 1
    folder = stamps[0]
    assert folder.name[:4].isdigit() and len(folder.name) == len("2025-01-31_12-00-00")
    names = [
        "01_style-watercolor_animal-gecko",
        "02_style-watercolor_animal-bearded-dragon",
        "03_style-photo_animal-gecko",
        "04_style-photo_animal-bearded-dragon",
    ]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == names
    assert [Path(r["out_dir"]) for r in ran.runs] == [folder / n for n in names]
    experiment = json.loads((folder / "experiment.json").read_text())
    assert experiment["experiment"] == ran.run["experiment_id"]
    assert experiment["matrix"] == {
        "style": ["watercolor", "photo"],
        "animal": ["gecko", "bearded dragon"],
    }
    assert [e["folder"] for e in experiment["runs"]] == names
    assert [e["run"] for e in experiment["runs"]] == [r["id"] for r in ran.runs]
    for name in names:
        output = json.loads((folder / name / "output.json").read_text())
        assert set(output) == {"caption"}
    assert sorted(p.name for p in (workdir / "matrix" / "latest").iterdir() if p.is_dir()) == names


def test_matrix_seed_key_and_set_fixing_a_key(run: Run, workdir: Path) -> None:
    (workdir / "seeds.yaml").write_text(
        "genarun: 1\nname: seeds\nmatrix:\n  seed: [1, 2, 3]\nnodes:\n"
        "  - id: pick\n    kind: template\n    text: '[a | b | c | d | e | f | g | h | i | j | k]{{ seed }}'\n"
    )
    ran = run("seeds.yaml")
    assert [r["seed"] for r in ran.runs] == [1, 2, 3]
    assert [ran.outputs(r["id"])["pick"][-1] for r in ran.runs] == ["1", "2", "3"]
    fixed = run("seeds.yaml", "--set", "seed=2")
    assert [r["seed"] for r in fixed.runs[3:]] == [2]
    assert fixed.outputs() == ran.outputs(ran.runs[1]["id"])


def test_a_failing_node_fails_the_run_and_keeps_finished_outputs(run: Run) -> None:
    ran = run("failing.yaml", expect=1)
    assert "failing.yaml:13 node 'bad' failed: output is not valid JSON" in ran.result.stderr
    assert "Traceback" not in ran.result.stderr
    ex = ran.executions()
    assert ex["bad"]["status"] == "failed"
    assert ex["bad"]["error"].startswith(
        "output is not valid JSON: Expecting value at line 1 column 1 (fix the text so it is "
        "valid JSON, or write parse: text); its text is kept: genarun runs show "
    )
    assert ex["good"]["status"] == "done" and ex["good"]["output"] == "fine"
    assert ran.run["status"] == "failed"
    assert "bad: output is not valid JSON" in ran.run["error"]
    output = ran.output_json()
    assert output["good"]["value"] == "fine"
    assert output["bad"] is None
    assert not (Path(ran.run["out_dir"]).parent / "latest").exists()


def test_a_slow_branch_does_not_block_an_unrelated_one(run: Run) -> None:
    delay = 2.0  # the slow model's `delay` option in concurrency.yaml
    ex = run("concurrency.yaml").executions()
    slow = ex["slow_branch"]
    assert slow["status"] == "done" and slow["duration"] >= delay
    quick = [e for key, e in ex.items() if key.startswith("quick")]
    assert len(quick) == 7
    # Every quick execution (three levels of model calls) ended while the slow call was out.
    assert max(e["ended"] for e in quick) < slow["ended"] - delay / 2
    assert ex["after_both"]["started"] >= slow["ended"]
    assert ex["after_both"]["output"].endswith(" / 3")
