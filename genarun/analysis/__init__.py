"""Trajectory analysis: persistent homology, diagram distances, semantic drift and plots.

Pure numpy at import time: gudhi, ripser, scipy and matplotlib load inside the functions that
need them, so ``import genarun.analysis`` stays cheap.
"""

from genarun.analysis.distances import bottleneck, distance_matrix, wasserstein
from genarun.analysis.drift import drift_from_start, project_2d, step_distances
from genarun.analysis.persistence import (
    Diagrams,
    pairwise_distances,
    persistence_diagrams,
    persistence_entropy,
    persistence_from_distances,
)

__all__ = [
    "Diagrams",
    "bottleneck",
    "distance_matrix",
    "drift_from_start",
    "pairwise_distances",
    "persistence_diagrams",
    "persistence_entropy",
    "persistence_from_distances",
    "project_2d",
    "step_distances",
    "wasserstein",
]
