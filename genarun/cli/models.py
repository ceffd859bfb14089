"""`genarun models list` and `genarun models pull`."""

from __future__ import annotations

import json

import click

from genarun.cli.common import handle_errors


@click.group()
def models() -> None:
    """The model catalog."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="The catalog as JSON.")
@handle_errors
def models_list(as_json: bool) -> None:
    """Name, provider, task, source, size, pinned revision, size on disk in the Hugging Face
    cache, and whether the weights are here."""
    from genarun.models.listing import catalog_rows, catalog_table

    rows = catalog_rows()
    click.echo(json.dumps(rows, indent=2) if as_json else catalog_table(rows))


@models.command("pull")
@click.argument("name")
@click.option("--revision", default=None, help="A commit, branch or tag instead of the pin.")
@handle_errors
def models_pull(name: str, revision: str | None) -> None:
    """Download catalog model NAME's weights into the Hugging Face cache (HF_HOME), at the
    revision the catalog pins. Under HF_HUB_OFFLINE=1 nothing downloads: a cached snapshot is
    reported, a missing one is an error."""
    from genarun.models.hub import human_size, pull

    got = pull(name, revision)
    verb = "pulled" if got.downloaded else "already in the cache (HF_HUB_OFFLINE)"
    click.echo(
        f"{got.name}: {got.repo_id}@{got.revision} ({got.commit[:12]}) {verb}:"
        f" {got.folder} ({human_size(got.size_on_disk)})"
    )


def register(main: click.Group) -> None:
    main.add_command(models)
