"""Clustering of embeddings with scikit-learn's HDBSCAN, cluster medoids, and the transitions
of trajectories between clusters.

Method (recorded with every clustering, `Method.text`): vectors are L2-normalised (Euclidean
distance between unit vectors orders pairs as cosine distance does, PANIC-TDA's convention);
above `REDUCE_ABOVE` points they are reduced to `REDUCED_DIMS` dimensions by PCA (randomised
SVD, seeded); above `SAMPLE_ABOVE` points HDBSCAN is fitted on a seeded uniform sample of
`SAMPLE_ABOVE` points and every other point takes the label of its nearest sampled point
(noise stays noise). scikit-learn's HDBSCAN builds its tree in time quadratic in the points
(20,000 points took 24 s on 2 cores), so the sample keeps 100,000 points under a minute.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genarun.analysis._points import unit_rows

REDUCE_ABOVE = 2_000
REDUCED_DIMS = 32
SAMPLE_ABOVE = 6_000


@dataclass(frozen=True)
class Method:
    min_cluster_size: int
    min_samples: int | None
    points: int
    dims: int
    reduced_to: int | None  # PCA dimensions, or None
    sample: int | None  # points HDBSCAN was fitted on, or None (all)
    seed: int = 0

    @property
    def text(self) -> str:
        parts = ["HDBSCAN (scikit-learn) on L2-normalised vectors"]
        if self.reduced_to:
            parts.append(
                f"PCA {self.dims}->{self.reduced_to} dims (randomised SVD, seed {self.seed})"
            )
        if self.sample:
            parts.append(
                f"fitted on a seeded sample of {self.sample} of {self.points} points, the rest "
                "labelled by their nearest sampled point"
            )
        ms = self.min_samples if self.min_samples is not None else self.min_cluster_size
        parts.append(f"min_cluster_size {self.min_cluster_size}, min_samples {ms}")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "min_cluster_size": self.min_cluster_size,
            "min_samples": self.min_samples,
            "points": self.points,
            "dims": self.dims,
            "reduced_to": self.reduced_to,
            "sample": self.sample,
            "seed": self.seed,
            "text": self.text,
        }


@dataclass
class Clustering:
    labels: np.ndarray  # one per point, -1 = noise
    medoids: dict[int, int]  # cluster label -> index of its medoid point
    method: Method

    @property
    def sizes(self) -> dict[int, int]:
        counts = Counter(int(x) for x in self.labels)
        return dict(sorted(counts.items()))


class TooFewPoints(ValueError):
    """Fewer points than the smallest cluster allowed."""


def cluster(
    vectors: np.ndarray,
    *,
    min_cluster_size: int = 5,
    min_samples: int | None = None,
    seed: int = 0,
    sample_above: int = SAMPLE_ABOVE,
) -> Clustering:
    """HDBSCAN labels of the rows of `vectors` (n x d), with each cluster's medoid."""
    from sklearn.cluster import HDBSCAN

    x = np.asarray(vectors, dtype=np.float64)
    n = len(x)
    if n < max(2, min_cluster_size):
        raise TooFewPoints(
            f"{n} point{'s' if n != 1 else ''}, fewer than the minimum cluster size "
            f"{min_cluster_size}: choose a smaller --min-cluster-size or more runs"
        )
    unit = unit_rows(x)
    space = unit
    reduced_to = None
    if n > REDUCE_ABOVE and unit.shape[1] > REDUCED_DIMS:
        from sklearn.decomposition import PCA

        reduced_to = REDUCED_DIMS
        space = PCA(reduced_to, svd_solver="randomized", random_state=seed).fit_transform(unit)
    sample = None
    fit_on = np.arange(n)
    if n > sample_above:
        sample = sample_above
        fit_on = np.sort(np.random.default_rng(seed).choice(n, sample_above, replace=False))
    model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, copy=True)
    fitted = model.fit_predict(space[fit_on])
    labels = np.full(n, -1, dtype=np.int64)
    labels[fit_on] = fitted
    if sample is not None:
        from sklearn.neighbors import NearestNeighbors

        rest = np.setdiff1d(np.arange(n), fit_on)
        nearest = NearestNeighbors(n_neighbors=1).fit(space[fit_on])
        _, index = nearest.kneighbors(space[rest])
        labels[rest] = fitted[index[:, 0]]
    method = Method(min_cluster_size, min_samples, n, x.shape[1], reduced_to, sample, seed)
    return Clustering(labels, medoids(unit, labels, seed=seed), method)


def medoids(
    unit: np.ndarray, labels: np.ndarray, *, seed: int = 0, most: int = 2000
) -> dict[int, int]:
    """Each cluster's medoid: the member with the least summed cosine distance to the others
    (among at most `most` seeded members of a large cluster)."""
    rng = np.random.default_rng(seed)
    out: dict[int, int] = {}
    for label in sorted(set(int(v) for v in labels) - {-1}):
        members = np.flatnonzero(labels == label)
        if len(members) > most:
            members = np.sort(rng.choice(members, most, replace=False))
        block = unit[members]
        total = (1.0 - block @ block.T).sum(axis=1)
        out[label] = int(members[int(np.argmin(total))])
    return out


@dataclass
class Transitions:
    """How one trajectory moves between clusters."""

    sequence: list[int]  # the label of each step, in order
    runs: list[tuple[int, int]] = field(default_factory=list)  # (label, consecutive steps)
    bigrams: dict[tuple[int, int], int] = field(default_factory=dict)  # (from, to) -> count


def transitions(sequence: list[int]) -> Transitions:
    """Run lengths in one cluster and counts of each consecutive pair (self pairs included)."""
    result = Transitions(list(sequence))
    for label in sequence:
        if result.runs and result.runs[-1][0] == label:
            result.runs[-1] = (label, result.runs[-1][1] + 1)
        else:
            result.runs.append((label, 1))
    pairs = Counter(itertools.pairwise(sequence))
    result.bigrams = dict(sorted(pairs.items()))
    return result


def top_clusters(labels: np.ndarray | list[int], n: int = 10) -> list[tuple[int, int]]:
    """The `n` largest clusters (noise left out) as (label, size), largest first."""
    counts = Counter(int(x) for x in labels if int(x) != -1)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
