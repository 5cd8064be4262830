"""The k-nearest-neighbour graph: exact against brute force, updates equal recomputation,
and the approximate path finds the same near pairs with exact scores."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.index.neighbours import knn_graph, update_knn_graph


def unit(rng: np.random.Generator, n: int, d: int = 32) -> np.ndarray:
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def brute(v: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    sims = v[rows] @ v[rows].T
    np.fill_diagonal(sims, -np.inf)
    return rows[np.argsort(-sims, axis=1, kind="stable")[:, :k]]


def test_exact_graph_matches_brute_force_on_a_subset_of_rows() -> None:
    v = unit(np.random.default_rng(0), 1500)
    rows = np.arange(0, 1500, 2)  # only even rows take part
    g = knn_graph(v, rows[::-1], 6, batch=100)  # any order in, sorted out
    assert np.array_equal(g.rows, rows)
    assert np.array_equal(g.nbrs, brute(v, rows, 6))
    assert np.allclose(g.sims, np.take_along_axis(v[rows] @ v.T, g.nbrs, axis=1), atol=1e-5)


def test_fewer_rows_than_k_pads() -> None:
    v = unit(np.random.default_rng(1), 3)
    g = knn_graph(v, np.arange(3), 5)
    assert (g.nbrs[:, 2:] == -1).all() and np.isneginf(g.sims[:, 2:]).all()
    assert set(g.nbrs[0, :2]) == {1, 2}


def test_update_after_adding_and_removing_equals_recomputing() -> None:
    v = unit(np.random.default_rng(2), 2000)
    first = knn_graph(v, np.arange(1200), 5)
    now = np.setdiff1d(np.arange(2000), np.arange(0, 1200, 7))  # some removed, 800 added
    updated = update_knn_graph(first, v, now)
    full = knn_graph(v, now, 5)
    assert np.array_equal(updated.rows, full.rows)
    # Removed rows vanish from every list; lists that lost one are not refilled.
    assert np.isin(updated.nbrs[updated.nbrs >= 0], now).all()
    untouched = ~np.isin(first.nbrs[np.isin(first.rows, now)], np.arange(0, 1200, 7)).any(axis=1)
    assert untouched.sum() > 300
    rows_untouched = first.rows[np.isin(first.rows, now)][untouched]
    pos = np.searchsorted(full.rows, rows_untouched)
    assert np.array_equal(updated.nbrs[pos], full.nbrs[pos])
    new = np.searchsorted(full.rows, np.arange(1200, 2000))
    assert np.array_equal(updated.nbrs[new], full.nbrs[new])


def test_pairs_are_unique_and_thresholded() -> None:
    v = unit(np.random.default_rng(3), 300, 8)
    g = knn_graph(v, np.arange(300), 4)
    a, b, s = g.pairs(0.5)
    assert (a < b).all() and (s >= 0.5).all()
    assert len(set(zip(a.tolist(), b.tolist()))) == len(a)
    assert np.allclose(s, np.einsum("ij,ij->i", v[a], v[b]), atol=1e-5)


def test_approximate_path_finds_planted_near_duplicates_with_exact_scores() -> None:
    pytest.importorskip("faiss")
    from lookalike.index.faiss_index import AnnIndex
    from lookalike.index.spec import IndexSpec

    rng = np.random.default_rng(4)
    v = unit(rng, 6000, 64)
    v[3000:3500] = v[:500] + rng.normal(size=(500, 64)).astype(np.float32) * 0.03
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ann = AnnIndex.build(IndexSpec(kind="ivfpq", nlist=32, pq_m=16, nprobe=4, rerank=4), v)
    g = knn_graph(v, np.arange(6000), 5, ann=ann)
    assert (g.nbrs[:500, 0] == np.arange(3000, 3500)).mean() >= 0.99
    valid = g.nbrs >= 0
    exact = np.take_along_axis(v @ v.T, np.maximum(g.nbrs, 0), axis=1)
    assert np.allclose(g.sims[valid], exact[valid], atol=1e-5)
