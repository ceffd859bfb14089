"""The `genarun` command line: parse arguments, call the core, render errors.

Each command module holds one concern; heavy modules are imported inside commands, so
`genarun --help`, `validate` and `graph` never import torch.
"""

from __future__ import annotations

import click

from genarun import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="genarun")
def main() -> None:
    """genarun: declarative, recursive pipeline trees for generative AI.

    Write a tree (YAML or JSON) of nodes, then `genarun run tree.yaml`.
    Outputs go to SQLite and to a dated folder beside the tree.
    """


def _add_commands() -> None:
    from genarun.cli import (
        cluster,
        core,
        dynamics,
        estimate,
        experiments,
        history,
        human,
        models,
        publish,
        runs,
        search,
        toolbox,
    )

    # publish adds `export site` to the export group that experiments makes.
    for module in (
        core,
        estimate,
        models,
        runs,
        history,
        experiments,
        publish,
        toolbox,
        human,
        search,
        cluster,
        dynamics,
    ):
        module.register(main)


_add_commands()
