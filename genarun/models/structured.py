"""Decoding under a JSON Schema for local causal LMs, on llguidance.

Why llguidance (of lm-format-enforcer, xgrammar, outlines and llguidance, all tried here with
transformers 5): it is one dependency-free wheel (Rust, abi3) that reads a Hugging Face fast
tokenizer directly, covers JSON Schema broadly (nested objects, arrays with bounds, enums,
integer bounds, patterns, anyOf, $ref), and computes a step's token mask in microseconds with
no per-schema precompilation, so a new schema costs nothing before the first token. xgrammar
brings a TVM runtime and compiles per tokenizer and schema; outlines brings four packages and
builds a regex index per schema (seconds for nested schemas); lm-format-enforcer is pure Python
and slower per token. llguidance is also what hosted structured outputs run on.

A grammar alone does not make a *random* model finish: a tiny model with random weights wanders
inside a string until its token budget runs out, and a cut answer is invalid JSON. So each row
also keeps the budget: near the end of it, every sampled token is checked by simulating the
shortest way to close the value from the state it would leave (closing quotes, brackets, the
required keys llguidance forces); a token that would leave too little room is replaced by that
closing path. The path is deterministic, so batched rows still equal rows decoded alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genarun.errors import ModelError

# Within this many tokens (plus twice the last closing path) of the end, every step is checked.
_MARGIN = 32


@dataclass
class SchemaTokenizer:
    """A tokenizer as llguidance sees it, with each token's bytes and rank for closing a value."""

    ll: Any  # llguidance.LLTokenizer
    vocab_size: int
    eos: int
    texts: list[bytes] = field(repr=False, default_factory=list)
    # Token ids ordered best-first for ending a value, one order for a position outside a
    # string and one inside: closers first, shorter first among equals.
    closing_order: tuple[np.ndarray, np.ndarray] = field(repr=False, default=(None, None))  # type: ignore[assignment]


def schema_tokenizer(hf_tokenizer: Any, eos: int, vocab_size: int) -> SchemaTokenizer:
    """Wrap a Hugging Face fast tokenizer for llguidance (costs up to a second on big vocabularies:
    keep the result with the loaded model)."""
    import llguidance.hf

    try:
        ll = llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=vocab_size, eos_token=eos)
    except ValueError as exc:  # a slow (Python) tokenizer
        raise ModelError(
            f"constrained decoding (schema:) needs a fast tokenizer: {exc}; use a model whose"
            " folder has tokenizer.json"
        ) from None
    texts = [b"" if ll.is_special_token(t) else ll.decode_bytes([t]) for t in range(vocab_size)]
    ids = np.arange(vocab_size)
    # Special tokens (and empty ones) are never picked to close a value: sorted last.
    lengths = np.array([len(text) or 1000 for text in texts])
    orders = []
    for inside in (False, True):
        scores = np.array([_closing_score(text, inside) for text in texts])
        orders.append(np.lexsort((ids, lengths, -scores)))
    return SchemaTokenizer(ll, vocab_size, eos, texts, (orders[0], orders[1]))


def _closing_score(text: bytes, inside: bool) -> float:
    """How much a token, read from outside or inside a string, does to end a JSON value:
    closing a string or a bracket counts for, opening one against."""
    score = 0.0
    escaped = False
    for byte in text:
        if inside:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # the quote that ends the string
                inside = False
                score += 3
        elif byte == 0x22:
            inside = True
            score -= 1
        elif byte in b"}]":
            score += 2
        elif byte in b"{[":
            score -= 3
        elif byte == 0x2C:  # comma: needed before a required key
            score += 0.5
        elif byte in b"-0":  # a sign or a leading zero (number ranges may allow 000...) ends
            score -= 0.25  # no number: prefer 1-9

    return score - (2 if inside else 0)


def after_bytes(text: bytes, inside: bool, escaped: bool) -> tuple[bool, bool]:
    """Whether a valid JSON prefix is inside a string (and after a backslash) once `text` is
    appended."""
    for byte in text:
        if inside:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                inside = False
        elif byte == 0x22:
            inside = True
    return inside, escaped


def compile_schema(tokenizer: SchemaTokenizer, schema: Mapping[str, Any]) -> str:
    """The llguidance grammar of a JSON Schema; raise ModelError when it cannot be enforced.

    The grammar is compact (no whitespace between tokens) and emits only the properties an
    object names where the schema leaves other ones open: both keep a small model's budget for
    the values the schema asks for, and the answer is still valid under the schema as written.
    """
    from llguidance import LLMatcher

    try:
        grammar = LLMatcher.grammar_from_json_schema(
            json.dumps(closed_objects(schema)), overrides={"whitespace_flexible": False}
        )
    except ValueError as exc:
        raise ModelError(f"schema: cannot be used for constrained decoding: {exc}") from None
    is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar, tokenizer.ll)
    if is_error:
        raise ModelError(
            f"schema: cannot be used for constrained decoding: {'; '.join(messages)}"
            " (simplify the schema, or use a model behind an API that takes it)"
        )
    return grammar


# Keywords whose values are data, not subschemas; and those whose subschemas combine (closing
# one branch of an allOf would contradict the properties another branch adds).
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples", "required", "x-guidance"})
_COMBINING = frozenset({"allOf", "$ref"})


def closed_objects(schema: Any, *, branch: bool = False) -> Any:
    """`schema` with `additionalProperties: false` on each object schema that names its
    properties and says nothing about others (not on an allOf's branches: `branch`)."""
    if isinstance(schema, list):
        return [closed_objects(item, branch=branch) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        key: value if key in _DATA_KEYWORDS else closed_objects(value, branch=key in _COMBINING)
        for key, value in schema.items()
    }
    if (
        not branch
        and isinstance(schema.get("properties"), dict)
        and not _COMBINING & schema.keys()
        and not {"additionalProperties", "patternProperties", "unevaluatedProperties"}
        & schema.keys()
    ):
        out["additionalProperties"] = False
    return out


class RowConstraint:
    """The grammar state of one row of a batch: which tokens it may take next, and, near the
    end of its budget, the closing path that keeps the answer valid."""

    def __init__(self, tokenizer: SchemaTokenizer, grammar: str) -> None:
        from llguidance import LLMatcher

        self.tokenizer = tokenizer
        self.matcher = LLMatcher(tokenizer.ll, grammar, log_level=0)
        self._raise_if_broken()
        self.inside = self.escaped = False  # the answer so far ends inside a string
        # A closing path from the current state (None: not known), and whether it is forced.
        self.plan = self._closing_path(self.matcher, 4096, (False, False))
        self.closing = False
        self.last_path = len(self.plan) if self.plan else _MARGIN
        self._last_after: list[int] | None = None

    def allowed(self) -> np.ndarray:
        """A bool mask over the vocabulary of the tokens the grammar allows next."""
        if self.closing and self.plan:
            mask = np.zeros(self.tokenizer.vocab_size, dtype=bool)
            mask[self.plan[0]] = True
            return mask
        return self._mask(self.matcher)

    def choose(self, token: int, left_after: int) -> int:
        """Take the sampled `token` (one the mask allowed), or the closing path's next token when
        `token` would leave too little of the budget (`left_after` tokens after this one) to
        end the value; returns the token taken."""
        eos = self.tokenizer.eos
        plan = self.plan
        if self.closing and plan:
            token = plan[0]
        elif token != eos and left_after <= 2 * self.last_path + _MARGIN:
            after = self._closing_path_after(token, left_after)
            if after is not None:
                self.last_path = len(after)
            else:
                # The sampled token would leave too little room: close from here instead.
                if plan is None or len(plan) > left_after + 1:
                    plan = self._closing_path(self.matcher, left_after + 1, self._lexed)
                if plan is not None:  # else nothing fits: the answer will fail validation
                    self.closing = True
                    token = plan[0]
        self.plan = plan[1:] if plan and plan[0] == token else None
        if token == eos:
            return token
        if not self.matcher.consume_token(token):
            self._raise_if_broken()
        self.inside, self.escaped = after_bytes(self.tokenizer.texts[token], *self._lexed)
        if self.plan is None and not self.closing and token != eos:
            self.plan = self._last_after
        return token

    @property
    def _lexed(self) -> tuple[bool, bool]:
        return self.inside, self.escaped

    def _closing_path_after(self, token: int, limit: int) -> list[int] | None:
        """The closing path from the state after `token`, if it fits in `limit` tokens."""
        self._last_after = None
        if self.plan and self.plan[0] == token:
            path: list[int] | None = self.plan[1:]
        else:
            probe = self.matcher.deep_copy()
            probe.consume_token(token)
            lexed = after_bytes(self.tokenizer.texts[token], *self._lexed)
            path = self._closing_path(probe, limit, lexed)
        if path is not None and len(path) <= limit:
            self._last_after = path
            return path
        return None

    def _mask(self, matcher: Any) -> np.ndarray:
        bits = np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8)
        return np.unpackbits(bits, bitorder="little")[: self.tokenizer.vocab_size].astype(bool)

    def _closing_path(self, matcher: Any, limit: int, lexed: tuple[bool, bool]) -> list[int] | None:
        """The tokens (ending with eos) that close the value soonest from `matcher`'s state
        (`lexed`: inside a string, after a backslash), by the closing orders; None when they
        exceed `limit`."""
        state = matcher.deep_copy()
        inside, escaped = lexed
        path: list[int] = []
        eos = self.tokenizer.eos
        texts = self.tokenizer.texts
        while len(path) < limit:
            forced = state.compute_ff_tokens()  # a required key, say: no choice to make
            if forced:
                if not state.consume_tokens(forced):
                    return None
                path.extend(forced)
                for token in forced:
                    inside, escaped = after_bytes(texts[token], inside, escaped)
                continue
            mask = self._mask(state)
            if mask[eos] and state.is_accepting():
                path.append(eos)
                return path if len(path) <= limit else None
            mask[eos] = False
            order = self.tokenizer.closing_order[inside]
            candidates = order[mask[order]]
            if not len(candidates):
                return None
            token = int(candidates[0])
            if not state.consume_token(token):
                return None
            path.append(token)
            inside, escaped = after_bytes(texts[token], inside, escaped)
        return None

    def _raise_if_broken(self) -> None:
        if self.matcher.is_error():
            raise ModelError(f"constrained decoding failed: {self.matcher.get_error()}")
