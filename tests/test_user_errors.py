"""User mistakes get one precise message (file, line, node, field, fix), a non-zero exit code
and no traceback: failed lookups in templates, unknown Jinja tests and filters, typed fields,
--seed, --set of matrix keys, folders and unwritable paths; and what a rerun does with run.*."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from genarun.errors import TreeError
from genarun.graph.compile import compile_tree
from genarun.tree.validate import read_tree
from tests.helpers import TREES, query

PLAN = """genarun: 1
name: lookups
seed: 1
nodes:
  - id: plan
    kind: template
    parse: json
    text: '{"title": "Geckos", "tags": ["care", "food"], "items": [{"name": "leopard"}]}'
    children:
      - id: use
        kind: template
"""


def _runs(db: Path) -> list[dict]:
    return [dict(r) for r in query(db, "SELECT * FROM runs ORDER BY started, rowid")]


def _executions(db: Path, run_id: str) -> dict[str, dict]:
    rows = query(db, "SELECT * FROM executions WHERE run_id = ? ORDER BY id", run_id)
    return {r["node_id"] + "".join(f"[{i}]" for i in json.loads(r["path"])): dict(r) for r in rows}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            'text: "{{ plan.titel }}"',
            "field 'text': plan has no key 'titel' (did you mean 'title'? its keys: title, tags, items)",
        ),
        (
            "text: \"Title: {{ plan['titel'] }}.\"",
            "field 'text': plan has no key 'titel' (did you mean 'title'?",
        ),
        (
            'text: "{{ plan.tags[5] }}"',
            "field 'text': plan.tags has 2 items, so [5] is out of range (0 to 1 from the start, -1 to -2 from the end)",
        ),
        (
            'text: "{{ plan.title.uper() }}"',
            "field 'text': plan.title is text, which has no attribute 'uper' (did you mean 'upper'?)",
        ),
        (
            'text: "{{ plan.items.name }}"',
            "field 'text': plan.items is a list of 1 item, not an object, so it has no 'name' (its items have it: "
            "one is plan.items[0].name, all are plan.items | map(attribute='name') | list)",
        ),
        (
            'text: "{% for t in plan.items %}{{ t.nam }}{% endfor %}"',
            "field 'text': t has no key 'nam' (did you mean 'name'? its keys: name)",
        ),
        (
            "when: \"plan.titl == 'x'\"\n        text: x",
            "when: plan has no key 'titl' (did you mean 'title'?",
        ),
        (
            'foreach: "plan.tgs"\n        text: x',
            "foreach: plan has no key 'tgs' (did you mean 'tags'?",
        ),
        (
            'vars: {first: "{{ plan.tags[-3] }}"}\n        text: x',
            "vars.first: plan.tags has 2 items, so [-3] is out of range",
        ),
    ],
    ids=[
        "key",
        "item-key",
        "index",
        "method",
        "list-of-objects",
        "loop-variable",
        "when",
        "foreach",
        "vars",
    ],
)
def test_a_failed_lookup_names_node_field_and_what_exists(
    fields: str, message: str, cli: Callable[..., Result], workdir: Path
) -> None:
    path = workdir / "lookups.yaml"
    path.write_text(PLAN + "".join(f"        {line.strip()}\n" for line in fields.splitlines()))
    result = cli("run", path)
    assert result.exit_code == 1, result.output
    assert f"error: {path}:10 node 'use" in result.stderr
    assert message in result.stderr
    assert "dict object" not in result.stderr and "Traceback" not in result.output


def test_an_output_key_wins_over_a_dict_method(cli: Callable[..., Result], workdir: Path) -> None:
    """`plan.items` is plan's field `items` (JSON outputs often have one), not dict.items."""
    path = workdir / "lookups.yaml"
    path.write_text(PLAN + '        text: "{{ plan.items | length }} {{ plan.items[0].name }}"\n')
    assert cli("run", path).exit_code == 0
    run = _runs(workdir / "genarun.db")[-1]
    assert (
        json.loads(_executions(workdir / "genarun.db", run["id"])["use"]["output"]) == "1 leopard"
    )


def test_one_mistake_in_a_typed_field_is_one_message() -> None:
    with pytest.raises(TreeError) as info:
        compile_tree(read_tree(TREES / "invalid" / "typed_values.yaml"))
    fields = [p.message.split("'")[1] for p in info.value.problems]
    assert sorted(fields) == ["max_tokens", "parse", "retries", "seed", "seed"]


# --- --seed --------------------------------------------------------------------------------------
SEEDED = """genarun: 1
name: seeded
seed: 5
nodes:
  - id: pick
    kind: template
    text: "[a | b | c | d | e | f | g | h | i | j | k | l]"
"""


def test_seed_random_on_the_command_line_draws_and_records_a_seed(
    cli: Callable[..., Result], workdir: Path
) -> None:
    path = workdir / "seeded.yaml"
    path.write_text(SEEDED)
    for _ in range(2):
        result = cli("run", path, "--seed", "random")
        assert result.exit_code == 0, result.output
    first, second = _runs(workdir / "genarun.db")
    assert first["seed"] != second["seed"] and 5 not in (first["seed"], second["seed"])
    run_json = json.loads((Path(second["out_dir"]) / "run.json").read_text())
    assert run_json["seed"] == second["seed"] and run_json["seed_random"] is True


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "lucky",
            "a seed is a whole number or 'random', not 'lucky' (for example --seed 42, or --seed random)",
        ),
        ("1.5", "a seed is a whole number or 'random', not '1.5'"),
        (
            "99999999999999999999999",
            "seed 99999999999999999999999 is too large (at most 9223372036854775807",
        ),
    ],
)
def test_a_seed_that_is_not_one_is_refused(
    value: str, message: str, cli: Callable[..., Result], workdir: Path
) -> None:
    path = workdir / "seeded.yaml"
    path.write_text(SEEDED)
    result = cli("run", path, "--seed", value)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (workdir / "genarun.db").exists() or not _runs(workdir / "genarun.db")


def test_seed_option_with_a_matrix_of_seeds_is_refused(
    cli: Callable[..., Result], workdir: Path
) -> None:
    path = workdir / "seeds.yaml"
    path.write_text(SEEDED.replace("seed: 5", "matrix:\n  seed: [1, 2]"))
    result = cli("run", path, "--seed", "3")
    assert result.exit_code == 2
    assert "--seed 3: seed is a matrix key" in result.stderr and "use --set seed=3" in result.stderr
    bad = cli("run", path, "--set", "seed=abc")
    assert bad.exit_code == 2
    assert "--set seed=abc: a seed is a whole number or 'random', not 'abc'" in bad.stderr


# --- --set of matrix keys ------------------------------------------------------------------------
MATRIX = """genarun: 1
name: styles
seed: 1
matrix:
  style: [watercolor, photo]
  size: ["3", "4"]
nodes:
  - id: caption
    kind: template
    text: "{{ style }} {{ size }} {{ size is string }}"
"""


def test_set_of_a_matrix_key_catches_misspelt_values(
    cli: Callable[..., Result], workdir: Path
) -> None:
    path = workdir / "styles.yaml"
    path.write_text(MATRIX)
    for value, hint in (("Photo", "photo"), ("watercolour", "watercolor")):
        result = cli("run", path, "--set", f"style={value}")
        assert result.exit_code == 2
        assert (
            f"{path}:5: --set style={value}: '{value}' is not a value of matrix key 'style' "
            f"(did you mean '{hint}'? values: watercolor, photo)"
        ) in result.stderr
    # Another value on purpose runs; a number written for a text value is that value.
    result = cli("run", path, "--set", "style=oil", "--set", "size=3")
    assert result.exit_code == 0, result.output
    run = _runs(workdir / "genarun.db")[-1]
    assert (
        json.loads(_executions(workdir / "genarun.db", run["id"])["caption"]["output"])
        == "oil 3 True"
    )


# --- folders, paths, databases ---------------------------------------------------------------------
def test_validate_a_folder_checks_the_trees_in_it(
    cli: Callable[..., Result], workdir: Path
) -> None:
    folder = workdir / "trees"
    folder.mkdir()
    (folder / "a.yaml").write_text(SEEDED)
    (folder / "b.json").write_text(
        '{"genarun": 1, "name": "b", "nodes": [{"id": "x", "kind": "grup"}]}'
    )
    (folder / "output.json").write_text('{"pick": "a"}')
    result = cli("validate", folder)
    assert result.exit_code == 2
    assert f"{folder / 'a.yaml'}: valid (1 node)" in result.stdout
    assert "unknown kind 'grup' (did you mean 'group'?)" in result.stderr
    assert f"{folder}: not trees (no 'genarun:' key), left out: output.json" in result.stderr
    (folder / "b.json").unlink()
    assert cli("validate", folder).exit_code == 0
    empty = workdir / "empty"
    empty.mkdir()
    result = cli("validate", empty)
    assert result.exit_code == 2 and "holds no tree file" in result.stderr


def test_run_and_graph_of_a_folder_name_the_trees_in_it(
    cli: Callable[..., Result], workdir: Path
) -> None:
    (workdir / "tree.yaml").write_text(SEEDED)
    for command in ("run", "graph"):
        result = cli(command, workdir)
        assert result.exit_code == 2
        assert (
            f"error: {workdir} is a folder: name a tree file in it ({workdir / 'tree.yaml'})"
            in result.stderr
        )


def test_unwritable_output_folder_and_a_file_that_is_no_database(
    cli: Callable[..., Result], workdir: Path
) -> None:
    path = workdir / "seeded.yaml"
    path.write_text(SEEDED)
    blocker = workdir / "a-file"
    blocker.write_text("")
    result = cli("run", path, "--out", blocker / "outputs")
    assert result.exit_code == 2
    assert (
        f"cannot create the output folder {blocker / 'outputs' / 'seeded'}: a folder on its path is a file"
        in result.stderr
    )
    result = cli("runs", "list", "--db", path)
    assert result.exit_code == 2
    assert f"cannot open the database {path}: file is not a database" in result.stderr
    assert "internal error" not in result.output


def test_runs_show_takes_an_output_folder_and_suggests_latest(
    cli: Callable[..., Result], workdir: Path
) -> None:
    path = workdir / "seeded.yaml"
    path.write_text(SEEDED)
    assert cli("run", path).exit_code == 0
    run = _runs(workdir / "genarun.db")[-1]
    shown = cli("runs", "show", run["out_dir"])
    assert shown.exit_code == 0 and run["id"] in shown.stdout
    typo = cli("runs", "show", "lastest")
    assert typo.exit_code == 2
    assert "'lastest' is not a run (did you mean `latest`?)" in typo.stderr


def test_ctrl_c_during_validate_is_a_message(
    cli: Callable[..., Result], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import genarun.run.tree_checks

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(genarun.run.tree_checks, "compile_with_problems", interrupted)
    result = cli("validate", TREES / "blog.yaml", TREES / "typed.yaml")
    assert result.exit_code == 130
    assert (
        result.stderr
        == f"interrupted while validating {TREES / 'blog.yaml'} (0 of 2 checked); nothing was written\n"
    )


def test_ctrl_c_while_a_command_loads_is_exit_130_not_aborted(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C before the command's own handler is there (its modules load, its options are
    read): `interrupted` and exit 130 as at any other moment, not click's `Aborted!` (exit 1)."""
    from click.testing import CliRunner

    import genarun.cli

    def interrupted(self: object, modules: tuple[str, ...]) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(genarun.cli._LazyGroup, "_load", interrupted)
    result = CliRunner().invoke(genarun.cli.main, ["run", "tree.yaml"])
    assert result.exit_code == 130, result.output
    assert result.stderr == "interrupted\n"


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        ("examples/stroy/tree.yaml", "(examples has no 'stroy': did you mean 'story'?)"),
        (
            "examples/story/tree.yml",
            "(examples/story has no 'tree.yml': did you mean 'tree.yaml'?)",
        ),
        (
            "examples/story/nope.yaml",
            "(examples/story has no 'nope.yaml'; its tree files: tree.yaml)",
        ),
        ("nosuch/tree.yaml", "(this folder has no 'nosuch'; check the path)"),
    ],
)
def test_a_wrong_tree_path_names_the_missing_part_and_the_closest_name(
    workdir: Path, cli: Callable[..., Result], typed: str, hint: str
) -> None:
    (workdir / "examples" / "story").mkdir(parents=True)
    (workdir / "examples" / "story" / "tree.yaml").write_text("genarun: 1\n")
    result = cli("run", typed)
    assert result.exit_code == 2
    assert result.stderr == f"error: {typed}: tree file not found: {typed} {hint}\n"
    assert not (workdir / "genarun.db").exists()


# --- rerun and run.* -------------------------------------------------------------------------------
STAMPED = """genarun: 1
name: stamped
seed: 3
vars:
  stamp: "{{ run.id[:8] }}"
nodes:
  - id: title
    kind: generate
    model: dummy
    prompt: "A title for {{ run.name }}"
  - id: label
    kind: generate
    model: dummy
    prompt: "Run {{ stamp }}"
  - id: body
    kind: generate
    model: dummy
    prompt: "About {{ title }}, {{ label }}"
  - id: footer
    kind: template
    text: "{{ run.started }}"
"""


def test_rerun_runs_again_what_uses_run_id_or_started(
    cli: Callable[..., Result], workdir: Path
) -> None:
    """run.* is the new run's: nodes whose templates read run.id or run.started (here through
    the tree var stamp) run again, so no reused output saw another run's id."""
    db = workdir / "genarun.db"
    path = workdir / "stamped.yaml"
    path.write_text(STAMPED)
    assert cli("run", path).exit_code == 0
    source = _runs(db)[0]
    result = cli("rerun", source["id"][:8], "--node", "title")
    assert result.exit_code == 0, result.output
    assert "label (uses tree var stamp, which uses run.id, new in each run)" in result.stdout
    assert "footer (uses run.started, new in each run)" in result.stdout
    new = _runs(db)[-1]
    after = _executions(db, new["id"])
    assert {n for n, e in after.items() if e["reused_from"] is None} == {
        "title",
        "label",
        "body",
        "footer",
    }
    assert new["id"][:8] in json.loads(after["label"]["params"])["prompt"]
    assert json.loads(after["footer"]["output"]) == new["started"]


def test_only_runs_again_the_needed_nodes_that_use_run_id(
    cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    path = workdir / "stamped.yaml"
    path.write_text(STAMPED)
    assert cli("run", path).exit_code == 0
    source = _runs(db)[0]
    assert cli("run", path, "--only", "body").exit_code == 0
    new = _runs(db)[-1]
    before, after = _executions(db, source["id"]), _executions(db, new["id"])
    assert after["title"]["reused_from"] == before["title"]["id"]  # run.name is the same
    assert after["label"]["reused_from"] is None and after["body"]["reused_from"] is None
    assert new["id"][:8] in json.loads(after["label"]["params"])["prompt"]
    assert "footer" not in after or after["footer"]["status"] == "skipped"


# --- other command-line mistakes ---------------------------------------------------------------
def test_a_device_that_is_none_is_refused_before_running(
    cli: Callable[..., Result], workdir: Path
) -> None:
    path = workdir / "seeded.yaml"
    path.write_text(SEEDED)
    result = cli("run", path, "--device", "gpu")
    assert result.exit_code == 2
    assert (
        "'gpu' is not a device: use cpu, cuda, cuda:N (one GPU of several) or mps (did you mean 'cuda'?)"
        in result.stderr
    )
    assert cli("run", path, "--device", "CUDA:1", "--dry-run").exit_code == 0


def test_only_of_one_item_points_at_rerun(
    cli: Callable[..., Result], tree: Callable[[str], Path]
) -> None:
    path = tree("blog.yaml")
    assert cli("run", path).exit_code == 0
    result = cli("run", path, "--only", "article[1]")
    assert result.exit_code == 2
    assert (
        "--only article[1]: --only takes whole nodes (--only article); to run one foreach item "
        "again, use genarun rerun RUN --node article[1]"
    ) in result.stderr


@pytest.mark.slow
def test_compiling_is_linear_in_the_number_of_nodes() -> None:
    """Each node's scope check once built a set of every other node: a 60,000-node tree took
    minutes to validate. Four times the nodes must take about four times as long, not 16."""
    import gc
    import time

    from genarun.tree.load import load_text
    from genarun.tree.validate import validate_document

    def seconds(n: int) -> float:
        """The best of three, in this thread's processor time: other processes on a loaded
        machine take wall time, not this."""
        best = float("inf")
        for attempt in range(3):  # texts new to the template caches each time
            texts = [f"{{{{ seed }}}} {n}-{attempt}-{i}" for i in range(n)]
            nodes = [{"id": f"n{i}", "kind": "template", "text": t} for i, t in enumerate(texts)]
            text = json.dumps({"genarun": 1, "name": "big", "nodes": nodes}, indent=1)
            loaded = validate_document(load_text(text, "big.json", "json"))
            gc.collect()  # the last attempt's garbage is not this one's work
            start = time.thread_time()
            compile_tree(loaded)
            best = min(best, time.thread_time() - start)
        return best

    assert seconds(6000) / seconds(1500) < 8  # about 4.4 now; 12.7 when it was quadratic


@pytest.mark.parametrize(
    "args",
    [
        ("runs", "list"),
        ("runs", "show", "latest"),
        ("experiments", "list"),
        ("tda", "compute", "latest"),
        ("diff", "a", "b"),
    ],
)
def test_reading_commands_need_a_database_and_never_create_one(
    cli: Callable[..., Result], workdir: Path, args: tuple[str, ...]
) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "no database at" in result.output and "--db" in result.output
    assert not (workdir / "genarun.db").exists()


def test_set_of_a_matrix_key_takes_a_plainly_new_list_or_number(
    cli: Callable[..., Result], workdir: Path
) -> None:
    """A list or a number for a matrix key is a new value on purpose (a network that is not in
    the matrix), never a misspelling; a near-miss of a string value still is."""
    path = workdir / "cycle_experiment.yaml"
    path.write_text((TREES / "cycle_experiment.yaml").read_text())
    network = "[dummy-t2i, dummy-i2t, dummy-llm, dummy-llm]"
    result = cli(
        "run", path, "--set", f"network={network}", "--set", "seed=5",
        "--set", "embedding=dummy-embed", "--set", "prompt=a red fox",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run = _runs(workdir / "genarun.db")[-1]
    bindings = json.loads(run["bindings"])
    assert bindings["network"] == ["dummy-t2i", "dummy-i2t", "dummy-llm", "dummy-llm"]
    assert bindings["seed"] == 5 and run["seed"] == 5
    styles = workdir / "styles.yaml"
    styles.write_text(MATRIX)
    assert cli("run", styles, "--set", "size=5", "--set", "style=oil").exit_code == 0
    result = cli("run", styles, "--set", "style=fotos")
    assert result.exit_code == 2 and "(did you mean 'photo'?" in result.stderr


WITH_DB_TREE = """\
genarun: 1
name: elsewhere
nodes:
  - id: obj
    kind: template
    parse: json
    text: '{"a": 1}'
    children:
      - id: use
        kind: template
        text: "{{ obj.b }}"
  - id: pick
    kind: human
    ask: choice
    question: Which?
    options: [x, y]
"""


def test_hints_to_type_next_carry_the_db_the_command_was_given(
    cli: Callable[..., Result], workdir: Path
) -> None:
    """With --db, every `genarun resume/answer/runs ...` a message tells the user to type next
    carries the same --db (the failure of a run, the inbox, a run not found): copied without
    it, the command looked in ./genarun.db and found no such run."""
    (workdir / "tree.yaml").write_text(WITH_DB_TREE)
    db = "other dir/runs.db"  # quoted where it is printed
    (workdir / "other dir").mkdir()
    failed = cli("run", "tree.yaml", "--db", db)
    assert failed.exit_code == 1, failed.output
    inbox = cli("inbox", "--db", db)
    missing = cli("resume", "zzzz", "--db", db)
    hints = [
        hint
        for result in (failed, inbox, missing)
        for hint in re.findall(r"genarun (?:resume|answer|runs list)[^;`\n]*", result.output)
    ]
    assert len(hints) >= 3, [failed.output, inbox.output, missing.output]
    assert (
        "genarun answer " in inbox.output and "pick VALUE --db 'other dir/runs.db'" in inbox.output
    )
    assert all("--db 'other dir/runs.db'" in hint for hint in hints), hints
    # and the hint works as printed (the run's failure names the resume that finishes it)
    resume = next(h for h in hints if h.startswith("genarun resume "))
    args = shlex.split(resume.split(" runs what failed")[0])[1:]
    again = cli(*args)
    assert "no run" not in again.output and "no database" not in again.output, again.output
    assert not (workdir / "genarun.db").exists()
