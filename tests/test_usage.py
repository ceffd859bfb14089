"""Usage and cost of runs (genarun.usage): real runs on the dummy provider with delays and on a
loopback fake OpenAI-compatible server that answers with `usage`; `runs show`, the API's run
JSON and the run page show the same figures; estimates against the runs they estimate;
`--budget` refusing a run and stopping one that `resume` then finishes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from genarun.usage.prices import price_table
from tests.helpers import app_client, query
from tests.providers_server import FakeOpenAIServer

TREE = """\
genarun: 1
name: usage
seed: 5
models:
  writer: {provider: dummy, id: writer, options: {delay: 0.02}, price: {input_per_1m: 1000, output_per_1m: 3000}}
  painter: {provider: dummy, id: painter, options: {delay: 0.02}}
  hosted: {provider: openai, id: gpt-4o-mini, options: {base_url: "BASE"}}
  embedder: {provider: openai, id: text-embedding-3-small, options: {base_url: "BASE", tasks: [embed_text]}}
  unpriced: {provider: openai, id: house-model, options: {base_url: "BASE"}}
nodes:
  - id: topic
    kind: template
    foreach: [cats, dogs, owls]
    text: "a short story about {{ item }}"
    children:
      - id: story
        kind: generate
        model: writer
        prompt: "Write {{ topic }} in five words"
        max_tokens: 20
      - id: cover
        kind: image
        model: painter
        prompt: "{{ topic }}"
        width: 16
        height: 16
      - id: review
        kind: generate
        model: hosted
        prompt: "Review {{ topic }} please"
        max_tokens: 30
      - id: vector
        kind: embed
        model: embedder
        input: "{{ topic }}"
  - id: other
    kind: generate
    model: unpriced
    prompt: One more thing
"""


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as running:
        yield running


def _write(workdir: Path, server: FakeOpenAIServer) -> Path:
    tree = workdir / "tree.yaml"
    tree.write_text(TREE.replace("BASE", server.base_url))
    return tree


def _rows(db: Path, node: str) -> list[dict]:
    return [
        dict(r) for r in query(db, "SELECT * FROM executions WHERE node_id = ? ORDER BY id", node)
    ]


def test_usage_is_recorded_and_shown_alike_by_runs_show_the_api_and_the_page(
    workdir: Path, cli: Callable[..., Result], server: FakeOpenAIServer
) -> None:
    tree = _write(workdir, server)
    ran = cli("run", tree)
    assert ran.exit_code == 0, ran.output
    db = workdir / "genarun.db"

    # Dummy: words stand in for tokens, deterministic. The prompt as rendered, the output's words.
    stories = _rows(db, "story")
    prompt_words = sum(len(json.loads(r["params"])["prompt"].split()) for r in stories)
    output_words = sum(len(json.loads(r["output"]).split()) for r in stories)
    shown = json.loads(cli("runs", "show", "latest", "--json").output)
    nodes = {n["node"]: n for n in shown["usage"]["nodes"]}
    story = nodes["story"]
    assert (story["executions"], story["invocations"]) == (3, 3)
    assert (story["prompt_tokens"], story["completion_tokens"]) == (prompt_words, output_words)
    assert story["batches"] == 1  # the three went to the writer together
    assert story["busy_s"] >= 0.05  # 3 x 0.02 s of delay in one batch
    # The tree's price for the writer, per 1M tokens.
    expected = prompt_words * 1000 / 1e6 + output_words * 3000 / 1e6
    assert story["cost"]["amount"] == pytest.approx(expected)
    assert not story["cost"]["unknown"]
    # The painter is priced by the shipped table's dummy entry: nothing billed, known.
    assert nodes["cover"]["images"] == 3 and nodes["cover"]["cost"]["amount"] == 0
    assert nodes["cover"]["cost"]["text"] == "$0.00"

    # The fake API's `usage`: words of the messages read and of the reply.
    chats = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
    reviews = [c for c in chats if c["model"] == "gpt-4o-mini"]
    assert len(reviews) == 3
    api_prompt = sum(len(c["messages"][-1]["content"].split()) for c in reviews)
    review = nodes["review"]
    assert review["prompt_tokens"] == api_prompt and review["api_calls"] == 3
    api_completion = sum(len(json.loads(r["output"]).split()) for r in _rows(db, "review"))
    assert review["completion_tokens"] == api_completion
    table = price_table()
    price = table.model("openai", "gpt-4o-mini")
    assert price is not None
    assert review["cost"]["amount"] == pytest.approx(
        api_prompt * price.get("input_per_1m") / 1e6
        + api_completion * price.get("output_per_1m") / 1e6
    )
    # Embeddings: one request for the batch of 3, its token count shared by the texts.
    vector = nodes["vector"]
    embeds = [r.body for r in server.requests if r.path.endswith("/embeddings")]
    assert vector["api_calls"] == len(embeds) == 1
    assert vector["prompt_tokens"] == sum(len(t.split()) for t in embeds[0]["input"])
    # A model no entry prices: unknown, never 0; the total says so.
    assert nodes["other"]["cost"]["unknown"] and nodes["other"]["cost"]["amount"] is None
    assert nodes["other"]["cost"]["text"] == "unknown"
    total = shown["usage"]["total"]
    assert total["cost"]["unknown"] and total["cost"]["text"].endswith("+ unknown")
    assert total["invocations"] == 3 + 3 + 3 + 3 + 1
    assert shown["usage"]["prices_as_of"] == table.as_of

    # The same cells in the text of `runs show`, the API's JSON and the run page.
    text = cli("runs", "show", "latest").output
    run_id = shown["run"]
    client = app_client(db)
    api = client.get(f"/api/v1/runs/{run_id}").json()["usage"]
    assert api == shown["usage"]
    page = client.get(f"/runs/{run_id}").text
    section = page[page.index('id="usage"') :]
    usage_lines = text[text.index("usage and cost (") :].splitlines()
    for node in shown["usage"]["nodes"] + [total]:
        line = next(row for row in usage_lines if row.startswith(node["node"] + " "))
        cells = re.split(r"\s{2,}", line.strip())
        assert cells[-1] == node["cost"]["text"]
        row = f'<tr><th scope="row">{cells[0]}</th>' + "".join(f"<td>{c}</td>" for c in cells[1:])
        assert row + "</tr>" in section
    assert f"as of {table.as_of}" in text and f"as of {table.as_of}" in section
    assert "no price for model other" not in text  # named by model, not node
    assert "a price: {input_per_1m" in text
    assert "no price for model unpriced (openai)" in text


def test_a_misspelt_price_key_is_refused_at_validation(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    tree = workdir / "tree.yaml"
    tree.write_text(
        "genarun: 1\nname: p\nmodels:\n"
        "  w: {provider: dummy, id: w, price: {input_per_1M: 2}}\n"
        "nodes:\n  - id: a\n    kind: generate\n    model: w\n    prompt: hi\n"
    )
    result = cli("validate", tree)
    assert result.exit_code == 2
    assert "unknown key 'input_per_1M'" in result.output
    assert "did you mean 'input_per_1m'?" in result.output and "tree.yaml" in result.output
    bad = tree.read_text().replace("input_per_1M: 2", "per_image: -1")
    tree.write_text(bad)
    result = cli("run", tree)
    assert (
        result.exit_code == 2 and "price.per_image must be a number of at least 0" in result.output
    )
    assert not (workdir / "genarun.db").exists() or not query(
        workdir / "genarun.db", "SELECT id FROM runs"
    )


def test_a_user_price_file_overrides_the_table(
    workdir: Path, cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "prices.yaml").write_text(
        "as_of: '2026-11-30'\nproviders:\n  - {provider: dummy, per_image: 0.5, source: our deal}\n"
    )
    monkeypatch.setenv("GENARUN_PRICES", str(workdir / "prices.yaml"))
    (workdir / "tree.yaml").write_text(
        "genarun: 1\nname: p\nseed: 1\nnodes:\n  - id: a\n    kind: image\n    model: dummy\n"
        "    foreach: [1, 2]\n    prompt: 'x {{ item }}'\n    width: 8\n    height: 8\n"
    )
    assert cli("run", "tree.yaml").exit_code == 0
    shown = json.loads(cli("runs", "show", "latest", "--json").output)["usage"]
    assert shown["total"]["cost"]["amount"] == pytest.approx(1.0)
    assert "prices.yaml as of 2026-11-30" in shown["prices"]
    assert any("our deal" in s for s in shown["total"]["cost"]["sources"])
    (workdir / "prices.yaml").write_text("as_of: '2026-11-30'\nmodel: []\n")
    monkeypatch.setenv("GENARUN_PRICES", str(workdir / "prices.yaml"))
    from genarun.usage import prices

    prices._load.cache_clear()
    result = cli("runs", "show", "latest")
    assert result.exit_code == 2 and "unknown key 'model'" in result.output
    assert "did you mean 'models'?" in result.output
    prices._load.cache_clear()


ESTIMATED = """\
genarun: 1
name: est
seed: 9
models:
  writer: {provider: dummy, id: writer, options: {delay: 0.01}, price: {input_per_1m: 500, output_per_1m: 1500}}
nodes:
  - id: topic
    kind: template
    foreach: [one, two, three, four]
    text: "topic {{ item }}"
    children:
      - id: draft
        kind: generate
        model: writer
        prompt: "Write about {{ topic }}"
        max_tokens: 16
"""


def _estimate(cli: Callable[..., Result], *args: str) -> dict[str, dict]:
    result = cli("estimate", "tree.yaml", "--json", *args)
    assert result.exit_code == 0, result.output
    return {row["node"]: row for row in json.loads(result.output)}


def test_estimated_tokens_and_cost_against_the_run(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    (workdir / "tree.yaml").write_text(ESTIMATED)
    before = _estimate(cli)["draft"]
    # From the tree: max_tokens bounds each completion; the prompt's text, ~4 characters a token.
    assert before["usage_from"] == "tree"
    assert before["completion_tokens"] == 4 * 16
    assert before["prompt_tokens"] == round(4 * len("Write about {{ topic }}") / 4)
    assert before["cost"]["amount"] == pytest.approx(
        (4 * len("Write about {{ topic }}") / 4) * 500 / 1e6 + 64 * 1500 / 1e6
    )
    assert cli("run", "tree.yaml").exit_code == 0
    actual = json.loads(cli("runs", "show", "latest", "--json").output)["usage"]
    draft = next(n for n in actual["nodes"] if n["node"] == "draft")
    # The tree's ceiling is an upper bound of what ran.
    assert draft["completion_tokens"] <= before["completion_tokens"]
    # From the run: the same model, kind and max_tokens, a mean per execution; a run of the
    # same tree with the same seed makes the same texts, so the estimate is exact.
    again = _estimate(cli, "--no-cache")["draft"]
    assert again["usage_from"] == "past 4"
    assert again["prompt_tokens"] == draft["prompt_tokens"]
    assert again["completion_tokens"] == draft["completion_tokens"]
    assert again["cost"]["amount"] == pytest.approx(draft["cost"]["amount"])
    # With the cache, all four are reused: nothing to pay.
    cached = _estimate(cli)["draft"]
    assert cached["reused"] == 4 and cached["usage_from"] == "reused"
    text = cli("estimate", "tree.yaml", "--no-cache").output
    assert "TOKENS IN" in text and "COST" in text and "past 4" in text
    assert re.search(r"cost: \$[0-9.]+ \(costs in USD from genarun's price table as of ", text)
    # A raised ceiling is another setting: the past runs do not say, the tree does.
    (workdir / "tree.yaml").write_text(ESTIMATED.replace("max_tokens: 16", "max_tokens: 8"))
    assert _estimate(cli, "--no-cache")["draft"]["usage_from"] == "tree"
    dry = cli("run", "tree.yaml", "--dry-run", "--no-cache").output
    draft_line = next(line for line in dry.splitlines() if line.startswith("draft "))
    assert draft_line.split()[-1] == "tree" and "32" in draft_line.split()  # 4 x max_tokens 8


def test_a_run_over_budget_is_refused_before_anything_is_written(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    (workdir / "tree.yaml").write_text(ESTIMATED)
    refused = cli("run", "tree.yaml", "--budget", "0.05")
    assert refused.exit_code == 2, refused.output
    assert "exceeds --budget $0.05" in refused.output and "nothing was run" in refused.output
    assert "--budget 0.11" in refused.output  # the flag to change, and a value that fits
    assert "draft $0.1" in refused.output
    assert not (workdir / "genarun.db").exists()
    dry = cli("run", "tree.yaml", "--dry-run", "--budget", "0.05")
    assert dry.exit_code == 2 and "exceeds --budget" in dry.output
    ok = cli("run", "tree.yaml", "--budget", "0.2")
    assert ok.exit_code == 0, ok.output


STOPPED = """\
genarun: 1
name: spend
seed: 4
models:
  painter: {provider: dummy, id: painter, options: {delay: 0.2}, price: {per_image: 1.0}}
  planner: {provider: dummy, id: planner}
nodes:
  - id: titles
    kind: generate
    model: planner
    prompt: List 12 titles
    parse: json
    children:
      - id: cover
        kind: image
        foreach: titles
        model: painter
        prompt: "{{ item }}"
        width: 8
        height: 8
"""


def test_a_run_stops_at_its_budget_and_resume_finishes_it(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    (workdir / "tree.yaml").write_text(STOPPED)
    db = workdir / "genarun.db"
    # The foreach's size is unknown before the run: the estimate cannot refuse it; the spend
    # stops it. One image per batch, so the run can stop between them.
    stopped = cli("run", "tree.yaml", "--budget", "4.5", "--batch-size", "1")
    assert stopped.exit_code == 3, stopped.output
    assert "budget reached" in stopped.output and "--budget MORE" in stopped.output
    (run_id, status, error) = query(db, "SELECT id, status, error FROM runs")[0]
    assert status == "interrupted" and "budget reached" in error
    done = query(db, "SELECT path FROM executions WHERE node_id = 'cover' AND status = 'done'")
    assert 5 <= len(done) < 12  # reached at 5 images; the next ones never started
    shown = json.loads(cli("runs", "show", run_id[:8], "--json").output)
    spent = shown["usage"]["total"]["cost"]["amount"]
    assert spent == len(done) and shown["error"].startswith("budget reached")
    # Resume with the same budget: spent already, refused, nothing written.
    again = cli("resume", run_id[:8], "--budget", "4.5")
    assert again.exit_code == 2 and "spent $" in again.output
    assert query(db, "SELECT status FROM runs")[0][0] == "interrupted"
    finished = cli("resume", run_id[:8], "--budget", "20", "--batch-size", "1")
    assert finished.exit_code == 0, finished.output
    rows = query(db, "SELECT path, status FROM executions WHERE node_id = 'cover'")
    paths = [p for p, s in rows if s == "done"]
    assert len(paths) == len(set(paths)) == 12  # each image once: nothing finished was redone
    assert set(p for (p,) in done) <= set(paths)
    final = json.loads(cli("runs", "show", run_id[:8], "--json").output)
    assert final["status"] == "completed"
    assert final["usage"]["total"]["cost"]["amount"] == 12


def test_a_database_from_before_usage_opens_and_says_usage_is_not_recorded(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    import sqlite3

    (workdir / "tree.yaml").write_text(ESTIMATED)
    assert cli("run", "tree.yaml").exit_code == 0
    db = workdir / "genarun.db"
    with sqlite3.connect(db) as conn:  # as an older genarun wrote it: no usage column
        conn.execute("ALTER TABLE executions DROP COLUMN usage")
    shown = cli("runs", "show", "latest")
    assert shown.exit_code == 0, shown.output
    draft = next(line for line in shown.output.splitlines() if line.startswith("draft "))
    assert draft.split()[-1] == "unknown" and " ? " in draft
    assert "usage not recorded (stored by an older genarun)" in shown.output
    assert any(r[1] == "usage" for r in query(db, "PRAGMA table_info(executions)"))
    # The next run records its usage in the same database.
    assert cli("run", "tree.yaml", "--no-cache").exit_code == 0
    latest = json.loads(cli("runs", "show", "latest", "--json").output)["usage"]
    assert next(n for n in latest["nodes"] if n["node"] == "draft")["unrecorded"] == 0


def test_gpu_seconds_are_the_models_share_of_its_busy_time_priced_by_device_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from genarun.models import device
    from genarun.models.base import GeneratedText, Invocation, ModelSpec
    from genarun.store.db import Store
    from genarun.usage.meter import ExecutionUsage, meter_chunk
    from genarun.usage.summary import run_usage

    monkeypatch.setitem(device._GPU_NAMES, "cuda:0", "NVIDIA H100 80GB HBM3")

    class FakeGpuModel:  # what a loaded model tells the meter: its device and GPU share
        device = "cuda:0"
        gpu_share = 0.5

    spec = ModelSpec("transformers", "some/model", "local")
    usages = [ExecutionUsage() for _ in range(4)]
    requests = [
        SimpleNamespace(
            instance=SimpleNamespace(usage=u),
            invoke=SimpleNamespace(invocation=Invocation("generate", "a b c", 1)),
        )
        for u in usages
    ]
    answers = [GeneratedText("x y", tokens=2, prompt_tokens=3) for _ in requests]
    meter_chunk(FakeGpuModel(), spec, "generate", requests, answers, seconds=8.0)
    store = Store(tmp_path / "g.db")
    run_id = store.create_run(name="gpu", started=0.0, ended=8.0, status="completed")
    store.record_executions(
        [
            {"run_id": run_id, "node_id": "n", "path": f"[{i}]", "kind": "generate",
             "status": "done", "started": 0.0, "ended": 8.0, "model": "local",
             "usage": u.to_json()}
            for i, u in enumerate(usages)
        ]
    )  # fmt: skip
    usage = run_usage(store, store.resolve_run(run_id))
    store.close()
    node = usage.nodes[0]
    # 8 s busy for 4 items on half a GPU: 4 GPU-seconds in all, one batch.
    assert node.busy_s == pytest.approx(8.0) and node.gpu_s == pytest.approx(4.0)
    assert node.batches == 1 and (node.prompt_tokens, node.completion_tokens) == (12, 8)
    h100 = price_table().device("NVIDIA H100 80GB HBM3")
    assert h100 is not None
    # The longest class a name holds: an A100 is no A10.
    assert price_table().device("NVIDIA A100-SXM4-80GB") is price_table().devices["A100"]
    assert price_table().device("NVIDIA A10") is price_table().devices["A10"]
    assert node.cost.amount == pytest.approx(4.0 / 3600 * h100.get("per_gpu_hour"))
    assert not node.cost.unknown and "NVIDIA H100" in next(iter(node.cost.sources))
