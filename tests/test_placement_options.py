"""Placement options (`ray_num_gpus`, `ray_num_cpus`) are the executor's, never the provider's:
a tree written for Ray runs with any executor, and the providers that check their options
(diffusers rejects an option its pipeline does not take) never see them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genarun.models.base import ModelSpec
from genarun.models.catalog import resolve_model
from genarun.run.runner import RunOptions, run_tree

TREE = """\
genarun: 1
name: placed
seed: 4
models:
  painter: {{provider: diffusers, id: tiny-sd, options: {{steps: 1{extra}}}}}
nodes:
  - id: cover
    kind: image
    model: painter
    prompt: "A lighthouse"
"""


def test_placement_options_reach_the_executor_not_the_provider() -> None:
    spec = ModelSpec("diffusers", "tiny-sd", options=(("ray_num_gpus", 0.4), ("steps", 1)))
    assert spec.option_dict == {"steps": 1}
    assert spec.executor_options == {"ray_num_gpus": 0.4}
    # They still tell two placements apart (another actor each), and survive an alias.
    assert spec.key != ModelSpec("diffusers", "tiny-sd", options=(("steps", 1),)).key
    aliases = {"big": {"id": "tiny-sd", "provider": "diffusers", "options": {"ray_num_cpus": 1}}}
    derived = resolve_model("mine", {**aliases, "mine": {"id": "big", "options": {"steps": 2}}})
    assert derived.executor_options == {"ray_num_cpus": 1}


@pytest.mark.slow  # imports torch and diffusers and builds the tiny painter: about 20 s here
def test_a_tree_written_for_ray_runs_on_the_local_executor(workdir: Path) -> None:
    # The painter's pipeline used to reject `ray_num_gpus` as an unknown call option, so the
    # Ray executor's model failed to load in its actor (and the local executor failed too).
    from PIL import Image

    found = []
    for name, extra in (("plain", ""), ("placed", ", ray_num_gpus: 0.4, ray_num_cpus: 1")):
        tree = workdir / f"{name}.yaml"
        tree.write_text(TREE.format(extra=extra))
        outcome = run_tree(tree, RunOptions(db=workdir / f"{name}.db", out=workdir / name))
        assert outcome.status == "completed", outcome.failures
        (run,) = outcome.runs
        output = json.loads((run.folder / "output.json").read_text())
        with Image.open(run.folder / output["cover"]) as image:
            found.append(image.tobytes())
    assert found[0] == found[1]
