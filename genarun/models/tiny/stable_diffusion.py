"""Tiny Stable Diffusion models: `tiny-sd` (SD-Turbo-like) and `tiny-sdxl` (SDXL-Turbo-like).

Real diffusers architectures with small random weights, saved with `save_pretrained` so
`DiffusionPipeline.from_pretrained(folder)` loads them like real checkpoints. Every component
is created right after seeding torch, so each build writes byte-identical weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genarun.models.tiny import tiny_builder
from genarun.models.tiny._shared import seeded

IMAGE_SIZE = 64  # default width and height of the tiny models' images
TEXT_WIDTH = 32  # hidden size of the tiny text encoders
MAX_TOKENS = 77  # CLIP's prompt length, kept so prompts truncate as they do in real models
# The Turbo models' Euler schedulers: SD's scaled-linear betas, one step from the last timestep.
TURBO_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "timestep_spacing": "trailing",
    "prediction_type": "epsilon",
    "steps_offset": 1,
}


def clip_tokenizer() -> Any:
    """The shipped CLIP-style tokenizer (trained once by train_tokenizers.py)."""
    from transformers import CLIPTokenizer

    from genarun.models.tiny.train_tokenizers import load_clip_tokenizer_files

    vocab, merges = load_clip_tokenizer_files()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)


def clip_text_config(tokenizer: Any, *, projection_dim: int = TEXT_WIDTH) -> Any:
    """A two-layer CLIP text encoder config sized to the tokenizer."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=projection_dim,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_vae(*, latent_channels: int = 4, **extra: Any) -> Any:
    """A four-level AutoencoderKL: the real 8x downscale, with very few channels."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
        **extra,
    )


def _unet(**extra: Any) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_head_dim=(2, 4),
        norm_num_groups=16,
        **extra,
    )


@tiny_builder("tiny-sd")
def build_tiny_sd(target: Path) -> None:
    """SD-Turbo-like: UNet + VAE + one CLIP text encoder, 1-step trailing Euler."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel

    tokenizer = clip_tokenizer()
    with seeded(0):
        unet = _unet(cross_attention_dim=TEXT_WIDTH)
    with seeded(1):
        vae = tiny_vae()
    with seeded(2):
        text_encoder = CLIPTextModel(clip_text_config(tokenizer))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(**TURBO_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(target, safe_serialization=True)


@tiny_builder("tiny-sdxl")
def build_tiny_sdxl(target: Path) -> None:
    """SDXL-Turbo-like: two CLIP text encoders, `text_time` added conditioning, 1 step."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = clip_tokenizer()
    time_embed_dim = 8
    with seeded(0):
        unet = _unet(
            cross_attention_dim=2 * TEXT_WIDTH,  # both encoders' hidden states, concatenated
            transformer_layers_per_block=(1, 2),
            addition_embed_type="text_time",
            addition_time_embed_dim=time_embed_dim,
            # 6 micro-conditioning numbers (sizes, crop, target size) + the pooled text embedding
            projection_class_embeddings_input_dim=6 * time_embed_dim + TEXT_WIDTH,
            use_linear_projection=True,
        )
    with seeded(1):
        vae = tiny_vae(force_upcast=False)
    with seeded(2):
        text_encoder = CLIPTextModel(clip_text_config(tokenizer))
    with seeded(3):
        text_encoder_2 = CLIPTextModelWithProjection(clip_text_config(tokenizer))
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=clip_tokenizer(),
        unet=unet,
        scheduler=EulerAncestralDiscreteScheduler(**TURBO_SCHEDULER),
        force_zeros_for_empty_prompt=True,
    )
    pipe.save_pretrained(target, safe_serialization=True)
