"""The panic example's README workflow, command by command as written there, on the tiny
models: run, cluster, compare, dynamics, doctor, video, embed."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

REPO = Path(__file__).resolve().parents[1]
README = REPO / "examples" / "panic" / "README.md"


def workflow_commands() -> list[list[str]]:
    text = README.read_text()
    block = text.split("## The whole workflow", 1)[1]
    body = re.search(r"```bash\n(.*?)```", block, flags=re.DOTALL)
    assert body is not None
    commands = []
    for line in body.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            words = shlex.split(line)
            assert words[0] == "genarun"
            commands.append(words[1:])
    return commands


@pytest.mark.slow
def test_the_readme_workflow_runs_as_written(cli: Callable[..., Result], workdir: Path) -> None:
    shutil.copy(REPO / "examples" / "panic" / "tree.yaml", workdir / "tree.yaml")
    config = {
        "networks": [["DummyT2I", "DummyI2T"]],
        "seeds": [1, 2],
        "prompts": ["Test prompt 1"],
        "embedding_models": ["Dummy"],
        "max_length": 4,
    }
    (workdir / "my_config.json").write_text(json.dumps(config))
    commands = workflow_commands()
    assert [c[0] for c in commands][:3] == ["run", "convert", "cluster"]
    for words in commands:
        words = ["tree.yaml" if w == "examples/panic/tree.yaml" else w for w in words]
        if words[0] == "run":
            words += ["--set", "steps=8"]  # the README's 20 steps, shortened
        result = cli(*words)
        assert result.exit_code == 0, (words, result.output)
    for name in ("panic.mp4", "panic.png", "plots/ftle.png", "plots/cluster_timeline.csv"):
        assert (workdir / name).exists(), name
