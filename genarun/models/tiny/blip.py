"""tiny-blip: BLIP image captioning (BlipForConditionalGeneration + BlipProcessor), 32x32 input."""

from __future__ import annotations

from pathlib import Path

from genarun.models.tiny import tiny_builder
from genarun.models.tiny._shared import bert_tokenizer, seeded


@tiny_builder("tiny-blip")
def build_tiny_blip(target: Path) -> None:
    """Write a loadable BLIP captioner and its processor to `target`."""
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    tokenizer = bert_tokenizer()
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "encoder_hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
        # BLIP starts captions with [DEC] and stops at [SEP].
        "bos_token_id": tokenizer.bos_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision_config = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    config = BlipConfig(text_config=text_config, vision_config=vision_config, projection_dim=32)
    with seeded(0):
        model = BlipForConditionalGeneration(config).eval()
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(target)
    processor.save_pretrained(target)
