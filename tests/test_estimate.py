"""`genarun estimate`: its figures checked against real runs of a tree on a dummy model with a
delay (planned executions, reuse by the cache, time per execution, API calls)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from genarun.store.db import Store

TREE = """\
genarun: 1
name: estimate-me
seed: 3
models:
  slow: {provider: dummy, id: dummy, options: {delay: 0.05}}
  remote: {provider: openai, id: gpt-test, options: {base_url: "http://127.0.0.1:9/v1"}}
nodes:
  - id: topics
    kind: generate
    model: slow
    prompt: List 3 titles
    parse: json
    children:
      - id: each
        kind: generate
        foreach: topics
        model: slow
        prompt: "Write {{ item }}"
  - id: fixed
    kind: template
    foreach: [1, 2, 3, 4]
    text: "{{ item }}"
  - id: asked
    kind: generate
    model: remote
    when: "false"
    prompt: never sent
"""


def _estimate(cli: Callable[..., Result], *args: str) -> dict[str, dict]:
    result = cli("estimate", "tree.yaml", "--json", *args)
    assert result.exit_code == 0, result.output
    return {row["node"]: row for row in json.loads(result.output)}


def _executions(workdir: Path) -> list[dict]:
    store = Store(workdir / "genarun.db")
    try:
        run_id = store.list_runs(1)[0]["id"]
        return [dict(r) for r in store.run_executions(run_id)]
    finally:
        store.close()


def test_estimate_matches_runs_of_the_tree(workdir: Path, cli: Callable[..., Result]) -> None:
    (workdir / "tree.yaml").write_text(TREE)
    # Before any run: sizes the tree fixes are known, the rest is not; no history, no reuse.
    # No database is created by estimating.
    before = _estimate(cli)
    assert not (workdir / "genarun.db").exists()
    assert (before["topics"]["planned"], before["topics"]["planned_from"]) == (1, "tree")
    assert (before["fixed"]["planned"], before["fixed"]["planned_from"]) == (4, "tree")
    assert (before["each"]["planned"], before["each"]["planned_from"]) == (None, "unknown")
    assert before["topics"]["median_s"] is None and before["topics"]["reused"] == 0
    # One request per execution of an API model (a `when` decides at run time: counted).
    assert before["asked"]["api_calls"] == 1 and before["topics"]["api_calls"] == 0
    table = cli("estimate", "tree.yaml").output
    assert "total: unknown" in table and "? (unknown)" in table

    assert cli("run", "tree.yaml").exit_code == 0
    first = _executions(workdir)
    after = _estimate(cli)
    ran = {n: [r for r in first if r["node_id"] == n] for n in ("topics", "each", "fixed")}
    assert (after["each"]["planned"], after["each"]["planned_from"]) == (3, "last run")
    for node, rows in ran.items():
        assert after[node]["planned"] == len(rows)
        assert after[node]["api_calls"] == 0
    # Same text, same fixed seed: every model execution of the last run is reused; a
    # template is never cached, so it runs again.
    assert [after[n]["reused"] for n in ("topics", "each", "fixed")] == [1, 3, 0]
    assert [after[n]["to_run"] for n in ("topics", "each", "fixed")] == [0, 0, 4]
    # Times are the run's own: the median and 90th percentile of its executions per kind and
    # model, and a delayed dummy call takes at least its delay.
    slow = sorted(r["duration"] for r in first if r["model"] == "slow")
    assert after["each"]["samples"] == len(slow) == 4
    assert after["each"]["median_s"] == statistics.median(slow) >= 0.05
    assert after["each"]["p90_s"] == slow[-1]
    assert after["topics"]["median_s"] == after["each"]["median_s"]  # same kind and model

    # The estimate's reuse is what the next run reuses.
    assert cli("run", "tree.yaml").exit_code == 0
    second = _executions(workdir)
    for node in ran:
        reused = [r for r in second if r["node_id"] == node and r["reused_from"] is not None]
        assert len(reused) == after[node]["reused"]
    # Another seed renders other executions: nothing reused, every one planned to run.
    other = _estimate(cli, "--seed", "4")
    assert other["fixed"]["reused"] == 0 and other["each"]["to_run"] == 3
    assert other["each"]["total_median_s"] == 3 * other["each"]["median_s"]
    assert _estimate(cli, "--no-cache")["fixed"]["reused"] == 0
    # `run --dry-run` prints the same estimate after its check, and runs nothing.
    dry = cli("run", "tree.yaml", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert cli("estimate", "tree.yaml").output in dry.output
    store = Store(workdir / "genarun.db")
    try:
        assert len(store.list_runs(50)) == 2
    finally:
        store.close()


def test_estimate_of_a_bad_tree_is_a_user_error(workdir: Path, cli: Callable[..., Result]) -> None:
    (workdir / "tree.yaml").write_text(TREE.replace("kind: template", "kind: templat"))
    result = cli("estimate", "tree.yaml")
    assert result.exit_code == 2
    assert "tree.yaml" in result.output and "Traceback" not in result.output


KNOWN_LISTS = """\
genarun: 1
name: known-lists
seed: 5
vars:
  subject: lizards
models:
  w: {provider: dummy, id: dummy}
nodes:
  - id: plan
    kind: template
    parse: yaml
    text: |
      - Feeding
      - Housing
      - Handling
    children:
      - id: article
        kind: generate
        foreach: plan
        as: title
        model: w
        prompt: "Write {{ title }}"
        children:
          - id: section
            kind: template
            foreach: "{{ sizes }}"
            text: "{{ title }} {{ item }}"
  - id: sizes
    kind: template
    parse: json
    text: '["s", "m"]'
  - id: firsts
    kind: template
    foreach: "{{ plan[:2] }}"
    text: "{{ item }}"
  - id: lines
    kind: template
    parse: lines
    text: "one\\ntwo\\n\\nthree\\nfour"
    children:
      - id: per_line
        kind: template
        foreach: lines
        text: "{{ item }}"
  - id: picked
    kind: template
    parse: lines
    text: "a\\n[b | b\\nc]"
  - id: per_pick
    kind: template
    foreach: picked
    text: "{{ item }}"
  - id: reads
    kind: template
    parse: lines
    text: "{{ subject }}\\nx"
  - id: per_read
    kind: template
    foreach: reads
    text: "{{ item }}"
"""


def test_estimate_counts_a_foreach_over_a_template_known_before_the_run(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    """A foreach over a template whose text reads nothing and draws no pick (its output is
    known before the run: yaml, json, lines, an expression over it, nested loops) is counted,
    and the count is the run's; one that draws a pick or reads a var stays unknown."""
    (workdir / "tree.yaml").write_text(KNOWN_LISTS)
    rows = _estimate(cli)
    assert cli("run", "tree.yaml").exit_code == 0
    ran: dict[str, int] = {}
    for row in _executions(workdir):
        ran[row["node_id"]] = ran.get(row["node_id"], 0) + 1
    counted = ("plan", "article", "section", "sizes", "firsts", "lines", "per_line")
    assert {n: rows[n]["planned"] for n in counted} == {n: ran[n] for n in counted}
    assert (ran["article"], ran["section"], ran["firsts"], ran["per_line"]) == (3, 6, 2, 4)
    assert all(rows[n]["planned_from"] == "tree" for n in counted)
    # A pick may change the list's length, a var may be set with --set: not known beforehand.
    assert rows["per_pick"]["planned"] is None and rows["per_read"]["planned"] is None
