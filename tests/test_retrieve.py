"""The `retrieve` node, base documents, progressive indexing and the novelty guard, on real
SQLite files, minilm's real embeddings, tiny-clip and the dummy provider."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from genarun.retrieval.stored import forget_matrices
from genarun.run.runner import Outcome, RunOptions, run_tree
from tests.helpers import TREES, query

SCENARIOS = TREES / "retrieve"


@pytest.fixture
def trees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The retrieval scenarios (trees and their documents) in a fresh folder."""
    monkeypatch.setenv("GENARUN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    forget_matrices()
    target = tmp_path / "trees"
    shutil.copytree(SCENARIOS, target)
    return target


def _run(path: Path, db: Path, **options: object) -> Outcome:
    outcome = run_tree(path, RunOptions(db=db, **options))
    assert outcome.status == "completed", outcome.failures
    return outcome


def _output(outcome: Outcome) -> dict:
    return json.loads((outcome.folder / "output.json").read_text())


def _logs(db: Path, run_id: str, node: str) -> list[str]:
    rows = query(db, "SELECT message FROM logs WHERE run_id = ? AND node_id = ?", run_id, node)
    return [r["message"] for r in rows]


def test_kitten_retrieves_the_cat_document_first_with_minilm(trees: Path) -> None:
    db = trees / "g.db"
    first = _run(trees / "semantic.yaml", db)
    found = _output(first)["found"]
    assert found[0]["source"]["document"] == "docs/cat.md"
    assert found[0]["score"] > found[1]["score"] + 0.2  # real semantics, not word overlap
    assert found[0]["content"].startswith("# Cats")
    assert found[0]["id"] == "doc:docs/cat.md#0"
    assert query(db, "SELECT count(*) AS n FROM document_vectors")[0]["n"] == 3

    # An edited file re-embeds only the chunk that changed; the others are read back.
    (trees / "docs/cars.md").write_text("# Cars\n\nElectric cars need no oil changes.\n")
    second = _run(trees / "semantic.yaml", db)
    assert any("embedded 1 document chunk(s)" in m for m in _logs(db, second.runs[0].id, "found"))
    assert query(db, "SELECT count(*) AS n FROM document_vectors")[0]["n"] == 4
    third = _run(trees / "semantic.yaml", db)
    assert not any("embedded" in m for m in _logs(db, third.runs[0].id, "found"))


def test_an_image_retrieves_its_own_vector_first_through_tiny_clip(trees: Path) -> None:
    out = _output(_run(trees / "crossmodal.yaml", trees / "g.db"))
    by_image = out["by_image"]
    assert by_image[0]["modality"] == "image"
    assert by_image[0]["content"] == out["cover"]  # the image itself, a path in this run
    assert by_image[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert by_image[1]["modality"] == "text"
    by_text = out["by_text"]
    assert by_text[0]["content"] == "a blue circle"  # a text query reaches texts and images
    assert {m["modality"] for m in by_text} == {"text", "image"}


def test_a_run_retrieves_outputs_of_a_past_run_of_another_tree(trees: Path) -> None:
    db = trees / "g.db"
    writer = _run(trees / "writer.yaml", db)
    stored = query(db, "SELECT node_id, path, model, dim FROM embeddings ORDER BY id")
    assert [(r["node_id"], r["model"], r["dim"]) for r in stored] == [
        ("article", "dummy-text-embed", 32)
    ] * 3
    reader = _output(_run(trees / "reader.yaml", db))["found"]
    assert len(reader) == 3
    assert {m["source"]["run"] for m in reader} == {writer.runs[0].id}
    articles = _output(writer)["plan"]["article"]
    assert {m["content"] for m in reader} == {a["value"] for a in articles}
    assert sorted(m["source"]["item"] for m in reader) == [[0], [1], [2]]
    # Naming the run itself finds the same.
    again = trees / "reader_by_id.yaml"
    again.write_text(
        (trees / "reader.yaml")
        .read_text()
        .replace("runs: all", f"runs: '{writer.runs[0].id[:10]}'")
    )
    assert {m["id"] for m in _output(_run(again, db))["found"]} == {m["id"] for m in reader}


@pytest.mark.parametrize("on_cpu_pool", [False, True], ids=["inline", "compute"])
def test_each_foreach_item_retrieves_what_the_earlier_items_wrote(
    trees: Path, on_cpu_pool: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if on_cpu_pool:  # every search as a Compute effect, as a large one is
        from genarun.nodes import retrieve

        monkeypatch.setattr(retrieve, "COMPUTE_THRESHOLD", 0)
    db = trees / "g.db"
    out = _output(_run(trees / "progressive.yaml", db))
    items = out["article"]
    for index, entry in enumerate(items):
        seen = sorted(m["source"]["item"][0] for m in entry["related"])
        assert seen == list(range(index))  # exactly the earlier items, never itself or later
        texts = {m["content"] for m in entry["related"]}
        assert texts == {items[j]["value"] for j in range(index)}


def test_novelty_guard_regenerates_a_forced_duplicate(trees: Path) -> None:
    db = trees / "g.db"
    outcome = _run(trees / "novelty.yaml", db)
    lines = [entry["value"] for entry in _output(outcome)["line"]]
    assert len(set(lines)) == 3  # the same prompt and seed each time, yet three texts
    messages = [m for m in _logs(db, outcome.runs[0].id, "line") if m.startswith("novelty")]
    records = [json.loads(m[m.index('{"novelty"') :])["novelty"] for m in messages]
    assert [len(r) for r in records] == [1, 2, 3]  # item 1 redrew once, item 2 twice
    assert records[1][0]["passed"] is False and records[1][0]["score"] == pytest.approx(1.0)
    assert records[1][1]["passed"] is True
    # A single attempt keeps the duplicate, with a warning naming the scores.
    single = trees / "novelty_once.yaml"
    single.write_text((trees / "novelty.yaml").read_text().replace("attempts: 3", "attempts: 1"))
    again = _run(single, db)
    assert len({entry["value"] for entry in _output(again)["line"]}) == 1
    warnings = query(
        db,
        "SELECT message FROM logs WHERE run_id = ? AND level = 'warning'",
        again.runs[0].id,
    )
    assert len(warnings) == 2 and "the last is kept" in warnings[0]["message"]


def test_diversity_returns_fewer_duplicates_than_plain_top_k(trees: Path) -> None:
    out = _output(_run(trees / "duplicates.yaml", trees / "g.db"))
    plain = [m["content"] for m in out["plain"]]
    diverse = [m["content"] for m in out["diverse"]]
    assert len(set(plain)) == 1  # three copies of the feeding paragraph
    assert len(set(diverse)) == 3
    assert diverse[0] == plain[0]  # the most relevant still comes first


def test_budget_tokens_returns_everything_that_fits(trees: Path) -> None:
    tree = trees / "budget.yaml"
    text = (trees / "semantic.yaml").read_text().replace("    k: 3\n", "    budget_tokens: {n}\n")
    tree.write_text(text.format(n=10_000))
    assert len(_output(_run(tree, trees / "g.db"))["found"]) == 3  # the whole corpus fits
    tree.write_text(text.format(n=30))
    found = _output(_run(tree, trees / "g.db"))["found"]
    assert [m["source"]["document"] for m in found] == ["docs/cat.md"]  # the best that fits


BAD_TREES = {
    "a from naming a node that embeds nothing": (
        "  - id: text\n    kind: generate\n    model: dummy-llm\n    prompt: hi\n"
        "  - id: found\n    kind: retrieve\n    query: hi\n    from: text\n    model: minilm\n",
        "from: node 'text' embeds nothing",
    ),
    "a model that cannot embed": (
        "  - id: found\n    kind: retrieve\n    query: hi\n    from: documents\n"
        "    model: dummy-llm\n",
        "cannot do 'embed'",
    ),
    "a document path that does not exist": (
        "  - id: found\n    kind: retrieve\n    query: hi\n    from: documents\n"
        "    model: minilm\n",
        "documents: 'missing/' does not exist",
    ),
    "k below 1": (
        "  - id: found\n    kind: retrieve\n    query: hi\n    from: documents\n"
        "    model: minilm\n    k: 0\n",
        "field 'k': must be at least 1",
    ),
    "a node that is not in the tree": (
        "  - id: found\n    kind: retrieve\n    query: hi\n    from: artcle\n    model: minilm\n",
        "no node 'artcle' in the tree",
    ),
    "index: true that nothing searches": (
        "  - id: text\n    kind: generate\n    model: dummy-llm\n    prompt: hi\n    index: true\n",
        "no embedding model is known",
    ),
    "a novelty model that embeds no images": (
        "  - id: cover\n    kind: image\n    model: dummy-t2i\n    prompt: hi\n"
        "    novelty: {against: [cover], model: dummy-text-embed}\n",
        "cannot do 'embed_image'",
    ),
    "a novelty limit above 1, which would never regenerate": (
        "  - id: text\n    kind: generate\n    model: dummy-llm\n    prompt: hi\n"
        "    novelty: {against: [text], model: minilm, max_similarity: 1.5}\n",
        "field 'novelty.max_similarity': max_similarity 1.5 is not a cosine similarity",
    ),
    "documents misspelt in from": (
        "  - id: found\n    kind: retrieve\n    query: hi\n    from: documnts\n    model: minilm\n",
        "no node 'documnts' in the tree (did you mean 'documents'?",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_TREES))
def test_bad_input_is_refused_before_the_run(case: str, workdir: Path, cli) -> None:
    nodes, expected = BAD_TREES[case]
    documents = "documents: [missing/]\n" if "does not exist" in case else "documents: [d.md]\n"
    (workdir / "d.md").write_text("# D\n\nA document.\n")
    tree = workdir / "bad.yaml"
    tree.write_text(f"genarun: 1\nname: bad\n{documents}nodes:\n{nodes}")
    result = cli("run", tree)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "bad.yaml:" in result.output and "Traceback" not in result.output
    assert not (workdir / "genarun.db").exists()  # nothing written


@pytest.mark.slow  # tiny-gpt2 and minilm load and run 12 executions: about 15 s on 2 cores
def test_rag_blog_example_runs_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENARUN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    example = tmp_path / "rag-blog"
    shutil.copytree(Path(__file__).resolve().parents[1] / "examples" / "rag-blog", example)
    outcome = _run(example / "tree.yaml", tmp_path / "g.db")
    articles = _output(outcome)["plan"]["article"]
    assert articles[0]["facts"][0]["source"]["document"] == "docs/feeding.md"  # minilm's sense
    assert articles[1]["facts"][0]["source"]["document"] == "docs/heat-and-light.md"
    assert [len(a["earlier"]) for a in articles] == [0, 1, 2, 3]  # progressive, all fit
    logs = _logs(tmp_path / "g.db", outcome.runs[0].id, "body")
    assert sum(m.startswith("novelty: passed") for m in logs) == 4


def test_a_rerun_keeps_the_retrieved_context(trees: Path, cli) -> None:
    """The matches are the retrieve execution's stored output: a rerun of a node below it sees
    the same context, even after the documents changed."""
    db = trees / "g.db"
    first = _run(trees / "context.yaml", db)
    before = _output(first)["found"]
    # A document that now matches "kitten" better than anything did.
    (trees / "docs" / "kitten.md").write_text("# Kitten\n\nkitten kitten kitten\n")
    result = cli("rerun", first.runs[0].id, "--node", "answer", "--db", db)
    assert result.exit_code == 0, result.output
    rows = query(db, "SELECT id, out_dir FROM runs ORDER BY started")
    assert len(rows) == 2
    again = json.loads((Path(rows[1]["out_dir"]) / "output.json").read_text())
    assert again["found"]["value"] == before["value"]  # the same ids, scores and contents
    assert before["value"][0]["source"]["document"] != "docs/kitten.md"
    fresh = _output(_run(trees / "context.yaml", db))["found"]["value"]
    assert fresh[0]["source"]["document"] == "docs/kitten.md"  # a new run searches anew
