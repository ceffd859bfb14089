"""Shares of variation per factor: eta^2 of a number per trajectory, PERMANOVA's R^2 of a
distance matrix, and their permutation p-values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from genarun.analysis.factors import eta_squared, permanova


def test_eta_squared_is_the_between_groups_share_of_the_variance() -> None:
    values = [1.0, 2.0, 3.0, 7.0, 8.0, 9.0]
    labels = ["a", "a", "a", "b", "b", "b"]
    # total: mean 5, squares 16+9+4+4+9+16 = 58; between: 2 groups of 3 at 2 and 8: 3*9*2 = 54
    share = eta_squared(values, labels, permutations=0)
    assert share.value == pytest.approx(54 / 58)
    assert share.p is None and share.why == ""


def test_permanova_of_euclidean_distances_is_the_centroid_share() -> None:
    # For Euclidean distances PERMANOVA's sums of squares are those about the centroids, so its
    # R^2 must equal the classical one computed from the points themselves.
    rng = np.random.default_rng(4)
    points = rng.normal(size=(30, 5))
    labels = [str(i % 3) for i in range(30)]
    points[[i for i in range(30) if i % 3 == 0]] += 1.5
    total = ((points - points.mean(axis=0)) ** 2).sum()
    within = sum(
        ((points[g] - points[g].mean(axis=0)) ** 2).sum()
        for g in ([i for i in range(30) if i % 3 == k] for k in range(3))
    )
    share = permanova(cdist(points, points), labels, permutations=0)
    assert share.value == pytest.approx(1 - within / total)


def test_p_values_are_small_for_real_groups_large_for_none_and_repeat_with_the_seed() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(24, 3))
    labels = ["x"] * 12 + ["y"] * 12
    apart = points.copy()
    apart[:12] += 3.0
    separated = permanova(cdist(apart, apart), labels, permutations=499, seed=1)
    assert separated.value is not None and separated.value > 0.5
    assert separated.p == pytest.approx(1 / 500)  # no shuffle explains as much
    chance = permanova(cdist(points, points), labels, permutations=499, seed=1)
    assert chance.value is not None and chance.value < 0.15 and chance.p is not None
    assert chance.p > 0.05
    assert permanova(cdist(points, points), labels, permutations=499, seed=1) == chance
    entropy = eta_squared(apart[:, 0], labels, permutations=499, seed=1)
    assert entropy.p is not None and entropy.p < 0.01


def test_undefined_shares_say_why() -> None:
    assert "one value" in eta_squared([1.0, 2.0, 3.0], ["a", "a", "a"]).why
    own = permanova(np.ones((3, 3)) - np.eye(3), ["a", "b", "c"])
    assert own.value is None and "of its own" in own.why
    flat = eta_squared([2.0, 2.0, 2.0, 2.0], ["a", "a", "b", "b"])
    assert flat.value is None and flat.p is None and "no variation" in flat.why
    with pytest.raises(ValueError, match="square"):
        permanova(np.zeros((2, 3)), ["a", "b"])
