"""Near-duplicate groups from candidate pairs, without chaining.

Plain connected components over "similar enough" pairs chain: A≈B and B≈C put A and C in
one group however far apart they are, and at scale one component can swallow thousands of
unrelated images. Here a group is a set in which **every pair of members matches** (complete
linkage), which is stronger than "every member matches the group's medoid": no two members
of a group are ever further apart than the rule allows.

How groups are formed, given the candidate pairs (from the k-nearest-neighbour graph):

1. connected components over the matching pairs (a component of two is a group at once);
2. a component in which every pair matches is a group (checked for all components of one
   size at once, in a few array operations);
3. any other component is split greedily: its medoid (the member matching the most others,
   then the most similar to them) starts a group, which takes the remaining members that
   match every member taken so far, most similar to the medoid first; the rest is split the
   same way. Components above :data:`LARGE_COMPONENT` members are split by the medoid rule
   alone (every member matches the medoid), which needs no member x member matrix.

A pair matches (:class:`PairRule`) when its cosine similarity reaches the threshold
(semantic tier) or both perceptual hashes are within ``hash_bits`` and its cosine similarity
reaches the lower ``hash_floor`` (perceptual tier); with
``flips=False``, a pair whose hashes match only once one image is mirrored does not match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["PairRule", "NodeData", "Grouping", "group_pairs", "EXACT", "PERCEPTUAL", "SEMANTIC", "NO_MATCH",
           "LARGE_COMPONENT"]

#: Tier codes, strongest first. Copies of a file share one node, so no pair of nodes is
#: ever EXACT; callers use the code for them.
EXACT, PERCEPTUAL, SEMANTIC, NO_MATCH = 0, 1, 2, 3
#: How close a mirrored hash must be to call a pair a flip when the perceptual tier is off.
MIRROR_BITS = 6
#: Components larger than this are split by the medoid rule (see the module docstring).
LARGE_COMPONENT = 2048
#: Components of up to this size are checked together, as one (C, m, m) array per size.
_BATCH_SIZE_LIMIT = 64
_BATCH_BYTES = 64 << 20


@dataclass(frozen=True)
class PairRule:
    """When two images match: ``threshold`` is the cosine similarity of the semantic tier
    (None: tier off), ``hash_bits`` the largest pHash and dHash distance of the perceptual
    tier (None: tier off), ``flips`` whether a mirror image counts.

    ``hash_floor`` is the cosine similarity a perceptual match needs as well: 64-bit hashes
    of flat drawings made from one template (flags, icons) collide, while their embeddings
    still tell them apart; a true copy's embedding is always close too."""

    threshold: float | None
    hash_bits: int | None = 6
    flips: bool = True
    hash_floor: float = -1.0


@dataclass
class NodeData:
    """What the rule looks at, per node: its vector row and its perceptual hashes
    (``has_hashes`` False where the image has none; it then matches semantically only)."""

    vectors: np.ndarray      # (N_rows, d) float32, memory map
    rows: np.ndarray         # (n,) vector row of each node
    phash: np.ndarray        # (n,) int64
    dhash: np.ndarray        # (n,) int64
    mirror: np.ndarray       # (n,) int64: pHash of the mirrored image
    has_hashes: np.ndarray   # (n,) bool

    def gather(self, nodes: np.ndarray) -> np.ndarray:
        """The vectors of ``nodes`` (any shape), as float32."""
        flat = self.rows[nodes.ravel()]
        uniq, inverse = np.unique(flat, return_inverse=True)
        return np.asarray(self.vectors[uniq], dtype=np.float32)[inverse].reshape(*nodes.shape, -1)


@dataclass
class Grouping:
    """Groups of nodes: ``members[i]`` (medoid first, then by similarity to it), with each
    member's similarity and tier (:data:`PERCEPTUAL` or :data:`SEMANTIC`) to the medoid."""

    members: list[np.ndarray]
    similarity: list[np.ndarray]
    tier: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.members)


def _bits(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x.view(np.uint64)).astype(np.int16)


def _match(rule: PairRule, sims: np.ndarray, data: NodeData, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Tier code of each pair ``(a, b)`` (arrays of node ids, any matching shape)."""
    tier = np.full(sims.shape, NO_MATCH, dtype=np.int8)
    both = data.has_hashes[a] & data.has_hashes[b]
    if rule.threshold is not None:
        tier[sims >= rule.threshold] = SEMANTIC
    if rule.hash_bits is not None:
        close = both & (sims >= rule.hash_floor) & (_bits(data.phash[a] ^ data.phash[b]) <= rule.hash_bits) & (
            _bits(data.dhash[a] ^ data.dhash[b]) <= rule.hash_bits)
        tier[close] = PERCEPTUAL
    if not rule.flips:
        direct = _bits(data.phash[a] ^ data.phash[b])
        mirrored = np.minimum(_bits(data.phash[a] ^ data.mirror[b]), _bits(data.mirror[a] ^ data.phash[b]))
        # A flip: the hashes agree far better once one image is mirrored.
        limit = rule.hash_bits if rule.hash_bits is not None else MIRROR_BITS
        tier[both & (mirrored <= limit) & (direct > limit)] = NO_MATCH
    return tier


def _components(n: int, a: np.ndarray, b: np.ndarray) -> Iterator[np.ndarray]:
    """Node arrays of the connected components with at least two nodes."""
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # Most nodes are alone: split only the nodes of components with company.
    grouped = np.flatnonzero(np.bincount(labels)[labels] >= 2)
    order = grouped[np.argsort(labels[grouped], kind="stable")]
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    if len(order):
        yield from np.split(order, bounds)


def _whole(comps: np.ndarray, data: NodeData, rule: PairRule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For C components of m nodes: ``(all pairs match, sims, tiers)`` shaped (C,), (C,m,m), (C,m,m)."""
    vecs = data.gather(comps)
    sims = np.einsum("cid,cjd->cij", vecs, vecs)
    a, b = comps[:, :, None], comps[:, None, :]
    tiers = _match(rule, sims, data, np.broadcast_to(a, sims.shape), np.broadcast_to(b, sims.shape))
    m = comps.shape[1]
    tiers[:, np.arange(m), np.arange(m)] = PERCEPTUAL
    return (tiers < NO_MATCH).all(axis=(1, 2)), sims, tiers


def _greedy(sims: np.ndarray, tiers: np.ndarray) -> list[np.ndarray]:
    """Split one component (its m x m sims and tiers) into complete-linkage groups (local indices)."""
    ok = tiers < NO_MATCH
    left = np.ones(len(sims), dtype=bool)
    groups = []
    while left.sum() >= 2:
        idx = np.flatnonzero(left)
        sub_ok, sub_s = ok[np.ix_(idx, idx)], sims[np.ix_(idx, idx)]
        score = sub_ok.sum(axis=1) * 4.0 + np.where(sub_ok, sub_s, 0).sum(axis=1) / len(idx)
        medoid = int(np.argmax(score))
        taken = [medoid]
        for c in np.argsort(-sub_s[medoid], kind="stable"):
            if c != medoid and sub_ok[c, taken].all():
                taken.append(int(c))
        left[idx[taken]] = False
        if len(taken) >= 2:
            groups.append(idx[taken])
        elif sub_ok.sum() <= len(idx):  # nothing left matches anything
            break
    return groups


def _medoid_rule(comp: np.ndarray, data: NodeData, rule: PairRule) -> list[np.ndarray]:
    """Split a large component: repeatedly, its most central member and all that match it."""
    groups, left = [], comp
    while len(left) >= 2:
        vecs = data.gather(left)
        centre = vecs.mean(axis=0)
        medoid = int(np.argmax(vecs @ centre))
        sims = vecs @ vecs[medoid]
        tiers = _match(rule, sims, data, np.full(len(left), left[medoid]), left)
        near = tiers < NO_MATCH
        near[medoid] = True
        if near.sum() >= 2:
            groups.append(np.concatenate([[left[medoid]], left[near & (np.arange(len(left)) != medoid)]]))
        else:
            near = np.zeros(len(left), dtype=bool)
            near[medoid] = True
        left = left[~near]
    return groups


def _finish(groups: list[np.ndarray], data: NodeData, rule: PairRule, out: Grouping) -> None:
    """Record groups of one size: the medoid (highest mean similarity) first, the rest by
    similarity to it, with each member's similarity and tier to the medoid."""
    stack = np.stack(groups)
    c, m = stack.shape
    vecs = data.gather(stack)
    sims = np.einsum("cid,cjd->cij", vecs, vecs)
    medoid = np.argmax(sims.sum(axis=2), axis=1)
    to_medoid = sims[np.arange(c), medoid]
    to_medoid[np.arange(c), medoid] = np.inf  # the medoid sorts first
    order = np.argsort(-to_medoid, axis=1, kind="stable")
    members = np.take_along_axis(stack, order, axis=1)
    similarity = np.minimum(np.take_along_axis(to_medoid, order, axis=1), 1.0).astype(np.float32)
    similarity[:, 0] = 1.0
    tiers = _match(rule, similarity, data, np.broadcast_to(members[:, :1], members.shape), members)
    # Every member matched the medoid when the group was formed; recomputed here, a
    # similarity right at the threshold can fall a rounding error short: still semantic.
    tiers = np.where(tiers == NO_MATCH, SEMANTIC, tiers).astype(np.int8)
    tiers[:, 0] = PERCEPTUAL
    out.members.extend(members)
    out.similarity.extend(similarity)
    out.tier.extend(tiers)


def group_pairs(n: int, a: np.ndarray, b: np.ndarray, data: NodeData, rule: PairRule,
                sims: np.ndarray | None = None) -> Grouping:
    """Non-chaining groups of the ``n`` nodes, from candidate pairs ``(a[i], b[i])`` (with
    their cosine similarities ``sims``, when known: else they are computed).

    Only candidate pairs that match ``rule`` connect nodes; within a connected component,
    groups are formed as the module docstring describes. Every node is in at most one group.
    """
    out = Grouping([], [], [])
    if len(a):
        if sims is None:
            sims = np.einsum("pd,pd->p", data.gather(a), data.gather(b))
        keep = _match(rule, sims, data, a, b) < NO_MATCH
        a, b = a[keep], b[keep]
    by_size: dict[int, list[np.ndarray]] = {}
    done: dict[int, list[np.ndarray]] = {}
    for comp in _components(n, a, b):
        if len(comp) == 2:
            done.setdefault(2, []).append(comp)
        elif len(comp) > LARGE_COMPONENT:
            for g in _medoid_rule(comp, data, rule):
                done.setdefault(len(g), []).append(g)
        else:
            by_size.setdefault(len(comp), []).append(comp)
    for m, comps in sorted(by_size.items()):
        for batch in _batches(comps, m):
            whole, sims, tiers = _whole(np.stack(batch), data, rule)
            for comp, ok, s, t in zip(batch, whole, sims, tiers):
                for g in [comp] if ok else [comp[local] for local in _greedy(s, t)]:
                    done.setdefault(len(g), []).append(g)
    for m, groups in sorted(done.items()):
        for batch in _batches(groups, m):
            _finish(batch, data, rule, out)
    return out


def _batches(items: list[np.ndarray], m: int) -> Iterator[list[np.ndarray]]:
    """``items`` (arrays of m nodes) in slices whose (C, m, m) similarity arrays stay small."""
    per_batch = max(1, _BATCH_BYTES // (m * m * 16)) if m <= _BATCH_SIZE_LIMIT else 1
    for start in range(0, len(items), per_batch):
        yield items[start:start + per_batch]
