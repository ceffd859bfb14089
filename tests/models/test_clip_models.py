"""Embeddings: tiny open_clip (text and images in one space) and real MiniLM, offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genarun.errors import ModelError
from genarun.models.base import Invocation, LoadedModel
from genarun.models.catalog import resolve_model

TEXTS = ["a photo of a cat", "a dog in the park", "stock prices rose today"]


def load(ref: str | dict) -> LoadedModel:
    from genarun.models.cache import model_cache

    return model_cache().get(resolve_model(ref), "cpu")


def images() -> list:
    from PIL import Image

    rng = np.random.RandomState(1)
    shapes = [(40, 50, 3), (32, 32, 3), (64, 48, 4)]
    return [Image.fromarray(rng.randint(0, 255, s).astype("uint8")) for s in shapes]


def embed(model: LoadedModel, task: str, inputs: list) -> list[np.ndarray]:
    return model.run(task, [Invocation(task, x, seed=i) for i, x in enumerate(inputs)])


@pytest.mark.slow
def test_tiny_clip_build_is_byte_identical(tmp_path: Path) -> None:
    from genarun.models.tiny.clip import build_tiny_clip

    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        build_tiny_clip(folder)
    files = sorted(p.name for p in first.iterdir())
    assert files == ["open_clip_config.json", "open_clip_model.safetensors"]
    for file in files:
        assert (first / file).read_bytes() == (second / file).read_bytes(), file


@pytest.mark.parametrize(("task", "inputs"), [("embed_text", TEXTS), ("embed_image", None)])
def test_tiny_clip_vectors_are_normalised_and_batch_independent(
    task: str, inputs: list | None
) -> None:
    model = load("tiny-clip")
    items = inputs or images()
    together = embed(model, task, items)
    alone = [embed(model, task, [x])[0] for x in items]
    for v, w in zip(together, alone, strict=True):
        assert v.dtype == np.float32 and v.shape == (32,)
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
        # Batched matmuls may round differently in the last bit; nothing more.
        np.testing.assert_allclose(v, w, atol=1e-6)
    assert not np.allclose(together[0], together[1])


def test_tiny_clip_text_and_images_share_one_space() -> None:
    model = load("tiny-clip")
    text = embed(model, "embed_text", TEXTS)
    image = embed(model, "embed_image", images())
    assert text[0].shape == image[0].shape
    assert np.isfinite(np.stack(text) @ np.stack(image).T).all()


def test_tiny_clip_is_deterministic_across_loads() -> None:
    from genarun.models.open_clip import OpenClipProvider

    spec = resolve_model("tiny-clip")
    first, second = OpenClipProvider().load(spec, "cpu"), OpenClipProvider().load(spec, "cpu")
    for task, items in (("embed_text", TEXTS), ("embed_image", images())):
        for v, w in zip(embed(first, task, items), embed(second, task, items), strict=True):
            assert np.array_equal(v, w)


def test_open_clip_loads_a_pt_checkpoint(tmp_path: Path) -> None:
    import torch

    model = load("tiny-clip")
    checkpoint = tmp_path / "tiny.pt"
    torch.save(model.model.state_dict(), checkpoint)
    from_pt = load(
        {"provider": "open_clip", "id": str(checkpoint), "options": {"arch": "genarun-tiny-clip"}}
    )
    for v, w in zip(
        embed(from_pt, "embed_text", TEXTS), embed(model, "embed_text", TEXTS), strict=True
    ):
        assert np.array_equal(v, w)


def test_pt_checkpoint_without_arch_is_a_model_error(tmp_path: Path) -> None:
    checkpoint = tmp_path / "tiny.pt"
    checkpoint.write_bytes(b"")
    with pytest.raises(ModelError, match="arch"):
        load({"provider": "open_clip", "id": str(checkpoint)})


def test_minilm_has_real_semantics() -> None:
    model = load("minilm")
    cat, kitten, stocks = embed(model, "embed_text", ["cat", "kitten", "stocks"])
    assert cat.dtype == np.float32 and cat.shape == (384,)
    assert abs(float(np.linalg.norm(cat)) - 1.0) < 1e-5
    assert float(cat @ kitten) > 0.6
    assert float(cat @ stocks) < 0.25
    again = embed(model, "embed_text", ["cat"])[0]
    np.testing.assert_allclose(cat, again, atol=1e-6)


def test_minilm_cannot_embed_images() -> None:
    with pytest.raises(ModelError, match="cannot do 'embed_image'"):
        embed(load("minilm"), "embed_image", images()[:1])


@pytest.mark.parametrize(
    ("name", "hub_id"),
    [
        ("clip-vit-b-32", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
        ("nomic-text", "nomic-ai/nomic-embed-text-v1.5"),
        ("jina-clip", "jinaai/jina-clip-v2"),
        ("nomic-vision", "nomic-ai/nomic-embed-vision-v1.5"),
    ],
)
def test_missing_embedding_weights_name_the_fix(
    name: str, hub_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genarun.plugins import registry

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    spec = resolve_model(name)
    provider = registry().providers[spec.provider]
    assert provider.weights_present(spec) is False
    with pytest.raises(ModelError, match=f"huggingface-cli download {hub_id}"):
        provider.check(spec)


def test_catalog_sources_and_tasks() -> None:
    from genarun.plugins import registry

    catalog = registry().catalog
    assert catalog["minilm"].source == "package"
    for name in ("tiny-gpt2", "tiny-blip", "tiny-vit-gpt2", "tiny-clip"):
        assert catalog[name].source == "builtin"
        spec = resolve_model(name)
        assert registry().providers[spec.provider].weights_present(spec) is True
    assert catalog["tiny-clip"].tasks == frozenset({"embed_text", "embed_image"})
    assert all(catalog[n].size for n in ("moondream2", "blip2", "clip-vit-b-32", "jina-clip"))


def _present(name: str) -> bool:
    from genarun.plugins import registry

    spec = resolve_model(name)
    return bool(registry().providers[spec.provider].weights_present(spec))


@pytest.mark.weights
@pytest.mark.skipif(not _present("clip-vit-b-32"), reason="CLIP ViT-B/32 (laion2b) not cached")
def test_clip_vit_b_32_matches_text_to_itself() -> None:
    model = load("clip-vit-b-32")
    cat, kitten, stocks = embed(model, "embed_text", ["a cat", "a kitten", "stock prices"])
    assert float(cat @ kitten) > float(cat @ stocks)
