"""The k-nearest-neighbour graph of a set of vector rows: batched, bounded memory, incremental.

Duplicate finding (and later clustering and maps) needs, for every row, its few nearest
other rows. Computing that from an N x N similarity matrix is what makes other tools run out
of memory at some 50,000 images; here the rows are searched in batches, each batch against
the whole set:

* exactly (:func:`~lookalike.index.exact.exact_topk`, a chunked matrix product over the
  memory-mapped vectors) when no index is given: memory is ``batch x chunk`` floats;
* through an approximate index otherwise (:class:`~lookalike.index.faiss_index.AnnIndex`):
  FAISS proposes candidates for a whole batch at once (on all cores) and the candidates are
  re-scored exactly against the float32 vectors, so every similarity in the graph is exact
  even when the index is compressed; only which rows are looked at is approximate.

:func:`update_knn_graph` brings a graph up to date after rows were added or removed: only the
new rows are searched, and each found pair is also offered to the older row's list, so the
result is what a full recomputation would give (exactly so for exact search).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from .exact import exact_topk

if TYPE_CHECKING:
    from .faiss_index import AnnIndex

__all__ = ["KnnGraph", "knn_graph", "update_knn_graph", "DEFAULT_K", "EXACT_UPDATE_PAIRS"]

#: Neighbours kept per row: near-duplicate groups rarely have more members, and larger
#: groups stay connected through their members' lists.
DEFAULT_K = 10
#: An update scores every (old row, new row) pair exactly up to this many pairs.
EXACT_UPDATE_PAIRS = 2_000_000_000
#: Candidates FAISS proposes per query and neighbour, before the exact re-scoring.
_CANDIDATES_PER_NEIGHBOUR = 4


@dataclass
class KnnGraph:
    """For each row (sorted ascending), its ``k`` nearest other rows, most similar first.

    ``nbrs`` is ``-1`` and ``sims`` is ``-inf`` where a row has fewer than ``k`` neighbours.
    """

    rows: np.ndarray   # (N,) int64, sorted
    nbrs: np.ndarray   # (N, k) int64 neighbour rows
    sims: np.ndarray   # (N, k) float32 cosine similarities

    @property
    def k(self) -> int:
        return int(self.nbrs.shape[1])

    def nearest(self) -> np.ndarray:
        """Each row's similarity to its nearest neighbour (``-inf`` when it has none)."""
        return self.sims[:, 0] if self.k else np.full(len(self.rows), -np.inf, dtype=np.float32)

    def pairs(self, min_similarity: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(a, b, sim)``: each unordered pair of rows with similarity >= ``min_similarity``
        that appears in either row's list, once, with ``a < b``."""
        mask = (self.sims >= min_similarity) & (self.nbrs >= 0)
        a = np.repeat(self.rows, mask.sum(axis=1))
        b = self.nbrs[mask]
        s = self.sims[mask]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        span = int(hi.max(initial=0)) + 1
        _, first = np.unique(lo * span + hi, return_index=True)  # one int64 key per pair
        return lo[first], hi[first], s[first]


def _exact_batch(vectors: np.ndarray, rows: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores, pos = exact_topk(vectors, q, k, rows=rows)
    return scores, rows[pos]


def _ann_batch(vectors: np.ndarray, ann: "AnnIndex", allowed: np.ndarray | None, q: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    cand = ann.candidates(q, k * _CANDIDATES_PER_NEIGHBOUR, allowed)
    valid = cand >= 0
    safe = np.where(valid, cand, cand.max(initial=0) if valid.any() else 0)
    # Sorted unique rows make the gather from the memory map one sequential pass.
    uniq, inverse = np.unique(safe, return_inverse=True)
    block = np.asarray(vectors[uniq], dtype=np.float32)
    scores = np.einsum("bd,bnd->bn", q, block[inverse.reshape(safe.shape)])
    scores[~valid] = -np.inf
    # A row proposed twice (copies in the index) counts once.
    dup = np.zeros_like(valid)
    order = np.argsort(cand, axis=1, kind="stable")
    sorted_c = np.take_along_axis(cand, order, axis=1)
    dup_sorted = np.zeros_like(valid)
    dup_sorted[:, 1:] = sorted_c[:, 1:] == sorted_c[:, :-1]
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    scores[dup] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), np.take_along_axis(cand, top, axis=1)


def _search(vectors: np.ndarray, rows: np.ndarray, queries: np.ndarray, k: int, *, ann: "AnnIndex | None",
            batch: int, progress: Callable[[int], None] | None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows (among ``rows``, itself excluded) of each row in ``queries``."""
    nbrs = np.full((len(queries), k), -1, dtype=np.int64)
    sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
    allowed = None
    if ann is not None and (ann.ntotal != len(rows) or not np.array_equal(np.unique(ann.rows), rows)):
        allowed = rows
    for start in range(0, len(queries), batch):
        stop = min(len(queries), start + batch)
        own = queries[start:stop]
        q = np.asarray(vectors[own], dtype=np.float32)
        if ann is None:
            s, r = _exact_batch(vectors, rows, q, k + 1)
        else:
            s, r = _ann_batch(vectors, ann, allowed, q, k + 1)
        s = np.where(r == own[:, None], -np.inf, s)  # a row is not its own neighbour
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        s, r = np.take_along_axis(s, order, axis=1), np.take_along_axis(r, order, axis=1)
        r = np.where(np.isfinite(s), r, -1)
        width = s.shape[1]
        nbrs[start:stop, :width], sims[start:stop, :width] = r, s
        if progress is not None:
            progress(stop)
    return nbrs, sims


def knn_graph(vectors: np.ndarray, rows: np.ndarray, k: int = DEFAULT_K, *, ann: "AnnIndex | None" = None,
              batch: int | None = None, progress: Callable[[int], None] | None = None) -> KnnGraph:
    """The ``k`` nearest other rows of each of ``rows``, among ``rows``.

    Args:
        vectors: the ``(N, d)`` L2-normalised float32 vectors (a memory map is fine).
        rows: the rows to connect (any order; duplicates ignored).
        k: neighbours per row.
        ann: an index over (a superset of) ``rows`` to search through; exact when None.
        batch: rows searched at once (memory is about ``batch x max(chunk, k x 4) x d`` floats).
        progress: called with the number of rows done after each batch.
    """
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    batch = batch or (1024 if ann is None else 256)
    nbrs, sims = _search(vectors, rows, rows, k, ann=ann, batch=batch, progress=progress)
    return KnnGraph(rows, nbrs, sims)


def _merge(nbrs: np.ndarray, sims: np.ndarray, extra_n: np.ndarray, extra_s: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the best ``k`` of its list and the extra candidates (no row twice)."""
    all_n = np.concatenate([nbrs, extra_n], axis=1)
    all_s = np.concatenate([sims, extra_s], axis=1)
    order = np.argsort(-all_s, axis=1, kind="stable")
    all_n, all_s = np.take_along_axis(all_n, order, axis=1), np.take_along_axis(all_s, order, axis=1)
    # Drop repeats of a row (keep its first, best, occurrence) by sorting on the row number.
    by_row = np.argsort(all_n, axis=1, kind="stable")
    sorted_n = np.take_along_axis(all_n, by_row, axis=1)
    repeat_sorted = np.zeros(all_n.shape, dtype=bool)
    repeat_sorted[:, 1:] = (sorted_n[:, 1:] == sorted_n[:, :-1]) & (sorted_n[:, 1:] >= 0)
    repeat = np.zeros_like(repeat_sorted)
    np.put_along_axis(repeat, by_row, repeat_sorted, axis=1)
    # by_row is stable on the best-first order, so the first of each run is the best one.
    all_s = np.where(repeat, -np.inf, all_s)
    order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
    out_s = np.take_along_axis(all_s, order, axis=1)
    out_n = np.where(np.isfinite(out_s), np.take_along_axis(all_n, order, axis=1), -1)
    return out_n, out_s


def _old_against_new(vectors: np.ndarray, old_rows: np.ndarray, new_rows: np.ndarray,
                     k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(old row, new row, sim)`` for each old row's ``k`` nearest among the new rows."""
    targets, sources, scores = [], [], []
    for start in range(0, len(old_rows), 1024):
        own = old_rows[start:start + 1024]
        s, pos = exact_topk(vectors, np.asarray(vectors[own], dtype=np.float32), k, rows=new_rows)
        targets.append(np.repeat(own, s.shape[1]))
        sources.append(new_rows[pos].ravel())
        scores.append(s.ravel())
    if not targets:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(targets), np.concatenate(sources), np.concatenate(scores)


def update_knn_graph(graph: KnnGraph, vectors: np.ndarray, rows: np.ndarray, *, ann: "AnnIndex | None" = None,
                     batch: int | None = None, progress: Callable[[int], None] | None = None) -> KnnGraph:
    """``graph`` brought up to date with the row set ``rows``: rows gone are dropped (from the
    lists too), new rows are searched, and their pairs are offered to the older rows' lists.

    The result equals a full recomputation (for exact search) while old x new rows stay
    within :data:`EXACT_UPDATE_PAIRS`; past that, an old row learns of a new neighbour only
    when the new row has it among its own ``k`` nearest. A list that lost neighbours to
    deletions is not refilled (that would need a search of its own); its remaining
    neighbours are still the nearest ones.
    """
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    k = graph.k
    keep = np.isin(graph.rows, rows)
    old_rows, nbrs, sims = graph.rows[keep], graph.nbrs[keep], graph.sims[keep]
    gone = ~np.isin(nbrs, rows)
    sims = np.where(gone, -np.inf, sims)
    nbrs = np.where(gone, -1, nbrs)
    new_rows = np.setdiff1d(rows, old_rows, assume_unique=True)
    if not len(new_rows):
        nbrs, sims = _merge(nbrs, sims, nbrs[:, :0], sims[:, :0], k)
        return KnnGraph(old_rows, nbrs, sims)
    new_n, new_s = _search(vectors, rows, new_rows, k, ann=ann, batch=batch or (1024 if ann is None else 256),
                           progress=progress)
    if len(old_rows) * len(new_rows) <= EXACT_UPDATE_PAIRS:
        # Few enough pairs to score: each old row's best among the new rows, exactly.
        target, source, score = _old_against_new(vectors, old_rows, new_rows, k)
    else:
        # Offer each new row to the old rows it found: (old row, new row, sim). An old row
        # that a new one is near, but that is not among the new row's k nearest, misses it.
        found = (new_n >= 0) & np.isin(new_n, old_rows)
        target = new_n[found]
        source = np.repeat(new_rows, found.sum(axis=1))
        score = new_s[found]
    pos = np.searchsorted(old_rows, target)
    order = np.argsort(pos, kind="stable")
    pos, source, score = pos[order], source[order], score[order]
    counts = np.bincount(pos, minlength=len(old_rows))
    width = int(counts.max(initial=0))
    extra_n = np.full((len(old_rows), width), -1, dtype=np.int64)
    extra_s = np.full((len(old_rows), width), -np.inf, dtype=np.float32)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(pos)) - starts[pos]
    extra_n[pos, slot], extra_s[pos, slot] = source, score
    nbrs, sims = _merge(nbrs, sims, extra_n, extra_s, k)
    all_rows = np.concatenate([old_rows, new_rows])
    order = np.argsort(all_rows, kind="stable")
    return KnnGraph(all_rows[order], np.concatenate([nbrs, new_n])[order], np.concatenate([sims, new_s])[order])
