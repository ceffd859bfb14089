"""Persistent homology of one trajectory's embeddings (Vietoris–Rips, computed by ripser)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from genarun.analysis._points import as_diagram, as_points, unit_rows

Metric = Literal["cosine", "euclidean"]
METRICS: tuple[str, ...] = ("cosine", "euclidean")

FORMAT = "genarun.diagrams"
FORMAT_VERSION = 1


def persistence_entropy(diagram: np.ndarray) -> float:
    """Persistence entropy −Σ p·ln p of one diagram's finite, positive lifetimes (natural log).

    Points with an infinite death (classes still alive at the end of the filtration, such as the
    one H0 class that never dies) are left out: their lifetime has no finite share of the total.
    Zero-length points carry no share either. With no finite positive lifetime the entropy is 0.0,
    the same value as a single feature: there is nothing uncertain about which feature dominates.
    """
    dgm = as_diagram(diagram)
    lifetimes = dgm[:, 1] - dgm[:, 0]
    lifetimes = lifetimes[np.isfinite(lifetimes) & (lifetimes > 0)]
    if len(lifetimes) == 0:
        return 0.0
    shares = lifetimes / lifetimes.sum()
    return float(max(0.0, -np.sum(shares * np.log(shares))))


@dataclass(eq=False)
class Diagrams:
    """Persistence diagrams H0..Hmaxdim of one point cloud, with their persistence entropy.

    ``diagrams[k]`` is a (n_k, 2) float64 array of (birth, death) pairs in homology dimension k;
    a class that never dies has death ``inf``. ``threshold`` is the largest scale the filtration
    was built to (``inf`` = complete); with a finite threshold, ``inf`` also marks classes still
    alive at that scale. ``cover_radius`` is 0 for the exact diagrams of all points; diagrams
    of a greedy subsample (``n_perm``) record how far the farthest point is from the subsample,
    and lie within bottleneck distance ``error_bound`` = 2 × cover_radius of the exact ones
    (stability of Rips persistence under Hausdorff perturbation).
    ``entropy[k]`` is :func:`persistence_entropy` of ``diagrams[k]``.
    """

    diagrams: list[np.ndarray]
    metric: str = "cosine"
    n_points: int = 0
    threshold: float = math.inf
    cover_radius: float = 0.0
    entropy: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.diagrams = [as_diagram(d, name=f"diagrams[{k}]") for k, d in enumerate(self.diagrams)]
        self.entropy = [persistence_entropy(d) for d in self.diagrams]

    @property
    def error_bound(self) -> float:
        """Largest bottleneck distance these diagrams can be from the exact ones (0 when exact)."""
        return 2.0 * self.cover_radius

    @property
    def maxdim(self) -> int:
        """The highest homology dimension held."""
        return len(self.diagrams) - 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Diagrams):
            return NotImplemented
        return (
            self.metric == other.metric
            and self.n_points == other.n_points
            and self.threshold == other.threshold
            and self.cover_radius == other.cover_radius
            and len(self.diagrams) == len(other.diagrams)
            and all(
                np.array_equal(a, b) for a, b in zip(self.diagrams, other.diagrams, strict=True)
            )
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict: infinite deaths (and threshold) are written as ``null``."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "metric": self.metric,
            "n_points": self.n_points,
            "threshold": None if math.isinf(self.threshold) else self.threshold,
            "cover_radius": self.cover_radius,
            # Derived, written for readers that query the database directly; recomputed on load.
            "entropy": list(self.entropy),
            "diagrams": [
                [[float(b), None if math.isinf(d) else float(d)] for b, d in dgm]
                for dgm in self.diagrams
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Diagrams:
        """Rebuild from :meth:`to_json` output (``null`` deaths become ``inf``)."""
        _check_format(data.get("format"), data.get("version"))
        diagrams = [
            np.array([[b, math.inf if d is None else d] for b, d in dgm], dtype=np.float64).reshape(
                -1, 2
            )
            for dgm in data["diagrams"]
        ]
        threshold = data.get("threshold")
        return cls(
            diagrams=diagrams,
            metric=str(data["metric"]),
            n_points=int(data["n_points"]),
            threshold=math.inf if threshold is None else float(threshold),
            cover_radius=float(data.get("cover_radius", 0.0)),
        )

    def to_bytes(self) -> bytes:
        """Compact binary form (an uncompressed ``.npz`` without pickles) for a SQLite BLOB."""
        buffer = io.BytesIO()
        arrays: dict[str, np.ndarray] = {
            "format": np.array(FORMAT),
            "version": np.array(FORMAT_VERSION),
            "metric": np.array(self.metric),
            "n_points": np.array(self.n_points),
            "threshold": np.array(self.threshold),
            "cover_radius": np.array(self.cover_radius),
        }
        arrays.update({f"dim{k}": d for k, d in enumerate(self.diagrams)})
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Diagrams:
        """Rebuild from :meth:`to_bytes` output."""
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            _check_format(str(npz["format"]), int(npz["version"]))
            count = sum(1 for key in npz.files if key.startswith("dim"))
            return cls(
                diagrams=[npz[f"dim{k}"] for k in range(count)],
                metric=str(npz["metric"]),
                n_points=int(npz["n_points"]),
                threshold=float(npz["threshold"]),
                cover_radius=float(npz["cover_radius"]),
            )


def pairwise_distances(points: np.ndarray, metric: Metric = "cosine") -> np.ndarray:
    """Dense (N, N) float64 distance matrix: cosine = 1 − cos similarity (clipped at 0), or euclidean."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    x = as_points(points)
    if metric == "cosine":
        unit = unit_rows(x)
        dist = 1.0 - unit @ unit.T
    else:
        sq = np.einsum("ij,ij->i", x, x)
        dist = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
        np.maximum(dist, 0.0, out=dist)
        np.sqrt(dist, out=dist)
    # Rounding can leave -1e-16 or a tiny non-zero diagonal; ripser reads a non-zero diagonal
    # as vertex birth times and switches to its slow sparse path.
    np.maximum(dist, 0.0, out=dist)
    np.fill_diagonal(dist, 0.0)
    return dist


def persistence_from_distances(
    distances: np.ndarray,
    maxdim: int = 1,
    *,
    metric: str = "precomputed",
    threshold: float | None = None,
    n_perm: int | None = None,
) -> Diagrams:
    """Persistence diagrams H0..maxdim of the Rips filtration of a square distance matrix."""
    dist = np.asarray(distances, dtype=np.float64)
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"distances must be a square matrix, got shape {dist.shape}")
    if not np.isfinite(dist).all():
        raise ValueError("distances contain NaN or infinite values")
    if (dist < 0).any():
        raise ValueError("distances must be non-negative")
    _check_maxdim(maxdim)
    limit = math.inf if threshold is None else float(threshold)
    if not limit > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    n = dist.shape[0]
    empty = np.empty((0, 2))
    if n < 2:
        # ripser needs two points; one point is one H0 class born at 0 that never dies.
        h0 = np.array([[0.0, math.inf]]) if n == 1 else empty
        return Diagrams([h0] + [empty] * maxdim, metric=metric, n_points=n, threshold=limit)

    if n_perm is not None and n_perm < 1:
        raise ValueError(f"n_perm must be a positive number of points, got {n_perm}")
    from ripser import ripser

    # A subsample as large as the input is the input: ripser would reject n_perm > n.
    subsample = n_perm if n_perm is not None and n_perm < n else None
    result = ripser(dist, maxdim=maxdim, thresh=limit, distance_matrix=True, n_perm=subsample)
    return Diagrams(
        list(result["dgms"]),
        metric=metric,
        n_points=n,
        threshold=limit,
        cover_radius=float(result["r_cover"]) if subsample else 0.0,
    )


def persistence_diagrams(
    points: np.ndarray,
    maxdim: int = 1,
    metric: Metric = "cosine",
    *,
    threshold: float | None = None,
    n_perm: int | None = None,
) -> Diagrams:
    """Persistent homology H0..maxdim of one trajectory's (N, D) embedding sequence.

    Exact by default. ``threshold`` stops the filtration at that scale (exact for every class
    that dies below it; classes still open there get death ``inf``). ``n_perm`` computes the
    diagrams of a greedy farthest-point subsample of that many steps: much faster on long
    trajectories, approximate within ``Diagrams.error_bound``.
    """
    _check_maxdim(maxdim)
    x = as_points(points)
    if len(x) < 2:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        if metric == "cosine" and len(x):
            unit_rows(x)
        return persistence_from_distances(
            np.zeros((len(x), len(x))), maxdim, metric=metric, threshold=threshold
        )
    return persistence_from_distances(
        pairwise_distances(x, metric), maxdim, metric=metric, threshold=threshold, n_perm=n_perm
    )


def _check_maxdim(maxdim: int) -> None:
    if not isinstance(maxdim, int | np.integer) or maxdim < 0:
        raise ValueError(f"maxdim must be a non-negative integer, got {maxdim!r}")


def _check_format(name: object, version: object) -> None:
    if name != FORMAT:
        raise ValueError(f"not a serialised Diagrams object (format {name!r})")
    if version != FORMAT_VERSION:
        raise ValueError(f"Diagrams format version {version} is not supported (expected 1)")
