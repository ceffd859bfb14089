"""HDBSCAN clustering, medoids and transitions on known data."""

from __future__ import annotations

import numpy as np
import pytest

from genarun.analysis.clustering import TooFewPoints, cluster, top_clusters, transitions


def blobs(n_per: int, centres: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    axes = np.eye(dim)[:centres] * 5.0  # orthogonal directions: far apart once normalised
    truth = np.repeat(np.arange(centres), n_per)
    points = axes[truth] + 0.3 * rng.standard_normal((len(truth), dim))
    return points, truth


def agreement(labels: np.ndarray, truth: np.ndarray) -> bool:
    """Each true group is one cluster and no two groups share one."""
    mapping = {}
    for t in np.unique(truth):
        found = set(labels[truth == t].tolist())
        if len(found) != 1 or -1 in found:
            return False
        mapping[t] = found.pop()
    return len(set(mapping.values())) == len(mapping)


def test_three_blobs_are_three_clusters_with_medoids_inside() -> None:
    points, truth = blobs(40, 3, 16)
    result = cluster(points, min_cluster_size=5)
    assert agreement(result.labels, truth)
    assert result.sizes == {0: 40, 1: 40, 2: 40}
    for label, index in result.medoids.items():
        assert result.labels[index] == label
    assert result.method.reduced_to is None and result.method.sample is None


def test_large_sets_are_reduced_and_sampled_and_say_so() -> None:
    points, truth = blobs(1000, 4, 64, seed=1)
    result = cluster(points, min_cluster_size=10, sample_above=800)
    assert agreement(result.labels, truth)
    assert result.method.reduced_to == 32 and result.method.sample == 800
    assert "PCA 64->32" in result.method.text and "sample of 800 of 4000" in result.method.text


def test_fewer_points_than_the_minimum_cluster_size_is_refused() -> None:
    with pytest.raises(TooFewPoints, match="3 points, fewer than the minimum cluster size 5"):
        cluster(np.eye(3), min_cluster_size=5)


def test_transitions_exact() -> None:
    t = transitions([0, 0, 1, 1, 1, -1, 0])
    assert t.runs == [(0, 2), (1, 3), (-1, 1), (0, 1)]
    assert t.bigrams == {(-1, 0): 1, (0, 0): 1, (0, 1): 1, (1, -1): 1, (1, 1): 2}
    assert top_clusters([0, 0, 1, 1, 1, -1, -1, -1, -1, 2], 2) == [(1, 3), (0, 2)]
