"""Benchmark: genarun as a user meets it, each run a fresh process (issue 18 item 4).

    python bench/startup.py [--rounds 5] [--groups 100] [--items 100] [--baseline SRC]
                            [--one-node]

Prints, side by side, from one sitting:
1. a one-node tree (one template): `genarun run` end to end, against its target (0.35 s);
2. the 10,000-template-node tree of bench/core_templates.py: `genarun run` against the
   hand-written render-and-insert script (core_templates.py --hand-only), both as processes,
   and their ratio, against its target (1.5x);
3. reading the 10,000-node tree's YAML: libyaml's composer against PyYAML's.

Each figure is the median of the rounds, in wall seconds and CPU seconds (user + system of the
process): the machine may be shared, and CPU time says more than wall time there. The load
average is printed with them. Python's bytecode is cached as an installed package has it
(a warm-up round writes it under a temporary PYTHONPYCACHEPREFIX; PYTHONDONTWRITEBYTECODE is
dropped for the children), so the figures are not the cost of compiling genarun's sources.

`--baseline SRC`: also time the genarun of another source tree (a checkout or `git archive`
of an older commit) in the same rounds, alternating, so before and after meet the same load.
`--one-node`: time only the one-node tree (1.), so that many rounds take little time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from genarun.regex_programs_write import ONE_NODE  # the tree whose start is recorded there too

HERE = Path(__file__).resolve().parent
ONE_TARGET, RATIO_TARGET = 0.35, 1.5


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def genarun(tree: Path, work: Path, tag: str) -> list[str]:
    db, out = work / f"{tag}.db", work / f"{tag}-out"
    return [sys.executable, "-m", "genarun", "run", str(tree), "--db", str(db), "--out", str(out)]


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


def environment(source: Path | None, pycache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env["HF_HUB_OFFLINE"] = "1"
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--baseline", type=Path, help="another genarun source tree to time too")
    parser.add_argument("--one-node", action="store_true", help="time only the one-node tree")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    import yaml
    from core_templates import make_tree

    this = HERE.parent
    ways = {"this": this} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    one: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    big: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    hand: list[tuple[float, float]] = []
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        one_tree = work / "one.yaml"
        one_tree.write_text(ONE_NODE)
        big_tree = work / "bench.yaml"
        if not args.one_node:
            tree = make_tree(args.groups, args.items)
            big_tree.write_text(yaml.safe_dump(tree, sort_keys=False))
        hand_script = [sys.executable, str(HERE / "core_templates.py"), "--hand-only"]
        envs = {name: environment(src, work / f"pycache-{name}") for name, src in ways.items()}
        for name in ways:  # warm-up: bytecode written, as an installed package has it
            timed(genarun(one_tree, work, f"warm-{name}"), work, envs[name])
        for r in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for name in ways:
                one[name].append(timed(genarun(one_tree, work, f"one-{name}{r}"), work, envs[name]))
            if args.one_node:
                continue
            hand_db = str(work / f"hand{r}.db")
            hand_args = [*hand_script, hand_db, str(args.groups), str(args.items)]
            hand.append(timed(hand_args, work, envs["this"]))
            for name in ways:
                big[name].append(timed(genarun(big_tree, work, f"big-{name}{r}"), work, envs[name]))
        fast, python = (0.0, 0.0) if args.one_node else yaml_read_times(big_tree)
    nodes = args.groups * (args.items + 1)
    if args.one_node:
        print(f"rounds: {args.rounds}; load average {min(loads):.1f}-{max(loads):.1f}")
        for name, source in ways.items():
            wall, cpu = median(one[name])
            print(f"one-node run, {name} ({source}): {wall:.3f} s wall ({cpu:.3f} s CPU)")
        print(f"target: < {ONE_TARGET} s")
        return
    hand_wall, hand_cpu = median(hand)
    print(
        f"rounds: {args.rounds}; medians, wall s (CPU s); load average "
        f"{min(loads):.1f}-{max(loads):.1f} over the rounds"
    )
    print(f"{'':42} {'one-node run':>16} {f'{nodes}-node run':>18} {'ratio to hand':>16}")
    print(
        f"{'hand-written render-and-insert script':42} {'':>16} {hand_wall:>8.3f} ({hand_cpu:.3f})"
    )
    for name, source in ways.items():
        (one_wall, one_cpu), (big_wall, big_cpu) = median(one[name]), median(big[name])
        label = f"genarun run ({name}: {source})"[:42]
        print(
            f"{label:42} {one_wall:>8.3f} ({one_cpu:.3f}) {big_wall:>9.3f} ({big_cpu:.3f}) "
            f"{big_wall / hand_wall:>6.2f}x ({big_cpu / hand_cpu:.2f}x)"
        )
    print(f"{'target':42} {f'< {ONE_TARGET}':>16} {'':>18} {f'<= {RATIO_TARGET}x':>16}")
    print(
        f"YAML read of the {nodes}-node tree: libyaml {fast * 1000:.1f} ms, "
        f"Python {python * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
