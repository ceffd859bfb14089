"""Text generation and captioning with the tiny transformers models, offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genarun.errors import ModelError
from genarun.models.base import Invocation, LoadedModel
from genarun.models.catalog import resolve_model

PROMPTS = ["Hello world", "A photo of a cat sitting on a wooden table next to a cup", "x"]


def load(name: str) -> LoadedModel:
    from genarun.models.cache import model_cache

    return model_cache().get(resolve_model(name), "cpu")


def images() -> list:
    from PIL import Image

    rng = np.random.RandomState(0)
    shapes = [(40, 50, 3), (32, 32, 3), (64, 48, 4)]  # odd sizes, one RGBA
    return [Image.fromarray(rng.randint(0, 255, s).astype("uint8")) for s in shapes]


def invocations(task: str, inputs: list, **settings) -> list[Invocation]:
    return [Invocation(task, x, seed=100 + i, settings=settings) for i, x in enumerate(inputs)]


def test_importing_providers_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import genarun.models.builtin, genarun.models.transformers, genarun.models.open_clip\n"
        "import genarun.models.sentence_transformers, genarun.models.cache\n"
        "import genarun.models.device, genarun.models.weights, genarun.models.sampling\n"
        "from genarun.plugins import Registry\n"
        "reg = Registry()\n"
        "for m in (genarun.models.transformers, genarun.models.open_clip,"
        " genarun.models.sentence_transformers):\n"
        "    m.register(reg)\n"
        "heavy = {'torch', 'transformers', 'open_clip', 'sentence_transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-blip", "tiny-vit-gpt2"])
def test_tiny_builds_are_byte_identical(name: str, tmp_path: Path) -> None:
    from genarun.models.tiny import BUILDERS, _import_builders

    _import_builders()
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        BUILDERS[name](folder)
    files = sorted(p.name for p in first.iterdir())
    assert "model.safetensors" in files and "config.json" in files
    assert files == sorted(p.name for p in second.iterdir())
    for file in files:
        assert (first / file).read_bytes() == (second / file).read_bytes(), file


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_generate_batched_equals_unbatched(temperature: float) -> None:
    model = load("tiny-gpt2")
    batch = invocations("generate", PROMPTS, max_tokens=12, temperature=temperature)
    together = model.run("generate", batch)
    alone = [model.run("generate", [inv])[0] for inv in batch]
    assert together == alone
    assert all(isinstance(t, str) and t for t in together)


def test_generate_is_deterministic_and_seeded() -> None:
    from genarun.models.transformers import TransformersProvider

    spec = resolve_model("tiny-gpt2")
    first = TransformersProvider().load(spec, "cpu")
    second = TransformersProvider().load(spec, "cpu")  # a fresh load: same weights, same text
    batch = invocations("generate", PROMPTS, max_tokens=16, temperature=1.0)
    assert first.run("generate", batch) == second.run("generate", batch)
    reseeded = [Invocation(i.task, i.input, i.seed + 1, i.settings) for i in batch]
    assert first.run("generate", reseeded) != first.run("generate", batch)
    # Temperature 0 is greedy: the seed does not matter.
    greedy = invocations("generate", PROMPTS, max_tokens=8, temperature=0)
    reseeded = [Invocation(i.task, i.input, i.seed + 7, i.settings) for i in greedy]
    assert first.run("generate", greedy) == first.run("generate", reseeded)


def test_generate_uses_chat_template_and_system() -> None:
    model = load("tiny-gpt2")
    plain = model.encode_prompt("a cat", None)
    with_system = model.encode_prompt("a cat", "You are brief.")
    assert len(with_system) > len(plain)
    tokenizer = model.tokenizer
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:"
    )
    try:
        ids = model.encode_prompt("a cat", "You are brief.")
        assert tokenizer.decode(ids) == "system: You are brief.\nuser: a cat\nassistant:"
        out = model.run("generate", invocations("generate", ["a cat"], max_tokens=4))
        assert isinstance(out[0], str)
    finally:
        tokenizer.chat_template = None


@pytest.mark.parametrize("name", ["tiny-blip", "tiny-vit-gpt2"])
@pytest.mark.parametrize(
    "settings",
    [{"temperature": 0.0}, {"temperature": 1.0}, {"temperature": 1.0, "prompt": "a picture of"}],
)
def test_caption_batched_equals_unbatched(name: str, settings: dict) -> None:
    model = load(name)
    batch = invocations("caption", images(), max_tokens=8, **settings)
    together = model.run("caption", batch)
    alone = [model.run("caption", [inv])[0] for inv in batch]
    assert together == alone
    assert all(isinstance(t, str) and t for t in together)  # min_tokens keeps captions non-empty


@pytest.mark.slow
def test_caption_sampling_follows_seeds() -> None:
    model = load("tiny-vit-gpt2")
    batch = invocations("caption", images(), max_tokens=8, temperature=1.0)
    reseeded = [Invocation(i.task, i.input, i.seed + 1, i.settings) for i in batch]
    assert model.run("caption", batch) == model.run("caption", batch)
    assert model.run("caption", batch) != model.run("caption", reseeded)


@pytest.mark.parametrize("name", ["tiny-blip", "tiny-vit-gpt2"])
def test_captions_run_to_their_end_under_a_ceiling_and_say_when_cut(name: str) -> None:
    """PANIC-TDA lets captions run to a 1024-token ceiling: that ceiling stays inside the
    decoder's position table (tiny-blip's has 64; it failed with IndexError), and a caption
    cut at it says so (these random weights never end a caption by themselves)."""
    from genarun.models.base import hit_limit

    model = load(name)
    few = model.run("caption", invocations("caption", images()[:1], max_tokens=4))
    assert hit_limit(few[0]) and 0 < len(few[0].split()) <= 4
    if name == "tiny-blip":
        ceiling = model.run("caption", invocations("caption", images()[:1], max_tokens=1024))
        assert hit_limit(ceiling[0]) and len(ceiling[0]) > len(few[0])


def test_generated_text_says_whether_it_ended_or_was_cut() -> None:
    from genarun.models.base import hit_limit

    model = load("tiny-gpt2")
    cut = model.run("generate", invocations("generate", PROMPTS, max_tokens=3, temperature=1.0))
    assert all(hit_limit(t) for t in cut)
    assert all(len(t.split()) <= 3 for t in cut)


def test_wrong_task_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="text generation"):
        load("tiny-gpt2").run("caption", invocations("caption", images()[:1]))


@pytest.mark.parametrize(
    ("ref", "hub_id"),
    [
        ("blip2", "Salesforce/blip2-opt-2.7b"),
        ("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct"),
        ({"provider": "transformers", "id": "nobody/no-such-model"}, "nobody/no-such-model"),
    ],
)
def test_missing_hub_weights_name_the_fix(
    ref: str | dict, hub_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genarun.plugins import registry

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache, whatever this machine has
    spec = resolve_model(ref)
    provider = registry().providers[spec.provider]
    assert provider.weights_present(spec) is False
    for attempt in (lambda: provider.check(spec), lambda: provider.load(spec, "cpu")):
        with pytest.raises(ModelError) as info:
            attempt()
        message = str(info.value)
        assert f"huggingface-cli download {hub_id}" in message
        assert "point `id:` at a local copy" in message


def test_missing_local_folder_is_a_model_error(tmp_path: Path) -> None:
    from genarun.models.base import ModelSpec
    from genarun.models.transformers import TransformersProvider

    spec = ModelSpec("transformers", str(tmp_path / "nothing-here"))
    with pytest.raises(ModelError, match="no model files at"):
        TransformersProvider().check(spec)


def test_local_folder_loads_like_a_hub_model() -> None:
    from genarun.models.tiny import ensure_tiny_model

    folder = ensure_tiny_model("tiny-gpt2")
    spec = resolve_model(str(folder))
    assert spec.provider == "transformers" and spec.tasks == frozenset({"generate"})
    from genarun.models.transformers import TransformersProvider

    model = TransformersProvider().load(spec, "cpu")
    batch = invocations("generate", PROMPTS[:1], max_tokens=6, temperature=0.5)
    assert model.run("generate", batch) == load("tiny-gpt2").run("generate", batch)


def _hub_present(name: str) -> bool:
    from genarun.plugins import registry

    spec = resolve_model(name)
    return bool(registry().providers[spec.provider].weights_present(spec))


@pytest.mark.weights
@pytest.mark.skipif(not _hub_present("qwen2.5-0.5b"), reason="Qwen2.5-0.5B-Instruct not cached")
def test_qwen_follows_a_chat_prompt() -> None:
    model = load("qwen2.5-0.5b")
    out = model.run(
        "generate",
        invocations("generate", ["What is 2 + 2? Answer with a number."], temperature=0),
    )
    assert "4" in out[0]


@pytest.mark.weights
@pytest.mark.skipif(not _hub_present("blip"), reason="BLIP base weights not cached")
def test_blip_base_captions() -> None:
    out = load("blip").run("caption", invocations("caption", images()[:2]))
    assert all(isinstance(t, str) and t for t in out)


def test_generation_prints_no_deprecation_warning() -> None:
    """Every tiny-gpt2 run printed transformers' FutureWarning that `past_key_values` is
    deprecated: the KV cache now goes to the model under the name its forward takes."""
    import warnings

    model = load("tiny-gpt2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        texts = model.run("generate", invocations("generate", PROMPTS, max_tokens=5))
    assert len(texts) == len(PROMPTS)
    deprecations = [
        str(w.message) for w in caught if issubclass(w.category, DeprecationWarning | FutureWarning)
    ]
    assert deprecations == []


def test_greedy_steps_ban_end_tokens_until_the_minimum_then_leave_scores_alone() -> None:
    """The greedy processor holds its banned ids as one tensor on the scores' device, made at
    the first step (a Python list index is copied to the GPU, and waited for, at every step)."""
    import torch

    from genarun.models.sampling import GreedySteps

    steps = GreedySteps({2, 7}, min_new_tokens=2)
    seen = []
    for step in range(4):
        scores = torch.arange(20, dtype=torch.float32).reshape(2, 10)
        out = steps(torch.zeros(2, 1, dtype=torch.long), scores.clone())
        banned = torch.isinf(out)
        expected = torch.zeros_like(banned)
        if step < 2:
            expected[:, [2, 7]] = True
        assert torch.equal(banned, expected)
        assert torch.equal(out[~banned], scores[~banned])
        seen.append(steps.banned)
    assert steps.steps == 4 and seen[0] is seen[1] is seen[3]
