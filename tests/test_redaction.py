"""Secret masking (genarun.redaction) and bounded YAML (genarun.bounded_yaml): what is masked,
what is left alone, and that masked JSON stays JSON."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from genarun.bounded_yaml import YamlBoundsError, load_bounded_yaml
from genarun.nodes.base import ParseError, parse_output
from genarun.redaction import (
    _TRIGGER_WORDS,
    _TRIGGERS,
    forget_secrets,
    redact,
    redact_row,
    redact_value,
    redacting_logger,
    remember_secret,
    rows_left_as_they_are,
    safe_url,
)
from tests.helpers import query

KEY = "sk-proj-Q9w8E7r6T5y4U3i2O1p0-zxcvbnm"


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize(
    "echo",
    [
        KEY,
        KEY.upper(),
        KEY[:-1],  # truncated
        KEY[1:],
        f"{KEY[:8]}{'*' * 20}{KEY[-4:]}",  # the hosted API's style
        f"{KEY[:12]}xxxx{KEY[-3:]}",
        KEY[5:22],  # a middle piece
    ],
)
def test_remembered_secret_and_its_echoes_are_masked(echo: str) -> None:
    remember_secret(KEY + "\r\n")
    masked = redact(f"Incorrect API key provided: {echo}. See the docs.")
    assert masked == "Incorrect API key provided: ***. See the docs."


def test_a_secret_without_key_shape_is_masked_by_value_only() -> None:
    remember_secret("correct horse battery staple")
    assert redact("pw: correct horse battery staple!") == "pw: ***!"
    assert redact("a correct horse, a battery") == "a correct horse, a battery"
    remember_secret("hunter22")  # short: only where it appears whole
    assert redact("hunter22 and hunter2") == "*** and hunter2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJhbGciOi.J9eyJzdWIi0.abc123XYZ", "Authorization: Bearer ***"),
        ("key sk-abcdef0123456789abcdef was refused", "key *** was refused"),
        ("token ghp_abcdefghijklmnop0123456789 here", "token *** here"),
        ("hf_AbCdEfGhIjKlMnOpQrStUv12 in the log", "*** in the log"),
        ("fetch https://ann:s3cret@example.com/x failed", "fetch https://***@example.com/x failed"),
        ("GET /v1?api_key=abcdef123456789&q=1", "GET /v1?api_key=***&q=1"),
        ('{"password": "hunter2hunter2"}', '{"password": "***"}'),
    ],
)
def test_credential_shapes_are_masked_without_knowing_them(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Basic principles of lizard care",
        "Bearer tokens are sent in a header",
        "scikit-learn (sk-learn) and sk-learn-compatible code",
        "max token: 1024",
        "https://example.com/a@b is an odd path",
        "A gecko's keys to happiness: warmth, food, a secret spot.",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_masked_json_stays_json() -> None:
    remember_secret(KEY)
    value = {
        "reply": f'He said "{KEY}" twice: {KEY.upper()}',
        "headers": {"Authorization": f"Bearer {KEY[:-2]}"},
        "password": 'tricky\\"quote-0123456789',
        "list": [f"{KEY[:10]}****{KEY[-4:]}", "plain"],
    }
    masked = redact(json.dumps(value, indent=2))
    decoded = json.loads(masked)
    assert KEY[:8].lower() not in masked.lower()
    assert decoded["list"][1] == "plain"
    assert redact_value(value)["headers"] == {"Authorization": "Bearer ***"}


def test_safe_url_drops_userinfo_and_secret_parameters() -> None:
    assert safe_url("https://u:p4ss@host:8443/v1?key=abcdefgh12345&x=1") == (
        "https://host:8443/v1?key=***&x=1"
    )


def test_redacting_logger_masks_formatted_arguments(caplog: pytest.LogCaptureFixture) -> None:
    remember_secret(KEY)
    logger = redacting_logger("genarun.test.redaction")
    with caplog.at_level(logging.WARNING, logger="genarun.test.redaction"):
        logger.warning("server said %s", f"bad key {KEY[:-1]}")
    assert caplog.records[0].getMessage() == "server said bad key ***"


# --- bounded YAML --------------------------------------------------------------------------


BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_billion_laughs_is_refused_at_once() -> None:
    # Processor time of this thread: a busy machine's other processes take wall time only.
    started = time.thread_time()
    with pytest.raises(YamlBoundsError, match="expands to more than"):
        load_bounded_yaml(BOMB)
    assert time.thread_time() - started < 1


@pytest.mark.parametrize("text", ["&a [*a]", "a: &a {b: *a}", "- &x [1, [2, *x]]"])
def test_recursive_aliases_are_refused(text: str) -> None:
    with pytest.raises(YamlBoundsError, match="refers to a node that contains it"):
        load_bounded_yaml(text)


@pytest.mark.parametrize("text", ["[" * 50_000, "{a: " * 5_000, "- " * 300 + "x"])
def test_deep_nesting_is_refused_quickly(text: str) -> None:
    started = time.thread_time()  # processor time, as above
    with pytest.raises((YamlBoundsError, yaml.YAMLError)):
        load_bounded_yaml(text)
    assert time.thread_time() - started < 1


@pytest.mark.parametrize(
    "text",
    [
        "title: Geckos\ntags: [care, food]\n",
        "base: &base {size: 3, color: green}\nfirst: *base\nsecond: {<<: *base, size: 4}\n",
        "- one\n- two: [1, 2, {three: 3}]\n",
        "plain text: it's [not] {a} problem",
    ],
)
def test_ordinary_yaml_loads_as_safe_load_does(text: str) -> None:
    assert load_bounded_yaml(text) == yaml.safe_load(text)


def test_parse_output_reports_bounds_as_a_parse_error() -> None:
    with pytest.raises(ParseError, match=r"refused: .*expands to more than"):
        parse_output(BOMB, "yaml")
    with pytest.raises(ParseError, match="nested too deeply"):
        parse_output("[" * 100_000 + "]" * 100_000, "json")


_PIECES = [KEY, KEY[:-1], KEY.upper(), "Bearer ", "sk-", "0123456789", '"', "\\", "'", " ", "\n"]
_PIECES += ["://u:p@h/", "api_key=", "password: ", "?key=", "&sig=", "*", "=", ":", "é", "x"]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.sampled_from(_PIECES), max_size=12).map("".join), max_size=6))
def test_masking_never_breaks_json(parts: list[str]) -> None:
    # Stored rows and output files are JSON text masked after serialising: whatever the
    # strings hold (quotes, backslashes, key pieces), the result must still parse.
    remember_secret(KEY)
    for patterns in (True, False):
        text = json.dumps({"value": parts, "nested": {p: p for p in parts}}, ensure_ascii=False)
        decoded = json.loads(redact(text, patterns=patterns))
        assert len(decoded["value"]) == len(parts)
        assert KEY.lower() not in json.dumps(decoded, ensure_ascii=False).lower()


def test_placeholder_keys_do_not_mask_ordinary_words() -> None:
    # Local servers take any key; people set EMPTY or sk-no-key-required, and those words must
    # survive in outputs while the key itself is still masked where it is quoted.
    remember_secret("EMPTY")
    remember_secret("sk-no-key-required")
    assert redact("the box was EMPTY; a license is required") == (
        "the box was EMPTY; a license is required"
    )
    assert redact("Incorrect API key provided: sk-no-key-required.") == (
        "Incorrect API key provided: ***."
    )


_WORD_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-=@:\"' \t0123456789"


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=_WORD_CHARS, max_size=12),
    st.sampled_from(sorted(_TRIGGER_WORDS)),
    st.integers(0, 12),
    st.text(alphabet=_WORD_CHARS, max_size=12),
)
def test_factored_triggers_find_what_the_plain_alternation_finds(
    before: str, word: str, cut: int, after: str
) -> None:
    """The trie-shaped trigger regex is a faster spelling of `word1|word2|...`."""
    plain = re.compile("|".join(re.escape(w) for w in _TRIGGER_WORDS))
    for text in (before + after, before + word + after, before + word[:cut] + after):
        assert bool(_TRIGGERS.search(text.lower())) == bool(plain.search(text.lower()))


_ROW_TEXTS = st.one_of(
    st.none(),
    st.integers(),
    st.sampled_from(["done", "a red gecko", "0123abcdef", KEY, "token=abcdefgh12", "x@y"]),
    st.text(alphabet=_WORD_CHARS, max_size=20),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_ROW_TEXTS, _ROW_TEXTS, _ROW_TEXTS), min_size=1, max_size=6))
def test_a_batch_is_left_as_it_is_only_when_every_row_would_be(rows: list[tuple]) -> None:
    """The store's one scan per batch of execution rows agrees with redact_row row by row."""
    columns = ("params", "output", "input_hash")
    if rows_left_as_they_are(columns, rows):
        for row in rows:
            as_dict = dict(zip(columns, row, strict=True))
            assert redact_row(as_dict) == as_dict


def test_a_batch_with_a_credential_is_redacted_row_by_row(tmp_path: Path) -> None:
    from genarun.store.db import Store

    store = Store(tmp_path / "genarun.db", writing=True)
    run_id = store.create_run(experiment_id=store.create_experiment(name="e"), name="r")
    rows = [
        {
            "run_id": run_id,
            "node_id": "a",
            "path": "[]",
            "kind": "template",
            "status": "done",
            "params": json.dumps({"text": text}),
            "output": json.dumps(text),
        }
        for text in ("plain words", f"use {KEY} here")
    ]
    store.record_executions(rows)
    stored = query(tmp_path / "genarun.db", "SELECT params, output FROM executions ORDER BY id")
    assert stored[0]["params"] == rows[0]["params"]
    assert KEY not in stored[1]["params"] and KEY in stored[1]["output"]  # outputs by value only


def test_hex_texts_cannot_hold_a_trigger_or_a_placeholder() -> None:
    """The batch scan skips columns of hexadecimal digests: that is only sound while every
    trigger word, and the secret placeholder's start, has a character outside them."""
    from genarun.redaction import _HEX
    from genarun.tree.secrets import MARKER_START

    for word in (*_TRIGGER_WORDS, MARKER_START.lower()):
        assert word.strip(_HEX), word
