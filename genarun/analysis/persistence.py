"""Persistent homology of one trajectory's embeddings (Vietoris–Rips).

Exact diagrams come from gudhi's Ripser-based kernel by default (2 to 4 times faster than
ripser.py here, same float32 arithmetic, identical diagrams), and H2 from holos-tda's kernel
where it is installed (another 25-40 % less CPU on random walks, the same diagrams); ripser.py
stays the reference engine and computes the greedy-subsample approximation (``n_perm``).
"""

from __future__ import annotations

import importlib
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from genarun.analysis._holos import holos_kernel as _holos_kernel
from genarun.analysis._link_cut import (
    _last_birth,
    dominated_share,
    last_h1_birth,
    last_h2_birth,
    without_duplicates,
)
from genarun.analysis._points import as_diagram, as_points, unit_rows

Metric = Literal["cosine", "euclidean"]
METRICS: tuple[str, ...] = ("cosine", "euclidean")
Engine = Literal["auto", "gudhi", "holos", "ripser"]
ENGINES: tuple[str, ...] = ("auto", "gudhi", "holos", "ripser")

# The early cut (see _cut_scale): where it stops, as a fraction of the way from the last birth
# to the enclosing radius, and the largest input it is tried on (its matrix products and edge
# lists grow as N^3 and N^2).
_CUT_MARGIN = 1 / 8
_CUT_MAX_POINTS = 4096
# Larger inputs (H0/H1 only) find the last birth with hubs instead (_link_cut.last_h1_birth),
# up to this many points (its edge lists take 12 bytes an edge).
_HUB_CUT_MAX_POINTS = 8192
# H2: the scales tried, as fractions of the way from the last possible birth to the radius.
_H2_CUT_MARGINS = (1 / 32, 1 / 4)
# H2 goes through edge collapse when more than this share of a sample of its edges is
# dominated at the scale (0: always, 1: never).
_COLLAPSE_ABOVE = 0.25

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

    ``diagrams[k]`` is a (n_k, 2) float64 array of (birth, death) pairs in homology dimension k,
    sorted by birth then death; a class that never dies has death ``inf``. ``threshold`` is the
    largest scale the filtration was built to (``inf`` = complete); with a finite threshold,
    ``inf`` also marks classes still alive at that scale. ``cover_radius`` is 0 for the exact
    diagrams of all points; diagrams of a greedy subsample (``n_perm``) record how far the
    farthest point is from the subsample, and lie within bottleneck distance ``error_bound``
    = 2 × cover_radius of the exact ones (stability of Rips persistence under Hausdorff
    perturbation).
    ``entropy[k]`` is :func:`persistence_entropy` of ``diagrams[k]``.
    """

    diagrams: list[np.ndarray]
    metric: str = "cosine"
    n_points: int = 0
    threshold: float = math.inf
    cover_radius: float = 0.0
    entropy: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.diagrams = [
            _sorted(as_diagram(d, name=f"diagrams[{k}]")) for k, d in enumerate(self.diagrams)
        ]
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
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
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
    engine: Engine = "auto",
) -> Diagrams:
    """Persistence diagrams H0..maxdim of the Rips filtration of a square distance matrix.

    ``engine``: "gudhi" (gudhi's Ripser), "holos" (holos-tda's engine on the dense matrix,
    gudhi's edge collapse where it is installed and chosen), "ripser" (ripser.py, the
    reference) or "auto" (gudhi, with holos-tda for H2 where it is installed, else ripser.py;
    ripser.py for ``n_perm``). All compute in float32, so they give identical diagrams.
    """
    dist = np.asarray(distances, dtype=np.float64)
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"distances must be a square matrix, got shape {dist.shape}")
    if not np.isfinite(dist).all():
        raise ValueError("distances contain NaN or infinite values")
    if (dist < 0).any():
        raise ValueError("distances must be non-negative")
    _check_maxdim(maxdim)
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
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
    # A subsample as large as the input is the input: ripser would reject n_perm > n.
    subsample = n_perm if n_perm is not None and n_perm < n else None
    if subsample is not None and engine in ("gudhi", "holos"):
        raise ValueError(
            "n_perm (greedy subsample) is computed by ripser: use engine 'ripser' or 'auto'"
        )
    kernel = None if subsample is not None else _dense_kernel(engine, maxdim)
    if kernel is None and engine in ("gudhi", "holos"):
        package = "holos-tda" if engine == "holos" else "gudhi"
        raise ValueError(f"engine {engine!r} needs the {package} package (pip install {package})")

    cover_radius = 0.0
    if kernel is not None:
        dgms = _exact_persistence(dist, maxdim, limit, kernel)
    else:
        from ripser import ripser

        result = ripser(dist, maxdim=maxdim, thresh=limit, distance_matrix=True, n_perm=subsample)
        dgms = list(result["dgms"])
        cover_radius = float(result["r_cover"]) if subsample else 0.0
    return Diagrams(
        dgms,
        metric=metric,
        n_points=n,
        threshold=limit,
        cover_radius=cover_radius,
    )


def _sorted(diagram: np.ndarray) -> np.ndarray:
    """Rows by birth then death: engines list the same pairs in different orders."""
    dgm = np.asarray(diagram, dtype=np.float64).reshape(-1, 2)
    return dgm[np.lexsort((dgm[:, 1], dgm[:, 0]))]


def _dense_kernel(engine: str, maxdim: int) -> Any:
    """The kernel that ``engine`` runs on a dense distance matrix (gudhi's calling convention),
    or None where it is not installed ("auto": None means ripser.py).

    "auto" takes holos-tda's for H2, where it took 25-40 % less CPU than gudhi's on random walks;
    for H0/H1 gudhi's, which was as fast or 5-20 % faster (bench/RESULTS.md).
    """
    if engine == "gudhi":
        return _gudhi_kernel()
    if engine == "holos":
        return _holos_kernel()
    if engine != "auto":
        return None
    gudhi = _gudhi_kernel()
    holos = _holos_kernel() if maxdim >= 2 or gudhi is None else None
    return holos if holos is not None else gudhi


def _gudhi_kernel() -> Any:
    """gudhi's Ripser on a full distance matrix, or None without a gudhi that has it.

    Called as ``(matrix, max_dimension=, max_edge_length=, homology_coeff_field=)``. It is the
    private module behind ``gudhi.sklearn.rips_persistence.RipsPersistence`` (``_ripser`` in
    gudhi 3.11, ``_ripser_ext`` by 3.13): the class imports scikit-learn and joblib (0.7 s) to
    reach it, the module alone takes 0.07 s. Should a later gudhi move it again, "auto" falls
    back to ripser.py.
    """
    return _gudhi_ripser("_full")


def _gudhi_ripser(name: str) -> Any:
    """A function of gudhi's private Ripser module: ``_full`` (a distance matrix) or ``_sparse``
    (edges as COO arrays), or None."""
    for module in ("gudhi._ripser_ext", "gudhi._ripser"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return None


def _exact_persistence(
    dist: np.ndarray, maxdim: int, limit: float, kernel: Any
) -> list[np.ndarray]:
    """Exact diagrams H0..maxdim up to ``limit``, on float32 like ripser.py: ``kernel`` on the
    dense matrix (gudhi's or holos-tda's), gudhi's sparse kernel after an edge collapse."""
    d = without_duplicates(np.ascontiguousarray(dist, dtype=np.float32))
    n = len(d)
    # Past the enclosing radius one point is joined to all: a cone, with nothing left to happen
    # (ripser.py stops there too).
    radius = float(d.max(axis=1).min())

    def run(scale: float, collapse: bool | None = None) -> list[np.ndarray]:
        top = min(maxdim, max(0, n - 3))  # gudhi's Ripser leaves out what n points cannot have
        collapsed = _collapsed(d, scale, top, collapse) if maxdim >= 2 else None
        if collapsed is not None:
            dgms = collapsed
        else:
            matrix = d
            if maxdim >= 2:
                # Vertices by ascending degree at the scale run to: the same diagrams (they do
                # not depend on vertex order), and 2.5x less work for H2 on trajectories (more
                # apparent pairs), against time order.
                order = np.argsort(np.count_nonzero(d <= scale, axis=1), kind="stable")
                matrix = np.ascontiguousarray(d[np.ix_(order, order)])
            dgms = kernel(matrix, max_dimension=top, max_edge_length=scale, homology_coeff_field=2)
        return [
            np.asarray(dgms[k]) if k < len(dgms) else np.empty((0, 2)) for k in range(maxdim + 1)
        ]

    def settled(dgms: list[np.ndarray]) -> bool:
        # Every birth is at most the cut, so when every class but the one component also died
        # by it, nothing is left for the rest of the filtration: exact.
        h0, *higher = dgms
        return bool(
            np.isinf(h0[:, 1]).sum() == 1 and not any(np.isinf(h[:, 1]).any() for h in higher)
        )

    if limit >= radius and n <= (_HUB_CUT_MAX_POINTS if maxdim <= 1 else _CUT_MAX_POINTS):
        collapse = False
        if maxdim <= 1:
            cut = _cut_scale(d, radius)
            cuts = [] if cut is None else [cut]
        elif maxdim == 2:
            cuts = _h2_cut_scales(d, radius)
            collapse = bool(cuts) and _collapses_well(d, cuts[0])
            if collapse:
                # After a collapse the kernel takes little, and a collapse costs about the same
                # at either cut, while the first cut left classes open on 7 of 8 settling runs
                # (a collapse done for one cut cannot serve a smaller one: its diagrams cut
                # lower differ). So one collapse, at the last cut.
                cuts = cuts[-1:]
        else:
            cuts = []
        for cut in cuts:
            dgms = run(cut, True if collapse else None)  # else forecast at that cut
            if settled(dgms):
                return dgms
    return run(min(limit, radius))


def _collapsed(
    d: np.ndarray, scale: float, maxdim: int, worth: bool | None = None
) -> list[Any] | None:
    """Diagrams through gudhi's edge collapse (Boissonnat & Pritam: the same persistent
    homology from fewer edges), or None where it is not worth it or not available.

    Clustered trajectories (a run settling into basins) lose 70-90 % of their edges and H2
    becomes 20-60x cheaper; near-orthogonal random walks lose almost none (and the collapse
    costs seconds), so it is only tried where :func:`_collapses_well` forecasts it (``worth``:
    already forecast for this input).
    """
    if not (_collapses_well(d, scale) if worth is None else worth):
        return None
    iu, ju = np.triu_indices(len(d), 1)
    lengths = d[iu, ju]
    below = lengths <= scale
    sparse_kernel = _gudhi_ripser("_sparse")
    try:
        from gudhi.flag_filtration.edge_collapse import reduce_graph
        from scipy.sparse import coo_matrix
    except ImportError:
        return None
    if sparse_kernel is None:
        return None
    graph = reduce_graph(coo_matrix((lengths[below], (iu[below], ju[below])), shape=d.shape))
    return list(
        sparse_kernel(
            graph.row.astype(np.int32),
            graph.col.astype(np.int32),
            graph.data.astype(np.float32),
            len(d),
            max_dimension=maxdim,
            max_edge_length=scale,
            homology_coeff_field=2,
        )
    )


def _collapses_well(d: np.ndarray, scale: float) -> bool:
    """Whether edge collapse is worth it up to ``scale``: more than ``_COLLAPSE_ABOVE`` of a
    sample of the edges dominated there (:func:`~genarun.analysis._link_cut.dominated_share`).
    It replaced "more than half of the edges kept", which sent a settling run whose cut kept
    46 % to the dense kernel: 19 s instead of 2 s."""
    if _COLLAPSE_ABOVE <= 0 or _COLLAPSE_ABOVE >= 1:
        return _COLLAPSE_ABOVE <= 0
    return dominated_share(d, scale) > _COLLAPSE_ABOVE


def _h2_cut_scales(d: np.ndarray, radius: float) -> list[float]:
    """Scales below the enclosing radius at which the exact H0..H2 filtration may stop.

    Past the longer of :func:`_last_birth` (H0 deaths, H1 births) and
    :func:`~genarun.analysis._link_cut.last_h2_birth` (H1 deaths, H2 births) nothing can be born;
    the caller checks that every class has died by the scale. H2 classes die a little after
    the last birth, so a close scale is tried first, then one further on.
    """
    if len(d) < 4 or radius == 0:
        return []
    births = [_last_birth(d, radius), last_h2_birth(d, radius)]
    if any(b is not None and math.isinf(b) for b in births):
        return []
    last = max((b for b in births if b is not None), default=0.0)
    return [
        last + f * (radius - last) for f in _H2_CUT_MARGINS if last + f * (radius - last) < radius
    ]


def _cut_scale(d: np.ndarray, radius: float) -> float | None:
    """A scale below the enclosing radius at which the exact H0/H1 filtration can stop, or None.

    The cut is the last possible birth (:func:`_last_birth`) plus ``_CUT_MARGIN`` of the way to
    the radius; the caller checks that every class has died by then, else runs to the radius.
    None when it would save little: if over half of the edges lie below the cut, the time saved
    when it works is less than the time lost when it does not.
    """
    if radius == 0:
        return None
    lengths = d[np.triu_indices(len(d), 1)]
    lengths = lengths[lengths <= radius]
    median = float(np.partition(lengths, len(lengths) // 2)[len(lengths) // 2])
    if len(d) <= _CUT_MAX_POINTS:
        last_birth = _last_birth(d, radius, give_up_above=median)
    else:
        last_birth = last_h1_birth(d, radius)
    if last_birth is None or last_birth > median:
        return None
    cut = last_birth + _CUT_MARGIN * (radius - last_birth)
    return cut if np.count_nonzero(lengths <= cut) <= len(lengths) / 2 else None


def persistence_diagrams(
    points: np.ndarray,
    maxdim: int = 1,
    metric: Metric = "cosine",
    *,
    threshold: float | None = None,
    n_perm: int | None = None,
    engine: Engine = "auto",
) -> Diagrams:
    """Persistent homology H0..maxdim of one trajectory's (N, D) embedding sequence.

    Exact by default. ``threshold`` stops the filtration at that scale (exact for every class
    that dies below it; classes still open there get death ``inf``). ``n_perm`` computes the
    diagrams of a greedy farthest-point subsample of that many steps: much faster on long
    trajectories, approximate within ``Diagrams.error_bound``. ``engine``: see
    :func:`persistence_from_distances`.
    """
    _check_maxdim(maxdim)
    x = as_points(points)
    if len(x) < 2:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        if metric == "cosine" and len(x):
            unit_rows(x)
        return persistence_from_distances(
            np.zeros((len(x), len(x))), maxdim, metric=metric, threshold=threshold, engine=engine
        )
    return persistence_from_distances(
        pairwise_distances(x, metric),
        maxdim,
        metric=metric,
        threshold=threshold,
        n_perm=n_perm,
        engine=engine,
    )


def _check_maxdim(maxdim: int) -> None:
    if not isinstance(maxdim, int | np.integer) or maxdim < 0:
        raise ValueError(f"maxdim must be a non-negative integer, got {maxdim!r}")


def _check_format(name: object, version: object) -> None:
    if name != FORMAT:
        raise ValueError(f"not a serialised Diagrams object (format {name!r})")
    if version != FORMAT_VERSION:
        raise ValueError(f"Diagrams format version {version} is not supported (expected 1)")
