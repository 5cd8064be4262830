"""Density clustering (HDBSCAN): as many clusters as the data supports, plus a noise group.

The vectors are first reduced with PCA to ``dims`` dimensions (whitening off): HDBSCAN's
neighbour searches work in low dimensions, and the leading components of image embeddings
carry most of what separates subjects. HDBSCAN is ``sklearn.cluster.HDBSCAN`` on that space.

Large inputs: above :data:`SAMPLE_LIMIT` rows HDBSCAN runs on a seeded random sample of that
size (its cost grows faster than linearly: 20,000 x 32 took ~14 s on 2 cores). Every other row
goes to the nearest cluster centroid by cosine, and becomes noise when its similarity is below
the lowest similarity of that cluster's sampled members: a row further out than anything
HDBSCAN accepted into the cluster is not claimed by it.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import InvalidArgument, MissingExtra
from ..progress import ProgressCallback, ProgressEvent
from ._arrays import as_matrix, sample_rows, unit_rows
from .kmeans import assign

__all__ = ["SAMPLE_LIMIT", "default_min_cluster_size", "hdbscan_clusters"]

#: Rows HDBSCAN is fitted on at most; the rest are assigned to the clusters found (see module doc).
SAMPLE_LIMIT = 20_000


def default_min_cluster_size(n: int) -> int:
    """``max(5, n // 200)``: a cluster is at least 5 items and at least 0.5% of the collection,
    so a 100,000-item collection yields at most ~200 clusters worth browsing."""
    return max(5, n // 200)


def hdbscan_clusters(
    vectors: np.ndarray,
    *,
    min_cluster_size: int | None = None,
    dims: int = 32,
    seed: int = 0,
    sample: int = SAMPLE_LIMIT,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ``vectors`` (n, d) by density: ``(assignment int32 (n,), centroids float32 (k, d))``.

    ``assignment`` is -1 for noise, else 0..k-1 with cluster 0 the largest; ``centroids`` are
    the unit-length mean of each cluster's members in the original space.
    ``min_cluster_size`` counts items of the whole input (default
    :func:`default_min_cluster_size`); when fitting on a sample it is scaled to the sample.
    Fewer than ``min_cluster_size`` rows: everything is noise and centroids has shape (0, d).
    """
    x = as_matrix(vectors)
    n, d = x.shape
    if min_cluster_size is not None and min_cluster_size < 2:
        raise InvalidArgument(f"min_cluster_size must be at least 2, got {min_cluster_size}")
    if dims < 1 or sample < 2:
        raise InvalidArgument(f"dims must be >= 1 and sample >= 2, got dims={dims}, sample={sample}")
    mcs = min_cluster_size or default_min_cluster_size(n)
    if n < mcs:
        return np.full(n, -1, dtype=np.int32), np.zeros((0, d), dtype=np.float32)
    idx = sample_rows(n, sample, seed)
    fitted = x[idx]
    mcs_fit = mcs if len(idx) == n else max(2, round(mcs * len(idx) / n))
    if progress is not None:
        progress(ProgressEvent("cluster", done=0, total=n, reason=f"density clustering {len(idx)} points"))
    labels = _hdbscan(_reduced(fitted, dims, seed), mcs_fit)
    k = int(labels.max()) + 1
    if k == 0:
        return np.full(n, -1, dtype=np.int32), np.zeros((0, d), dtype=np.float32)
    centroids = _centroids(fitted, labels, k)
    if len(idx) == n:
        assignment = labels
    else:
        assignment = _extend(x, idx, fitted, labels, centroids)
    if progress is not None:
        progress(ProgressEvent("cluster", done=n, total=n, reason="density clustering"))
    return _by_size(assignment, centroids)


def _reduced(x: np.ndarray, dims: int, seed: int) -> np.ndarray:
    """PCA to ``dims`` dimensions (no whitening: keep the geometry); unchanged when already small."""
    k = min(dims, x.shape[1], len(x))
    if k >= x.shape[1]:
        return np.ascontiguousarray(x, dtype=np.float64)
    try:
        from sklearn.decomposition import PCA
    except ImportError as exc:
        raise MissingExtra("scikit-learn", "explore", "Density clustering") from exc
    return PCA(n_components=k, whiten=False, random_state=seed).fit_transform(x)


def _hdbscan(points: np.ndarray, min_cluster_size: int) -> np.ndarray:
    try:
        from sklearn.cluster import HDBSCAN
    except ImportError as exc:
        raise MissingExtra("scikit-learn", "explore", "Density clustering") from exc
    # min_samples defaults to min_cluster_size, which HDBSCAN refuses above n - 1.
    min_samples = max(1, min(min_cluster_size, len(points) - 1))
    kwargs = {"min_cluster_size": min_cluster_size, "min_samples": min_samples, "n_jobs": -1}
    with warnings.catch_warnings():
        # sklearn 1.8+ warns that `copy`'s default changes; we pass it where it exists.
        warnings.simplefilter("ignore", FutureWarning)
        try:
            model = HDBSCAN(copy=True, **kwargs)
        except TypeError:  # sklearn < 1.6 has no `copy`
            model = HDBSCAN(**kwargs)
        return model.fit_predict(points).astype(np.int32)


def _centroids(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Unit-length mean of each cluster's rows."""
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    members = labels >= 0
    np.add.at(sums, labels[members], unit_rows(x[members]))
    return unit_rows(sums.astype(np.float32))


def _extend(x: np.ndarray, idx: np.ndarray, fitted: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Assignment of all rows when HDBSCAN saw only ``idx``: sampled rows keep their label,
    the rest take the nearest centroid unless less similar than its least similar member."""
    members = labels >= 0
    # Each member's cosine to its *own* cluster's centroid (not necessarily its nearest one).
    own = np.einsum("ij,ij->i", unit_rows(fitted[members]), centroids[labels[members]]).astype(np.float32)
    floor = np.full(len(centroids), np.inf, dtype=np.float32)
    np.minimum.at(floor, labels[members], own)
    nearest, sim = assign(x, centroids)
    assignment = np.where(sim >= floor[nearest], nearest, -1).astype(np.int32)
    assignment[idx] = labels
    return assignment


def _by_size(assignment: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber clusters largest first (noise stays -1); drop clusters left with no members."""
    sizes = np.bincount(assignment[assignment >= 0], minlength=len(centroids))
    order = np.argsort(-sizes, kind="stable")
    order = order[sizes[order] > 0]
    new_id = np.full(len(centroids) + 1, -1, dtype=np.int32)  # last slot maps noise (-1) to -1
    new_id[order] = np.arange(len(order), dtype=np.int32)
    return new_id[assignment], np.ascontiguousarray(centroids[order])
