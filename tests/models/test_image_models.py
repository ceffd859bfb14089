"""The diffusers provider and the tiny text-to-image models, offline, on the CPU."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genarun.errors import ModelError
from genarun.models.base import Invocation, ModelSpec
from genarun.models.diffusers import CATALOG, TINY_MODELS, DiffusersModel, DiffusersProvider

REPO = Path(__file__).resolve().parents[2]
CATALOG_BY_NAME = {entry.name: entry for entry in CATALOG}
PROMPTS = [("a cat", 1), ("a dog on the beach", 2), ("a red house", 3), ("a cat", 1)]
# Batched matrix products round differently from single ones on the CPU; measured: at most 1.
BATCH_TOLERANCE = 2


def pixels(image: Any) -> Any:
    import numpy as np

    return np.asarray(image, dtype=np.int16)


def png_sha256(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def folder_sha256(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith("."):  # not the cache's .complete mark
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def provider() -> DiffusersProvider:
    return DiffusersProvider()


@pytest.fixture(scope="module")
def models(provider: DiffusersProvider) -> Iterator[dict[str, DiffusersModel]]:
    loaded = {name: provider.load(CATALOG_BY_NAME[name].spec(), "cpu") for name in TINY_MODELS}
    yield loaded  # type: ignore[misc]
    for model in loaded.values():
        model.unload()


def test_heavy_libraries_are_not_imported_with_the_provider() -> None:
    code = (
        "import sys, genarun.models.diffusers, genarun.models.tiny.stable_diffusion,"
        " genarun.models.tiny.flux, genarun.models.tiny.train_tokenizers\n"
        "heavy = {'torch', 'diffusers', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_catalog_and_registry() -> None:
    from genarun.plugins import registry

    reg = registry()
    assert isinstance(reg.providers["diffusers"], DiffusersProvider)
    for name in ("tiny-sd", "tiny-sdxl", "tiny-flux", "sd-turbo", "sdxl-turbo", "sdxl"):
        assert reg.catalog[name].provider == "diffusers"
        assert reg.catalog[name].tasks == frozenset({"image"})
    assert reg.catalog["sd-turbo"].id == "stabilityai/sd-turbo"
    assert reg.catalog["sd-turbo"].options == {
        "steps": 1,
        "guidance": 0.0,
        "width": 512,
        "height": 512,
    }
    assert {reg.catalog[n].source for n in TINY_MODELS} == {"builtin"}


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_builds_are_byte_identical_and_small(name: str, tmp_path: Path) -> None:
    from genarun.models.tiny import BUILDERS, ensure_tiny_model

    cached = ensure_tiny_model(name)
    BUILDERS[name](tmp_path / "again")
    assert folder_sha256(tmp_path / "again") == folder_sha256(cached)
    size = sum(p.stat().st_size for p in cached.rglob("*") if p.is_file())
    assert 3e6 <= size <= 11e6
    assert (cached / "model_index.json").is_file()


@pytest.mark.parametrize("name", TINY_MODELS)
def test_batched_equals_unbatched(name: str, models: dict[str, DiffusersModel]) -> None:
    model = models[name]
    invocations = [Invocation("image", prompt, seed) for prompt, seed in PROMPTS]
    batched = model.run("image", invocations)
    single = [model.run("image", [inv])[0] for inv in invocations]
    assert [im.size for im in batched] == [(64, 64)] * 4
    for one, other in zip(batched, single, strict=True):
        assert abs(pixels(one) - pixels(other)).max() <= BATCH_TOLERANCE
    # An item depends on its own prompt and seed only: equal items in one batch are identical.
    assert png_sha256(batched[0]) == png_sha256(batched[3])
    assert abs(pixels(batched[0]) - pixels(batched[1])).max() > 10


def test_guidance_and_negative_prompt_batch(models: dict[str, DiffusersModel]) -> None:
    settings = {"steps": 2, "guidance": 3.0, "negative_prompt": "blurry"}
    invocations = [Invocation("image", p, s, settings) for p, s in PROMPTS[:3]]
    batched = models["tiny-sd"].run("image", invocations)
    single = [models["tiny-sd"].run("image", [inv])[0] for inv in invocations]
    for one, other in zip(batched, single, strict=True):
        assert abs(pixels(one) - pixels(other)).max() <= BATCH_TOLERANCE
    plain = models["tiny-sd"].run("image", [Invocation("image", "a cat", 1)])[0]
    assert png_sha256(plain) != png_sha256(batched[0])


def test_settings_size_and_max_batch(models: dict[str, DiffusersModel]) -> None:
    model = models["tiny-sd"]
    image = model.run("image", [Invocation("image", "a cat", 5, {"width": 96, "height": 64})])[0]
    assert image.size == (96, 64)
    # Chunks of max_batch give the same images as one call.
    invocations = [Invocation("image", p, s) for p, s in PROMPTS]
    whole = model.run("image", invocations)
    model.max_batch = 3
    try:
        chunked = model.run("image", invocations)
    finally:
        model.max_batch = 16
    for one, other in zip(whole, chunked, strict=True):
        assert abs(pixels(one) - pixels(other)).max() <= BATCH_TOLERANCE


def test_bad_settings_are_model_errors(models: dict[str, DiffusersModel]) -> None:
    model = models["tiny-sd"]
    with pytest.raises(ModelError, match="unknown setting 'stepz'"):
        model.run("image", [Invocation("image", "a cat", 1, {"stepz": 2})])
    with pytest.raises(ModelError, match="tiny-sd"):
        model.run("image", [Invocation("image", "a cat", 1, {"width": 65})])
    with pytest.raises(ModelError, match="cannot do 'caption'"):
        model.run("caption", [Invocation("caption", "a cat", 1)])


@pytest.mark.slow
def test_same_seed_same_png_across_processes(models: dict[str, DiffusersModel]) -> None:
    here = png_sha256(models["tiny-sd"].run("image", [Invocation("image", "a cat", 7)])[0])
    again = png_sha256(models["tiny-sd"].run("image", [Invocation("image", "a cat", 7)])[0])
    code = (
        "import hashlib, io\n"
        "from genarun.models.base import Invocation\n"
        "from genarun.models.diffusers import CATALOG, DiffusersProvider\n"
        "spec = next(e for e in CATALOG if e.name == 'tiny-sd').spec()\n"
        "model = DiffusersProvider().load(spec, 'cpu')\n"
        "image = model.run('image', [Invocation('image', 'a cat', 7)])[0]\n"
        "buffer = io.BytesIO(); image.save(buffer, format='PNG')\n"
        "print(hashlib.sha256(buffer.getvalue()).hexdigest())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert here == again == out.stdout.strip().splitlines()[-1]


def test_missing_hub_weights_give_one_clear_error(
    provider: DiffusersProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    spec = CATALOG_BY_NAME["sd-turbo"].spec()
    assert provider.weights_present(spec) is False
    with pytest.raises(ModelError) as caught:
        provider.check(spec)
    message = str(caught.value)
    assert "'sd-turbo'" in message
    assert "huggingface-cli download stabilityai/sd-turbo" in message
    assert "local folder" in message
    with pytest.raises(ModelError, match="huggingface-cli download"):
        provider.load(spec, "cpu")
    local = ModelSpec(provider="diffusers", id=str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match="no diffusers model folder"):
        provider.check(local)
    with pytest.raises(ModelError, match="unknown dtype"):
        provider.check(CATALOG_BY_NAME["tiny-sd"].spec(options={"dtype": "float8"}))


def test_hub_id_loads_from_the_hugging_face_cache(
    provider: DiffusersProvider,
    models: dict[str, DiffusersModel],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from genarun.models.tiny import ensure_tiny_model

    # Lay the tiny model out as `huggingface-cli download` would, then load it by id.
    repo = tmp_path / "hub" / "models--genarun-test--tiny-sd"
    shutil.copytree(ensure_tiny_model("tiny-sd"), repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    spec = ModelSpec(provider="diffusers", id="genarun-test/tiny-sd", options=(("steps", 1),))
    assert provider.weights_present(spec) is True
    model = provider.load(spec, "cpu")
    assert model.pipeline_class == "StableDiffusionPipeline"
    invocation = Invocation("image", "a cat", 7, {"guidance": 0.0})
    expected = models["tiny-sd"].run("image", [invocation])[0]
    assert png_sha256(model.run("image", [invocation])[0]) == png_sha256(expected)


def test_local_folder_is_detected_and_loads(provider: DiffusersProvider) -> None:
    from genarun.models.catalog import resolve_model
    from genarun.models.tiny import ensure_tiny_model

    folder = ensure_tiny_model("tiny-sdxl")
    spec = resolve_model(str(folder))
    assert spec.provider == "diffusers"
    assert spec.tasks == frozenset({"image"})
    model = provider.load(spec, "cpu")
    assert model.pipeline_class == "StableDiffusionXLPipeline"
    image = model.run("image", [Invocation("image", "a cat", 1, {"steps": 1, "guidance": 0.0})])
    assert image[0].size == (64, 64)
