"""tiny-gpt2: GPT-2 with 2 layers of width 32 and a small shipped BPE vocabulary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genarun.models.tiny import tiny_builder
from genarun.models.tiny._shared import gpt2_tokenizer, seeded


def tiny_gpt2_config(tokenizer: Any, *, n_positions: int, **extra: Any) -> Any:
    """GPT-2 with 2 layers of width 32 over the shipped vocabulary; its one special token is
    bos, eos and pad. `extra` makes it a decoder (tiny-vit-gpt2)."""
    from transformers import GPT2Config

    eos = tokenizer.eos_token_id
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        **extra,
    )


@tiny_builder("tiny-gpt2")
def build_tiny_gpt2(target: Path) -> None:
    """Write a loadable GPT-2 causal LM and its tokenizer to `target`."""
    from transformers import GPT2LMHeadModel

    tokenizer = gpt2_tokenizer()
    config = tiny_gpt2_config(tokenizer, n_positions=128)
    with seeded(0):
        model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
