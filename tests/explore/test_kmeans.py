"""Spherical k-means, choosing k, assigning and ranking by centrality, on planted clusters."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("faiss")
pytest.importorskip("sklearn")

from sklearn.metrics import adjusted_rand_score  # noqa: E402

from explore_data import planted  # noqa: E402
from lookalike.errors import InvalidArgument, MissingExtra  # noqa: E402
from lookalike.explore import assign, central, choose_k, spherical_kmeans  # noqa: E402
from lookalike.explore.kmeans import DEFAULT_K_GRID  # noqa: E402
from lookalike.progress import ProgressEvent  # noqa: E402


def test_recovers_planted_clusters() -> None:
    x, truth = planted(2000, 8, seed=1)
    r = spherical_kmeans(x, 8, seed=0)
    assert adjusted_rand_score(truth, r.assignment) > 0.95
    assert r.k == 8 and r.centroids.shape == (8, 512) and r.centroids.dtype == np.float32
    assert r.assignment.dtype == np.int32 and r.similarity.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(r.centroids, axis=1), 1.0, atol=1e-5)
    # similarity is the cosine to the row's own centroid, and that centroid is the nearest
    np.testing.assert_allclose(r.similarity, np.einsum("ij,ij->i", x, r.centroids[r.assignment]), atol=1e-5)
    assert (r.similarity >= (x @ r.centroids.T).max(axis=1) - 1e-5).all()
    sizes = np.bincount(r.assignment)
    assert (np.diff(sizes) <= 0).all(), "cluster 0 is the largest, sizes never grow"


def test_same_seed_same_clusters() -> None:
    x, _ = planted(600, 5, seed=2)
    a, b = spherical_kmeans(x, 5, seed=3), spherical_kmeans(x, 5, seed=3)
    np.testing.assert_array_equal(a.assignment, b.assignment)


@pytest.mark.parametrize("k", [5, 12])
def test_choose_k_finds_the_planted_number(k: int) -> None:
    x, _ = planted(1500, k, d=128, seed=k)
    choice = choose_k(x, seed=0)
    assert choice.criterion == "silhouette"
    assert choice.k in {4, 6} if k == 5 else choice.k == 12, choice.scores
    assert choice.scores[choice.k] == max(choice.scores.values())
    assert set(choice.scores) <= set(DEFAULT_K_GRID)


def test_choose_k_samples_and_caps_the_grid() -> None:
    x, _ = planted(900, 6, seed=4)
    events: list[ProgressEvent] = []
    choice = choose_k(x, sample=150, progress=events.append)
    assert choice.sample == 150
    assert max(choice.scores) <= 150 // 3  # never more clusters than a third of the sampled points
    assert [e.done for e in events] == list(range(1, len(events) + 1)) and events[-1].total == len(events)
    assert {e.kind for e in events} == {"cluster"}


def test_choose_k_grid_given() -> None:
    x, _ = planted(300, 3, seed=5)
    choice = choose_k(x, k_grid=[3, 2, 9999, 1])
    assert set(choice.scores) == {2, 3} and choice.k == 3
    with pytest.raises(InvalidArgument, match="k_grid"):
        choose_k(x, k_grid=[1, 5000])


@pytest.mark.parametrize("n", [0, 1, 2])
def test_choose_k_too_few_points(n: int) -> None:
    choice = choose_k(np.ones((n, 4), dtype=np.float32))
    assert choice.k == n and choice.scores == {}


def test_choose_k_identical_points() -> None:
    choice = choose_k(np.ones((50, 8), dtype=np.float32))
    assert choice.k == 1 and choice.scores == {}


def test_edge_sizes() -> None:
    with pytest.raises(InvalidArgument, match="n=0"):
        spherical_kmeans(np.zeros((0, 8), dtype=np.float32), 2)
    x, _ = planted(5, 2, d=16)
    with pytest.raises(InvalidArgument, match=r"k=6.*n=5.*k <= 5"):
        spherical_kmeans(x, 6)
    with pytest.raises(InvalidArgument):
        spherical_kmeans(x, 0)
    one = spherical_kmeans(x[:1], 1)
    assert one.k == 1 and one.assignment.tolist() == [0]
    np.testing.assert_allclose(one.centroids[0], x[0], atol=1e-6)
    two = spherical_kmeans(x[:2], 2)
    assert sorted(two.assignment.tolist()) == [0, 1]
    assert spherical_kmeans(x, 5).k == 5


def test_fewer_distinct_points_than_k() -> None:
    same = np.tile(np.eye(8, dtype=np.float32)[0], (10, 1))
    r = spherical_kmeans(same, 3)
    assert r.k == 1 and (r.assignment == 0).all()  # empty clusters are dropped, not returned
    three = np.repeat(np.eye(8, dtype=np.float32)[:3], 5, axis=0)
    r = spherical_kmeans(three, 5)
    assert r.k <= 3 and r.k == len(np.unique(r.assignment))
    for g in range(3):  # identical rows always share a cluster
        assert len(set(r.assignment[g * 5 : g * 5 + 5].tolist())) == 1


def test_assign_in_chunks_matches_direct() -> None:
    x, _ = planted(500, 4, d=32, seed=6)
    centroids = spherical_kmeans(x, 4).centroids
    scaled = x * np.linspace(0.5, 3.0, len(x), dtype=np.float32)[:, None]  # not unit length
    idx, sim = assign(scaled, centroids, chunk=7)
    np.testing.assert_array_equal(idx, np.argmax(x @ centroids.T, axis=1))
    np.testing.assert_allclose(sim, (x @ centroids.T).max(axis=1), atol=1e-5)  # cosine, not dot
    idx0, sim0 = assign(np.zeros((0, 32), dtype=np.float32), centroids)
    assert idx0.shape == sim0.shape == (0,)
    with pytest.raises(InvalidArgument):
        assign(x, np.zeros((0, 32), dtype=np.float32))
    with pytest.raises(InvalidArgument, match="dimensions"):
        assign(x[:, :16], centroids)


def test_central_ranks_by_similarity() -> None:
    x, _ = planted(400, 3, d=32, seed=7)
    c = spherical_kmeans(x, 3).centroids[0]
    top = central(x, c, 10)
    sims = x @ c
    assert top.dtype == np.int64 and len(top) == 10
    assert top[0] == int(np.argmax(sims))
    assert (np.diff(sims[top]) <= 0).all()
    np.testing.assert_array_equal(np.sort(sims)[::-1][:10], sims[top])
    assert sorted(central(x[:4], c, 10).tolist()) == [0, 1, 2, 3]
    assert central(x, c, 0).size == 0


def test_nan_rejected() -> None:
    x, _ = planted(20, 2, d=8)
    x[3, 1] = np.nan
    with pytest.raises(InvalidArgument, match="row 3"):
        spherical_kmeans(x, 2)


def test_missing_faiss_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    x, _ = planted(20, 2, d=8)
    with pytest.raises(MissingExtra, match=r"faiss-cpu.*lookalike\[explore\]"):
        spherical_kmeans(x, 2)
