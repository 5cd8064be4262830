"""HDBSCAN clusters on planted data: found, numbered by size, noise kept apart, sample path."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.metrics import adjusted_rand_score  # noqa: E402

from explore_data import planted  # noqa: E402
from lookalike.errors import InvalidArgument  # noqa: E402
from lookalike.explore import default_min_cluster_size, hdbscan_clusters  # noqa: E402
from lookalike.progress import ProgressEvent  # noqa: E402


def _with_outliers(n: int, k: int, outliers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Planted clusters plus random unit vectors (truth -1), which belong to no cluster."""
    x, truth = planted(n, k, d=64, spread=0.5, seed=seed)
    rng = np.random.default_rng(seed + 100)
    o = rng.standard_normal((outliers, 64)).astype(np.float32)
    o /= np.linalg.norm(o, axis=1, keepdims=True)
    return np.concatenate([x, o]), np.concatenate([truth, np.full(outliers, -1)])


def _check_shape(assignment: np.ndarray, centroids: np.ndarray, n: int, d: int) -> None:
    assert assignment.shape == (n,) and assignment.dtype == np.int32
    assert centroids.dtype == np.float32 and centroids.shape[1] == d
    assert assignment.max(initial=-1) == len(centroids) - 1 and assignment.min(initial=-1) >= -1
    if len(centroids):
        np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
        sizes = np.bincount(assignment[assignment >= 0])
        assert (np.diff(sizes) <= 0).all() and (sizes > 0).all(), "cluster 0 largest, none empty"


def test_finds_planted_clusters_and_noise() -> None:
    x, truth = _with_outliers(1200, 6, 60, seed=1)
    events: list[ProgressEvent] = []
    assignment, centroids = hdbscan_clusters(x, progress=events.append)
    _check_shape(assignment, centroids, len(x), 64)
    assert len(centroids) == 6
    members = truth >= 0
    assert adjusted_rand_score(truth[members], assignment[members]) > 0.95
    assert (assignment[members] == -1).mean() < 0.05
    assert (assignment[~members] == -1).mean() > 0.9  # random vectors are noise
    assert events and {e.kind for e in events} == {"cluster"}


def test_sample_fit_assigns_the_rest() -> None:
    x, truth = _with_outliers(3000, 5, 100, seed=2)
    assignment, centroids = hdbscan_clusters(x, sample=800, min_cluster_size=50)
    _check_shape(assignment, centroids, len(x), 64)
    assert len(centroids) == 5
    members = truth >= 0
    assert adjusted_rand_score(truth[members], assignment[members]) > 0.95
    assert (assignment[members] == -1).mean() < 0.1
    assert (assignment[~members] == -1).mean() > 0.9  # far below every cluster's lowest member similarity


def test_min_cluster_size_is_in_items_of_the_whole_input() -> None:
    x, _ = planted(2000, 4, d=32, spread=0.5, seed=3)
    full, _ = hdbscan_clusters(x, min_cluster_size=200)
    sampled, _ = hdbscan_clusters(x, min_cluster_size=200, sample=500)  # 50 of the 500 sampled
    assert len(np.unique(full[full >= 0])) == len(np.unique(sampled[sampled >= 0])) == 4


def test_too_few_points_are_all_noise() -> None:
    x, _ = planted(4, 2, d=16)
    assignment, centroids = hdbscan_clusters(x)  # default min_cluster_size is 5
    assert assignment.tolist() == [-1] * 4 and centroids.shape == (0, 16)
    assignment, centroids = hdbscan_clusters(np.zeros((0, 16), dtype=np.float32))
    assert assignment.shape == (0,) and centroids.shape == (0, 16)


def test_degenerate_inputs_do_not_crash() -> None:
    same = np.tile(np.eye(16, dtype=np.float32)[0], (40, 1))
    assignment, centroids = hdbscan_clusters(same)
    _check_shape(assignment, centroids, 40, 16)
    tiny, _ = planted(6, 2, d=8)
    assignment, centroids = hdbscan_clusters(tiny, min_cluster_size=2)
    _check_shape(assignment, centroids, 6, 8)


def test_arguments_checked() -> None:
    x, _ = planted(20, 2, d=8)
    with pytest.raises(InvalidArgument, match="min_cluster_size"):
        hdbscan_clusters(x, min_cluster_size=1)
    with pytest.raises(InvalidArgument):
        hdbscan_clusters(x, dims=0)


def test_default_min_cluster_size() -> None:
    assert default_min_cluster_size(10) == 5
    assert default_min_cluster_size(100_000) == 500
