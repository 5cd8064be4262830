"""Exact top-k by chunked matrix product.

Vectors are L2-normalised, so the inner product is the cosine similarity. The matrix is
read in chunks of rows, which keeps memory bounded by ``chunk x dim`` floats whatever the
collection size, and lets a memory-mapped file stream from disk.
"""

from __future__ import annotations

import numpy as np

__all__ = ["exact_topk"]


def _merge(best_s: np.ndarray, best_i: np.ndarray, s: np.ndarray, i: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([best_s, s], axis=1)
    idx = np.concatenate([best_i, i], axis=1)
    if scores.shape[1] > k:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        scores = np.take_along_axis(scores, part, axis=1)
        idx = np.take_along_axis(idx, part, axis=1)
    return scores, idx


def exact_topk(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    rows: np.ndarray | None = None,
    chunk: int = 32768,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best rows for each query by inner product.

    Args:
        vectors: ``(N, d)`` float32 matrix, typically a memory map.
        queries: ``(Q, d)`` or ``(d,)`` float32 queries.
        k: results per query (fewer when fewer candidates exist).
        rows: restrict the search to these row numbers (sorted ascending for sequential
            reads); positions returned then index into ``rows``.
        chunk: rows scored per step; bounds memory at ``chunk * (d + Q)`` floats.

    Returns:
        ``(scores, positions)``, each ``(Q, k')`` with ``k' = min(k, candidates)``, best first.
    """
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    n = len(rows) if rows is not None else vectors.shape[0]
    k = min(k, n)
    best_s = np.empty((q.shape[0], 0), dtype=np.float32)
    best_i = np.empty((q.shape[0], 0), dtype=np.int64)
    if k <= 0:
        return best_s, best_i
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        if rows is None:
            block = vectors[start:stop]
        else:
            sel = rows[start:stop]
            # A run of consecutive rows (the common case) is a slice: no gather copy.
            if sel[-1] - sel[0] == stop - start - 1 and bool(np.all(np.diff(sel) == 1)):
                block = vectors[sel[0] : sel[-1] + 1]
            else:
                block = vectors[sel]
        scores = q @ np.asarray(block, dtype=np.float32).T
        cand = np.arange(start, stop, dtype=np.int64)
        if scores.shape[1] > k:
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores = np.take_along_axis(scores, part, axis=1)
            cand = cand[part]
        else:
            cand = np.broadcast_to(cand, scores.shape)
        best_s, best_i = _merge(best_s, best_i, scores, cand, k)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_i, order, axis=1)
