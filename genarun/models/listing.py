"""`genarun models list`: the catalog with where each model's weights are."""

from __future__ import annotations

from typing import Any

from genarun.store.reports import table


def catalog_rows() -> list[dict[str, Any]]:
    from genarun.extras import missing_modules
    from genarun.plugins import registry

    reg = registry()
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
        rows.append(
            {
                "name": name,
                "provider": entry.provider,
                "tasks": sorted(entry.tasks),
                "source": entry.source,
                "id": entry.id,
                "size": entry.size,
                "local": present,
                "needs_extra": needs,
                "description": entry.description,
            }
        )
    return rows


def catalog_table(rows: list[dict[str, Any]]) -> str:
    local = {True: "yes", False: "no", None: "-"}
    body = [
        [
            r["name"],
            r["provider"],
            ",".join(r["tasks"]),
            r["source"],
            r["size"],
            f"needs genarun[{r['needs_extra']}]" if r["needs_extra"] else local[r["local"]],
            r["id"],
        ]
        for r in rows
    ]
    return table(body, ["NAME", "PROVIDER", "TASKS", "SOURCE", "SIZE", "LOCAL", "ID"])
