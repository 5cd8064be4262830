"""Grouping face descriptors into people on planted face-like data: people found, min_faces,
cannot_link, pinned faces, the seed, assigning new faces, and the three neighbour searches."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.metrics import adjusted_rand_score  # noqa: E402

from explore_data import face_like  # noqa: E402
from lookalike.errors import InvalidArgument  # noqa: E402
from lookalike.explore import people  # noqa: E402
from lookalike.explore import people  # noqa: E402
from lookalike.explore.people import assign_new, group_faces  # noqa: E402

# 8 people of 6-20 faces, then people of 2 and 1 faces (below the default min_faces of 3).
SIZES = [20, 16, 12, 10, 9, 8, 7, 6, 2, 1]


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray]:
    return face_like(SIZES, seed=3)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return adjusted_rand_score(a, b) == 1.0


def test_planted_people_are_recovered(faces: tuple[np.ndarray, np.ndarray]) -> None:
    x, truth = faces
    labels = group_faces(x)
    assert labels.shape == (len(x),) and labels.dtype == np.int64
    big = np.isin(truth, np.flatnonzero(np.array(SIZES) >= 3))
    assert _same_partition(truth[big], labels[big]) and (labels[big] >= 0).all()
    assert (labels[~big] == -1).all(), "people below min_faces stay unassigned"
    sizes = np.bincount(labels[labels >= 0])
    assert sizes.tolist() == sorted(SIZES[:8], reverse=True), "numbered 0.. largest first"


def test_min_faces(faces: tuple[np.ndarray, np.ndarray]) -> None:
    x, truth = faces
    pair = truth == 8  # the person with two faces
    assert (group_faces(x, min_faces=2)[pair] >= 0).all()
    assert len(np.unique(group_faces(x, min_faces=2)[pair])) == 1
    loner = truth == 9
    assert group_faces(x, min_faces=1)[loner][0] >= 0
    labels = group_faces(x, min_faces=10)
    assert len(np.unique(labels[labels >= 0])) == 4  # 20, 16, 12 and 10 faces


def test_cannot_link_pairs_never_share_a_person(faces: tuple[np.ndarray, np.ndarray]) -> None:
    x, truth = faces
    one = np.flatnonzero(truth == 0)  # 20 faces of one person
    pairs = [(int(one[0]), int(one[1])), (int(one[2]), int(one[3])), (int(one[0]), int(one[5]))]
    labels = group_faces(x, cannot_link=pairs)
    for i, j in pairs:
        assert labels[i] == -1 or labels[i] != labels[j]
    # the rest of that person is still one person
    rest = np.setdiff1d(one, [p for pair in pairs for p in pair])
    assert len(np.unique(labels[rest])) == 1 and labels[rest][0] >= 0


def test_pinned_faces_keep_their_person(faces: tuple[np.ndarray, np.ndarray]) -> None:
    x, truth = faces
    fixed = np.full(len(x), -1, dtype=np.int64)
    a = np.flatnonzero(truth == 1)  # 16 faces
    fixed[a[:3]] = 7  # a person named by hand, id 7 in the store
    stray = np.flatnonzero(truth == 2)[0]
    fixed[stray] = 7  # a face of someone else, pinned to 7 by hand: it stays there
    loner = np.flatnonzero(truth == 9)[0]
    fixed[loner] = 42  # a person of one pinned face survives min_faces
    labels = group_faces(x, fixed=fixed)
    assert (labels[fixed >= 0] == fixed[fixed >= 0]).all()
    assert (labels[a] == 7).all(), "the rest of the person joins the pinned faces"
    others = labels[(labels >= 0) & ~np.isin(labels, [7, 42])]
    assert others.min() == 43, "new people are numbered above the largest pinned id"
    # A pinned face's vote counts twice, so the faces like the stray follow it into 7 (a mistaken
    # pin is undone by unpinning or by a cannot_link, never by a regroup).
    assert (labels[truth == 2] == 7).all()
    assert len(np.unique(others)) == len(SIZES[:8]) - 2


def test_not_this_person_via_a_pinned_face(faces: tuple[np.ndarray, np.ndarray]) -> None:
    x, truth = faces
    a = np.flatnonzero(truth == 3)
    fixed = np.full(len(x), -1, dtype=np.int64)
    fixed[a[0]] = 5
    labels = group_faces(x, fixed=fixed, cannot_link=[(int(a[1]), int(a[0]))])
    assert labels[a[0]] == 5 and labels[a[1]] != 5
    assert (labels[a[2:]] == 5).all()
    with pytest.raises(InvalidArgument, match="pinned to the same person"):
        fixed[a[1]] = 5
        group_faces(x, fixed=fixed, cannot_link=[(int(a[1]), int(a[0]))])


def test_seed_makes_it_repeatable() -> None:
    # People joined by a few close pairs: where whispers go depends on the order and tie-breaks.
    x, _ = face_like([5] * 30, seed=4)
    x = x * 1.6  # spread the faces so the graph is sparse and ties are common
    runs = [group_faces(x, seed=s, min_faces=1, exact_limit=50) for s in (0, 0, 1)]  # IVF training seeded too
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[2].shape == runs[0].shape and (runs[2] >= 0).all()


def test_neighbour_searches_agree(monkeypatch: pytest.MonkeyPatch, faces: tuple[np.ndarray, np.ndarray]) -> None:
    x, truth = faces
    flat = group_faces(x)
    ivf = group_faces(x, exact_limit=10)  # IVF index from 11 faces up
    monkeypatch.setattr(people, "_faiss", lambda: None)
    exact = group_faces(x)
    np.testing.assert_array_equal(flat, exact)
    assert _same_partition(flat, ivf)
    d2, rows = people.face_neighbours(x, x[:5], 3)
    assert (rows[:, 0] == np.arange(5)).all() and np.allclose(d2[:, 0], 0, atol=1e-5)
    expect = ((x[:5, None, :] - x[None, rows[:, 1], :][0][:, None, :]) ** 2).sum(-1)[:, 0]
    np.testing.assert_allclose(d2[:, 1], expect, rtol=1e-4)


def test_assign_new_faces(faces: tuple[np.ndarray, np.ndarray]) -> None:
    x, truth = faces
    labels = group_faces(x)
    new, new_truth = face_like(SIZES, seed=3)  # same centres (same seed), fresh noise below
    rng = np.random.default_rng(9)
    new = new + rng.standard_normal(new.shape).astype(np.float32) * 0.01
    got = assign_new(new, x, labels)
    known = labels >= 0
    person_of = {int(t): int(lab) for t, lab in zip(truth[known], labels[known])}
    for i, t in enumerate(new_truth):
        assert got[i] == person_of.get(int(t), -1)
    far = np.full((2, x.shape[1]), 5.0, dtype=np.float32)
    assert assign_new(far, x, labels).tolist() == [-1, -1]
    # one centroid per person serves too
    ids = np.unique(labels[known])
    centroids = np.stack([x[labels == p].mean(axis=0) for p in ids])
    big = np.isin(new_truth, list(person_of))
    assert (assign_new(new[big], centroids, ids) == got[big]).all()
    assert assign_new(new[:0], x, labels).shape == (0,)


def test_a_few_new_faces_are_placed_exactly_among_many(faces: tuple[np.ndarray, np.ndarray],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Training an IVF index costs ~2 s at 100,000 known faces; a few new ones need none.
    x, _ = faces
    labels = group_faces(x)
    expected = assign_new(x[:5], x, labels)
    monkeypatch.setattr(people, "_ivf", lambda *a: pytest.fail("an IVF index was trained for 5 new faces"))
    assert (assign_new(x[:5], x, labels, exact_limit=10) == expected).all()
    monkeypatch.setattr(people, "EXACT_PAIRS", 4)  # many new faces: the index is trained
    with pytest.raises(pytest.fail.Exception, match="IVF"):
        assign_new(x[:5], x, labels, exact_limit=10)


def test_bad_arguments(faces: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = faces
    assert group_faces(np.zeros((0, 128), dtype=np.float32)).shape == (0,)
    for kwargs in ({"threshold": 0}, {"min_faces": 0}, {"cannot_link": [(0, 0)]}, {"cannot_link": [(0, len(x))]},
                   {"fixed": np.zeros(3, dtype=np.int64)}, {"fixed": np.full(len(x), -2)}):
        with pytest.raises(InvalidArgument):
            group_faces(x, **kwargs)
    bad = x.copy()
    bad[4, 0] = np.nan
    with pytest.raises(InvalidArgument, match="row 4"):
        group_faces(bad)
    with pytest.raises(InvalidArgument):
        assign_new(x, x, np.zeros(3, dtype=np.int64))


def test_tiny_and_identical_inputs() -> None:
    same = np.zeros((5, 128), dtype=np.float32)
    assert group_faces(same[:1]).tolist() == [-1]
    assert group_faces(same[:2], min_faces=2).tolist() == [0, 0]
    labels = group_faces(same, cannot_link=[(0, 1)])  # identical faces, yet never one person
    assert labels[0] != labels[1] and sorted(labels.tolist()) == [-1, 0, 0, 0, 0]
    assert assign_new(same[:2], same[:3], np.array([-1, -1, -1])).tolist() == [-1, -1]


@pytest.mark.slow
def test_regroup_100k() -> None:
    """100,000 faces of ~4,000 people (log-normal sizes): the benchmark's data, timed."""
    rng = np.random.default_rng(0)
    sizes = np.clip(np.round(rng.lognormal(2.5, 1.2, 20_000)), 1, 2000).astype(int)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), 100_000)]
    x, truth = face_like(sizes, seed=0)
    t0 = time.perf_counter()
    labels = group_faces(x)
    elapsed = time.perf_counter() - t0
    big = sizes[truth] >= 3
    singles = np.where(labels[big] >= 0, labels[big], -1 - np.arange(big.sum()))
    assert adjusted_rand_score(truth[big], singles) > 0.99
    assert elapsed < 120
