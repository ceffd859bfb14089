"""Persistence diagrams, entropy and (de)serialisation of one trajectory's embeddings."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from genarun.analysis import (
    Diagrams,
    bottleneck,
    pairwise_distances,
    persistence_diagrams,
    persistence_entropy,
    persistence_from_distances,
)
from genarun.analysis.persistence import Engine


def circle(n: int = 40, dims: int = 2, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """n points on a unit circle, embedded in the first two of ``dims`` coordinates."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    points = np.zeros((n, dims))
    points[:, 0], points[:, 1] = np.cos(t), np.sin(t)
    return points + noise * rng.standard_normal(points.shape)


def test_circle_has_one_long_lived_loop() -> None:
    dgms = persistence_diagrams(circle(), maxdim=1, metric="euclidean")
    h0, h1 = dgms.diagrams
    assert len(h0) == 40 and np.isinf(h0[:, 1]).sum() == 1
    assert len(h1) == 1
    # Born when neighbours (2 sin(pi/40) apart) connect; dies when chords spanning k > n/3
    # steps appear (Adamaszek & Adams: VR of evenly spaced circle points), here k = 14.
    assert h1[0, 0] == pytest.approx(2 * np.sin(np.pi / 40), rel=1e-5)
    assert h1[0, 1] == pytest.approx(2 * np.sin(14 * np.pi / 40), rel=1e-5)
    assert dgms.entropy[1] == 0.0  # a single feature
    assert dgms.entropy[0] == pytest.approx(math.log(39))  # 39 equal finite H0 lifetimes
    assert dgms.maxdim == 1 and dgms.n_points == 40 and dgms.metric == "euclidean"


def test_cosine_distances_match_scipy_and_are_clean() -> None:
    rng = np.random.default_rng(1)
    points = rng.standard_normal((30, 16)).astype(np.float32)
    points[5] = points[3] * 2.5  # same direction: cosine distance 0 up to rounding
    dist = pairwise_distances(points, "cosine")
    np.testing.assert_allclose(dist, cdist(points.astype(np.float64), points, "cosine"), atol=1e-12)
    assert dist[3, 5] < 1e-12 and (dist >= 0).all() and (np.diag(dist) == 0).all()
    euclid = pairwise_distances(points, "euclidean")
    np.testing.assert_allclose(euclid, cdist(points.astype(np.float64), points), atol=1e-9)


def test_matches_ripsers_own_cosine_metric() -> None:
    from ripser import ripser

    rng = np.random.default_rng(2)
    points = rng.standard_normal((60, 8))
    ours = persistence_diagrams(points, maxdim=1, metric="cosine")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ripser(points, maxdim=1, metric="cosine")["dgms"]
    for mine, ref in zip(ours.diagrams, theirs, strict=True):
        np.testing.assert_allclose(np.sort(mine, axis=0), np.sort(ref, axis=0), atol=1e-6)


def test_no_ripser_warning_for_wide_embeddings() -> None:
    points = np.random.default_rng(3).standard_normal((20, 768))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        persistence_diagrams(points)


def test_tiny_inputs() -> None:
    empty = persistence_diagrams(np.empty((0, 5)), maxdim=2)
    assert [d.shape for d in empty.diagrams] == [(0, 2)] * 3 and empty.entropy == [0.0] * 3
    one = persistence_diagrams(np.ones((1, 5)))
    np.testing.assert_array_equal(one.diagrams[0], [[0.0, math.inf]])
    assert one.diagrams[1].shape == (0, 2) and one.entropy == [0.0, 0.0]
    two = persistence_diagrams(np.array([[1.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_allclose(two.diagrams[0], [[0.0, 1.0], [0.0, math.inf]])


def test_duplicate_points_are_fine() -> None:
    points = np.repeat(circle(12), 3, axis=0)  # every step three times
    dgms = persistence_diagrams(points, metric="euclidean")
    reference = persistence_diagrams(circle(12), metric="euclidean")
    # Duplicates merge at distance 0, which ripser does not report: same diagram as without them.
    for mine, ref in zip(dgms.diagrams, reference.diagrams, strict=True):
        np.testing.assert_allclose(np.sort(mine, axis=0), np.sort(ref, axis=0))
    assert dgms.n_points == 36


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), "NaN or infinite"),
        (np.zeros(5), "2-D"),
        (np.array([[0.0, 0.0], [1.0, 1.0]]), "all-zero rows"),
        (np.array([["a", "b"]]), "real numbers"),
    ],
)
def test_bad_points_raise_clear_errors(points: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        persistence_diagrams(points)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        persistence_diagrams(circle(), metric="manhattan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="maxdim"):
        persistence_diagrams(circle(), maxdim=-1)
    with pytest.raises(ValueError, match="square"):
        persistence_from_distances(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        persistence_from_distances(np.full((3, 3), np.nan))


def test_entropy_definition() -> None:
    assert persistence_entropy(np.empty((0, 2))) == 0.0
    assert persistence_entropy(np.array([[0.0, 1.0]])) == 0.0
    assert persistence_entropy(np.array([[0.0, 1.0], [2.0, 3.0]])) == pytest.approx(math.log(2))
    # Infinite and zero-length points take no share.
    mixed = np.array([[0.0, 1.0], [0.5, 1.5], [0.0, math.inf], [0.3, 0.3]])
    assert persistence_entropy(mixed) == pytest.approx(math.log(2))
    lifetimes = np.array([1.0, 2.0, 3.0])
    shares = lifetimes / lifetimes.sum()
    dgm = np.column_stack([np.zeros(3), lifetimes])
    assert persistence_entropy(dgm) == pytest.approx(-np.sum(shares * np.log(shares)))


def test_threshold_truncates_and_is_recorded() -> None:
    full = persistence_diagrams(circle(), metric="euclidean")
    cut = persistence_diagrams(circle(), metric="euclidean", threshold=1.0)
    assert cut.threshold == 1.0 and math.isinf(full.threshold)
    # The loop is born below the threshold and is still open at it.
    assert np.isinf(cut.diagrams[1][:, 1]).all() and len(cut.diagrams[1]) == 1
    np.testing.assert_allclose(cut.diagrams[1][:, 0], full.diagrams[1][:, 0])


def test_greedy_subsample_is_within_its_bound() -> None:
    points = circle(200, dims=6, noise=0.03, seed=4)
    exact = persistence_diagrams(points, metric="euclidean")
    approx = persistence_diagrams(points, metric="euclidean", n_perm=40)
    assert exact.error_bound == 0.0 and 0 < approx.error_bound < 0.5
    assert len(approx.diagrams[0]) == 40 and approx.n_points == 200
    for dim in (0, 1):
        gap = bottleneck(exact.diagrams[dim], approx.diagrams[dim])
        assert gap <= approx.error_bound + 1e-6
    assert Diagrams.from_bytes(approx.to_bytes()).cover_radius == approx.cover_radius
    # Asking for at least as many points as there are is the exact computation.
    assert persistence_diagrams(points, metric="euclidean", n_perm=500) == exact


def test_json_round_trip_is_exact_and_json_safe() -> None:
    dgms = persistence_diagrams(circle(noise=0.05), metric="euclidean", threshold=1.5)
    text = json.dumps(dgms.to_json(), allow_nan=False)  # no inf or NaN reaches the JSON
    back = Diagrams.from_json(json.loads(text))
    assert back == dgms and back.entropy == dgms.entropy
    assert json.loads(text)["diagrams"][0][-1][1] is None


def test_bytes_round_trip() -> None:
    dgms = persistence_diagrams(circle(noise=0.05), maxdim=2)
    back = Diagrams.from_bytes(dgms.to_bytes())
    assert back == dgms and back.entropy == dgms.entropy and back.maxdim == 2
    assert np.isinf(back.diagrams[0][:, 1]).sum() == 1
    with pytest.raises(ValueError, match="not a serialised"):
        Diagrams.from_json({"format": "other", "version": 1})


def test_import_is_cheap() -> None:
    code = (
        "import sys, genarun.analysis; "
        "print(sorted(m for m in ('gudhi', 'ripser', 'scipy', 'matplotlib', 'persim') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def sphere_walk(steps: int = 160, dims: int = 200, seed: int = 0) -> np.ndarray:
    """A random walk on the unit sphere: far-apart steps near-orthogonal, as in the bench."""
    rng = np.random.default_rng(seed)
    x = [rng.standard_normal(dims)]
    for _ in range(steps - 1):
        x.append(x[-1] / np.linalg.norm(x[-1]) + 0.5 * rng.standard_normal(dims) / np.sqrt(dims))
    return np.array(x)


def sphere(n: int = 80, seed: int = 0) -> np.ndarray:
    """n points on the unit 2-sphere in R^3: one long-lived H2 class."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clouds() -> list[tuple[str, np.ndarray, str]]:
    rng = np.random.default_rng(5)
    grid = rng.integers(0, 4, size=(50, 3)).astype(float)  # many equal distances, duplicates
    line = np.outer(rng.uniform(0, 5, 40), rng.standard_normal(8))  # collinear
    return [
        ("gaussian", rng.standard_normal((70, 12)), "cosine"),
        ("gaussian", rng.standard_normal((60, 5)), "euclidean"),
        ("grid with ties", grid, "euclidean"),
        ("repeated steps", np.repeat(rng.standard_normal((25, 6)), 3, axis=0), "cosine"),
        ("noisy circle", circle(60, dims=4, noise=0.05), "euclidean"),
        ("sphere walk", sphere_walk(), "cosine"),
        ("three points", rng.standard_normal((3, 4)), "euclidean"),
        ("sphere", sphere(), "euclidean"),
        ("sphere with duplicates", np.repeat(sphere(40, seed=1), 2, axis=0), "euclidean"),
        ("collinear", line, "euclidean"),
        ("random 768-d", rng.standard_normal((50, 768)), "cosine"),
    ]


RIPSER_DIAGRAMS: dict[tuple[str, str, str], Diagrams] = {}
HOLOS = pytest.mark.skipif(
    importlib.util.find_spec("holos_tda") is None, reason="holos-tda is optional"
)


@pytest.mark.parametrize(("name", "points", "metric"), clouds(), ids=[c[0] for c in clouds()])
@pytest.mark.parametrize(
    "options",
    [{}, {"threshold": 0.8}, {"maxdim": 0}, {"maxdim": 2}, {"maxdim": 2, "threshold": 0.8}],
    ids=str,
)
@pytest.mark.parametrize("engine", ["gudhi", pytest.param("holos", marks=HOLOS)])
def test_exact_engines_give_ripsers_diagrams_exactly(
    name: str, points: np.ndarray, metric: str, options: dict[str, float], engine: Engine
) -> None:
    key = (name, metric, str(options))
    if key not in RIPSER_DIAGRAMS:  # computed once for both engines (the slowest part)
        RIPSER_DIAGRAMS[key] = persistence_diagrams(
            points, metric=metric, engine="ripser", **options
        )
    by_ripser = RIPSER_DIAGRAMS[key]
    by_engine = persistence_diagrams(points, metric=metric, engine=engine, **options)
    assert by_engine == by_ripser  # the same float32 values, in the same (sorted) order
    assert persistence_diagrams(points, metric=metric, **options) == by_engine  # "auto"
    for dgm in by_engine.diagrams:
        np.testing.assert_array_equal(dgm, dgm[np.lexsort((dgm[:, 1], dgm[:, 0]))])


@pytest.mark.parametrize(("name", "points", "metric"), clouds(), ids=[c[0] for c in clouds()])
def test_last_birth_bounds_every_birth_and_merge(
    name: str, points: np.ndarray, metric: str
) -> None:
    from genarun.analysis.persistence import _last_birth

    d = pairwise_distances(points, metric).astype(np.float32)  # type: ignore[arg-type]
    h0, h1 = persistence_from_distances(d, metric=metric, engine="ripser").diagrams
    radius = float(d.max(axis=1).min())
    bound = _last_birth(d, radius)
    assert bound is not None
    events = np.concatenate([h1[:, 0], h0[np.isfinite(h0[:, 1]), 1], [0.0]])
    assert bound >= events.max()
    # It is a real edge with no witness, so never above the enclosing radius.
    assert bound <= radius and np.isin(np.float32(bound), d)


@pytest.mark.parametrize(("name", "points", "metric"), clouds(), ids=[c[0] for c in clouds()])
def test_last_h2_birth_bounds_every_h2_birth_and_h1_death(
    name: str, points: np.ndarray, metric: str
) -> None:
    from genarun.analysis._link_cut import last_h2_birth

    d = pairwise_distances(points, metric).astype(np.float32)  # type: ignore[arg-type]
    _, h1, h2 = persistence_from_distances(d, 2, metric=metric, engine="ripser").diagrams
    radius = float(d.max(axis=1).min())
    bound = last_h2_birth(d, radius)
    events = np.concatenate([h2[:, 0], h1[np.isfinite(h1[:, 1]), 1]])
    if bound is None:  # no edge whose link can be disconnected: nothing to bound
        assert not len(events)
    else:
        assert bound >= events.max(initial=0.0) and bound <= radius
        assert np.isin(np.float32(bound), d)


def longest_link_found_disconnected(d: np.ndarray, radius: float) -> float | None:
    """What last_h2_birth computes, the slow way: an exact check of every edge's link, the
    longest edge first."""
    from genarun.analysis._link_cut import _link_connected

    iu, ju = np.triu_indices(len(d), 1)
    lengths = d[iu, ju]
    for i in np.argsort(lengths, kind="stable")[::-1]:
        if lengths[i] <= radius and not _link_connected(d, iu[i], ju[i], float(lengths[i])):
            return float(lengths[i])
    return None


H2_BOUND_CASES = [
    *(
        c
        for c in clouds()
        if c[0] in ("grid with ties", "repeated steps", "sphere with duplicates")
    ),
    ("walk", sphere_walk(90, 200, 1), "cosine"),
]


@pytest.mark.parametrize(
    ("name", "points", "metric"), H2_BOUND_CASES, ids=[c[0] for c in H2_BOUND_CASES]
)
@pytest.mark.parametrize(("hubs", "block"), [(256, 8192), (16, 1)], ids=["default", "few hubs"])
def test_last_h2_birth_is_the_longest_link_an_exact_check_finds_disconnected(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    points: np.ndarray,
    metric: str,
    hubs: int,
    block: int,
) -> None:
    """The hubs only spare exact checks: a link they prove connected is connected. With 16
    hubs and blocks of 8n edges, 10-25 % of the links the root hub's neighbours leave are
    proved through hubs farther from the root (the rest go to the exact check)."""
    from genarun.analysis import _link_cut

    monkeypatch.setattr(_link_cut, "_HUBS", hubs)
    monkeypatch.setattr(_link_cut, "_BLOCK", block)
    d = pairwise_distances(points, metric).astype(np.float32)  # type: ignore[arg-type]
    radius = float(d.max(axis=1).min())
    assert _link_cut.last_h2_birth(d, radius) == longest_link_found_disconnected(d, radius)


def test_hubs_prove_most_links_of_a_walk_without_exact_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Links the root hub's neighbours leave are proved through hubs farther from the root
    (one hop only: 322 exact checks here, about 0.2 ms each at 1,000 points)."""
    from genarun.analysis import _link_cut

    checks: list[float] = []
    exact = _link_cut._link_connected

    def counted(d: np.ndarray, u: int, v: int, t: float) -> bool:
        checks.append(t)
        return exact(d, u, v, t)

    monkeypatch.setattr(_link_cut, "_link_connected", counted)
    d = pairwise_distances(sphere_walk(400, 300, 0), "cosine").astype(np.float32)
    bound = _link_cut.last_h2_birth(d, float(d.max(axis=1).min()))
    assert bound == pytest.approx(0.97146, abs=1e-5)
    assert len(checks) < 60


def test_sphere_has_one_void_and_the_h2_cut_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from genarun.analysis import persistence

    points = sphere(100)
    reference = persistence_diagrams(points, maxdim=2, metric="euclidean", engine="ripser")
    h2 = reference.diagrams[2]
    assert (h2[:, 1] - h2[:, 0] > 0.5).sum() == 1  # the sphere's void
    spy = KernelSpy.on_dense(monkeypatch)
    monkeypatch.setattr(persistence, "_COLLAPSE_ABOVE", 2.0)  # the dense kernel, spied on
    assert persistence_diagrams(points, maxdim=2, metric="euclidean") == reference
    radius = float(pairwise_distances(points, "euclidean").astype(np.float32).max(axis=1).min())
    assert spy.scales[0] < radius  # the cut was tried


@pytest.mark.parametrize("seed", [0, 1])
def test_h2_cut_on_trajectories_is_exact_and_stops_early(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    from genarun.analysis import persistence

    points = sphere_walk(130, 300, seed)
    reference = persistence_diagrams(points, maxdim=2, engine="ripser")
    assert len(reference.diagrams[2])  # walks in high dimension have many small voids
    spy = KernelSpy.on_dense(monkeypatch)
    monkeypatch.setattr(persistence, "_COLLAPSE_ABOVE", 2.0)  # the dense kernel, spied on
    assert persistence_diagrams(points, maxdim=2) == reference
    radius = float(pairwise_distances(points).astype(np.float32).max(axis=1).min())
    assert spy.scales[-1] < radius  # settled at a cut, never run to the radius
    # Cuts at the last birth leave voids open: then the filtration runs to the radius, exact.
    monkeypatch.setattr(persistence, "_H2_CUT_MARGINS", (0.0,))
    spy.scales.clear()
    assert persistence_diagrams(points, maxdim=2) == reference
    assert spy.scales[0] < radius and spy.scales[-1] == pytest.approx(radius)


@pytest.mark.parametrize(("name", "points", "metric"), clouds(), ids=[c[0] for c in clouds()])
def test_h2_through_edge_collapse_or_not_gives_ripsers_diagrams(
    monkeypatch: pytest.MonkeyPatch, name: str, points: np.ndarray, metric: str
) -> None:
    from genarun.analysis import persistence

    reference = persistence_diagrams(points, maxdim=2, metric=metric, engine="ripser")
    for share in (0.0, 2.0):  # always collapse, never
        monkeypatch.setattr(persistence, "_COLLAPSE_ABOVE", share)
        assert persistence_diagrams(points, maxdim=2, metric=metric) == reference


def test_settling_trajectory_h2_is_exact() -> None:
    # Two basins of noisy steps and exact repeats: duplicates removed, edges collapsed.
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((2, 64))
    steps = [c + 0.2 * rng.standard_normal((60, 64)) for c in centres]
    repeats = np.repeat(centres + 0.3 * rng.standard_normal((2, 64)), 20, axis=0)
    points = np.concatenate([sphere_walk(40, 64, 4), *steps, repeats])
    reference = persistence_diagrams(points, maxdim=2, engine="ripser")
    assert persistence_diagrams(points, maxdim=2) == reference
    assert persistence_diagrams(points, maxdim=1) == persistence_diagrams(
        points, maxdim=1, engine="ripser"
    )


def settling_run(steps: int, dims: int, seed: int) -> np.ndarray:
    """A short walk, then a period-2 cycle in a basin (images noisy around one point, captions
    repeating 2-4 fixed embeddings), with a move to a second basin: the bench's attractor."""
    rng = np.random.default_rng(seed)

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    def near(x: np.ndarray, scale: float) -> np.ndarray:
        return unit(x + scale * rng.standard_normal(dims) / np.sqrt(dims))

    x = unit(rng.standard_normal(dims))
    out = [x]
    transient = int(rng.integers(50, 150))
    while len(out) < transient:
        x = near(x, 0.5)
        out.append(x)
    switch = int(rng.integers(int(steps * 0.5), int(steps * 0.7)))
    image, captions = near(x, 0.3), [near(x, 0.4) for _ in range(int(rng.integers(2, 5)))]
    while len(out) < steps:
        if len(out) == switch:
            for _ in range(int(rng.integers(20, 40))):
                x = near(x, 0.5)
                out.append(x)
            image, captions = near(x, 0.3), [near(x, 0.4) for _ in range(int(rng.integers(2, 5)))]
        elif len(out) % 2:
            out.append(near(image, 0.25))
        else:
            out.append(captions[int(rng.integers(len(captions)))])
    return np.asarray(out[:steps], dtype=np.float32)


def test_settling_run_is_collapsed_though_its_cut_keeps_under_half_the_edges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whether to collapse is forecast from the edges dominated at the cut, not from the share
    of edges kept (under half here: the dense kernel took 19 s instead of 2 s on such a run of
    1,000 steps); and one collapse, at the last cut, serves."""
    from genarun.analysis import persistence
    from genarun.analysis._link_cut import without_duplicates

    points = settling_run(200, 64, 2)
    d = without_duplicates(pairwise_distances(points, "cosine").astype(np.float32))
    first = persistence._h2_cut_scales(d, float(d.max(axis=1).min()))[0]
    assert (d[np.triu_indices(len(d), 1)] <= first).mean() < 0.5
    reference = persistence_diagrams(points, maxdim=2, engine="ripser")
    calls: list[str] = []
    find = persistence._gudhi_ripser

    def spied(name: str) -> object:
        kernel = find(name)
        return lambda *a, **k: (calls.append(name), kernel(*a, **k))[1]  # type: ignore[misc]

    monkeypatch.setattr(persistence, "_gudhi_ripser", spied)
    assert persistence_diagrams(points, maxdim=2) == reference
    assert calls == ["_sparse"]


class KernelSpy:
    """Records the scales that a dense kernel (gudhi's or holos-tda's) is run to."""

    def __init__(self, kernel: object) -> None:
        self.kernel, self.scales = kernel, []

    @classmethod
    def on_dense(cls, monkeypatch: pytest.MonkeyPatch) -> KernelSpy:
        """A spy on the dense kernel each engine picks (holos-tda's for H2 under "auto")."""
        from genarun.analysis import persistence

        pick = persistence._dense_kernel
        spy = cls(None)

        def spied(engine: str, maxdim: int) -> object:
            spy.kernel = pick(engine, maxdim)
            return spy

        monkeypatch.setattr(persistence, "_dense_kernel", spied)
        return spy

    def __call__(self, matrix: np.ndarray, **kwargs: float) -> list[np.ndarray]:
        self.scales.append(kwargs["max_edge_length"])
        return self.kernel(matrix, **kwargs)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("walk", "margin", "runs"),
    [
        ((200, 400, 0), 1 / 8, 1),  # every class has died by the cut
        ((200, 400, 0), 0.0, 2),  # cut at the last birth: a class still alive, run to the end
        ((160, 200, 1), 1 / 8, 2),  # a class outlives the cut
    ],
)
def test_early_cut_stops_below_the_radius_and_stays_exact(
    monkeypatch: pytest.MonkeyPatch, walk: tuple[int, int, int], margin: float, runs: int
) -> None:
    from genarun.analysis import persistence

    points = sphere_walk(*walk)
    reference = persistence_diagrams(points, engine="ripser")
    spy = KernelSpy(persistence._gudhi_kernel())
    monkeypatch.setattr(persistence, "_gudhi_kernel", lambda: spy)
    monkeypatch.setattr(persistence, "_CUT_MARGIN", margin)
    assert persistence_diagrams(points, engine="gudhi") == reference
    radius = float(pairwise_distances(points).astype(np.float32).max(axis=1).min())
    assert len(spy.scales) == runs and spy.scales[0] < radius  # the cut was tried
    assert (spy.scales[0] >= reference.diagrams[1][:, 1].max()) == (runs == 1)
    if runs == 2:
        assert spy.scales[1] == pytest.approx(radius)


def test_engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from genarun.analysis import persistence

    points = circle(30, noise=0.05)
    with pytest.raises(ValueError, match="unknown engine"):
        persistence_diagrams(points, engine="dionysus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_perm"):
        persistence_diagrams(points, n_perm=10, engine="gudhi")
    # n_perm >= N is the exact computation, which gudhi does.
    assert persistence_diagrams(points, n_perm=30, engine="gudhi") == persistence_diagrams(points)
    with pytest.raises(ValueError, match="n_perm"):
        persistence_diagrams(points, n_perm=10, engine="holos")
    exact, exact_h2 = persistence_diagrams(points), persistence_diagrams(points, maxdim=2)
    # Without holos-tda, "auto" is gudhi's kernel at H2 too, with the same result; without gudhi
    # either, ripser.py. An engine asked for by name says what is missing.
    monkeypatch.setattr(persistence, "_holos_kernel", lambda: None)
    assert persistence._dense_kernel("auto", 2) is persistence._gudhi_kernel()
    assert persistence_diagrams(points, maxdim=2) == exact_h2
    with pytest.raises(ValueError, match="needs the holos-tda package"):
        persistence_diagrams(points, engine="holos")
    monkeypatch.setattr(persistence, "_gudhi_kernel", lambda: None)
    assert persistence._dense_kernel("auto", 2) is None
    assert persistence_diagrams(points) == exact
    assert persistence_diagrams(points, maxdim=2) == exact_h2
    with pytest.raises(ValueError, match="needs the gudhi package"):
        persistence_diagrams(points, engine="gudhi")


@HOLOS
def test_auto_takes_holos_for_h2_and_gudhi_below(monkeypatch: pytest.MonkeyPatch) -> None:
    """holos-tda's kernel took 25-40 % less CPU than gudhi's at H2 on random walks, and was no
    faster at H0/H1 (bench/RESULTS.md); without gudhi it serves every dimension, on any number
    of threads with the same diagrams."""
    from genarun.analysis import _holos, persistence

    gudhi = persistence._gudhi_kernel()
    assert persistence._dense_kernel("auto", 2).__module__ == "genarun.analysis._holos"
    assert persistence._dense_kernel("auto", 1) is gudhi
    assert persistence._dense_kernel("gudhi", 2) is gudhi
    monkeypatch.setattr(persistence, "_gudhi_kernel", lambda: None)
    assert persistence._dense_kernel("auto", 1).__module__ == "genarun.analysis._holos"
    points = sphere_walk(60, 64, 3)
    reference = persistence_diagrams(points, maxdim=2, engine="ripser")
    for threads in (1, 3, None):  # None: every core the process may use
        monkeypatch.setattr(_holos, "_THREADS", threads)
        assert persistence_diagrams(points, maxdim=2) == reference
