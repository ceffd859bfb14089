"""Benchmark: genarun as a user meets it, each run a fresh process (issue 18 item 4).

    python bench/startup.py [--rounds 5] [--groups 100] [--items 100]

1. A one-node tree (one template): `genarun run` end to end (target under 0.35 s).
2. The 10,000-template-node tree of bench/core_templates.py: `genarun run` against the
   hand-written render-and-insert script (core_templates.py --hand-only), both as processes
   (target <= 1.5x).
3. Reading the 10,000-node tree's YAML: libyaml's composer against PyYAML's.

Rounds alternate the ways; medians of wall and CPU seconds (user + system of the process)
are printed, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ONE_NODE = """\
genarun: 1
name: one
seed: 1
nodes:
  - id: hello
    kind: template
    text: "Hello [world | there]"
"""


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def genarun(tree: Path, work: Path, tag: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "genarun",
        "run",
        str(tree),
        "--db",
        str(work / f"{tag}.db"),
        "--out",
        str(work / f"{tag}-out"),
    ]


def median(values: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)


def yaml_read_times(tree: Path) -> tuple[float, float]:
    from genarun.tree.yaml_reader import YamlReader

    text = tree.read_text()
    if not hasattr(YamlReader, "_read_python"):  # a genarun from before the libyaml path
        return float("nan"), float("nan")
    out = []
    for read in (lambda r: r.read(), lambda r: r._read_python()):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            read(YamlReader(text, str(tree)))
            best = min(best, time.perf_counter() - start)
        out.append(best)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--items", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    import yaml
    from core_templates import make_tree

    one, big, hand = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        one_tree = work / "one.yaml"
        one_tree.write_text(ONE_NODE)
        big_tree = work / "bench.yaml"
        big_tree.write_text(yaml.safe_dump(make_tree(args.groups, args.items), sort_keys=False))
        hand_script = [sys.executable, str(HERE / "core_templates.py"), "--hand-only"]
        for r in range(args.rounds):
            one.append(timed(genarun(one_tree, work, f"one{r}"), work))
            hand.append(
                timed(
                    [*hand_script, str(work / f"hand{r}.db"), str(args.groups), str(args.items)],
                    work,
                )
            )
            big.append(timed(genarun(big_tree, work, f"big{r}"), work))
        fast, python = yaml_read_times(big_tree)
    (one_wall, one_cpu), (big_wall, big_cpu) = median(one), median(big)
    hand_wall, hand_cpu = median(hand)
    print(f"rounds: {args.rounds}; medians, wall s (CPU s)")
    print(f"one-node tree, genarun run:     {one_wall:.3f} ({one_cpu:.3f})  target < 0.35")
    print(
        f"{args.groups * (args.items + 1)}-node tree, hand script:   {hand_wall:.3f} ({hand_cpu:.3f})"
    )
    print(
        f"{args.groups * (args.items + 1)}-node tree, genarun run:   {big_wall:.3f} ({big_cpu:.3f})"
    )
    print(
        f"ratio genarun/hand:             {big_wall / hand_wall:.2f}x wall, "
        f"{big_cpu / hand_cpu:.2f}x CPU  target <= 1.5x"
    )
    print(
        f"YAML read of that tree:         libyaml {fast * 1000:.1f} ms, Python {python * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
