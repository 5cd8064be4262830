"""Grouping never chains: every pair in a group matches, where connected components would
put the two ends of a chain together."""

from __future__ import annotations

import numpy as np

from lookalike.index.grouping import PERCEPTUAL, SEMANTIC, NodeData, PairRule, group_pairs
from lookalike.index.neighbours import knn_graph


def chain(rng: np.random.Generator, length: int, step_deg: float, d: int = 64) -> np.ndarray:
    """Unit vectors along a great circle, ``step_deg`` apart: neighbours match, ends do not."""
    u, w = rng.normal(size=(2, d))
    u /= np.linalg.norm(u)
    w -= (w @ u) * u
    w /= np.linalg.norm(w)
    angles = np.radians(step_deg) * np.arange(length)
    return (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * w).astype(np.float32)


def nodes(v: np.ndarray, phash: np.ndarray | None = None, mirror: np.ndarray | None = None) -> NodeData:
    n = len(v)
    has = phash is not None
    phash = phash if phash is not None else np.zeros(n, np.int64)
    return NodeData(v, np.arange(n), phash, phash.copy(), mirror if mirror is not None else phash ^ -1,
                    np.full(n, has))


def groups_of(v: np.ndarray, rule: PairRule, data: NodeData | None = None) -> list[set[int]]:
    g = knn_graph(v, np.arange(len(v)), 8)
    a, b, _ = g.pairs(-np.inf)
    out = group_pairs(len(v), a, b, data or nodes(v), rule)
    return [set(m.tolist()) for m in out.members]


def test_chains_are_broken_and_every_pair_in_a_group_matches() -> None:
    rng = np.random.default_rng(0)
    threshold = 0.9  # 25.8 degrees; steps of 15: neighbours match, two steps apart do not
    chains = [chain(rng, length, 15.0) for length in (3, 4, 5, 6) for _ in range(5)]
    v = np.concatenate(chains)
    groups = groups_of(v, PairRule(threshold, None))
    sims = v @ v.T
    for g in groups:
        members = sorted(g)
        assert (sims[np.ix_(members, members)] >= threshold - 1e-6).all()
    # Connected components would make one group per chain; here no group spans both ends.
    start = 0
    for c in chains:
        ends = {start, start + len(c) - 1}
        assert not any(ends <= g for g in groups)
        start += len(c)


def test_true_groups_stay_whole() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(50, 64)).astype(np.float32)
    members = [c + rng.normal(size=(4, 64)).astype(np.float32) * 0.05 for c in centres]
    v = np.concatenate(members)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    groups = groups_of(v, PairRule(0.9, None))
    assert sorted(map(sorted, groups)) == [list(range(i * 4, i * 4 + 4)) for i in range(50)]


def test_group_records_put_the_medoid_first_with_tiers() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(size=64).astype(np.float32)
    v = np.stack([base + rng.normal(size=64).astype(np.float32) * s for s in (0.0, 0.05, 0.08)])
    v = np.concatenate([v, rng.normal(size=(20, 64)).astype(np.float32)])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    phash = rng.integers(-(1 << 62), 1 << 62, size=len(v))
    phash[1] = phash[0] ^ 0b111  # 3 bits from node 0: a perceptual match
    g = knn_graph(v, np.arange(len(v)), 5)
    a, b, _ = g.pairs(-np.inf)
    out = group_pairs(len(v), a, b, nodes(v, phash), PairRule(0.9, 4))
    assert len(out) == 1
    members, sims, tiers = out.members[0], out.similarity[0], out.tier[0]
    assert set(members.tolist()) == {0, 1, 2}
    assert sims[0] == 1.0 and (np.diff(sims[1:]) <= 0).all()
    by_node = dict(zip(members.tolist(), tiers.tolist()))
    if members[0] in (0, 1):
        assert by_node[1 - members[0]] == PERCEPTUAL
    assert by_node[2] in (SEMANTIC, PERCEPTUAL)


def test_flips_can_be_excluded() -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(size=(10, 16)).astype(np.float32)
    v[1] = v[0]  # a flip looks the same to a flip-invariant embedding
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    phash = rng.integers(-(1 << 62), 1 << 62, size=10)
    mirror = rng.integers(-(1 << 62), 1 << 62, size=10)
    mirror[1] = phash[0]  # node 1 mirrored hashes like node 0
    data = nodes(v, phash, mirror)
    assert {0, 1} in groups_of(v, PairRule(0.95, 6, flips=True), data)
    assert {0, 1} not in groups_of(v, PairRule(0.95, 6, flips=False), data)


def test_large_components_use_the_medoid_rule(monkeypatch) -> None:
    import lookalike.index.grouping as grouping

    monkeypatch.setattr(grouping, "LARGE_COMPONENT", 5)
    rng = np.random.default_rng(4)
    v = chain(rng, 9, 10.0)
    groups = groups_of(v, PairRule(0.95, None))  # 18 degrees: one step matches, two do not
    sims = v @ v.T
    for g in groups:
        medoid = max(g, key=lambda i: sims[i, sorted(g)].sum())
        assert all(sims[medoid, j] >= 0.95 - 1e-6 for j in g)
    assert not any({0, 8} <= g for g in groups)


def test_a_hash_match_needs_the_floor_similarity_too() -> None:
    rng = np.random.default_rng(5)
    v = rng.normal(size=(6, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    phash = rng.integers(-(1 << 62), 1 << 62, size=6)
    phash[1] = phash[0]  # identical hashes, unrelated embeddings (flat drawings from one template)
    data = nodes(v, phash)
    assert {0, 1} in groups_of(v, PairRule(None, 4, hash_floor=-1.0), data)
    assert {0, 1} not in groups_of(v, PairRule(None, 4, hash_floor=float(v[0] @ v[1]) + 0.01), data)
