"""The run folder: output.json mirrors the tree, logs.json, PNG assets with metadata, latest/."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import Result
from PIL import Image

from tests.helpers import TREES, genarun_subprocess, query

STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(_\d+)?$")


def run_folder(result: Result) -> Path:
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("output: ")]
    return Path(line.removeprefix("output: "))


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def test_output_json_mirrors_the_tree(
    cli: Callable[..., Result], tree: Callable[[str], Path], workdir: Path
) -> None:
    result = cli("run", tree("blog.yaml"))
    assert result.exit_code == 0, result.output
    folder = run_folder(result)
    assert folder.parent == workdir / "blog" and STAMP.match(folder.name)
    output = read(folder / "output.json")
    assert list(output) == ["plan", "index_page"]
    plan = output["plan"]
    assert list(plan) == ["value", "article"]
    assert isinstance(plan["value"], list) and len(plan["value"]) == 3
    assert len(plan["article"]) == 3
    for i, (title, article) in enumerate(zip(plan["value"], plan["article"], strict=True)):
        # A foreach item's entry names the item it ran for: no pairing with the plan by index.
        assert list(article) == ["item", "value", "cover", "alt_text"]
        assert article["item"] == title
        assert isinstance(article["value"], str)
        assert article["cover"] == f"assets/cover-{i}.png"  # relative to the run folder
        assert (folder / article["cover"]).is_file()
        assert article["alt_text"].startswith("A picture of ")
    assert output["index_page"].startswith("3 articles: ")

    # The same values as the database holds.
    (run,) = query(workdir / "genarun.db", "SELECT id FROM runs")
    stored = {
        (r["node_id"], r["path"]): json.loads(r["output"])
        for r in query(
            workdir / "genarun.db", "SELECT * FROM executions WHERE run_id = ?", run["id"]
        )
    }
    assert stored[("plan", "[]")] == plan["value"]
    assert stored[("article", "[1]")] == plan["article"][1]["value"]
    assert stored[("cover", "[2]")]["$image"] == plan["article"][2]["cover"]


def test_groups_and_references_in_output_json(
    cli: Callable[..., Result], tree: Callable[[str], Path]
) -> None:
    result = cli("run", tree("references.yaml"))
    output = read(run_folder(result) / "output.json")
    assert output == {
        "notes": "notes about 2 topics",
        "topics": ["geckos", "skinks"],
        "section": {
            "per_item": [
                {"item": "geckos", "value": "geckos (0)"},
                {"item": "skinks", "value": "skinks (1)"},
            ],
            "report": "notes about 2 topics / geckos (0), skinks (1)",
        },
    }


def test_skipped_nodes_in_output_json(
    cli: Callable[..., Result], tree: Callable[[str], Path]
) -> None:
    output = read(run_folder(cli("run", tree("conditions.yaml"))) / "output.json")
    assert "switched_off" not in output
    assert output["draft_only"] == "draft text"
    assert output["items"] == [
        {"item": n, "value": f"even {n}" if n % 2 == 0 else None} for n in (1, 2, 3, 4)
    ]


def test_png_assets_carry_their_metadata(
    cli: Callable[..., Result], tree: Callable[[str], Path], workdir: Path
) -> None:
    folder = run_folder(cli("run", tree("blog.yaml")))
    (run,) = query(workdir / "genarun.db", "SELECT id FROM runs")
    covers = query(
        workdir / "genarun.db",
        "SELECT path, params, seed FROM executions WHERE node_id = 'cover' ORDER BY path",
    )
    assert sorted(p.name for p in (folder / "assets").iterdir()) == [
        "cover-0.png",
        "cover-1.png",
        "cover-2.png",
    ]
    for i, cover in enumerate(covers):
        with Image.open(folder / "assets" / f"cover-{i}.png") as image:
            assert image.format == "PNG" and image.size == (32, 24)
            text = image.text
        assert text["genarun:prompt"] == json.loads(cover["params"])["prompt"]
        assert text["genarun:seed"] == str(cover["seed"])
        assert text["genarun:model"] == "dummy"
        assert text["genarun:run"] == run["id"]
        assert text["genarun:node"] == "cover"


def test_logs_json_and_tree_copy(cli: Callable[..., Result], tree: Callable[[str], Path]) -> None:
    path = tree("failing.yaml")
    result = cli("run", path)
    assert result.exit_code == 1
    folder = run_folder(result)
    assert (folder / "tree.yaml").read_text() == path.read_text()
    logs = read(folder / "logs.json")
    (error,) = [entry for entry in logs if entry["level"] == "error"]
    assert error["node"] == "bad" and error["path"] == []
    assert "output is not valid JSON" in error["message"]
    assert isinstance(error["time"], float)
    assert read(folder / "run.json")["status"] == "failed"


def test_json_tree_is_copied_as_json(cli: Callable[..., Result], workdir: Path) -> None:
    path = workdir / "tiny.json"
    path.write_text(
        '{"genarun": 1, "name": "tiny", "nodes": [{"id": "a", "kind": "template", "text": "x"}]}'
    )
    folder = run_folder(cli("run", path))
    assert (folder / "tree.json").read_text() == path.read_text()
    assert read(folder / "output.json") == {"a": "x"}


def test_latest_follows_completed_runs_only(
    cli: Callable[..., Result], tree: Callable[[str], Path], workdir: Path
) -> None:
    path = tree("latest.yaml")
    latest = workdir / "latest-check" / "latest"
    first = run_folder(cli("run", path))
    assert read(latest / "output.json") == {"parsed": ["first"]}
    assert read(latest / "run.json")["run"] == read(first / "run.json")["run"]

    failed = cli("run", path, "--set", "payload=not json")
    assert failed.exit_code == 1
    assert read(run_folder(failed) / "output.json") == {"parsed": None}
    assert read(latest / "output.json") == {"parsed": ["first"]}  # unchanged

    third = run_folder(cli("run", path, "--set", 'payload=["third"]'))
    assert read(latest / "output.json") == {"parsed": ["third"]}
    assert len({first, run_folder(failed), third}) == 3  # one folder per run, even in one second
    assert not list((workdir / "latest-check").glob(".latest*"))


def test_out_sets_the_root_of_run_folders(
    cli: Callable[..., Result], tree: Callable[[str], Path], workdir: Path
) -> None:
    result = cli("run", tree("typed.yaml"), "--out", workdir / "elsewhere")
    folder = run_folder(result)
    assert folder.parent == workdir / "elsewhere" / "typed"
    assert (workdir / "elsewhere" / "typed" / "latest" / "output.json").is_file()
    assert not (workdir / "typed").exists()
    assert (TREES / "typed.yaml").read_text() == (folder / "tree.yaml").read_text()


def test_foreach_over_nothing_is_empty_and_one_that_never_ran_is_absent(
    cli: Callable[..., Result], tree: Callable[[str], Path]
) -> None:
    output = read(run_folder(cli("run", tree("foreach_outputs.yaml"))) / "output.json")
    assert output == {
        "nothing": {"value": [], "each_of_nothing": []},  # ran, over an empty list
        "some": {
            "value": ["a", "b"],
            "each_of_some": [{"item": "a", "value": "a!"}, {"item": "b", "value": "b!"}],
        },
        "off": {"value": None},  # skipped by `when`: its foreach child never ran
    }


def test_foreach_under_a_failed_node_is_absent_and_a_failed_foreach_is_null(
    cli: Callable[..., Result], workdir: Path
) -> None:
    failed_parent = workdir / "failed_parent.yaml"
    failed_parent.write_text(
        "genarun: 1\nname: failed-parent\nnodes:\n"
        "  - id: plan\n    kind: template\n    text: not json\n    parse: json\n"
        "    children:\n"
        "      - id: each\n        kind: template\n        foreach: plan\n"
        "        text: '{{ item }}'\n"
    )
    result = cli("run", failed_parent)
    assert result.exit_code == 1
    assert read(run_folder(result) / "output.json") == {"plan": {"value": None}}

    # Text known as text before the run is refused by validate (tests/test_early_checks.py);
    # an expression's value is known only when it runs.
    not_a_list = workdir / "not_a_list.yaml"
    not_a_list.write_text(
        "genarun: 1\nname: not-a-list\nnodes:\n"
        "  - id: plan\n    kind: template\n    text: \"{{ 'a, b, c' }}\"\n"
        "    children:\n"
        "      - id: each\n        kind: template\n        foreach: plan\n"
        "        text: '{{ item }}'\n"
    )
    result = cli("run", not_a_list)
    assert result.exit_code == 1
    assert read(run_folder(result) / "output.json") == {"plan": {"value": "a, b, c", "each": None}}
    assert f"{not_a_list}:8 node 'each' failed: foreach: expected a list, got str" in result.stderr
    assert "(parse the output it comes from into a list (parse: json or parse: lines)" in (
        result.stderr
    )
    assert "Traceback" not in result.output


def test_logs_json_of_a_run_that_went_well(
    cli: Callable[..., Result], tree: Callable[[str], Path]
) -> None:
    """Not `[]`: when each node started and finished and how, model loads, batch sizes, and
    what came from the cache."""
    path = tree("blog.yaml")
    # A process of its own, so that the model is loaded by this run (and its load logged).
    result = genarun_subprocess("run", path, "--batch-size", "2", cwd=path.parent)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("output: ")]
    logs = read(Path(line.removeprefix("output: ")) / "logs.json")
    assert [e["time"] for e in logs] == sorted(e["time"] for e in logs)
    by_node: dict[str, list[str]] = {}
    for entry in logs:
        by_node.setdefault(entry["node"], []).append(entry["message"])
    assert by_node["plan"] == ["started", by_node["plan"][1]]
    assert by_node["plan"][1].startswith("finished: 1 done (1 execution, ")
    assert by_node["article"][0] == "started"
    assert by_node["article"][-1].startswith("finished: 3 done (3 executions, ")
    assert set(by_node) == {"plan", "article", "cover", "alt_text", "index_page", None}
    models = by_node[None]
    assert all(m.startswith("model dummy (") for m in models)
    loads = [m for m in models if " loaded on cpu in " in m]
    assert len(loads) == 1  # one model, loaded once, by whichever queue asked first
    # Requests of one model with the same settings share batches (of at most 2 here).
    for line in (
        "model dummy (generate for plan): 1 item in 1 batch (sizes 1), busy ",
        "model dummy (generate for article): 3 items in 2 batches (sizes 2, 1), busy ",
        "model dummy (image for cover): 3 items in 2 batches (sizes 2, 1), busy ",
        "model dummy (caption for alt_text): 3 items in 2 batches (sizes 2, 1), busy ",
    ):
        assert any(m.startswith(line) for m in models), (line, models)

    again = cli("run", path)  # identical: every execution comes from the cache
    assert again.exit_code == 0, again.output
    logs = read(run_folder(again) / "logs.json")
    messages = [(e["node"], e["message"]) for e in logs]
    assert ("article", "finished: 3 reused (3 executions, ") in [
        (n, m[: len("finished: 3 reused (3 executions, ")]) for n, m in messages
    ]
    reused = [m for n, m in messages if n == "cover" and m.startswith("reused (cache)")]
    assert len(reused) == 3
