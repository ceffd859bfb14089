"""Human steps without a run: answer schemas, recording answers, races, inbox and answer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from genarun.human.answers import (
    AnswerInvalid,
    answer_schema,
    parse_duration,
    read_cli_value,
    tally,
    typed_forms,
    validate_answer,
)
from genarun.store.db import Store
from genarun.store.human import (
    AnswerRefused,
    answers_of,
    close_on_timeout,
    get_request,
    record_answer,
)
from tests.helpers import PATIENCE, query, wait_until
from tests.human_helpers import make_request


def test_each_ask_derives_the_schema_its_answers_must_fit() -> None:
    assert answer_schema("choice", ["a", "b"], None) == {"enum": ["a", "b"]}
    assert answer_schema("multi", ["a", "b"], None)["items"] == {"enum": ["a", "b"]}
    assert answer_schema("best", ["x.png", "y.png", "z.png"], None) == {
        "type": "integer",
        "minimum": 0,
        "maximum": 2,
    }
    assert answer_schema("approve", None, None) == {"type": "boolean"}
    assert answer_schema("number", None, None) == {"type": "number"}
    custom = {"type": "object", "required": ["title"]}
    assert answer_schema("text", None, custom) == custom
    validate_answer(["b", "a"], answer_schema("multi", ["a", "b"], None))
    with pytest.raises(AnswerInvalid, match=r'accepted: "a", "b"'):
        validate_answer("c", answer_schema("choice", ["a", "b"], None))
    with pytest.raises(AnswerInvalid, match="0 to 2"):
        validate_answer(3, answer_schema("best", [1, 2, 3], None))
    with pytest.raises(AnswerInvalid, match="'title' is a required property"):
        validate_answer({}, custom)


@pytest.mark.parametrize(
    ("ask", "options", "custom", "message"),
    [
        ("choice", None, None, "ask: choice needs options"),
        ("multi", [], None, "ask: multi needs options"),
        ("best", None, None, "ask: best needs options"),
        ("choice", ["a", "a"], None, "given twice"),
        ("choice", ["a"], {"type": "string"}, "goes with ask: text"),
        ("text", None, {"type": "strung"}, "not a valid JSON Schema"),
        ("ponder", None, None, "unknown ask"),
    ],
)
def test_questions_that_cannot_be_answered_are_refused(
    ask: str, options: list[str] | None, custom: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        answer_schema(ask, options, custom)


def test_command_line_values_are_read_as_the_question_takes_them() -> None:
    assert read_cli_value("1", {"enum": ["1", "2"]}) == "1"  # a choice named "1" stays text
    assert read_cli_value("1", {"type": "integer", "minimum": 0, "maximum": 3}) == 1
    assert read_cli_value("yes", {"type": "boolean"}) is True
    assert read_cli_value("reject", {"type": "boolean"}) is False
    assert read_cli_value("[a, b]", answer_schema("multi", ["a", "b"], None)) == ["a", "b"]
    assert read_cli_value("2.5", {"type": "number"}) == 2.5
    assert read_cli_value("hello: world", {"type": "string"}) == "hello: world"


def test_an_answer_takes_what_the_inbox_shows_and_the_lists_people_type() -> None:
    """`genarun inbox` numbers the options (`0: red`, `1: green`): a choice answered by its
    number, and several answered as `a, c`, `0, 2`, `[0, 2]` or one value, are read as the
    options they name; an option that is the value typed wins over a position."""
    choice = answer_schema("choice", ["red", "green"], None)
    several = answer_schema("multi", ["a", "b", "c"], None)
    numbers = answer_schema("choice", [1, 2, 3], None)
    cases = [
        ("1", choice, "green"),
        ("green", choice, "green"),
        ("a, c", several, ["a", "c"]),
        ("0, 2", several, ["a", "c"]),
        ("[0, 2]", several, ["a", "c"]),
        ("[a, b]", several, ["a", "b"]),
        ("b", several, ["b"]),
        ("1", several, ["b"]),
        ("1", numbers, 1),  # the option 1, not the option at position 1
        ("0", numbers, 1),  # no option 0: the first one
    ]
    for typed, schema, meant in cases:
        value = read_cli_value(typed, schema)
        validate_answer(value, schema)
        assert value == meant, (typed, schema)
    # out of range is still refused, and the command says how a value may be typed
    assert "0 to 1" in typed_forms(choice) and "`a, b` or `[a, b]`" in typed_forms(several)
    for typed, schema in [("5", choice), ("a, d", several)]:
        with pytest.raises(AnswerInvalid):
            validate_answer(read_cli_value(typed, schema), schema)


def test_genarun_answer_takes_the_number_the_inbox_shows(
    workdir: Path, cli: Callable[..., Result]
) -> None:
    (workdir / "tree.yaml").write_text(
        "genarun: 1\nname: asks\nnodes:\n  - id: colour\n    kind: human\n    ask: choice\n"
        "    question: Which?\n    options: [red, green]\n"
    )
    ran = cli("run", "tree.yaml", "-q")
    assert ran.exit_code == 0
    # what the run waits for, in words (it said `colour: human:colour`), and where to look
    assert "waiting for a person's answer to colour (genarun inbox lists" in ran.output
    assert "human:" not in ran.output
    assert "    1: green" in cli("inbox").output
    wrong = cli("answer", "latest", "colour", "5")
    assert wrong.exit_code == 2 and "number genarun inbox shows beside one, 0 to 1" in wrong.output
    right = cli("answer", "latest", "colour", "1", "--resume")
    assert right.exit_code == 0, right.output
    done = query(workdir / "genarun.db", "SELECT output FROM executions WHERE status = 'done'")
    assert [json.loads(row["output"]) for row in done] == ["green"]


def test_a_poll_tallies_votes_and_ties_go_to_the_first_option() -> None:
    result = tally("choice", ["a", "b", "c"], ["b", "c", "b", "c", "a"])
    assert result == {"winner": "b", "tally": {"a": 1, "b": 2, "c": 2}, "answers": 5}
    assert tally("best", ["x", "y"], [1, 1, 0])["winner"] == "y"
    assert tally("multi", ["a", "b"], [["a", "b"], ["b"]])["tally"] == {"a": 1, "b": 2}
    assert tally("approve", None, [True, False, True])["winner"] is True
    assert tally("choice", ["a"], [])["winner"] is None


def test_durations() -> None:
    assert parse_duration("90s") == 90 and parse_duration("2h") == 7200
    assert parse_duration(1.5) == 1.5 and parse_duration("3d") == 3 * 86400
    for bad in ("soon", "-1", 0, "5 fortnights"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_one_answer_wins_and_the_answer_is_recorded_with_who_when_and_how(
    tmp_path: Path,
) -> None:
    db = tmp_path / "g.db"
    request, token = make_request(db)
    assert len(token) >= 40
    rows = query(db, "SELECT token_hash, status FROM human_requests")
    assert rows[0]["status"] == "waiting" and token not in rows[0]["token_hash"]
    store = Store(db)
    recorded = record_answer(store, request, "green", responder="ana", via="cli")
    assert recorded.closed and recorded.request.result == "green"
    with pytest.raises(AnswerRefused, match="answered already by ana via cli"):
        record_answer(store, request, "blue", responder="bo", via="http")
    with pytest.raises(AnswerInvalid, match="accepted"):
        record_answer(store, request, "purple", responder="bo", via="http")
    [answer] = answers_of(store, request.id)
    assert (answer["value"], answer["responder"], answer["via"]) == ("green", "ana", "cli")
    assert answer["created"] > 0
    store.close()


def test_the_same_idempotency_key_gets_the_first_answer_again(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, _ = make_request(db)
    store = Store(db)
    first = record_answer(store, request, "red", responder="a", via="http", idempotency_key="k1")
    again = record_answer(store, request, "red", responder="a", via="http", idempotency_key="k1")
    assert again.replayed and again.answer_id == first.answer_id
    with pytest.raises(AnswerRefused):
        record_answer(store, request, "red", responder="a", via="http", idempotency_key="k2")
    store.close()


def test_a_poll_takes_one_vote_per_responder_and_closes_with_the_tally(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    request, _ = make_request(db, collect=3)
    store = Store(db)
    assert not record_answer(store, request, "red", responder="a", via="cli").closed
    with pytest.raises(AnswerRefused, match="a has voted already"):
        record_answer(store, request, "blue", responder="a", via="cli")
    assert not record_answer(store, request, "blue", responder="b", via="http").closed
    last = record_answer(store, request, "blue", responder="c", via="http")
    assert last.closed and last.request.result == {
        "winner": "blue",
        "tally": {"red": 1, "green": 0, "blue": 2},
        "answers": 3,
    }
    with pytest.raises(AnswerRefused, match="answered already"):
        record_answer(store, request, "red", responder="d", via="cli")
    store.close()


def test_an_expired_request_refuses_answers_and_a_poll_closes_with_its_votes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "g.db"
    single, _ = make_request(db, timeout=0.2)
    store = Store(db)
    time.sleep(0.3)
    with pytest.raises(AnswerRefused, match="expired"):
        record_answer(store, single, "red", responder="a", via="cli")
    assert close_on_timeout(store, single).status == "expired"
    # A vote within the poll's time (2 s: 0.5 s was not always enough for a busy machine to
    # make the request and record the vote), then closed once the time is up.
    poll, _ = make_request(db, collect=5, timeout=2, node_id="poll")
    record_answer(store, poll, "green", responder="a", via="cli")
    wait_until(poll.expired, "the poll's time to be up", seconds=30)
    closed = close_on_timeout(store, poll)
    assert closed.status == "answered" and closed.result["winner"] == "green"
    store.close()


_RACER = """
import sys
from genarun.store.db import Store
from genarun.store.human import AnswerRefused, get_request, record_answer
store = Store(sys.argv[1])
request = get_request(store, int(sys.argv[2]))
print("ready", flush=True)
sys.stdin.readline()  # start together
try:
    record_answer(store, request, sys.argv[3], responder=sys.argv[3], via="cli")
    print("won")
except AnswerRefused:
    print("409")
"""


@pytest.mark.slow
def test_two_processes_racing_to_answer_exactly_one_wins(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    for attempt in range(2):  # two races, to give the loser more than one chance to slip in
        request, _ = make_request(db, node_id=f"race{attempt}")
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", _RACER, str(db), str(request.id), colour],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for colour in ("red", "blue")
        ]
        for racer in racers:  # both have opened the store and read the request
            assert racer.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        for racer in racers:
            racer.stdin.write("go\n")  # type: ignore[union-attr]
            racer.stdin.flush()  # type: ignore[union-attr]
        outputs = sorted(racer.communicate(timeout=PATIENCE)[0].strip() for racer in racers)
        assert outputs == ["409", "won"]
        store = Store(db)
        answers = answers_of(store, request.id)
        assert len(answers) == 1
        assert get_request(store, request.id).result == answers[0]["value"]
        store.close()


def test_inbox_lists_and_answer_records_through_the_cli(workdir: Path, cli) -> None:
    db = workdir / "genarun.db"
    request, _ = make_request(db)
    poll, _ = make_request(db, node_id="vote", collect=2, timeout=3600)
    result = cli("inbox")
    assert result.exit_code == 0, result.output
    assert f"run {request.run_id[:8]}  pick  (choice" in result.output
    assert "Which colour?" in result.output and "2: blue" in result.output
    assert "poll 0/2 answers" in result.output and "expires in 59m" in result.output
    assert f"genarun answer {request.run_id[:8]} pick VALUE" in result.output

    bad = cli("answer", request.run_id[:8], "pick", "purple")
    assert bad.exit_code == 2 and 'accepted: "red", "green", "blue"' in bad.output
    assert "Traceback" not in bad.output
    missing = cli("answer", request.run_id[:8], "pikc", "red")
    assert missing.exit_code == 2 and "has no human request pikc; it has: pick" in missing.output
    assert "(did you mean 'pick'?)" in missing.output
    ok = cli("answer", request.run_id[:8], "pick", "blue", "--as", "editor")
    assert ok.exit_code == 0 and "answered pick of run" in ok.output and '"blue"' in ok.output
    assert f"genarun resume {request.run_id[:8]}" in ok.output
    again = cli("answer", request.run_id[:8], "pick", "red")
    assert again.exit_code == 2 and "answered already by editor via cli" in again.output
    vote = cli("answer", poll.run_id[:8], "vote", "red", "--as", "a")
    assert vote.exit_code == 0 and "(1/2)" in vote.output

    listed = cli("inbox")
    assert "pick" not in listed.output and "poll 1/2" in listed.output
    gone = cli("answer", "0123abcd", "pick", "red")
    assert gone.exit_code == 2 and "no run matches '0123abcd'" in gone.output
    assert [r["status"] for r in query(db, "SELECT status FROM human_requests ORDER BY id")] == [
        "answered",
        "waiting",
    ]


def test_inbox_shows_each_image_of_a_best_request_once(workdir: Path, cli) -> None:
    """A `best` of images names them as options and as images: each is listed once, as the
    option to pick; an image that is no option is still shown."""
    db = workdir / "genarun.db"
    covers = ["assets/cover-0.png", "assets/cover-1.png"]
    make_request(
        db,
        node_id="best_cover",
        ask="best",
        options=[{"$image": c} for c in covers],
        images=[*covers, "assets/sketch.png"],
    )
    text = cli("inbox")
    assert text.exit_code == 0, text.output
    for cover in covers:
        assert text.output.count(cover) == 1, text.output
    assert "0: assets/cover-0.png" in text.output
    assert "image: assets/sketch.png" in text.output
    [row] = json.loads(cli("inbox", "--json").output)
    assert row["images"] == ["assets/sketch.png"]
    assert row["options"] == [{"$image": c} for c in covers]


def test_a_yes_no_step_given_another_word_lists_every_word_the_cli_takes(
    workdir: Path, cli
) -> None:
    db = workdir / "genarun.db"
    request, _ = make_request(db, node_id="approve_plan", ask="approve", options=None)
    short = request.run_id[:8]
    bad = cli("answer", short, "approve_plan", "maybe")
    assert bad.exit_code == 2 and "Traceback" not in bad.output, bad.output
    assert '"maybe" is not a yes/no answer' in bad.output
    for word in ("true", "yes", "approve", "false", "no", "reject"):
        assert word in bad.output.split("accepted:")[1], bad.output
    assert query(db, "SELECT count(*) AS n FROM human_answers")[0]["n"] == 0
    ok = cli("answer", short, "approve_plan", "No")
    assert ok.exit_code == 0 and "answered approve_plan" in ok.output and "false" in ok.output
