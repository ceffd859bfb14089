"""Tiny Flux model `tiny-flux` (FLUX.1-schnell-like): CLIP + T5 text encoders, flow matching.

A real `FluxPipeline` with small random weights, saved with `save_pretrained`; each component
is built right after seeding torch, so every build writes byte-identical weights.
"""

from __future__ import annotations

from pathlib import Path

from genarun.models.tiny import tiny_builder
from genarun.models.tiny._shared import seeded
from genarun.models.tiny.stable_diffusion import (
    TEXT_WIDTH,
    clip_text_config,
    clip_tokenizer,
    tiny_vae,
)

LATENT_CHANNELS = 4
HEAD_DIM = 16
T5_MAX_TOKENS = 64  # the pipeline pads T5 prompts to max_sequence_length; keep it short


@tiny_builder("tiny-flux")
def build_tiny_flux(target: Path) -> None:
    """Flux-like: MMDiT transformer, CLIP (pooled) + T5 (sequence) prompts, flow-match Euler."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel, T5Tokenizer

    from genarun.models.tiny.train_tokenizers import load_t5_vocab

    tokenizer = clip_tokenizer()
    tokenizer_2 = T5Tokenizer(vocab=load_t5_vocab(), extra_ids=0, model_max_length=T5_MAX_TOKENS)
    with seeded(0):
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=LATENT_CHANNELS * 4,  # latents are packed 2x2 into tokens
            num_layers=2,
            num_single_layers=4,
            attention_head_dim=HEAD_DIM,
            num_attention_heads=4,
            joint_attention_dim=TEXT_WIDTH,  # T5 hidden size
            pooled_projection_dim=TEXT_WIDTH,  # CLIP pooled output size
            guidance_embeds=False,  # schnell is guidance-distilled away
            axes_dims_rope=(4, 6, 6),  # sums to HEAD_DIM
        )
    with seeded(1):
        vae = tiny_vae(
            latent_channels=LATENT_CHANNELS,
            scaling_factor=0.3611,
            shift_factor=0.1159,
            use_quant_conv=False,
            use_post_quant_conv=False,
        )
    with seeded(2):
        text_encoder = CLIPTextModel(clip_text_config(tokenizer))
    t5_config = T5Config(
        vocab_size=len(tokenizer_2),
        d_model=TEXT_WIDTH,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer_2.pad_token_id,
        eos_token_id=tokenizer_2.eos_token_id,
        decoder_start_token_id=tokenizer_2.pad_token_id,
    )
    with seeded(3):
        text_encoder_2 = T5EncoderModel(t5_config)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    pipe.save_pretrained(target, safe_serialization=True)
