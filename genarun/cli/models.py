"""`genarun models list`."""

from __future__ import annotations

import json

import click

from genarun.cli.common import handle_errors


@click.group()
def models() -> None:
    """The model catalog."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def models_list(as_json: bool) -> None:
    """Name, provider, task, source, size and whether the weights are here."""
    from genarun.models.listing import catalog_rows, catalog_table

    rows = catalog_rows()
    click.echo(json.dumps(rows, indent=2) if as_json else catalog_table(rows))


def register(main: click.Group) -> None:
    main.add_command(models)
