"""The H2 bound's bitset steps (genarun.analysis._link_cut) against plain boolean arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from genarun.analysis import _link_cut


@pytest.mark.parametrize(
    ("rows", "cols"), [(1, 1), (3, 63), (5, 64), (17, 65), (40, 256), (9, 300)]
)
def test_unpack_inverts_pack(rows: int, cols: int) -> None:
    rng = np.random.default_rng(rows * 1000 + cols)
    for density in (0.0, 0.1, 0.5, 1.0):
        adjacent = rng.random((rows, cols)) < density
        assert np.array_equal(_link_cut._unpack(_link_cut._pack(adjacent), cols), adjacent)


def covered_by_products(
    left: np.ndarray, inlink: np.ndarray, reached: np.ndarray, joined: np.ndarray, near: np.ndarray
) -> np.ndarray:
    """The reach through hubs as it was computed before: a float product of 0/1 matrices (a
    BLAS call) for the hubs one step on."""
    covered = ~left.any(axis=1)
    reached = reached.copy()
    frontier = reached
    steps = joined.astype(np.float32)
    while True:
        new = inlink & ~reached & ((frontier.astype(np.float32) @ steps) > 0)
        new[covered] = False
        if not new.any():
            return covered
        for h in np.nonzero(new.any(axis=0))[0]:
            left[np.nonzero(new[:, h])[0]] &= ~near[h]
        covered = ~left.any(axis=1)
        reached |= new
        frontier = new


@pytest.mark.parametrize("seed", range(12))
def test_reach_through_hubs_by_bitsets_equals_the_matrix_product(seed: int) -> None:
    """Random links, hubs and hub graphs, sparse to dense (long and short chains of hubs), hubs
    that cover little or much: none, some or all links covered."""
    rng = np.random.default_rng(seed)
    m, k, n = int(rng.integers(1, 60)), int(rng.choice([8, 64, 70, 256])), 200
    density = float(rng.choice([0.01, 0.05, 0.2, 0.6]))
    joined = rng.random((k, k)) < density
    joined = joined | joined.T
    near = _link_cut._pack(rng.random((k, n)) < float(rng.choice([0.01, 0.03, 0.3])))
    left = _link_cut._pack(rng.random((m, n)) < 0.2)
    inlink = rng.random((m, k)) < 0.5
    reached = np.zeros((m, k), dtype=bool)
    reached[np.arange(m), rng.integers(0, k, m)] = True
    expected_left = left.copy()
    expected = covered_by_products(expected_left, inlink, reached, joined, near)
    got = _link_cut._covered_through_hubs(left, inlink, reached, joined, near)
    assert np.array_equal(got, expected)
    assert np.array_equal(left, expected_left)
