"""tiny-clip: an open_clip CLIP (ViT + text transformer) with 32-d embeddings, 32x32 input.

The text side keeps CLIP's vocabulary size (49408) so open_clip's bundled tokenizer works
without shipping one.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from genarun.models.tiny import tiny_builder
from genarun.models.tiny._shared import seeded

ARCH_NAME = "genarun-tiny-clip"
MODEL_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def register_arch() -> None:
    """Make the tiny architecture known to open_clip by name (also needed to load a `.pt`)."""
    import open_clip

    if ARCH_NAME in open_clip.list_models():
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{ARCH_NAME}.json"
        path.write_text(json.dumps(MODEL_CONFIG))
        open_clip.add_model_config(path)


@tiny_builder("tiny-clip")
def build_tiny_clip(target: Path) -> None:
    """Write an open_clip `local-dir:` folder (config + safetensors) to `target`."""
    import open_clip
    from safetensors.torch import save_file

    register_arch()
    # Random weights are the point here: open_clip's "No pretrained weights loaded" warning
    # (on the root logger) would only alarm whoever runs a tree for the first time.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with seeded(0):
            model = open_clip.create_model(ARCH_NAME, pretrained=None)
    finally:
        root.setLevel(level)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(target / "open_clip_model.safetensors"))
    config = {
        "model_cfg": MODEL_CONFIG,
        "preprocess_cfg": {
            "mean": list(model.visual.image_mean),
            "std": list(model.visual.image_std),
        },
    }
    (target / "open_clip_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
