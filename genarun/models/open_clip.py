"""The `open_clip` provider: text and image embeddings in one space (CLIP and its kin).

A model is a `local-dir:` folder (open_clip_config.json + weights), a Hugging Face id of such a
repository, or a `.pt` checkpoint with `options: {arch: <open_clip model name>}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from genarun.errors import ModelError
from genarun.models import weights
from genarun.models.base import Invocation, LoadedModel, ModelSpec
from genarun.models.catalog import CatalogEntry
from genarun.models.torch_model import TorchModuleModel, map_images, rgb

if TYPE_CHECKING:
    from genarun.plugins import Registry

TASKS = frozenset({"embed_text", "embed_image"})


class OpenClipProvider(weights.LocalWeightsProvider):
    name = "open_clip"
    extra = "local"
    modules = ("torch", "open_clip")

    def tasks(self, spec: ModelSpec) -> frozenset[str]:
        return spec.tasks or TASKS

    def load(self, spec: ModelSpec, device: str) -> LoadedModel:
        return ClipModel(spec, device)


class ClipModel(TorchModuleModel):
    """An open_clip model; vectors are L2-normalised float32."""

    max_batch = 64

    def __init__(self, spec: ModelSpec, device: str) -> None:
        import open_clip

        from genarun.models.device import default_dtype_name

        self.spec = spec
        self.device = device
        source = weights.require(spec)
        assert source.folder is not None
        options = spec.option_dict
        # open_clip names precisions "fp32", "fp16", "bf16".
        dtype = str(options.get("dtype") or default_dtype_name(device))
        precision = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(dtype, dtype)
        if source.folder.is_file():
            arch = options.get("arch")
            if not arch:
                raise ModelError(
                    f"model '{spec.label()}': a .pt checkpoint needs options: {{arch: NAME}}"
                    " naming its open_clip architecture (e.g. ViT-B-32)"
                )
            if arch == "genarun-tiny-clip":
                from genarun.models.tiny.clip import register_arch

                register_arch()
            name, pretrained = str(arch), str(source.folder)
        else:
            name, pretrained = f"local-dir:{source.folder}", None
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, precision=precision, device=device
        )
        self.model: Any = model.eval()
        self.preprocess = preprocess
        self.compiled = _tune(self.model, spec, device)
        self.tokenizer = open_clip.get_tokenizer(name)

    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        import torch

        self.require_loaded()
        # Low-precision open_clip keeps embeddings and logit_scale in float32 and casts only
        # the matrix weights: the image tower's input must match its first weight's dtype.
        first = getattr(getattr(self.model.visual, "conv1", None), "weight", None)
        dtype = first.dtype if first is not None else next(self.model.visual.parameters()).dtype
        with torch.inference_mode():
            if task == "embed_text":
                tokens = self.tokenizer([str(inv.input) for inv in batch]).to(self.device)
                features = self.model.encode_text(tokens)
            elif task == "embed_image":
                pixels = torch.stack(
                    map_images(lambda im: self.preprocess(rgb(im)), [inv.input for inv in batch])
                )
                features = self.model.encode_image(pixels.to(self.device, dtype=dtype))
            else:
                raise ModelError(
                    f"model '{self.spec.label()}' embeds text and images, not '{task}'"
                )
            vectors = torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()
        return [v.astype("float32") for v in vectors]


def _tune(model: Any, spec: ModelSpec, device: str) -> list[Any]:
    """The opt-in `compile` option (genarun.models.tuning): the image and text towers."""
    from genarun.models import tuning

    tuning.check_options(spec.label(), spec.option_dict)
    mode = tuning.compile_mode(spec.option_dict)
    if mode is None:
        return []
    towers = {"image tower": getattr(model, "visual", None)}
    towers["text tower"] = getattr(model, "transformer", None) or getattr(model, "text", None)
    return tuning.compile_modules(spec.label(), towers, mode, device)


def catalog_entries() -> list[CatalogEntry]:
    return [
        CatalogEntry("tiny-clip", "open_clip", "tiny-clip", TASKS, "builtin", "6.3 MB",
                     "open_clip CLIP with random weights, 32-d vectors: for tests"),
        CatalogEntry("clip-vit-b-32", "open_clip", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
                     TASKS, "hub", "605 MB",
                     "CLIP ViT-B/32 trained on LAION-2B (open_clip ViT-B-32 laion2b_s34b_b79k)"),
    ]  # fmt: skip


def register(registry: Registry) -> None:
    registry.add_provider(OpenClipProvider())
    for entry in catalog_entries():
        registry.add_model(entry)
