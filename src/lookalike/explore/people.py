"""Grouping face descriptors into people: chinese whispers on the graph of close pairs.

Arrays in, arrays out: descriptors are dlib's 128-d face vectors (not unit length, compared by
Euclidean distance); what a person is, is decided here, what is stored is the store's business.

How :func:`group_faces` works:

1. **Neighbours.** Each face's :data:`MAX_NEIGHBOURS` nearest faces by squared Euclidean
   distance: exactly (FAISS ``IndexFlatL2``, or without FAISS a chunked matrix product, see
   :func:`lookalike.index.exact.exact_topk`) up to ``exact_limit`` faces, and above that
   through a FAISS IVF index (a face's nearest are searched in :data:`IVF_PROBES` cells).
   Approximate search can miss an edge, which rarely matters: a person's faces are joined by
   many edges, and chinese whispers needs only some of them. Memory is bounded by the edge
   lists (n x :data:`MAX_NEIGHBOURS`), never n x n.
2. **The graph.** Faces closer than ``threshold`` (dlib's 0.6 by default) are joined, in both
   directions, with weight 1 (as dlib's ``chinese_whispers`` is used for faces); a
   ``cannot_link`` pair is never joined.
3. **Chinese whispers.** Every face starts as its own label (pinned faces: their person's
   label) and repeatedly takes the label most of its neighbours hold; ties keep the current
   label, then go to a label's seeded random priority; a pinned face's vote counts twice. All
   faces are scored at once per round and a seeded random half of those that would change do
   so: updating everyone together can swap two labels forever, one face at a time (dlib's way)
   is too slow in Python for 100,000 faces. A label held by a ``cannot_link`` partner is never
   taken. It stops when no face would change, or after :data:`MAX_ROUNDS` rounds.
4. **People.** Groups of fewer than ``min_faces`` faces are unassigned (-1), like Immich's
   minimum of 3. A pinned person keeps its id whatever its size.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from ..errors import InvalidArgument
from ..index.exact import exact_topk
from ._arrays import as_matrix

__all__ = ["DEFAULT_THRESHOLD", "DEFAULT_MIN_FACES", "MAX_NEIGHBOURS", "EXACT_LIMIT", "EXACT_PAIRS", "MAX_ROUNDS",
           "IVF_PROBES", "group_faces", "assign_new", "face_neighbours"]

#: dlib's same-person threshold on the Euclidean distance of two face descriptors (99.38% on LFW).
DEFAULT_THRESHOLD = 0.6
#: Faces a group needs to be a person (Immich uses 3): fewer stay unassigned.
DEFAULT_MIN_FACES = 3
#: Edges kept per face: enough to hold a person's faces together, bounded so memory stays n x 32.
MAX_NEIGHBOURS = 32
#: Up to this many faces, neighbours are exact (20,000 faces: ~1.5 s on 2 cores; 100,000: ~40 s).
EXACT_LIMIT = 20_000
#: :func:`assign_new` searches exactly, whatever ``exact_limit``, while new x known faces stay
#: below this: placing a few
#: new faces among 100,000 known ones exactly takes ~0.05 s, where training an IVF index for
#: them takes ~2 s (1,000 new faces: 0.2 s against 2.3 s).
EXACT_PAIRS = 200_000_000
#: IVF cells searched per face above EXACT_LIMIT.
IVF_PROBES = 16
#: Chinese-whispers rounds at most; planted data settles in far fewer.
MAX_ROUNDS = 100
#: Query rows per step of the numpy search: bounds its score block to 1,024 x 32,768 floats.
_QUERY_BATCH = 1024


def _faiss() -> Any | None:
    try:
        import faiss
    except ImportError:  # the exact numpy search does the same, only slower
        return None
    return faiss


def face_neighbours(
    base: np.ndarray, queries: np.ndarray, k: int, *, exact_limit: int = EXACT_LIMIT, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``base`` nearest each query by squared Euclidean distance.

    Returns ``(d2 float32 (Q, k'), rows int64 (Q, k'))``, nearest first, ``k' = min(k, len(base))``;
    a row of ``-1`` (distance ``inf``) where an approximate search found fewer. Exact up to
    ``exact_limit`` base rows, above it a seeded FAISS IVF search (see the module docstring).
    """
    b = np.ascontiguousarray(as_matrix(base, "descriptors"))
    q = np.ascontiguousarray(as_matrix(queries, "descriptors"))
    k = min(int(k), len(b))
    if k <= 0 or len(q) == 0:
        return np.zeros((len(q), 0), dtype=np.float32), np.zeros((len(q), 0), dtype=np.int64)
    if b.shape[1] != q.shape[1]:
        raise InvalidArgument(f"descriptors have {q.shape[1]} dimensions but the known faces have {b.shape[1]}")
    faiss = _faiss()
    if faiss is None:
        return _numpy_knn(b, q, k)
    if len(b) <= exact_limit:
        index = faiss.IndexFlatL2(b.shape[1])
    else:
        index = _ivf(faiss, b, seed)
    index.add(b)
    d2, rows = index.search(q, k)
    rows = rows.astype(np.int64)
    d2 = np.where(rows >= 0, np.maximum(d2, 0.0), np.inf).astype(np.float32)
    return d2, rows


def _ivf(faiss: Any, b: np.ndarray, seed: int) -> Any:
    """A trained IVF-flat index: ~4 sqrt(n) cells, each trained on >= 40 rows (fewer makes FAISS warn on stderr)."""
    n, d = b.shape
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 40))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
    index.cp.seed = int(seed)
    index.cp.min_points_per_centroid = 1
    rng = np.random.default_rng(seed)
    sample = min(n, nlist * 64)  # more barely moves the cells, and training is the slow part
    index.train(b[np.sort(rng.choice(n, size=sample, replace=False))] if sample < n else b)
    index.nprobe = min(IVF_PROBES, nlist)
    return index


def _numpy_knn(b: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact squared-Euclidean top-k by inner products on augmented rows.

    ``|x - y|^2 = |x|^2 - 2 (x.y - |y|^2 / 2)``: with ``y' = [y, -|y|^2/2]`` and ``x' = [x, 1]`` the
    largest ``x'.y'`` is the nearest ``y``, so exact_topk's chunked inner-product search serves.
    """
    half_norms = 0.5 * np.einsum("ij,ij->i", b, b, dtype=np.float64)
    b1 = np.hstack([b, (-half_norms)[:, None].astype(np.float32)])
    d2 = np.empty((len(q), k), dtype=np.float32)
    rows = np.empty((len(q), k), dtype=np.int64)
    for start in range(0, len(q), _QUERY_BATCH):
        block = q[start : start + _QUERY_BATCH]
        q1 = np.hstack([block, np.ones((len(block), 1), dtype=np.float32)])
        scores, idx = exact_topk(b1, q1, k)
        sq = np.einsum("ij,ij->i", block, block)[:, None]
        d2[start : start + len(block)] = np.maximum(sq - 2.0 * scores, 0.0)
        rows[start : start + len(block)] = idx
    return d2, rows


def _pairs(cannot_link: Iterable[tuple[int, int]] | np.ndarray, n: int) -> np.ndarray:
    """``cannot_link`` as an (m, 2) int64 array, checked."""
    pairs = np.asarray(list(cannot_link) if not isinstance(cannot_link, np.ndarray) else cannot_link, dtype=np.int64)
    if pairs.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise InvalidArgument(f"cannot_link must be pairs of face indices (m, 2), got shape {pairs.shape}")
    if pairs.min() < 0 or pairs.max() >= n:
        raise InvalidArgument(f"cannot_link names a face outside 0..{n - 1}")
    if (pairs[:, 0] == pairs[:, 1]).any():
        raise InvalidArgument("cannot_link pairs a face with itself; a face is always its own person")
    return pairs


def _pinned(fixed: np.ndarray | None, n: int) -> np.ndarray:
    """``fixed`` as an (n,) int64 array, -1 where a face is not pinned."""
    if fixed is None:
        return np.full(n, -1, dtype=np.int64)
    f = np.asarray(fixed)
    if f.shape != (n,) or not np.issubdtype(f.dtype, np.integer):
        raise InvalidArgument(f"fixed must be one integer person id per face (shape ({n},)), got {f.dtype} {f.shape}")
    if (f < -1).any():
        raise InvalidArgument("fixed person ids must be >= 0 (-1: not pinned)")
    return f.astype(np.int64)


def _edges(
    x: np.ndarray, threshold: float, k: int, exact_limit: int, seed: int, pairs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Directed edges ``(src, dst)`` both ways between faces closer than ``threshold``, sorted by
    ``src``, without the cannot-link pairs."""
    n = len(x)
    d2, nbrs = face_neighbours(x, x, k + 1, exact_limit=exact_limit, seed=seed)  # +1: a face finds itself
    src = np.repeat(np.arange(n, dtype=np.int64), nbrs.shape[1])
    dst = nbrs.ravel()
    keep = (dst >= 0) & (dst != src) & (d2.ravel() < threshold * threshold)
    src, dst = src[keep], dst[keep]
    keys = np.concatenate([src * n + dst, dst * n + src])
    keys.sort()  # then drop repeats: np.unique's hash path took 5 s on 6.4M keys, a sort 0.5 s
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
    if len(pairs):
        banned = np.concatenate([pairs[:, 0] * n + pairs[:, 1], pairs[:, 1] * n + pairs[:, 0]])
        keys = keys[~np.isin(keys, banned)]
    return keys // n, keys % n


def _whispers(n: int, src: np.ndarray, dst: np.ndarray, labels: np.ndarray, pinned: np.ndarray,
              pairs: np.ndarray, seed: int) -> np.ndarray:
    """Chinese whispers from the starting ``labels``; pinned faces never move (see the module docstring).

    Labels are below ``2 n``: a face whose label a cannot-link partner shares, with nowhere
    else to go, takes the fresh label ``n + i``, which no face held before.
    """
    rng = np.random.default_rng(seed)
    m = 2 * n
    labels = labels.copy()
    # A pinned face votes twice: a face set by hand is better evidence than a computed one,
    # so its person pulls the rest of that person's faces rather than losing them to a tie.
    weight = np.where(pinned[dst], 2, 1).astype(np.int64)
    for _ in range(MAX_ROUNDS):
        keys = src * m + labels[dst]
        w = weight
        own_banned = np.zeros(n, dtype=bool)
        if len(pairs):
            a, b = pairs[:, 0], pairs[:, 1]
            banned = np.concatenate([a * m + labels[b], b * m + labels[a]])
            allowed = ~np.isin(keys, banned)
            keys, w = keys[allowed], w[allowed]
            own_banned[a[labels[a] == labels[b]]] = True
            own_banned[b[labels[a] == labels[b]]] = True
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=np.int64)
        uk = keys[starts]
        votes = np.add.reduceat(w[order], starts) if len(keys) else np.zeros(0, dtype=np.int64)
        s, lab = uk // m, uk % m
        best = labels.copy()
        best[own_banned] = n + np.flatnonzero(own_banned)
        if len(uk):
            # Votes are whole numbers, so adding 0.5 for the current label and < 0.25 of random
            # priority ranks by votes, then current, then priority; uk is sorted by face, so each
            # face's best is a segment maximum (no sort needed).
            score = votes + 0.5 * (lab == labels[s]) + 0.25 * rng.random(m)[lab]
            starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
            top = np.maximum.reduceat(score, starts)
            seg = np.cumsum(np.r_[False, s[1:] != s[:-1]])
            hit = np.flatnonzero(score == top[seg])
            first = hit[np.r_[True, seg[hit][1:] != seg[hit][:-1]]]
            best[s[first]] = lab[first]
        best[pinned] = labels[pinned]
        changed = best != labels
        if not changed.any():
            break
        move = changed & (rng.random(n) < 0.5)
        if not move.any():
            move = changed
        labels[move] = best[move]
    return _separate(labels, pinned, pairs, n)


def _separate(labels: np.ndarray, pinned: np.ndarray, pairs: np.ndarray, n: int) -> np.ndarray:
    """Split cannot-link pairs still sharing a label (only when MAX_ROUNDS ran out): the unpinned
    one of the pair (the second when neither is pinned) goes to its own fresh label."""
    if len(pairs) == 0:
        return labels
    for a, b in pairs[labels[pairs[:, 0]] == labels[pairs[:, 1]]]:
        if labels[a] == labels[b]:
            moved = a if pinned[b] else b
            labels[moved] = n + moved
    return labels


def group_faces(
    descriptors: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_faces: int = DEFAULT_MIN_FACES,
    cannot_link: Iterable[tuple[int, int]] | np.ndarray = (),
    fixed: np.ndarray | None = None,
    seed: int = 0,
    neighbours: int = MAX_NEIGHBOURS,
    exact_limit: int = EXACT_LIMIT,
) -> np.ndarray:
    """Group face ``descriptors`` (N, 128) into people: ``(N,)`` int64 person ids, -1 = unassigned.

    Args:
        descriptors: float32 face descriptors (any dimension; compared by Euclidean distance).
        threshold: faces closer than this are linked (dlib's 0.6).
        min_faces: a group of fewer faces is unassigned (pinned people excepted).
        cannot_link: pairs of face indices ``(i, j)`` that never end in one person ("not this
            person": pair the face with a face pinned to that person).
        fixed: ``(N,)`` person id per face that a person pinned by hand, -1 elsewhere. Pinned
            faces keep that id; others can join them. Two faces pinned to one person must not
            be a cannot-link pair.
        seed: seeds the tie-breaks, the update order and the IVF training: same input, same seed,
            same output.
        neighbours: edges kept per face (see :data:`MAX_NEIGHBOURS`).
        exact_limit: above this many faces, neighbours come from an IVF index.

    Returns:
        Person ids: pinned people keep theirs; the new people are numbered from one above the
        largest pinned id (from 0 without pins), largest first, ties by their first face.

    Raises :class:`InvalidArgument` for a bad argument or NaN descriptors.
    """
    x = as_matrix(descriptors, "descriptors")
    n = len(x)
    if not threshold > 0 or min_faces < 1 or neighbours < 1:
        raise InvalidArgument(
            f"threshold must be > 0, min_faces and neighbours >= 1; got {threshold}, {min_faces}, {neighbours}"
        )
    pairs = _pairs(cannot_link, n)
    person = _pinned(fixed, n)
    if len(pairs) and ((person[pairs[:, 0]] >= 0) & (person[pairs[:, 0]] == person[pairs[:, 1]])).any():
        raise InvalidArgument("a cannot_link pair has both faces pinned to the same person; unpin one of them")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pinned = person >= 0
    labels = np.arange(n, dtype=np.int64)
    if pinned.any():  # a person's pinned faces start as one label: that of its first pinned face
        ids, first = np.unique(person[pinned], return_index=True)
        rep = np.flatnonzero(pinned)[first]
        labels[pinned] = rep[np.searchsorted(ids, person[pinned])]
    src, dst = _edges(x, float(threshold), int(neighbours), int(exact_limit), int(seed), pairs)
    labels = _whispers(n, src, dst, labels, pinned, pairs, int(seed))
    return _people(labels, person, pinned, int(min_faces))


def _people(labels: np.ndarray, person: np.ndarray, pinned: np.ndarray, min_faces: int) -> np.ndarray:
    """Final ids: a pinned person's label -> its id; other groups of >= min_faces numbered by size."""
    out = np.full(len(labels), -1, dtype=np.int64)
    uniq, first, inverse, sizes = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    pinned_label = {int(labels[i]): int(person[i]) for i in np.flatnonzero(pinned)}
    base = int(person.max(initial=-1)) + 1
    new = [g for g in range(len(uniq)) if int(uniq[g]) not in pinned_label and sizes[g] >= min_faces]
    new.sort(key=lambda g: (-int(sizes[g]), int(first[g])))
    ids = np.full(len(uniq), -1, dtype=np.int64)
    for rank, g in enumerate(new):
        ids[g] = base + rank
    for g, label in enumerate(uniq):
        if int(label) in pinned_label:
            ids[g] = pinned_label[int(label)]
    out[:] = ids[inverse]
    return out


def assign_new(
    descriptors: np.ndarray,
    known: np.ndarray,
    known_people: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    exact_limit: int = EXACT_LIMIT,
) -> np.ndarray:
    """Each new face's person: that of the nearest known face closer than ``threshold``, else -1.

    ``known`` (M, 128) are faces already in people with ``known_people`` (M,) their person ids
    (-1 rows are ignored); one centroid per person works too, with its person id. Nearest
    member rather than centroid is the default use because it is the rule that links faces in
    :func:`group_faces`. Returns ``(N,)`` int64 person ids.
    """
    x = as_matrix(descriptors, "descriptors")
    k_vecs = as_matrix(known, "known faces")
    people = np.asarray(known_people).astype(np.int64, copy=False)
    if people.shape != (len(k_vecs),):
        raise InvalidArgument(
            f"known_people must hold one person id per known face ({len(k_vecs)}), got shape {people.shape}"
        )
    if not threshold > 0:
        raise InvalidArgument(f"threshold must be > 0, got {threshold}")
    out = np.full(len(x), -1, dtype=np.int64)
    rows = np.flatnonzero(people >= 0)
    if len(x) == 0 or len(rows) == 0:
        return out
    if len(x) * len(rows) <= EXACT_PAIRS:
        exact_limit = max(exact_limit, len(rows))  # a few new faces: exact beats training an index
    d2, nearest = face_neighbours(k_vecs[rows], x, 1, exact_limit=exact_limit)
    close = (nearest[:, 0] >= 0) & (d2[:, 0] < threshold * threshold)
    out[close] = people[rows[nearest[close, 0]]]
    return out
