"""Random picks in tree-level `vars:` are recorded (run.json, runs.picks, `runs show`) and
reused by a rerun, `run --only` and `resume` of the run, whatever its seed."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from click.testing import Result
from PIL import Image

from genarun.tree.picks import ReplayRandom, parse_picks
from tests.helpers import query


def _runs(db: Path) -> list:
    return query(db, "SELECT * FROM runs ORDER BY started, rowid")


def _outputs(db: Path, run_id: str) -> dict[str, object]:
    rows = query(db, "SELECT node_id, output FROM executions WHERE run_id = ?", run_id)
    return {r["node_id"]: json.loads(r["output"]) for r in rows if r["output"]}


def _drawn(picks: dict[str, list[dict]]) -> tuple[str, str]:
    """(animal, mood) as drawn: each var's first record is its outermost pick."""
    return picks["animal"][0]["value"], picks["mood"][0]["value"]


def _photo(folder: Path) -> None:
    Image.new("RGB", (8, 8), (20, 120, 40)).save(folder / "photo.png")


def test_tree_var_picks_are_recorded_everywhere(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    _photo(workdir)
    assert cli("run", tree("vars_picks.yaml")).exit_code == 0
    db = workdir / "genarun.db"
    (run,) = _runs(db)
    stored = json.loads(run["picks"])
    assert list(stored) == ["animal", "mood"]  # `title` has no picks of its own
    animal, mood = _drawn(stored)
    assert _outputs(db, run["id"])["intro"] == f"The {mood} {animal}"
    (record,) = stored["animal"]
    assert record["alternatives"][record["chosen"]] == animal
    assert record["weights"] == [1.0] * 10

    run_json = json.loads((Path(run["out_dir"]) / "run.json").read_text())
    assert run_json["picks"] == stored
    shown = cli("runs", "show", run["id"], "--json")
    assert json.loads(shown.stdout)["picks"] == stored
    text = cli("runs", "show", run["id"]).stdout
    assert f"picks    animal={animal}; mood={mood}" in text


def test_only_and_rerun_reuse_the_source_runs_var_draws(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    # No fixed seed, so each --only run has a new seed: without replaying the source's draws
    # `outro` (run anew) would name another animal than `intro` (reused) about 99 times in 100.
    _photo(workdir)
    path = tree("vars_picks.yaml")
    db = workdir / "genarun.db"
    assert cli("run", path).exit_code == 0
    source = _runs(db)[0]
    drawn = json.loads(source["picks"])
    animal, mood = _drawn(drawn)
    for _ in range(3):
        result = cli("run", path, "--only", "outro", "--no-cache")
        assert result.exit_code == 0, result.output
        new = _runs(db)[-1]
        assert new["seed"] != source["seed"]
        assert json.loads(new["picks"]) == drawn
        outputs = _outputs(db, new["id"])
        assert outputs["intro"] == f"The {mood} {animal}"
        assert outputs["outro"].startswith(f"The {mood} {animal} / {animal} / ")
    result = cli("rerun", source["id"], "--node", "intro")
    assert result.exit_code == 0, result.output
    rerun = _runs(db)[-1]
    assert json.loads(rerun["picks"]) == drawn
    assert _outputs(db, rerun["id"])["intro"] == f"The {mood} {animal}"


def test_resume_reuses_the_var_draws(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    path = tree("vars_picks.yaml")
    db = workdir / "genarun.db"
    assert cli("run", path).exit_code == 1  # no photo.png yet
    (run,) = _runs(db)
    drawn = json.loads(run["picks"])
    animal, mood = _drawn(drawn)
    assert _outputs(db, run["id"]) == {"intro": f"The {mood} {animal}"}
    _photo(workdir)
    result = cli("resume", run["id"])
    assert result.exit_code == 0, result.output
    (resumed,) = _runs(db)
    assert json.loads(resumed["picks"]) == drawn
    outputs = _outputs(db, run["id"])
    assert outputs["outro"].startswith(f"The {mood} {animal} / {animal} / A picture of ")
    run_json = json.loads((Path(resumed["out_dir"]) / "run.json").read_text())
    assert run_json["status"] == "completed" and run_json["picks"] == drawn


def test_replay_reproduces_nested_and_weighted_picks_from_any_seed() -> None:
    template = parse_picks("[a [big | small | 0::never] dog | 3::a [red | blue] cat | 0.5::an owl]")
    for seed in range(200):
        text, records = template.render(random.Random(seed))
        stored = [r.to_json() for r in records]
        replay = ReplayRandom(stored)
        again, replayed = template.render(replay)
        assert again == text and replay.matches(replayed)


def test_replay_refuses_picks_that_changed() -> None:
    _text, records = parse_picks("[a | b | c]").render(random.Random(1))
    stored = [r.to_json() for r in records]
    for changed in ("[a | b | d]", "[a | b]", "[a | b | c] [x | y]", "no picks"):
        replay = ReplayRandom(stored)
        _again, drawn = parse_picks(changed).render(replay)
        assert not replay.matches(drawn), changed
