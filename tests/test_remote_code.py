"""A tree cannot make genarun run the Python code that comes with a model (transformers'
`trust_remote_code`): a folder beside a tree from elsewhere may hold any code. Each payload is
a tree plus a model folder whose code, once imported, writes a canary file; `genarun run` in a
real process must refuse the tree (exit 2, file, line and node, the fix named) and the canary
must not exist. genarun/models/remote_code.py says what may allow it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import genarun_subprocess

CANARY = "canary-remote-code"
# Imported by transformers or sentence-transformers when remote code is trusted.
EVIL = """
import pathlib
pathlib.Path(CANARY_PATH).write_text("ran")
"""


@dataclass(frozen=True)
class Payload:
    folder: str  # the model folder, relative to the working folder
    model: str  # the tree's `models: {m: ...}` value (YAML flow)
    config: dict[str, object]
    sentence: bool = False  # a sentence-transformers folder (modules.json)
    kind: str = "generate"


CAUSAL = {
    "model_type": "gpt2",
    "architectures": ["GPT2LMHeadModel"],
    "auto_map": {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForCausalLM": "modeling_evil.EvilModel",
    },
}
MOONDREAM = {**CAUSAL, "model_type": "moondream1", "architectures": ["HfMoondream"]}
PAYLOADS = {
    "option": Payload(
        "evil", "{provider: transformers, id: ./evil, options: {trust_remote_code: true}}", CAUSAL
    ),
    "option-as-text": Payload(
        "evil", "{provider: transformers, id: ./evil, options: {trust_remote_code: yes}}", CAUSAL
    ),
    "kind-moondream": Payload(
        "evil",
        "{provider: transformers, id: ./evil, options: {kind: moondream}}",
        CAUSAL,
        kind="caption",
    ),
    "config-moondream": Payload(
        "evil", "{provider: transformers, id: ./evil}", MOONDREAM, kind="caption"
    ),
    "bare-path-moondream": Payload("evil", "./evil", MOONDREAM, kind="caption"),
    "absolute-path": Payload(
        "evil", "{provider: transformers, id: ABS/evil, options: {trust_remote_code: 1}}", CAUSAL
    ),
    # A local folder named like a catalog model that needs its code is not that model.
    "catalog-name-shadowed": Payload(
        "vikhyatk/moondream2", "moondream2", MOONDREAM, kind="caption"
    ),
    "catalog-id-shadowed": Payload(
        "vikhyatk/moondream2",
        "{provider: transformers, id: vikhyatk/moondream2}",
        MOONDREAM,
        kind="caption",
    ),
    "catalog-alias-shadowed": Payload(
        "vikhyatk/moondream2",
        "{id: moondream2, options: {max_batch: 1}}",
        MOONDREAM,
        kind="caption",
    ),
    "sentence-option": Payload(
        "evil",
        "{provider: sentence-transformers, id: ./evil, options: {trust_remote_code: true}}",
        CAUSAL,
        sentence=True,
        kind="embed",
    ),
    "sentence-catalog-shadowed": Payload(
        "nomic-ai/nomic-embed-text-v1.5", "nomic-text", CAUSAL, sentence=True, kind="embed"
    ),
}


def _plant(workdir: Path, payload: Payload) -> None:
    folder = workdir / payload.folder
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(payload.config))
    code = EVIL.replace("CANARY_PATH", repr(str(workdir / CANARY)))
    for module in ("configuration_evil", "modeling_evil", "evil_module"):
        classes = "class EvilConfig: pass\nclass EvilModel: pass\nclass Evil: pass\n"
        (folder / f"{module}.py").write_text(code + classes)
    (folder / "model.safetensors").write_bytes(b"")
    Image.new("RGB", (8, 8)).save(workdir / "cat.png")
    if payload.sentence:
        modules = [{"idx": 0, "name": "0", "path": "", "type": "evil_module.Evil"}]
        (folder / "modules.json").write_text(json.dumps(modules))


def _tree(workdir: Path, payload: Payload) -> Path:
    model = payload.model.replace("ABS/", f"{workdir}/")
    field = {"generate": "prompt: hello", "embed": "input: hello", "caption": "image: cat.png"}[
        payload.kind
    ]
    path = workdir / "tree.yaml"
    path.write_text(
        "genarun: 1\nname: remote\n"
        f"models:\n  m: {model}\n"
        f"nodes:\n  - id: n\n    kind: {payload.kind}\n    model: m\n    {field}\n"
    )
    return path


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_a_tree_cannot_run_a_models_own_code(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.delenv("GENARUN_TRUST_REMOTE_CODE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    payload = PAYLOADS[name]
    _plant(workdir, payload)
    tree = _tree(workdir, payload)
    done = genarun_subprocess("run", tree, cwd=workdir, timeout=240)
    assert not (workdir / CANARY).exists(), f"{name}: the model's code ran\n{done.stderr}"
    assert done.returncode == 2, done.stdout + done.stderr
    assert "GENARUN_TRUST_REMOTE_CODE=1" in done.stderr and "tree.yaml:" in done.stderr
    assert "node 'n'" in done.stderr or "'n'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (workdir / "remote").exists()  # nothing written


@pytest.mark.slow  # imports torch and transformers in a child process
def test_the_person_running_may_allow_it(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GENARUN_TRUST_REMOTE_CODE=1, set by the person running genarun, lets the code load."""
    monkeypatch.setenv("GENARUN_TRUST_REMOTE_CODE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    payload = PAYLOADS["option"]
    _plant(workdir, payload)
    genarun_subprocess("run", _tree(workdir, payload), cwd=workdir, timeout=300)
    assert (workdir / CANARY).read_text() == "ran"
