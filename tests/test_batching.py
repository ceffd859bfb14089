"""How the executor batches model calls: a model's `max_batch` option, and the per-model
statistics a run reports (batches, items, busy seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from genarun.run.runner import RunOptions, run_tree

TREE = """
genarun: 1
name: batching
seed: 3
models:
  writer: {{provider: dummy, id: dummy{options}}}
nodes:
  - id: numbers
    kind: template
    text: "{{{{ range(7) | list }}}}"
    children:
      - id: line
        kind: generate
        foreach: numbers
        model: writer
        prompt: "a line about {{{{ item }}}}"
"""


def run(workdir: Path, options: str, batch_size: int = 16):
    path = workdir / "batching.yaml"
    # `delay` makes every invocation take a known time, for the busy-seconds statistic.
    extra = options.removeprefix(", options: {").removesuffix("}")
    options = ", options: {delay: 0.01" + (f", {extra}" if extra else "") + "}"
    path.write_text(TREE.format(options=options))
    outcome = run_tree(path, RunOptions(db=workdir / "genarun.db", batch_size=batch_size))
    assert outcome.status == "completed", outcome.failures
    return outcome


@pytest.mark.parametrize(
    ("options", "batch_size", "batches"),
    [
        ("", 16, [7]),  # one call for the whole foreach
        (", options: {max_batch: 3}", 16, [3, 3, 1]),  # the model's option bounds each call
        ("", 2, [2, 2, 2, 1]),  # --batch-size bounds what the executor hands over
    ],
)
def test_max_batch_option_bounds_each_call(
    workdir: Path, options: str, batch_size: int, batches: list[int]
) -> None:
    outcome = run(workdir, options, batch_size)
    (stats,) = outcome.model_stats
    assert (stats["task"], stats["items"], stats["batches"]) == ("generate", 7, len(batches))
    assert stats["mean_batch"] == round(7 / len(batches), 1)
    # the model's busy time: at least its 7 invocations of `delay` seconds each
    assert 7 * 0.01 <= stats["seconds"] < 30


def test_outputs_do_not_depend_on_batching(workdir: Path) -> None:
    whole = run(workdir, "")
    texts = [r.value for _, r in sorted(whole.runs[0].results["line"].items())]
    small = run(workdir, ", options: {max_batch: 2}", batch_size=3)
    assert [r.value for _, r in sorted(small.runs[0].results["line"].items())] == texts
    assert len(set(texts)) == 7
