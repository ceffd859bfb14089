"""The experiments pages of `genarun serve`: the list, one experiment's progress, runs,
trajectories, TDA tables from the stored diagrams and the plots `genarun tda plots` wrote
(drawn in a worker from the page). ASGI test client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.helpers import TREES, app_client, query

TREE = (TREES / "serve" / "trajectories.yaml").read_text()  # also the browser test's


def _experiment(workdir: Path, cli) -> tuple[Path, str, Path]:
    tree = workdir / "trajectories.yaml"
    tree.write_text(TREE)
    result = cli("run", tree)
    assert result.exit_code == 0, result.output
    db = workdir / "genarun.db"
    ((experiment, folder),) = query(db, "SELECT id, out_dir FROM experiments")
    return db, experiment, Path(folder)


def test_the_experiment_page_shows_progress_trajectories_tda_tables_and_written_plots(
    workdir: Path, cli
) -> None:
    db, experiment, folder = _experiment(workdir, cli)
    client = app_client(db)
    listing = client.get("/experiments").text
    assert f'<a href="/experiments/{experiment}">{experiment[:8]}</a>' in listing
    assert "2 completed" in listing and "2 seed x 1 prompt" in listing

    page = client.get(f"/experiments/{experiment[:8]}")
    assert page.status_code == 200
    html = page.text
    runs = [r[0] for r in query(db, "SELECT id FROM runs ORDER BY bindings")]
    for run in runs:
        assert f'<a href="/runs/{run}">{run[:8]}</a>' in html
    assert "seed=1" in html and "seed=2" in html and "prompt=" not in html  # only what varies
    assert "dummy-t2i &gt; dummy-i2t" in html and "6/6" in html
    # The TDA table: one row per stored diagram, entropy as stored (4 significant digits).
    stored = query(db, "SELECT run_id, entropy, diagrams FROM persistence ORDER BY id")
    assert len(stored) == 2
    table = html.split('<table class="tda">')[1].split("</table>")[0]
    for run_id, entropy, diagrams in stored:
        assert f"<td>{run_id[:8]}</td><td>traj</td><td>dummy-embed</td>" in table
        h0 = json.loads(entropy)[0]
        assert f'<td class="num">{h0:.4g}</td>' in table
        features = len(json.loads(diagrams)["diagrams"][0])
        assert f'<td class="num">{features}</td>' in table
    assert "Entropy by matrix value" in html and "<td>seed</td><td>1</td>" in html
    assert "No plots in" in html and "Draw the plots" in html

    # What `genarun tda plots` writes into the experiment's plots/ folder is shown (files
    # written here as it names them; the slow test below has the real command draw them).
    from PIL import Image

    plots = folder / "plots"
    plots.mkdir()
    for name in ("drift_dummy-embed", "entropy_H1_by_seed"):
        Image.new("RGB", (40, 30), "white").save(plots / f"{name}.png")
    (plots / "drift_dummy-embed.csv").write_text("trajectory,step,drift_cosine\nx,0,0.1\n")
    html = client.get(f"/experiments/{experiment}").text
    pngs = sorted(p.name for p in plots.glob("*.png"))
    for name in pngs:
        assert f'<img src="/experiments/{experiment}/plots/{name}"' in html
    assert f'href="/experiments/{experiment}/plots/drift_dummy-embed.csv"' in html
    assert "entropy_H1_by_seed.csv" not in html  # no CSV, no link
    image = client.get(f"/experiments/{experiment}/plots/drift_dummy-embed.png")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    data = client.get(f"/experiments/{experiment}/plots/drift_dummy-embed.csv")
    assert data.headers["content-type"].startswith("text/csv") and "trajectory" in data.text
    (plots / "secret.txt").write_text("no")
    (plots / "link.png").symlink_to(db)
    for name in ("secret.txt", "link.png", "..%2Fgenarun.db", ".hidden.png"):
        assert client.get(f"/experiments/{experiment}/plots/{name}").status_code == 404

    missing = client.get("/experiments/ffff0000")
    assert missing.status_code == 404
    assert "no experiment matches" in missing.text and 'href="/experiments"' in missing.text


def test_read_only_shows_no_draw_button_and_has_no_post_route(workdir: Path, cli) -> None:
    db, experiment, _ = _experiment(workdir, cli)
    client = app_client(db, read_only=True)
    html = client.get(f"/experiments/{experiment}").text
    assert "Draw the plots" not in html and f"genarun tda plots {experiment[:8]} --out" in html
    assert client.post(f"/experiments/{experiment}/plots").status_code in (404, 405)


@pytest.mark.slow
def test_draw_the_plots_runs_tda_plots_in_a_worker(workdir: Path, cli) -> None:
    db, experiment, folder = _experiment(workdir, cli)
    client = app_client(db)
    page = client.get(f"/experiments/{experiment}").text
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    refused = client.post(f"/experiments/{experiment}/plots", data={"csrf": "forged"})
    assert refused.status_code == 403
    sent = client.post(
        f"/experiments/{experiment}/plots", data={"csrf": csrf}, follow_redirects=False
    )
    assert sent.status_code == 303 and "drawing+the+plots+in+a+worker" in sent.headers["location"]
    deadline = time.monotonic() + 240
    while "each with its data as CSV" not in (folder / "plots" / "tda-plots.log").read_text():
        assert time.monotonic() < deadline, (folder / "plots" / "tda-plots.log").read_text()
        time.sleep(0.5)
    html = client.get(f"/experiments/{experiment}").text
    written = sorted(p.name for p in (folder / "plots").glob("*.png"))
    assert "drift_dummy-embed.png" in written and "entropy_H1_by_seed.png" in written
    for name in written:
        assert f'<img src="/experiments/{experiment}/plots/{name}"' in html
    assert "Draw the plots again" in html and "what the last" in html
