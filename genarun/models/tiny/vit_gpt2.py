"""tiny-vit-gpt2: VisionEncoderDecoder captioner (ViT encoder + GPT-2 decoder), 32x32 input."""

from __future__ import annotations

from pathlib import Path

from genarun.models.tiny import tiny_builder
from genarun.models.tiny._shared import gpt2_tokenizer, seeded
from genarun.models.tiny.gpt2 import tiny_gpt2_config


@tiny_builder("tiny-vit-gpt2")
def build_tiny_vit_gpt2(target: Path) -> None:
    """Write a loadable ViT+GPT-2 captioner, its image processor and tokenizer to `target`."""
    from transformers import (
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    tokenizer = gpt2_tokenizer()
    eos = tokenizer.eos_token_id
    encoder = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
    )
    decoder = tiny_gpt2_config(tokenizer, n_positions=64, add_cross_attention=True, is_decoder=True)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = eos
    config.pad_token_id = eos
    config.eos_token_id = eos
    with seeded(0):
        model = VisionEncoderDecoderModel(config=config).eval()
    model.save_pretrained(target)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(target)
    tokenizer.save_pretrained(target)
