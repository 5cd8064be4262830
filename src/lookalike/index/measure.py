"""Measuring a search setting: held-out queries, exact ground truth, recall and latency.

What :func:`~lookalike.index.tune.auto_index` measures with, usable on its own: split a
collection's rows into held-out query samples and rows to build on
(:func:`split_held_out`), take the exact top-k of each query (:func:`ground_truth` for
held-out rows, :func:`query_truth` for query vectors such as text embeddings), then
:func:`measure` an index against it, one query at a time as users search.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..errors import InvalidArgument
from .exact import exact_topk
from .faiss_index import AnnIndex, faiss_threads

__all__ = ["Measurement", "HeldOut", "RECALL_Z", "QUERY_SETS", "split_queries", "split_held_out", "split_text_queries",
           "ground_truth", "query_truth", "measure"]

#: Standard errors by which a measured recall must clear the target: 1.645 sqrt(2), so that
#: another sample of the same size measures at least the target 95 % of the time (see
#: :mod:`lookalike.index.tune` for the reasoning).
RECALL_Z = 1.645 * 2**0.5
#: The query sets a :class:`Measurement` can be taken on: the two halves of the held-out
#: rows, and of the text queries.
QUERY_SETS = ("select", "confirm", "text-select", "text-confirm")


@dataclass(frozen=True)
class Measurement:
    """One configuration, measured on one query set (``query_set``, one of
    :data:`QUERY_SETS`): recall@k against exact (and its standard error over the queries),
    single-query latency on one thread, memory, build time."""

    label: str
    recall: float
    p50_ms: float
    p99_ms: float
    memory_bytes: int
    build_s: float
    recall_se: float = 0.0
    n_queries: int = 0
    query_set: str = "select"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Measurement":
        """The inverse of :meth:`to_dict`; keys it does not know are ignored, so records
        written by other versions still load (missing optional ones take their defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def meets(self, target: float, z: float = RECALL_Z) -> bool:
        """Whether the recall clears ``target`` by ``z`` standard errors (the tuner's bar)."""
        return self.recall - z * self.recall_se >= target


@dataclass(frozen=True)
class HeldOut:
    """The rows held out of every candidate build (two disjoint query samples) and the rest,
    each sorted."""

    select: np.ndarray
    confirm: np.ndarray
    build: np.ndarray


def split_queries(rows: np.ndarray, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(query_rows, build_rows)``: a random held-out sample and the rest, both sorted.

    At most a tenth of the rows are held out (at least one), so the index measured is
    nearly the index that will serve. A single row cannot be split; it is both.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) < 2:
        return rows.copy(), rows.copy()
    nq = max(1, min(n_queries, len(rows) // 10))
    query_rows = np.sort(np.random.default_rng(seed).choice(rows, size=nq, replace=False))
    return query_rows, np.setdiff1d(rows, query_rows)


def split_held_out(rows: np.ndarray, n_select: int, n_confirm: int | None = None, seed: int = 0) -> HeldOut:
    """Two disjoint random samples of ``rows`` (``n_select`` and ``n_confirm`` rows, default
    the same) and the rest: what :func:`~lookalike.index.tune.auto_index` measures on and
    builds on.

    Together they are at most a tenth of the rows (shrunk in proportion), so the index
    measured is nearly the one that will serve. Below three rows two disjoint samples and a
    row to build on do not exist: the confirmation sample then repeats the selection one.
    """
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    n_confirm = n_select if n_confirm is None else n_confirm
    if len(rows) < 3:
        select, build = split_queries(rows, n_select, seed)
        return HeldOut(select, select.copy(), build)
    cap = max(2, len(rows) // 10)
    if n_select + n_confirm > cap:
        ns = min(cap - 1, max(1, cap * n_select // (n_select + n_confirm)))
        n_select, n_confirm = ns, cap - ns
    picked = np.random.default_rng(seed).choice(rows, size=n_select + n_confirm, replace=False)
    return HeldOut(np.sort(picked[:n_select]), np.sort(picked[n_select:]), np.setdiff1d(rows, picked))


def split_text_queries(text_queries: np.ndarray, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(select, confirm)``: the text queries ``(T, d)``, checked, split at random into two
    halves (sorted within each), as :func:`~lookalike.index.tune.auto_index` does with the
    same ``seed``.

    Raises:
        InvalidArgument: not a ``(T, dim)`` array of at least two finite unit vectors.
    """
    t = np.asarray(text_queries, dtype=np.float32)
    if t.ndim != 2 or t.shape[1] != dim:
        raise InvalidArgument(f"text_queries must be a (T, {dim}) array of the model's text embeddings, "
                              f"got shape {t.shape}")
    if len(t) < 2:
        raise InvalidArgument(f"text_queries needs at least 2 rows (a selection and a confirmation half), "
                              f"got {len(t)}; pass the embeddings of tuning_prompts()")
    norms = np.linalg.norm(t, axis=1)
    if not np.all(np.isfinite(norms)) or np.any(np.abs(norms - 1) > 1e-3):
        raise InvalidArgument(f"text_queries rows must be finite and L2-normalised (norms here range "
                              f"{np.nanmin(norms):.3g}..{np.nanmax(norms):.3g}); divide each by its norm")
    order = np.random.default_rng([seed, 1]).permutation(len(t))
    half = len(t) // 2
    return np.ascontiguousarray(t[np.sort(order[:half])]), np.ascontiguousarray(t[np.sort(order[half:])])


def ground_truth(vectors: np.ndarray, rows: np.ndarray, query_rows: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k rows for each query row among ``rows``, the query's own row excluded.

    ``-1`` pads where fewer than k other rows exist (a collection of one or a few vectors).
    """
    queries = np.asarray(vectors[query_rows], dtype=np.float32)
    _, pos = exact_topk(vectors, queries, k + 1, rows=rows)
    found = np.where(pos >= 0, rows[np.maximum(pos, 0)], -1)
    out = np.full((len(query_rows), k), -1, dtype=np.int64)
    for i, (qr, f) in enumerate(zip(query_rows, found)):
        others = f[(f != qr) & (f >= 0)][:k]
        out[i, : len(others)] = others
    return out


def query_truth(vectors: np.ndarray, rows: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k rows among ``rows`` for query vectors ``(Q, d)`` (text embeddings, say);
    ``-1`` pads where fewer than k rows exist."""
    _, pos = exact_topk(vectors, queries, k, rows=rows)
    out = np.full((len(queries), k), -1, dtype=np.int64)
    out[:, : pos.shape[1]] = rows[pos]
    return out


def measure(index: AnnIndex, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int,
            build_s: float = 0.0, memory_bytes: int | None = None, query_set: str = "select") -> Measurement:
    """Recall@k and single-query latency (one thread), queries sent one at a time.

    ``queries``: held-out row numbers (integers, ``(Q,)``; see :func:`split_held_out`) or
    query vectors (``(Q, d)`` float32). Rows should be held out of ``index``: a query's own
    row, if indexed, takes one of the k results and is not in ``truth``.
    ``memory_bytes``: the index's size if already known (measuring it serialises the index).
    """
    given = np.asarray(queries)
    if given.ndim == 1 and np.issubdtype(given.dtype, np.integer):
        given = vectors[given]
    queries = np.ascontiguousarray(given, dtype=np.float32).reshape(len(given), -1)
    times = np.empty(len(queries))
    per_query = np.ones(len(queries))  # nothing to find: nothing missed
    hits = 0
    with faiss_threads(1):
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            _, found = index.search(vectors, q, k)
            times[i] = time.perf_counter() - t0
            want = truth[i][truth[i] >= 0]
            if len(want):
                h = len(np.intersect1d(found[0][found[0] >= 0], want))
                hits += h
                per_query[i] = h / len(want)
    expected = int(np.count_nonzero(truth >= 0))
    return Measurement(
        label=index.spec.label(),
        recall=hits / expected if expected else 1.0,
        p50_ms=float(np.percentile(times, 50) * 1e3),
        p99_ms=float(np.percentile(times, 99) * 1e3),
        memory_bytes=index.memory_bytes() if memory_bytes is None else memory_bytes,
        build_s=build_s,
        recall_se=float(np.std(per_query) / np.sqrt(len(queries))) if len(queries) > 1 else 0.0,
        n_queries=len(queries),
        query_set=query_set,
    )
