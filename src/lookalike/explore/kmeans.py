"""Spherical k-means (FAISS), choosing k by silhouette, and assigning vectors to centroids.

Vectors are image embeddings compared by cosine similarity, so clusters are found with
*spherical* k-means: centroids live on the unit sphere and a vector belongs to the centroid
with the largest dot product. Clusters are numbered by size, largest first (cluster 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidArgument, MissingExtra
from ..progress import ProgressCallback, ProgressEvent
from ._arrays import CHUNK, as_matrix, chunks, sample_rows, unit_rows

__all__ = ["KMeansResult", "KChoice", "DEFAULT_K_GRID", "spherical_kmeans", "choose_k", "assign", "central"]

#: The k values :func:`choose_k` tries by default: roughly geometric (x1.5 steps) so that small
#: collections get fine steps and large ones still reach ~200 clusters, the most a person browses.
DEFAULT_K_GRID: tuple[int, ...] = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192)

#: choose_k never tries more clusters than this, nor more than a third of the sampled points.
MAX_AUTO_K = 200


@dataclass(frozen=True)
class KMeansResult:
    """Spherical k-means output.

    ``centroids`` (k, d) float32 unit rows; ``assignment`` (n,) int32 cluster of each vector
    (cluster 0 is the largest); ``similarity`` (n,) float32 cosine of each vector to its centroid.
    """

    centroids: np.ndarray
    assignment: np.ndarray
    similarity: np.ndarray

    @property
    def k(self) -> int:
        """Number of clusters (may be below the k asked for, see :func:`spherical_kmeans`)."""
        return int(self.centroids.shape[0])


@dataclass(frozen=True)
class KChoice:
    """The k that :func:`choose_k` picked, the score of every k tried, how, and on how many points."""

    k: int
    scores: dict[int, float]
    criterion: str
    sample: int


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise MissingExtra("faiss-cpu", "explore", "Clustering") from exc
    return faiss


def spherical_kmeans(
    vectors: np.ndarray, k: int, *, seed: int = 0, niter: int = 25, max_points_per_centroid: int = 256,
    nredo: int = 3,
) -> KMeansResult:
    """Cluster ``vectors`` (n, d) into ``k`` groups by cosine similarity with FAISS.

    FAISS trains on at most ``k * max_points_per_centroid`` randomly chosen rows (more barely
    moves the centroids); every row is then assigned with :func:`assign`. ``seed`` makes the
    result repeatable. ``nredo`` runs of different random starts are made and the tightest
    kept: one run can settle with two true clusters merged and another split (seen on four
    planted clusters), and the training sample is capped, so the redos cost the same at any n.
    When the vectors hold fewer distinct points than ``k``, some clusters
    end up empty; those are dropped, so ``result.k`` can be smaller than ``k``.

    Raises :class:`InvalidArgument` for no vectors, ``k < 1`` or ``k > n``, and
    :class:`MissingExtra` when faiss-cpu is not installed.
    """
    x = as_matrix(vectors)
    n, d = x.shape
    if n == 0:
        raise InvalidArgument("there are no vectors to cluster (n=0); add items first")
    if k < 1:
        raise InvalidArgument(f"k must be at least 1, got k={k}")
    if k > n:
        raise InvalidArgument(
            f"k={k} asks for more clusters than there are vectors (n={n}); use k <= {n}, "
            "or leave k unset to have it chosen"
        )
    if niter < 1 or max_points_per_centroid < 1 or nredo < 1:
        raise InvalidArgument(f"niter and max_points_per_centroid must be >= 1, got {niter} and {max_points_per_centroid}")
    faiss = _faiss()
    # min_points_per_centroid=1: FAISS otherwise writes a warning to stderr for small n, which a
    # library must not do; clustering 10 points into 3 groups is a legitimate request.
    km = faiss.Kmeans(
        d, k, niter=niter, nredo=int(nredo), spherical=True, seed=int(seed), verbose=False,
        max_points_per_centroid=int(max_points_per_centroid), min_points_per_centroid=1,
    )
    km.train(np.ascontiguousarray(x))
    centroids = unit_rows(km.centroids)
    assignment, similarity = assign(x, centroids)
    return _by_size(centroids, assignment, similarity)


def _by_size(centroids: np.ndarray, assignment: np.ndarray, similarity: np.ndarray) -> KMeansResult:
    """Renumber clusters largest first and drop the empty ones."""
    sizes = np.bincount(assignment, minlength=len(centroids))
    order = np.argsort(-sizes, kind="stable")
    order = order[sizes[order] > 0]
    new_id = np.full(len(centroids), -1, dtype=np.int32)
    new_id[order] = np.arange(len(order), dtype=np.int32)
    return KMeansResult(np.ascontiguousarray(centroids[order]), new_id[assignment], similarity)


def choose_k(
    vectors: np.ndarray,
    *,
    k_grid: Sequence[int] | None = None,
    sample: int = 5000,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> KChoice:
    """Pick a number of clusters: the k with the best mean cosine silhouette.

    A seeded random sample of at most ``sample`` rows is clustered once per k in the grid
    (spherical k-means on the sample only, so 100k or 1M vectors cost the same few seconds)
    and scored with ``sklearn.metrics.silhouette_score(metric="cosine")``; the best score wins,
    ties going to the smaller k. The caller then fits the chosen k on all vectors.

    The default grid is :data:`DEFAULT_K_GRID` = 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96,
    128, 192, keeping only k <= max(2, min(200, m // 3)) for m sampled points, so each cluster
    averages at least three sampled points. A given ``k_grid`` keeps its values with
    2 <= k < m (what a silhouette can score). Fewer than 3 vectors: k = n, no scores
    (criterion ``"too few points"``). ``progress`` gets a ``"cluster"`` event per k tried.

    Silhouette favours well-separated groups; on embeddings with nested themes it may prefer
    a coarse k. Pass k explicitly to override.
    """
    x = as_matrix(vectors)
    n = len(x)
    if n < 3:
        return KChoice(k=n, scores={}, criterion="too few points", sample=n)
    if sample < 3:
        raise InvalidArgument(f"sample must be at least 3 points, got {sample}")
    xs = unit_rows(x[sample_rows(n, sample, seed)])
    m = len(xs)
    grid = _grid(k_grid, m)
    from sklearn.metrics import silhouette_score

    scores: dict[int, float] = {}
    for done, k in enumerate(grid):
        labels = spherical_kmeans(xs, k, seed=seed, niter=20).assignment
        if 2 <= len(np.unique(labels)) <= m - 1:  # duplicates can leave fewer clusters than asked
            scores[k] = float(silhouette_score(xs, labels, metric="cosine"))
        if progress is not None:
            progress(ProgressEvent("cluster", done=done + 1, total=len(grid), reason="choosing k"))
    if not scores:  # every sampled point identical: nothing to separate
        return KChoice(k=1, scores={}, criterion="identical points", sample=m)
    best = max(scores, key=lambda k: (scores[k], -k))
    return KChoice(k=best, scores=scores, criterion="silhouette", sample=m)


def _grid(k_grid: Sequence[int] | None, m: int) -> list[int]:
    if k_grid is None:
        top = max(2, min(MAX_AUTO_K, m // 3))
        return [k for k in DEFAULT_K_GRID if k <= top]
    grid = sorted({int(k) for k in k_grid if 2 <= int(k) < m})
    if not grid:
        raise InvalidArgument(f"k_grid {list(k_grid)} has no k with 2 <= k < {m} (the points sampled); give smaller k values")
    return grid


def assign(vectors: np.ndarray, centroids: np.ndarray, *, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row by dot product: ``(cluster int32 (n,), cosine float32 (n,))``.

    Done ``chunk`` rows at a time, so memory stays bounded for a million-row memmap. The
    similarity is the cosine (rows need not be unit length; an all-zero row scores 0).
    """
    x = as_matrix(vectors)
    c = unit_rows(as_matrix(centroids, "centroids"))
    if len(c) == 0:
        raise InvalidArgument("there are no centroids to assign vectors to")
    if len(x) and x.shape[1] != c.shape[1]:
        raise InvalidArgument(f"vectors have {x.shape[1]} dimensions but centroids have {c.shape[1]}")
    idx = np.empty(len(x), dtype=np.int32)
    sim = np.empty(len(x), dtype=np.float32)
    for start, block in chunks(x, chunk):
        s = block @ c.T
        best = np.argmax(s, axis=1)
        norms = np.maximum(np.linalg.norm(block, axis=1), 1e-12)
        idx[start : start + len(block)] = best
        sim[start : start + len(block)] = s[np.arange(len(block)), best] / norms
    return idx, sim


def central(vectors: np.ndarray, centroid: np.ndarray, n: int) -> np.ndarray:
    """Indices (int64) of the ``n`` rows most similar to ``centroid``, most similar (the medoid) first.

    Ties are broken by row index so the answer is repeatable. Fewer rows than ``n``: all of them.
    """
    x = as_matrix(vectors)
    c = unit_rows(as_matrix(np.reshape(centroid, (1, -1)), "centroid"))
    if len(x) == 0 or n <= 0:
        return np.empty(0, dtype=np.int64)
    if x.shape[1] != c.shape[1]:
        raise InvalidArgument(f"vectors have {x.shape[1]} dimensions but the centroid has {c.shape[1]}")
    sims = np.empty(len(x), dtype=np.float32)
    for start, block in chunks(x):
        sims[start : start + len(block)] = (block @ c[0]) / np.maximum(np.linalg.norm(block, axis=1), 1e-12)
    n = min(n, len(x))
    top = np.argpartition(-sims, n - 1)[:n] if n < len(x) else np.arange(len(x))
    return top[np.lexsort((top, -sims[top]))].astype(np.int64)
