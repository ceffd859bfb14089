"""Examples shown at the end of every command's --help.

Kept in one table, keyed by the command's path, so a test can check that every command has one
and that each parses as that command's arguments (a renamed option breaks the test, not a
newcomer's first try). Text after `#` is a comment, shown as written.
"""

from __future__ import annotations

import click

EXAMPLES: dict[str, tuple[str, ...]] = {
    "answer": (
        "genarun answer latest best_cover 2           # pick option 2 (counting from 0)",
        "genarun answer latest approve_plan yes --resume   # and continue the run now",
        "genarun answer 3f2a 'review[1]' 'Too long; cut the intro'",
    ),
    "cluster compute": (
        "genarun cluster compute latest --min-cluster-size 3",
        "genarun cluster compute 3f2a --embedding minilm",
    ),
    "cluster delete": ("genarun cluster delete 7c1e",),
    "cluster list": ("genarun cluster list --limit 5",),
    "cluster plots": ("genarun cluster plots latest --out plots/",),
    "cluster show": ("genarun cluster show latest", "genarun cluster show 7c1e --json"),
    "convert": (
        "genarun convert my_config.json                # print the tree",
        "genarun convert my_config.json --out tree.yaml",
    ),
    "diff": (
        "genarun diff 3f2a latest                       # what a rerun changed",
        "genarun diff 3f2a 9b0c --all --json",
    ),
    "doctor": ("genarun doctor", "genarun doctor --fix         # repair what it can"),
    "dynamics changes": ("genarun dynamics changes latest --penalty 2 --csv changes.csv",),
    "dynamics ftle": ("genarun dynamics ftle latest --out plots/",),
    "dynamics noise": ("genarun dynamics noise latest --step 1 --seeds 8 --out plots/",),
    "embed": ("genarun embed latest --model minilm            # then: genarun tda compute latest",),
    "estimate": (
        "genarun estimate trees/blog.yaml",
        "genarun estimate trees/blog.yaml --set topic=geckos --json",
    ),
    "experiments delete": ("genarun experiments delete 5d2e --yes",),
    "experiments prune": ("genarun experiments prune lizard-blog --keep 3   # asks first",),
    "experiments list": ("genarun experiments list",),
    "experiments show": ("genarun experiments show latest", "genarun experiments show 5d2e --json"),
    "export data": ("genarun export data latest --format csv --out data/",),
    "export db": ("genarun export db latest --out share.db        # to send to a colleague",),
    "export images": ("genarun export images latest --out imgs/ --every 5",),
    "export mosaic": ("genarun export mosaic latest --out panic.png --tile 96",),
    "export site": (
        "genarun export site latest --out site                      # site-data.json only",
        "genarun export site latest --template astro-blog --out site  # then npm ci && npm run build",
    ),
    "export video": ("genarun export video latest --out panic.mp4 --fps 4",),
    "graph": ("genarun graph trees/blog.yaml", "genarun graph trees/blog.yaml --format mermaid"),
    "hook-url": ("genarun hook-url latest best_cover",),
    "inbox": ("genarun inbox", "genarun inbox --json"),
    "models list": ("genarun models list",),
    "models pull": ("genarun models pull clip-vit-b-32",),
    "rerun": (
        "genarun rerun latest --node cover              # cover (every item) and what needs it",
        "genarun rerun latest --node 'cover[3]'         # only the fourth item",
        "genarun rerun latest --node traj --run 2       # one run of a matrix experiment",
    ),
    "resume": (
        "genarun resume latest                          # after Ctrl-C, kill -9 or a crash",
        "genarun resume 3f2a",
    ),
    "run": (
        "genarun run examples/story/tree.yaml",
        "genarun run trees/blog.yaml --seed 7 --set topic='bearded dragons'",
        "genarun run trees/blog.yaml --dry-run          # check everything, run nothing",
        "genarun run trees/blog.yaml --only cover       # one node; the rest from the last run",
    ),
    "runs list": ("genarun runs list", "genarun runs list --limit 5 --json"),
    "runs pause": ("genarun runs pause latest",),
    "runs show": ("genarun runs show latest", "genarun runs show 3f2a --json"),
    "runs stop": ("genarun runs stop latest     # as Ctrl-C: then genarun resume latest",),
    "runs unpause": ("genarun runs unpause latest",),
    "schema": (
        "genarun schema -o genarun-tree.schema.json     # for your editor",
        "genarun schema --site trees/blog.yaml          # the site-data.json a run exports",
    ),
    "search": ("genarun search 'basking spot temperature' --model minilm --tree trees/blog.yaml",),
    "serve": (
        "genarun serve                                  # http://127.0.0.1:8765/runs",
        'genarun serve --host 0.0.0.0 --token "$GENARUN_TOKEN" --trees trees/',
    ),
    "tda compare": ("genarun tda compare latest --csv distances.csv",),
    "tda compute": ("genarun tda compute latest --maxdim 2",),
    "tda factors": (
        "genarun tda factors latest                    # network, prompt or seed: which matters?",
        "genarun tda factors latest --dim 0 --csv factors.csv",
    ),
    "tda plots": ("genarun tda plots latest --out plots/",),
    "validate": (
        "genarun validate trees/blog.yaml",
        "genarun validate trees/                        # every tree in the folder",
    ),
    "watch": ("genarun watch trees/", "genarun watch trees/blog.yaml --once"),
}


def epilog(lines: tuple[str, ...]) -> str:
    # \b keeps click from rewrapping the block into one paragraph.
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def attach(group: click.Group, prefix: str = "") -> None:
    """Give each command of `group` (and of its sub-groups) its examples, once."""
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            attach(command, f"{path} ")
        elif command.epilog is None and path in EXAMPLES:
            command.epilog = epilog(EXAMPLES[path])
