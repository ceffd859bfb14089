"""`genarun tda factors`: which matrix key explains how an experiment's trajectories differ."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result


@pytest.fixture
def experiment(tree: Callable[[str], Path], cli: Callable[..., Result]) -> None:
    result = cli("run", tree("factors_experiment.yaml"))
    assert result.exit_code == 0, result.output


def test_factors_name_the_model_that_makes_the_difference(
    experiment: None, cli: Callable[..., Result], workdir: Path
) -> None:
    # Two painters that paint alike, two captioners that do not: the captioner's position of
    # the network explains the trajectories, the painter's nothing at all.
    result = cli("tda", "factors", "latest", "--json", "--csv", workdir / "f.csv")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.output)
    assert report["trajectories"] == 16 and report["embedding_model"] == "dummy-text-embed"
    factors = {f["key"]: f for f in report["factors"]}
    assert set(factors) == {"network", "network[0]", "network[1]", "prompt", "seed"}
    captioner, painter = factors["network[1]"], factors["network[0]"]
    assert captioner["wasserstein_H1"]["share"] > 0.3 and captioner["wasserstein_H1"]["p"] < 0.01
    assert captioner["entropy"]["H1"]["share"] > 0.5 and captioner["entropy"]["H1"]["p"] < 0.01
    assert painter["wasserstein_H1"]["share"] == pytest.approx(0.0, abs=1e-9)
    assert painter["wasserstein_H1"]["p"] == 1.0
    for key in ("prompt", "seed"):
        assert factors[key]["wasserstein_H1"]["share"] < captioner["wasserstein_H1"]["share"]
    assert report["factors"][0]["key"] in ("network", "network[1]")  # largest share first
    assert captioner["values"] == {"varied (dummy-i2t)": 8, "loopy (dummy-i2t)": 8}
    rows = list(csv.DictReader((workdir / "f.csv").open()))
    assert len(rows) == 5 * 3  # five factors x (H0 entropy, H1 entropy, H1 Wasserstein)
    row = next(r for r in rows if r["key"] == "network[1]" and r["measure"] == "wasserstein_r2")
    assert float(row["share"]) == pytest.approx(captioner["wasserstein_H1"]["share"], rel=1e-5)

    text = cli("tda", "factors", "latest", "--permutations", "99", "--dim", "0").output
    assert "H0 WASSERSTEIN R²" in text and "H1" not in text.split("\n")[2]
    assert "largest share of the topology (H0 Wasserstein): network" in text
    # The same seed, the same p-values.
    again = cli("tda", "factors", "latest", "--permutations", "99", "--dim", "0").output
    assert again == text


def test_factors_refuse_what_they_cannot_answer(
    experiment: None, cli: Callable[..., Result], tree: Callable[[str], Path]
) -> None:
    runs = json.loads(cli("runs", "list", "--json").output)
    one = cli("tda", "factors", runs[0]["id"][:8])
    assert one.exit_code == 2 and "at least three trajectories" in one.output
    assert "Traceback" not in one.output
    unknown = cli("tda", "factors", "latest", "--embedding", "minilm")
    assert unknown.exit_code == 2 and "no embeddings by minilm" in unknown.output
    # One prompt and one seed, three networks: each network has one trajectory, so its share
    # is undefined and says why; the painter's position still has two of one value.
    same = [
        r["id"][:8]
        for r in runs
        if json.loads(r["bindings"])["prompt"] == "a red fox"
        and json.loads(r["bindings"])["seed"] == 1
    ][:3]
    three = cli("tda", "factors", *same, "--permutations", "9")
    assert three.exit_code == 0, three.output
    assert "network: every trajectory has a value of its own" in three.output
    assert "the same for every trajectory: prompt, seed" in three.output
    (alone,) = json.loads(cli("tda", "factors", same[0], same[1], same[2], "--json").output)
    network = next(f for f in alone["factors"] if f["key"] == "network")
    assert network["wasserstein_H1"] == {
        "share": None,
        "p": None,
        "undefined": "every trajectory has a value of its own: nothing varies within a value",
    }
