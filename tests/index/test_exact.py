"""exact_topk against a brute-force numpy ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.index.exact import exact_topk


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(vectors: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reference: score every candidate, sort descending, keep k."""
    cand = vectors if rows is None else vectors[rows]
    scores = np.atleast_2d(queries).astype(np.float32) @ cand.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def _check(vectors: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray | None = None, **kw: int) -> None:
    """exact_topk agrees with brute force: same scores, and positions that really have those scores."""
    got_s, got_p = exact_topk(vectors, queries, k, rows=rows, **kw)
    want_s, want_p = _brute(np.asarray(vectors), queries, k, rows)
    assert got_s.shape == want_s.shape and got_p.shape == want_p.shape
    np.testing.assert_allclose(got_s, want_s, rtol=0, atol=1e-5)
    cand = np.asarray(vectors) if rows is None else np.asarray(vectors)[rows]
    q = np.atleast_2d(queries).astype(np.float32)
    for qi in range(q.shape[0]):
        assert len(set(got_p[qi].tolist())) == got_p.shape[1], "a candidate was returned twice"
        np.testing.assert_allclose(cand[got_p[qi]] @ q[qi], got_s[qi], rtol=0, atol=1e-5)
        # Where there are no ties, the positions themselves must match.
        if len(np.unique(np.round(want_s[qi], 6))) == want_s.shape[1]:
            assert got_p[qi].tolist() == want_p[qi].tolist()
    assert np.all(np.diff(got_s, axis=1) <= 1e-7), "scores are not best-first"


@pytest.mark.parametrize("n,k,chunk", [(1, 1, 32768), (50, 5, 32768), (100, 10, 7), (100, 20, 8), (64, 64, 16),
                                       (65, 3, 64), (33, 40, 5)])
def test_matches_brute_force(n: int, k: int, chunk: int) -> None:
    """Guards chunking and the per-chunk partition + merge, including k > chunk and k > n."""
    rng = np.random.default_rng(n * 1000 + k)
    vecs = _unit(rng, n, 24)
    queries = _unit(rng, 4, 24)
    _check(vecs, queries, k, chunk=chunk)


def test_single_query_vector_is_accepted() -> None:
    """Guards 1-d queries: treated as one query, result shaped (1, k)."""
    rng = np.random.default_rng(1)
    vecs = _unit(rng, 30, 8)
    scores, pos = exact_topk(vecs, vecs[3], 5, chunk=4)
    assert scores.shape == pos.shape == (1, 5)
    assert pos[0, 0] == 3 and scores[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_k_larger_than_n_returns_all() -> None:
    """Guards k > n: every candidate comes back once, best first."""
    rng = np.random.default_rng(2)
    vecs = _unit(rng, 7, 16)
    q = _unit(rng, 2, 16)
    scores, pos = exact_topk(vecs, q, 100, chunk=3)
    assert scores.shape == (2, 7)
    assert sorted(pos[0].tolist()) == list(range(7))
    _check(vecs, q, 100, chunk=3)


def test_rows_subset_with_gaps() -> None:
    """Guards the gather path: positions index into ``rows``, not into the matrix."""
    rng = np.random.default_rng(3)
    vecs = _unit(rng, 200, 16)
    rows = np.sort(rng.choice(200, size=60, replace=False))
    q = _unit(rng, 3, 16)
    for chunk in (7, 16, 60, 1000):
        _check(vecs, q, 9, rows=rows, chunk=chunk)


def test_rows_contiguous_runs_and_gaps_mixed() -> None:
    """Guards the slice shortcut: chunks that are one run of rows and chunks that are not."""
    rng = np.random.default_rng(4)
    vecs = _unit(rng, 100, 8)
    rows = np.concatenate([np.arange(10, 30), np.arange(40, 45), np.arange(60, 100)])
    q = _unit(rng, 2, 8)
    for chunk in (5, 20, 21, 64):
        _check(vecs, q, 12, rows=rows, chunk=chunk)
    # A run whose ends are chunk-length apart but that is not consecutive inside.
    rows2 = np.array([0, 2, 1, 3, 10, 11, 12, 13])
    _check(vecs, q, 8, rows=rows2, chunk=4)


def test_rows_with_duplicates() -> None:
    """Guards rows shared by several items (copies): each occurrence is its own candidate."""
    rng = np.random.default_rng(5)
    vecs = _unit(rng, 20, 8)
    rows = np.array([0, 1, 1, 1, 2, 5, 5, 9, 9, 19])
    q = vecs[1] * 0.9 + vecs[5] * 0.1
    scores, pos = exact_topk(vecs, q, 4, rows=rows, chunk=3)
    assert sorted(pos[0, :3].tolist()) == [1, 2, 3], "all three copies of row 1 rank first"
    for chunk in (2, 3, 10):
        _check(vecs, q, 10, rows=rows, chunk=chunk)


def test_empty_candidates_and_nonpositive_k() -> None:
    """Guards empty inputs: no rows, or k <= 0, give empty (Q, 0) results rather than errors."""
    rng = np.random.default_rng(6)
    vecs = _unit(rng, 10, 4)
    q = _unit(rng, 2, 4)
    for scores, pos in (exact_topk(vecs, q, 5, rows=np.array([], dtype=np.int64)), exact_topk(vecs, q, 0)):
        assert scores.shape == (2, 0) and pos.shape == (2, 0)
    assert exact_topk(np.zeros((0, 4), np.float32), q, 3)[0].shape == (2, 0)


def test_memmap_input(tmp_path: Path) -> None:
    """Guards reading a memory-mapped vector file, with and without a row subset."""
    rng = np.random.default_rng(7)
    vecs = _unit(rng, 300, 32)
    path = tmp_path / "v.f32"
    vecs.astype("<f4").tofile(path)
    mm = np.memmap(path, dtype="<f4", mode="r", shape=(300, 32))
    q = _unit(rng, 5, 32)
    _check(mm, q, 15, chunk=64)
    rows = np.sort(rng.choice(300, size=120, replace=False))
    _check(mm, q, 15, rows=rows, chunk=50)


def test_float64_queries_are_cast() -> None:
    """Guards query dtype handling: float64 queries give the same ranking as float32 ones."""
    rng = np.random.default_rng(8)
    vecs = _unit(rng, 40, 8)
    q = _unit(rng, 2, 8)
    a = exact_topk(vecs, q.astype(np.float64), 6, chunk=9)
    b = exact_topk(vecs, q, 6, chunk=9)
    np.testing.assert_array_equal(a[1], b[1])


def test_random_stress() -> None:
    """Guards the merge across many chunk/k/row combinations on random data."""
    rng = np.random.default_rng(9)
    for _ in range(40):
        n = int(rng.integers(1, 150))
        d = int(rng.integers(2, 20))
        vecs = _unit(rng, n, d)
        q = _unit(rng, int(rng.integers(1, 4)), d)
        k = int(rng.integers(1, n + 10))
        chunk = int(rng.integers(1, n + 5))
        rows = None
        if rng.random() < 0.5:
            rows = np.sort(rng.choice(n, size=int(rng.integers(1, n + 1)), replace=bool(rng.random() < 0.5)))
        _check(vecs, q, k, rows=rows, chunk=chunk)
