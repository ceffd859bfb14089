"""What a plain run imports: a one-node template tree, run as a process, loads none of the
libraries it does not use (bench/startup.py times it; issue 18 item 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ONE_NODE = """\
genarun: 1
name: one
seed: 1
nodes:
  - id: hello
    kind: template
    text: "Hello [world | there]"
"""

# networkx: only rerun/--only/graph build the DiGraph; httpx: only a fetch or an API model;
# rich: only a terminal; the model libraries: only a local model.
NOT_NEEDED = ("networkx", "httpx", "rich", "torch", "diffusers", "transformers", "open_clip")

PROBE = """\
import json, runpy, sys
sys.argv = ["genarun", "run", "one.yaml", "--db", "one.db"]
try:
    runpy.run_module("genarun", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(sorted(m for m in {names!r} if m in sys.modules)))
"""


def test_a_one_node_run_imports_only_what_it_uses(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(ONE_NODE)
    probe = subprocess.run(
        [sys.executable, "-c", PROBE.format(names=NOT_NEEDED)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout.splitlines()[-1]) == []
    assert (tmp_path / "one" / "latest" / "output.json").exists()
