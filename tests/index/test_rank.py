"""index.rank: the one place that picks exact search or the index, and maps rows to items."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import QueryError
from lookalike.index import rank as rank_mod
from lookalike.index.rank import rank


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class _SpyIndex:
    """Stands in for AnnIndex: exact answers, and a record of how it was asked."""

    def __init__(self, ntotal: int) -> None:
        self.ntotal = ntotal
        self.calls: list[np.ndarray | None] = []

    def search(self, vectors, queries, k, allowed):  # noqa: ANN001, ANN201
        self.calls.append(allowed)
        rows = np.arange(len(vectors)) if allowed is None else allowed
        scores = queries @ vectors[rows].T
        order = np.argsort(-scores, axis=1)[:, :k]
        return np.take_along_axis(scores, order, axis=1), rows[order]


def test_copies_sharing_a_row_are_each_a_result_and_k_is_kept() -> None:
    vectors = _unit(5, 8, 0)
    ids = np.array([10, 11, 12, 13, 14, 15])
    rows = np.array([0, 1, 1, 2, 3, 4])  # items 11 and 12 are copies of one file
    (hits,) = rank(vectors, ids, rows, vectors[1:2], k=3)
    assert [i for i, _ in hits][:2] == [11, 12] and len(hits) == 3
    assert hits[0][1] == pytest.approx(1.0, abs=1e-6) and hits[1][1] == hits[0][1]


def test_small_candidate_sets_are_exact_unless_the_index_is_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = _unit(50, 8, 1)
    ids, rows = np.arange(100, 150), np.arange(50)
    spy = _SpyIndex(50)
    rank(vectors, ids, rows, vectors[:2], k=5, ann=spy, live_rows=50)
    assert spy.calls == [], "below EXACT_BELOW the index must not be asked"
    rank(vectors, ids, rows, vectors[:2], k=5, ann=spy, forced=True, live_rows=50)
    assert spy.calls == [None], "all live rows and nothing deleted: no selector"
    monkeypatch.setattr(rank_mod, "EXACT_BELOW", 10)
    got = rank(vectors, ids[:20], rows[:20], vectors[:1], k=5, ann=spy, live_rows=50)
    np.testing.assert_array_equal(spy.calls[-1], rows[:20])  # a filter: restricted to the candidates
    exact = rank(vectors, ids[:20], rows[:20], vectors[:1], k=5)
    assert got == exact


def test_k_below_one_is_a_query_error() -> None:
    vectors = _unit(3, 4, 2)
    with pytest.raises(QueryError, match="at least 1"):
        rank(vectors, np.arange(3), np.arange(3), vectors[:1], k=0)
