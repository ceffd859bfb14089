"""`genarun tda factors`: which matrix key (network, a model of it, prompt, seed...) explains
the most of how an experiment's trajectories differ in their topology.

Each trajectory is labelled by its run's matrix values; a network (a list of models) is also
split into its positions (`network[0]`: the painter, `network[1]`: the captioner) when those
vary on their own, so a model that dominates the network shows as its own factor. The shares
are computed by genarun.analysis.factors, per embedding model (vectors of different models are
never compared).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from genarun.errors import StoreError
from genarun.experiments.plots import _value
from genarun.experiments.topology import compare, diagrams_for, require_keys
from genarun.store.reports import run_models

if TYPE_CHECKING:
    from genarun.analysis.factors import Share
    from genarun.store.db import Store


@dataclass(frozen=True)
class FactorRow:
    """One factor: its values (with how many trajectories have each), the share of each
    homology dimension's persistence entropy it explains, and its share of the Wasserstein
    distances between the trajectories' diagrams."""

    key: str
    values: dict[str, int]
    entropy: list[Share]
    topology: Share


@dataclass
class FactorReport:
    """The factors of one embedding model's trajectories, largest share of topology first."""

    model: str
    model_text: str
    dim: int
    trajectories: int
    permutations: int
    rows: list[FactorRow]
    constant: list[str] = field(default_factory=list)  # keys with one value here
    note: str | None = None  # empty diagrams, as `tda compare` says

    def to_json(self) -> dict[str, Any]:
        def share(s: Share) -> dict[str, Any]:
            return {"share": s.value, "p": s.p, "undefined": s.why or None}

        return {
            "embedding_model": self.model,
            "dim": self.dim,
            "trajectories": self.trajectories,
            "permutations": self.permutations,
            "constant": self.constant,
            "note": self.note,
            "factors": [
                {
                    "key": row.key,
                    "values": row.values,
                    "entropy": {f"H{d}": share(s) for d, s in enumerate(row.entropy)},
                    f"wasserstein_H{self.dim}": share(row.topology),
                }
                for row in self.rows
            ],
        }


def _labels(runs: dict[str, dict[str, Any]], run_ids: list[str]) -> dict[str, list[str]]:
    """Per matrix key (and network position), the label of each trajectory, in order."""
    bindings = [json.loads(runs[r].get("bindings") or "{}") for r in run_ids]
    models: dict[str, dict[str, str]] = {}
    for r in set(run_ids):
        models.update(run_models(runs[r]))
    keys: list[str] = []
    for b in bindings:
        keys += [k for k in b if k not in keys]
    labels: dict[str, list[str]] = {}
    for key in keys:
        raw = [b.get(key) for b in bindings]
        labels[key] = [_value(v, models) if v is not None else "(none)" for v in raw]
        # A network split into its positions, when they vary on their own: is it the painter
        # or the captioner that makes the difference?
        if all(isinstance(v, list) for v in raw) and len({len(v) for v in raw}) == 1:
            networks = len(set(labels[key]))
            for i in range(len(raw[0])):
                position = [_value(v[i], models) for v in raw]
                if 1 < len(set(position)) < networks:
                    labels[f"{key}[{i}]"] = position
    return labels


def factor_reports(
    store: Store,
    runs: list[dict[str, Any]],
    *,
    models: list[str],
    dim: int = 1,
    permutations: int = 999,
    seed: int = 0,
) -> list[FactorReport]:
    """One report per embedding model: each varying matrix key's shares, with p-values."""
    from genarun.analysis.factors import eta_squared, permanova

    by_id = {r["id"]: r for r in runs}
    reports = []
    for model in models:
        found = len(require_keys(store, list(by_id), dim, [model]))
        if found < 3:
            raise StoreError(
                f"tda factors needs at least three trajectories embedded by '{model}'; these runs "
                f"have {found}: name an experiment whose matrix has a key with two or more values"
            )
        comparison = compare(store, runs, model=model, dim=dim)
        keys = comparison.keys
        labels = _labels(by_id, [k.run_id for k in keys])
        entropies = [diagrams_for(store, k)[0].entropy for k in keys]
        varying = {k: v for k, v in labels.items() if len(set(v)) > 1}
        if not varying:
            raise StoreError(
                f"these {len(keys)} trajectories share every matrix value, so no factor tells "
                "them apart: name an experiment whose matrix has a key with two or more values "
                "(network, prompt, seed...), or several experiments"
            )
        rows = []
        for key, values in varying.items():
            entropy = [
                eta_squared(
                    [e[d] if d < len(e) else 0.0 for e in entropies],
                    values,
                    permutations=permutations,
                    seed=seed,
                )
                for d in range(dim + 1)
            ]
            topology = permanova(
                comparison.wasserstein, values, permutations=permutations, seed=seed
            )
            counts: dict[str, int] = {}
            for v in values:
                counts[v] = counts.get(v, 0) + 1
            rows.append(FactorRow(key, counts, entropy, topology))
        rows.sort(key=lambda r: -(r.topology.value if r.topology.value is not None else -1.0))
        reports.append(
            FactorReport(
                model=model,
                model_text=comparison.model_text or model,
                dim=dim,
                trajectories=len(keys),
                permutations=permutations,
                rows=rows,
                constant=[k for k in labels if k not in varying],
                note=comparison.emptiness_note(),
            )
        )
    return reports
