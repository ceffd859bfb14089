"""Helpers the tiny-model builders share: seeded construction and the shipped tokenizer files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TOKENIZERS_DIR = Path(__file__).resolve().parent.parent / "tokenizers"


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch for a build without disturbing the caller's random state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def gpt2_tokenizer() -> Any:
    """The shipped byte-level BPE tokenizer, GPT-2 style (one special token for bos/eos/pad)."""
    from transformers import GPT2Tokenizer

    folder = TOKENIZERS_DIR / "gpt2-bpe"
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    # transformers 5 takes the vocabulary itself; merges must be (left, right) tuples.
    merges = [
        tuple(line.split(" "))
        for line in (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#version")
    ]
    tokenizer = GPT2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.model_max_length = 128
    return tokenizer


def bert_tokenizer() -> Any:
    """The shipped uncased WordPiece tokenizer, BERT style, with BLIP's [DEC] start token."""
    from transformers import BertTokenizer

    lines = (TOKENIZERS_DIR / "bert-wordpiece" / "vocab.txt").read_text(encoding="utf-8")
    vocab = {token: i for i, token in enumerate(lines.splitlines())}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, bos_token="[DEC]")
    tokenizer.model_max_length = 64
    return tokenizer
