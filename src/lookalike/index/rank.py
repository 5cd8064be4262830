"""Ranking: the best k items for query vectors, exactly or through the approximate index.

The one place that decides between the two:

* exact search (:func:`~lookalike.index.exact.exact_topk`, a chunked matrix product over
  the candidates) when there is no usable index, or when fewer than :data:`EXACT_BELOW`
  items are candidates and the index was not forced: below that size a matrix product is
  fast (about 25 ms a query over 50,000 x 512 on two cores) and exact;
* otherwise the index, restricted to the candidate rows whenever a filter applies or the
  index still holds deleted rows. :meth:`AnnIndex.search` itself answers a query exactly
  over the allowed rows when the index proposes fewer than k of them, so a filtered search
  still returns k results whenever k items match.

Items and vector rows are not one-to-one: copies of a file share a row, and each copy is a
result of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import QueryError
from .exact import exact_topk

if TYPE_CHECKING:
    from .faiss_index import AnnIndex

__all__ = ["EXACT_BELOW", "rank", "uses_index"]

#: Below this many candidate items, search exactly (unless an index kind was forced), and
#: the ``auto`` index setting builds no index at all.
EXACT_BELOW = 50_000


def uses_index(n_candidates: int, *, forced: bool) -> bool:
    """Whether a search over ``n_candidates`` items goes through the approximate index."""
    return forced or n_candidates >= EXACT_BELOW


def rank(vectors: np.ndarray, ids: np.ndarray, rows: np.ndarray, queries: np.ndarray, k: int, *,
         ann: "AnnIndex | None" = None, forced: bool = False,
         live_rows: int | None = None) -> list[list[tuple[int, float]]]:
    """``[(item id, score), ...]`` best first, at most ``k`` per query.

    Args:
        vectors: the collection's ``(N, d)`` vector rows (a memory map).
        ids, rows: the candidate items and their vector rows, sorted by row.
        queries: ``(Q, d)`` normalised query vectors.
        ann: the collection's approximate index, if it has a usable one.
        forced: the index kind was chosen by the user: use it whatever the size.
        live_rows: distinct rows of every searchable item; when the candidates are fewer
            (a filter applies), or the index holds more (deleted rows), the index is
            restricted to the candidates.

    Raises:
        QueryError: ``k`` is below 1.
    """
    if k < 1:
        raise QueryError(f"k must be at least 1, not {k}")
    queries = np.atleast_2d(queries)
    # Rows come sorted; only copies of a file (several ids, one row) make them repeat.
    strictly_rising = len(rows) < 2 or bool(np.all(rows[1:] > rows[:-1]))
    candidates = rows if strictly_rising else np.unique(rows)
    if ann is None or not uses_index(len(ids), forced=forced):
        scores, positions = exact_topk(vectors, queries, k, rows=candidates)
        found = candidates[positions]
    else:
        whole = live_rows is not None and len(candidates) == live_rows == ann.ntotal
        scores, found = ann.search(vectors, queries, k, None if whole else candidates)
    return [_items_of(ids, rows, f_row, s_row, k) for f_row, s_row in zip(found, scores)]


def _items_of(ids: np.ndarray, rows: np.ndarray, found: np.ndarray, scores: np.ndarray,
              k: int) -> list[tuple[int, float]]:
    """The items behind each found row (copies share a row), best row first, cut to k."""
    hits: list[tuple[int, float]] = []
    for r, score in zip(found, scores):
        if r < 0 or len(hits) >= k:
            continue
        lo, hi = np.searchsorted(rows, r, "left"), np.searchsorted(rows, r, "right")
        hits.extend((int(i), float(score)) for i in ids[lo:hi])
    return hits[:k]
