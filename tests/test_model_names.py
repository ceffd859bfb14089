"""Outputs name the real model beside the tree's alias for it (`painter`): PNG metadata,
`runs show`, exports, trajectory tables, plots and `tda compare`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from genarun.models.catalog import resolve_model
from genarun.models.weights import resolved, resolved_text
from tests.helpers import query

DUMMY_T2I = {"model": "dummy-t2i", "provider": "dummy", "revision": "", "weights": ""}


def test_resolved_names_catalog_model_provider_and_weights() -> None:
    spec = resolve_model("painter", {"painter": "tiny-sd"})
    record = resolved(spec)
    assert record["model"] == "tiny-sd" and record["provider"] == "diffusers"
    assert record["weights"].startswith("tiny-v")  # the tiny build: other weights, other name
    assert resolved_text("painter", record) == f"painter = tiny-sd (diffusers, {record['weights']})"


@pytest.fixture
def aliased(tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path) -> Path:
    result = cli("run", tree("aliased_models.yaml"))
    assert result.exit_code == 0, result.output
    return workdir / "genarun.db"


def test_png_metadata_and_runs_show_name_the_resolved_model(
    aliased: Path, cli: Callable[..., Result]
) -> None:
    from PIL import Image

    run = query(aliased, "SELECT id, out_dir FROM runs ORDER BY started LIMIT 1")[0]
    for png in ("assets/cover.png", "assets/traj-0.png"):
        with Image.open(Path(run["out_dir"]) / png) as img:
            meta = {k.removeprefix("genarun:"): v for k, v in img.text.items()}
        assert (meta["model"], meta["model_id"], meta["provider"]) == (
            "painter",
            "dummy-t2i",
            "dummy",
        )
    shown = json.loads(cli("runs", "show", run["id"][:8], "--json").output)
    assert shown["models"]["painter"] == DUMMY_T2I
    assert shown["models"]["embedder"]["model"] == "dummy-embed"
    cycle = next(e for e in shown["executions"] if e["node"] == "traj")
    assert cycle["model"] == "painter > captioner"
    assert {n: r["model"] for n, r in cycle["resolved_models"].items()} == {
        "painter": "dummy-t2i",
        "captioner": "dummy-i2t",
    }
    text = cli("runs", "show", run["id"][:8]).output
    assert "painter = dummy-t2i (dummy)" in text


def test_exports_plots_and_compare_name_the_resolved_model(
    aliased: Path, cli: Callable[..., Result], workdir: Path
) -> None:
    pyarrow = pytest.importorskip("pyarrow.parquet")
    result = cli("export", "data", "latest", "--out", workdir / "data", "--format", "parquet")
    assert result.exit_code == 0, result.output
    steps = pyarrow.read_table(workdir / "data" / "invocations.parquet").to_pylist()
    assert {(s["model"], s["model_id"], s["model_provider"]) for s in steps} == {
        ("painter", "dummy-t2i", "dummy"),
        ("captioner", "dummy-i2t", "dummy"),
    }
    trajectories = pyarrow.read_table(workdir / "data" / "trajectories.parquet").to_pylist()
    assert {t["network_models"] for t in trajectories} == {'["dummy-t2i", "dummy-i2t"]'}
    vectors = pyarrow.read_table(workdir / "data" / "embeddings.parquet").to_pylist()
    assert {(v["model"], v["model_id"]) for v in vectors} == {("embedder", "dummy-embed")}
    runs = pyarrow.read_table(workdir / "data" / "runs.parquet").to_pylist()
    assert json.loads(runs[0]["models"])["painter"] == DUMMY_T2I
    assert (
        cli("export", "data", "latest", "--out", workdir / "csv", "--format", "csv").exit_code == 0
    )
    assert "model_id" in (workdir / "csv" / "invocations.csv").read_text().splitlines()[0]

    images = cli("export", "images", "latest", "--out", workdir / "imgs")
    assert images.exit_code == 0, images.output
    from PIL import Image

    with Image.open(sorted((workdir / "imgs").iterdir())[0]) as img:
        assert (
            img.text["genarun:model_id"] == "dummy-t2i" and img.text["genarun:model"] == "painter"
        )

    compared = cli("tda", "compare", "latest", "--dim", "0")
    assert "H0 diagrams of embedder = dummy-embed (dummy) embeddings" in compared.output

    from genarun.experiments.plots import _value

    models = {"painter": DUMMY_T2I, "captioner": {**DUMMY_T2I, "model": "dummy-i2t"}}
    assert _value(["painter", "captioner"], models) == "painter>captioner (dummy-t2i>dummy-i2t)"
    assert cli("tda", "plots", "latest", "--out", workdir / "plots").exit_code == 0
