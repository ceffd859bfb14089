"""The content-addressed execution cache: identical executions are reused from any run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from genarun.run.reuse import cache_key
from genarun.values import ImageRef
from tests.helpers import query


def _runs(db: Path) -> list:
    return query(db, "SELECT * FROM runs ORDER BY started, rowid")


def _executions(db: Path, run_id: str) -> dict[str, dict]:
    rows = query(db, "SELECT * FROM executions WHERE run_id = ? ORDER BY id", run_id)
    return {r["node_id"] + "".join(f"[{i}]" for i in json.loads(r["path"])): dict(r) for r in rows}


def test_second_run_is_served_from_the_cache(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    path = tree("rerun_blog.yaml")
    assert cli("run", path).exit_code == 0
    second = cli("run", path)
    assert second.exit_code == 0
    # Model executions come from the cache; the template is re-rendered (cheaper than a lookup).
    assert ": 1 done, 8 reused" in second.output  # the summary line
    first_run, second_run = _runs(db)
    before, after = _executions(db, first_run["id"]), _executions(db, second_run["id"])
    assert after["summary"]["reused_from"] is None
    assert after["summary"]["output"] == before["summary"]["output"]
    after = {label: e for label, e in after.items() if e["kind"] != "template"}
    for label, e in after.items():
        assert e["reused_from"] == before[label]["id"]
        assert e["cache_key"] == before[label]["cache_key"] is not None
        assert e["output"] == before[label]["output"]
    image = json.loads(after["cover[1]"]["output"])
    copied = Path(second_run["out_dir"]) / image["$image"]
    assert hashlib.sha256(copied.read_bytes()).hexdigest() == image["sha256"]
    assert json.loads((Path(first_run["out_dir"]) / "output.json").read_text()) == json.loads(
        (Path(second_run["out_dir"]) / "output.json").read_text()
    )

    shown = cli("runs", "show", second_run["id"])
    assert "FLAGS" in shown.output and shown.output.count("reused") >= 8
    data = json.loads(cli("runs", "show", second_run["id"], "--json").output)
    assert all(
        e["reused"] and e["reused_from"] for e in data["executions"] if e["kind"] != "template"
    )
    logs = json.loads((Path(second_run["out_dir"]) / "logs.json").read_text())
    assert sum("reused (cache)" in line["message"] for line in logs) == 8

    third = cli("run", path, "--no-cache")
    assert third.exit_code == 0 and ": 9 done" in third.output


def test_random_seed_nodes_are_not_served_from_the_cache(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    path = tree("rerun_blog.yaml")
    path.write_text(
        path.read_text().replace(
            '    prompt: "Contents for', '    seed: random\n    prompt: "Contents for'
        )
    )
    assert cli("run", path).exit_code == 0
    assert cli("run", path).exit_code == 0
    first_run, second_run = _runs(db)
    before, after = _executions(db, first_run["id"]), _executions(db, second_run["id"])
    assert after["contents"]["reused_from"] is None
    assert after["contents"]["seed"] != before["contents"]["seed"]
    assert after["contents"]["cache_key"] != before["contents"]["cache_key"]
    # The template depending on it re-renders; here its text does not use the output.
    assert after["summary"]["reused_from"] is None


def test_a_changed_parameter_misses_and_so_do_its_dependents(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    db = workdir / "genarun.db"
    path = tree("rerun_blog.yaml")
    assert cli("run", path).exit_code == 0
    path.write_text(path.read_text().replace("[briefly | at length]", "[briefly | in depth]"))
    assert cli("run", path).exit_code == 0
    first_run, second_run = _runs(db)
    before, after = _executions(db, first_run["id"]), _executions(db, second_run["id"])
    assert after["plan"]["reused_from"] is not None
    articles = ("article[0]", "article[1]", "article[2]")
    # The same seed draws the same alternative: exactly the articles that said "at length"
    # now say "in depth" and miss; the others are identical executions and hit. Seed 5 gives
    # both kinds, so both halves of the claim are tested.
    long = {lbl for lbl in articles if "at length" in before[lbl]["params"]}
    assert long and long != set(articles), "seed 5 no longer draws both alternatives"
    for label in articles:
        if label in long:
            assert after[label]["reused_from"] is None
            assert "in depth" in after[label]["params"]
        else:
            assert after[label]["reused_from"] is not None
            assert after[label]["params"] == before[label]["params"]
    assert after["cover[0]"]["reused_from"] is not None  # covers do not use the article
    # The summary quotes the first article: it re-renders exactly when that article ran again.
    assert (after["summary"]["output"] == before["summary"]["output"]) == ("article[0]" not in long)


def test_cache_key_covers_model_seed_and_image_content() -> None:
    base = cache_key("image", {"prompt": "a"}, "dummy:dummy[]", 1)
    assert cache_key("image", {"prompt": "a"}, "dummy:dummy[]", 2) != base
    assert cache_key("image", {"prompt": "a"}, "dummy:other[]", 1) != base
    assert cache_key("generate", {"prompt": "a"}, "dummy:dummy[]", 1) != base
    # Images are addressed by their bytes, not by where they lie.
    root = Path("run")
    one = {"image": ImageRef("assets/a.png", root, "abc")}
    two = {"image": ImageRef("assets/b.png", root, "abc")}
    three = {"image": ImageRef("assets/a.png", root, "def")}
    assert cache_key("caption", one, None, 1) == cache_key("caption", two, None, 1)
    assert cache_key("caption", one, None, 1) != cache_key("caption", three, None, 1)
    # A model's dict that looks like an image tag is data: it is not addressed as an image.
    fake = {"image": {"$image": "assets/a.png", "sha256": "abc"}}
    assert cache_key("caption", fake, None, 1) != cache_key("caption", one, None, 1)
