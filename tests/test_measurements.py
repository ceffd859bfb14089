"""Measurements stored per trajectory step: tokens of texts, prompt tokens of images and whether
the painter's text encoder cut the prompt, the PNG's size; all in `export data`."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.helpers import query

TREE = """genarun: 1
name: measured
seed: 3
nodes:
  - id: traj
    kind: cycle
    network: [dummy-t2i, dummy-i2t]
    start: "{start}"
    steps: 4
    embed: [dummy-embed]
"""


def test_steps_record_tokens_truncation_and_size(cli: Callable[..., Result], workdir: Path) -> None:
    long = " ".join(["word"] * 100)  # 102 tokens with start and end: over CLIP's 77
    (workdir / "t.yaml").write_text(TREE.format(start=long))
    result = cli("run", workdir / "t.yaml")
    assert result.exit_code == 0, result.output
    db = workdir / "genarun.db"
    rows = query(db, "SELECT * FROM trajectory_steps ORDER BY step")
    first, caption, second = rows[0], rows[1], rows[2]
    assert (first["prompt_tokens"], first["prompt_truncated"]) == (102, 1)
    assert (
        first["bytes"]
        == (Path(query(db, "SELECT out_dir FROM runs")[0]["out_dir"]) / first["value"])
        .stat()
        .st_size
    )
    assert caption["tokens"] == len(caption["value"].split()) and caption["prompt_tokens"] is None
    assert second["prompt_truncated"] == 0  # a short caption fits
    logs = " ".join(r["message"] for r in query(db, "SELECT message FROM logs"))
    assert "1 of 2 image prompts were longer than the painter's text encoder reads" in logs

    export = cli("export", "data", "latest", "--format", "csv", "--out", workdir / "d")
    assert export.exit_code == 0, export.output
    with (workdir / "d" / "invocations.csv").open() as f:
        exported = list(csv.DictReader(f))
    assert exported[0]["prompt_truncated"] == "true" and exported[0]["prompt_tokens"] == "102"
    assert exported[1]["tokens"] == str(caption["tokens"])
    assert int(exported[0]["bytes"]) == first["bytes"]
