"""`genarun convert` (PANIC-TDA configs), `doctor`, `cluster`, `dynamics` and `embed`: the
researcher's toolbox over stored trajectories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from genarun.cli.common import NumberRange, WholeNumber, db_option, device_option, handle_errors


@click.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the tree to this file instead of printing it.",
)
@handle_errors
def convert(config: Path, out: Path | None) -> None:
    """Print the genarun tree equivalent to a PANIC-TDA experiment config (JSON with
    networks, seeds, prompts, embedding_models and max_length); `genarun run CONFIG` runs it
    as it is."""
    from genarun.errors import UserError
    from genarun.tree.load import load_document
    from genarun.tree.panic_config import is_panic_config, panic_tree, panic_tree_yaml
    from genarun.tree.validate import validate_document

    doc = load_document(config)
    if not is_panic_config(doc.data):
        raise UserError(
            f"{config} is not a PANIC-TDA experiment config: it has none of networks, seeds, "
            "prompts, embedding_models, max_length"
            + (
                " (it is a genarun tree already)"
                if isinstance(doc.data, dict) and "genarun" in doc.data
                else ""
            )
        )
    validate_document(panic_tree(doc))  # the converted tree is a valid tree, or says why
    text = panic_tree_yaml(doc)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {out}")


@click.command()
@db_option
@click.option("--fix", is_flag=True, help="Repair what can be repaired, and say what was done.")
@click.option("--json", "as_json", is_flag=True, help="Findings (and repairs) as JSON.")
@handle_errors
def doctor(db: Path | None, fix: bool, as_json: bool) -> None:
    """Check the store and the run folders: gaps in trajectories, steps without embeddings,
    NaN/zero vectors, missing diagrams, orphan rows, missing or corrupt images (sha256), runs
    left running by a dead process. Exit 1 when anything is wrong (after --fix: when anything
    is still wrong)."""
    import json
    import sys

    from genarun.experiments.doctor import examine
    from genarun.experiments.doctor_fix import fix as repair
    from genarun.store.db import Store

    store = Store.existing(db)
    findings = examine(store)
    repairs: list[str] = []
    if fix and findings:
        store.close()
        store = Store(store.path, writing=True)
        repairs = repair(store, findings, say=(lambda _: None) if as_json else click.echo)
        before, findings = findings, examine(store)
    if as_json:
        body: dict[str, object] = {"database": str(store.path), "ok": not findings}
        body["findings"] = [f.to_json() for f in findings]
        if fix:
            body["repairs"] = repairs
        click.echo(json.dumps(body, indent=2))
    else:
        if fix and repairs:
            click.echo(
                f"{len(repairs)} repair{'s' if len(repairs) != 1 else ''} made ({len(before)} finding{'s' if len(before) != 1 else ''})"
            )
        for f in findings:
            click.echo(
                f"{f.check:<18} {f.where}: {f.message}"
                + ("" if f.fixable else " (not fixable here)")
            )
        if findings:
            hint = "" if fix else "; `genarun doctor --fix` repairs what can be repaired"
            click.echo(
                f"{len(findings)} problem{'s' if len(findings) != 1 else ''} in {store.path}{hint}"
            )
        else:
            click.echo(f"ok: no problems in {store.path}")
    sys.stdout.flush()
    if findings:
        sys.exit(1)


@click.command()
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@click.option(
    "--model",
    required=True,
    metavar="MODEL",
    help="The embedding model (catalog name, id, or the runs' alias).",
)
@db_option
@click.option(
    "--batch-size",
    type=WholeNumber(1, 4096),
    default=32,
    show_default=True,
    help="Most outputs sent to the embedding model at once.",
)
@device_option
@handle_errors
def embed(
    refs: tuple[str, ...], model: str, db: Path | None, batch_size: int, device: str | None
) -> None:
    """Embed the stored outputs of past runs with another model (batched, resumable: steps
    that have a vector by it are skipped), so diagrams can be computed for a new embedder
    (`genarun tda compute`) without running the generative models again."""
    from genarun.cli.experiments import _runs
    from genarun.experiments.manage import embed_runs
    from genarun.store.db import Store

    store = Store.existing(db)
    chosen = _runs(store, refs)
    store = Store(store.path, writing=True)
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        click.echo(f"  {done[0]} embedded", err=True)

    embedded, present, trajs = embed_runs(
        store, chosen, model, batch_size=batch_size, device=device, on_batch=progress
    )
    click.echo(
        f"embedded {embedded} output{'s' if embedded != 1 else ''} of {trajs} "
        f"trajector{'ies' if trajs != 1 else 'y'} with '{model}' ({present} had one already); "
        f"`genarun tda compute {' '.join(refs)} --embedding {model}` computes their diagrams"
    )


@click.command("db")
@click.argument("refs", nargs=-1, required=True, metavar="EXPERIMENT...")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The SQLite file to copy into (created if missing).",
)
@db_option
@handle_errors
def export_db(refs: tuple[str, ...], out: Path, db: Path | None) -> None:
    """Copy experiments with everything they own (runs, executions, logs, embeddings,
    trajectories, diagrams, their clusterings) into another SQLite file, ids kept. Run folders
    stay where they are; the copied runs name them."""
    from genarun.errors import UserError
    from genarun.experiments.manage import copy_experiments
    from genarun.store.db import Store
    from genarun.store.trajectories import resolve_experiment

    store = Store.existing(db)
    if out.resolve() == store.path.resolve():
        raise UserError(f"--out {out} is the database being read: name another file")
    ids = list(dict.fromkeys(resolve_experiment(store, ref)["id"] for ref in refs))
    copied = copy_experiments(store, ids, out)
    counts = ", ".join(f"{n} {table}" for table, n in copied.items() if n)
    click.echo(f"copied {len(ids)} experiment{'s' if len(ids) != 1 else ''} to {out}: {counts}")


@click.command("delete")
@click.argument("ref", metavar="EXPERIMENT")
@click.option("--yes", is_flag=True, help="Do not ask (for scripts).")
@db_option
@handle_errors
def experiments_delete(ref: str, yes: bool, db: Path | None) -> None:
    """Delete an experiment: its runs and everything they own in the database, and its output
    folders. Asks first; a running experiment is refused."""
    from genarun.experiments.manage import delete_experiment, plan_deletion
    from genarun.store.db import Store
    from genarun.store.trajectories import resolve_experiment

    store = Store.existing(db)
    found = resolve_experiment(store, ref)
    plan = plan_deletion(store, found)
    click.echo(
        f"experiment {found['id'][:8]} ({found['name']}): {len(plan.runs)} run"
        f"{'s' if len(plan.runs) != 1 else ''} and everything they own in {store.path}"
    )
    for folder in plan.folders:
        click.echo(f"  folder {folder}")
    if plan.copy_of:
        click.echo(f"  (a copy from {plan.copy_of}: the run folders are that database's, kept)")
    if not yes and not click.confirm("delete it?", default=False):
        click.echo("nothing was deleted")
        return
    store = Store(store.path, writing=True)
    removed = delete_experiment(store, plan)
    click.echo(
        f"deleted experiment {found['id'][:8]}: {removed.get('runs', 0)} runs, "
        f"{removed.get('executions', 0)} executions, {removed.get('embeddings', 0)} embeddings, "
        f"{len(plan.folders)} folder{'s' if len(plan.folders) != 1 else ''}"
    )


_AGE_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


class AgeType(click.ParamType):
    """A duration with its unit (30d, 12h, 2w, 90m), as an experiments.prune.Age."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import re

        from genarun.experiments.prune import Age

        if isinstance(value, Age):
            return value
        text = str(value).strip()
        # A unit is required: a bare '30' could be seconds or days, and guessing deletes.
        found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([mhdw])", text.lower())
        if found is None or float(found.group(1)) <= 0:
            self.fail(
                f"{value!r} is not a duration; write a positive number and a unit: 90m (minutes), "
                "12h (hours), 30d (days) or 2w (weeks)",
                param,
                ctx,
            )
        return Age(float(found.group(1)) * _AGE_UNITS[found.group(2)], text)


@click.command("prune")
@click.argument("name", metavar="TREE")
@click.option(
    "--keep",
    type=WholeNumber(1),
    help="How many of the tree's newest experiments to keep.",
)
@click.option(
    "--older-than",
    "older_than",
    type=AgeType(),
    help="Delete only experiments created longer ago than this: 30d, 12h, 2w, 90m.",
)
@click.option("--yes", is_flag=True, help="Do not ask (for scripts).")
@db_option
@handle_errors
def experiments_prune(
    name: str, keep: int | None, older_than: Any, yes: bool, db: Path | None
) -> None:
    """Delete the older experiments of TREE (its `name:`, or its file) with their rows and
    output folders, keeping per tree file the KEEP newest and those not older than
    --older-than (give either or both), the newest completed one (latest/ copies it) and any
    that waits for an answer or still runs. Asks first."""
    from genarun.experiments.manage import delete_experiment
    from genarun.experiments.prune import plan_prune
    from genarun.store.db import Store

    store = Store.existing(db)
    plan = plan_prune(store, name, keep, older_than)
    for experiment, why in plan.kept:
        click.echo(f"keep    {experiment['id'][:8]}  {_created(experiment)}  {why}")
    for deletion in plan.deleted:
        folders = ", ".join(str(f) for f in deletion.folders) or "no folder"
        click.echo(
            f"delete  {deletion.experiment['id'][:8]}  {_created(deletion.experiment)}  "
            f"{len(deletion.runs)} run{'s' if len(deletion.runs) != 1 else ''}; {folders}"
        )
    if not plan.deleted:
        click.echo(f"nothing to delete: '{name}' has {len(plan.kept)} experiments, all kept")
        return
    if not yes and not click.confirm(f"delete {len(plan.deleted)} experiments?", default=False):
        click.echo("nothing was deleted")
        return
    store = Store(store.path, writing=True)
    totals: dict[str, int] = {}
    for deletion in plan.deleted:
        for table, count in delete_experiment(store, deletion).items():
            totals[table] = totals.get(table, 0) + count
    from genarun.experiments.doctor_findings import plural

    removed = sum(len(d.folders) for d in plan.deleted)
    click.echo(
        f"deleted {plural(len(plan.deleted), 'experiment')} of '{name}': "
        f"{plural(totals.get('runs', 0), 'run')}, "
        f"{plural(totals.get('executions', 0), 'execution')}, "
        f"{plural(totals.get('logs', 0), 'log line')}, {plural(removed, 'folder')}"
    )


def _created(experiment: dict) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(experiment["created"]))


tile_option = click.option(
    "--tile",
    type=WholeNumber(16, 2048),
    default=128,
    show_default=True,
    help="Side of each image in the mosaic, in pixels (video: a multiple of 16).",
)
every_option = click.option(
    "--every", type=WholeNumber(1), default=1, show_default=True, help="Every Nth image only."
)


@click.command("video")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The MP4 file."
)
@click.option(
    "--fps",
    type=NumberRange(0.1, 120),
    default=10.0,
    show_default=True,
    help="Frames (trajectory steps) per second.",
)
@tile_option
@click.option(
    "--columns", type=WholeNumber(1), help="Trajectories per row (default: a square grid)."
)
@every_option
@db_option
@handle_errors
def export_video(
    refs: tuple[str, ...],
    out: Path,
    fps: float,
    tile: int,
    columns: int | None,
    every: int,
    db: Path | None,
) -> None:
    """A mosaic video (MP4, H.264): a grid of trajectories, frame t showing each one's t-th
    image (one that ended holds its last)."""
    import time

    from genarun.cli.experiments import _runs, writing_to
    from genarun.experiments.mosaic import write_video
    from genarun.extras import require_extra
    from genarun.store.db import Store

    require_extra("genarun export video", "tda", ("imageio_ffmpeg",))
    store = Store.existing(db)
    started = time.perf_counter()
    with writing_to(out):
        frames, count, width, height = write_video(
            store, _runs(store, refs), out, fps=fps, tile=tile, columns=columns, every=every
        )
    click.echo(
        f"wrote {out}: {frames} frames of {count} trajectories, {width}x{height} at {fps:g} fps "
        f"({time.perf_counter() - started:.1f} s)"
    )


@click.command("mosaic")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|EXPERIMENT...")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The PNG file."
)
@tile_option
@every_option
@db_option
@handle_errors
def export_mosaic(refs: tuple[str, ...], out: Path, tile: int, every: int, db: Path | None) -> None:
    """A mosaic image (PNG): one row per trajectory, one column per image step."""
    from genarun.cli.experiments import _runs, writing_to
    from genarun.experiments.mosaic import write_mosaic_image
    from genarun.store.db import Store

    store = Store.existing(db)
    with writing_to(out):
        rows, columns = write_mosaic_image(store, _runs(store, refs), out, tile=tile, every=every)
    click.echo(f"wrote {out}: {rows} trajectories x {columns} images")


def register(main: click.Group) -> None:
    from genarun.cli.experiments import experiments, export

    main.add_command(convert)
    main.add_command(doctor)
    main.add_command(embed)
    export.add_command(export_db)
    export.add_command(export_video)
    export.add_command(export_mosaic)
    experiments.add_command(experiments_delete)
    experiments.add_command(experiments_prune)
