"""`genarun models list`: the catalog with where each model's weights are."""

from __future__ import annotations

from typing import Any

from genarun.store.reports import table


def catalog_rows() -> list[dict[str, Any]]:
    from genarun.extras import missing_modules
    from genarun.models import hub
    from genarun.plugins import registry

    reg = registry()
    repos = hub.scan_hub_cache()
    rows = []
    for name, entry in sorted(reg.catalog.items()):
        provider = reg.providers.get(entry.provider)
        present = provider.weights_present(entry.spec()) if provider else None
        # A model whose provider's libraries are not installed cannot run here, whatever
        # weights are on disk: the row names the extra that brings them.
        needs = None
        if (
            provider is not None
            and provider.extra is not None
            and missing_modules(provider.extra, provider.modules)
        ):
            needs = provider.extra
        cached: dict[str, Any] = {"commit": None, "size_on_disk": None}
        if entry.source == "hub" and repos is not None:
            cached = hub.cached_revision(entry, repos)
        rows.append(
            {
                "name": name,
                "provider": entry.provider,
                "tasks": sorted(entry.tasks),
                "source": entry.source,
                "id": entry.id,
                "size": entry.size,
                "revision": entry.revision if entry.source == "hub" else None,
                # The pinned revision as cached (huggingface_hub's scan of the cache).
                "commit": cached["commit"],
                "size_on_disk": cached["size_on_disk"],
                "local": present,
                "needs_extra": needs,
                "description": entry.description,
            }
        )
    return rows


def catalog_table(rows: list[dict[str, Any]]) -> str:
    from genarun.models.hub import human_size

    local = {True: "yes", False: "no", None: "-"}
    body = [
        [
            r["name"],
            r["provider"],
            ",".join(r["tasks"]),
            r["source"],
            r["size"],
            _revision_text(r),
            human_size(r["size_on_disk"]) if r["size_on_disk"] is not None else "-",
            f"needs genarun[{r['needs_extra']}]" if r["needs_extra"] else local[r["local"]],
            r["id"],
        ]
        for r in rows
    ]
    head = ["NAME", "PROVIDER", "TASKS", "SOURCE", "SIZE", "REVISION", "ON DISK", "LOCAL", "ID"]
    return table(body, head)


def _revision_text(row: dict[str, Any]) -> str:
    """`main@1a2b3c4` (the ref and the cached commit it points at), `main` when not cached."""
    if row["revision"] is None:
        return "-"
    commit = row["commit"]
    if commit is None or commit == row["revision"]:
        return str(row["revision"])[:12]
    return f"{row['revision']}@{commit[:7]}"
