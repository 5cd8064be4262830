"""auto_index: the cheapest configuration meeting a recall target, checked against exact search.

The data is chosen so that the choice is not trivial: 96-d anisotropic vectors where 96 sign
bits (binary) and IVF-PQ cannot reach recall 0.95 at any re-rank depth tried, so the tuner has
to move on to a larger index. Every recall the tuner claims is re-measured here independently,
on queries it never saw, against :func:`exact_topk`.

``tried`` holds every measurement, on the selection and on the confirmation queries (its
``query_set`` says which); "met the target" means on both (:func:`_confirmed_labels`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from lookalike.errors import IndexBuildError, InvalidArgument  # noqa: E402
from lookalike.index import tune  # noqa: E402
from lookalike.index.exact import exact_topk  # noqa: E402
from lookalike.index.faiss_index import AnnIndex, IndexSpec  # noqa: E402
from lookalike.index.tune import (  # noqa: E402
    Measurement,
    _estimated_memory,
    auto_index,
    candidate_specs,
    effort_lines,
    ground_truth,
    measure,
    spec_for,
    split_held_out,
    split_queries,
    tuning_prompts,
)

K = 10



def _data(n: int, d: int, nq: int, decay: float = 0.98, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Anisotropic unit vectors (per-dimension scales decaying), and held-out queries."""
    rng = np.random.default_rng(seed)
    scales = (decay ** np.arange(d)).astype(np.float32)

    def draw(m: int) -> np.ndarray:
        x = rng.standard_normal((m, d)).astype(np.float32) * scales
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(nq)


X, NEW_Q = _data(8000, 96, 300)
_runs: dict[str, object] = {}


def _auto(key: str, **kwargs):
    """auto_index on X, run once per module per set of budgets."""
    if key not in _runs:
        _runs[key] = auto_index(X, n_queries=100, **kwargs)
    return _runs[key]


def _recall(index: AnnIndex, vectors: np.ndarray, queries: np.ndarray) -> float:
    _, truth = exact_topk(vectors, queries, K)
    _, found = index.search(vectors, queries, K)
    return sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth)) / truth.size


def _selection(tried: list[Measurement]) -> list[Measurement]:
    return [m for m in tried if m.query_set == "select"]


def _confirmed_labels(tried: list[Measurement], target: float = 0.95) -> set[str]:
    """Settings that met ``target`` on the selection and on the confirmation queries."""
    met = {q: {m.label for m in tried if m.query_set == q and m.meets(target)} for q in ("select", "confirm")}
    return met["select"] & met["confirm"]


def _first_efforts(tried: list[Measurement]) -> list[Measurement]:
    """The first measurement of each configuration built (efforts of one build are adjacent)."""
    firsts: list[Measurement] = []
    for m in _selection(tried):
        if not firsts or m.label.split(" ")[0] != firsts[-1].label.split(" ")[0] or m.build_s != firsts[-1].build_s:
            firsts.append(m)
    return firsts


def _build(label: str) -> str:
    return label.split(" ")[0]


def test_reaches_recall_target_and_is_cheapest() -> None:
    res = _auto("default")
    assert res.met_target and res.missed == ()
    assert res.chosen.meets(0.95) and res.chosen.recall >= 0.95
    assert res.chosen.label == res.index.spec.label()
    # The held-out queries were added back: the index covers every row.
    assert res.index.ntotal == len(X) and np.array_equal(np.sort(res.index.rows), np.arange(len(X)))
    # Independently: new queries, exact ground truth.
    assert _recall(res.index, X, NEW_Q) >= 0.93
    # Not trivially flat or the first thing tried: cheaper configurations were measured and
    # none of them met the target on both query sets (which is why they were passed over).
    assert res.index.spec.kind != "flat"
    chosen_build = _build(res.chosen.label)
    cheaper = [m for m in res.tried if _build(m.label) != chosen_build]
    assert cheaper, "the first configuration tried met the target: the data is too easy"
    assert not {m.label for m in cheaper} & _confirmed_labels(res.tried)
    assert all(m.memory_bytes <= res.chosen.memory_bytes for m in cheaper)
    # Of its build's settings that met the target on both sets, the chosen one is the fastest.
    confirmed = _confirmed_labels(res.tried)
    same = [m for m in _selection(res.tried) if _build(m.label) == chosen_build and m.label in confirmed]
    assert res.chosen.p50_ms == min(m.p50_ms for m in same)
    assert res.confirmed is not None and res.confirmed.meets(0.95) and res.confirmed.label == res.chosen.label
    # Its memory is what the index (with every row) reports.
    assert res.chosen.memory_bytes == res.index.memory_bytes()
    assert res.chosen.n_queries == 100 and 0 < res.chosen.recall_se < 0.05


def test_measured_recall_agrees_with_exact() -> None:
    """measure() against ground_truth() is the same number as a direct exact comparison on
    held-out queries, and its standard error is that of the per-query recalls."""
    res = auto_index(X, n_queries=150, seed=5, restore_held_out=False)
    held = split_held_out(np.arange(len(X)), 150, seed=5)
    query_rows, build_rows = held.select, held.build
    assert len(query_rows) == len(held.confirm) == 150 and len(build_rows) == len(X) - 300
    assert not np.isin(np.concatenate([held.select, held.confirm]), res.index.rows).any(), "held-out rows stayed out"
    truth = ground_truth(X, build_rows, query_rows, K)
    m = measure(res.index, X, query_rows, truth, K)
    scores = X[query_rows] @ X[build_rows].T
    brute = build_rows[np.argsort(-scores, axis=1)[:, :K]]
    _, found = res.index.search(X, X[query_rows], K)
    per_query = np.array([len(np.intersect1d(f, b)) / K for f, b in zip(found, brute)])
    assert m.recall == pytest.approx(per_query.mean())
    assert m.recall_se == pytest.approx(per_query.std() / np.sqrt(len(per_query)))
    assert 0.85 <= m.recall <= 1.0
    assert m.p50_ms > 0 and m.p99_ms >= m.p50_ms and m.memory_bytes == res.index.memory_bytes()


def test_split_queries() -> None:
    rows = np.arange(10, 1010)
    q, b = split_queries(rows, 500, seed=1)
    assert len(q) == 100, "at most a tenth held out"
    assert np.array_equal(np.sort(np.concatenate([q, b])), rows) and not np.isin(q, b).any()
    assert np.array_equal(q, split_queries(rows, 500, seed=1)[0]), "deterministic"
    q, b = split_queries(rows[:5], 500)
    assert len(q) == 1 and len(b) == 4
    q, b = split_queries(rows[:1], 500)
    assert q.tolist() == b.tolist() == [10], "one row cannot be split"


def test_memory_budget_respected() -> None:
    unconstrained = _auto("default")
    # A budget just below the unconstrained choice: nothing within it meets the target, so
    # the best effort within the budget comes back, flagged.
    budget = unconstrained.chosen.memory_bytes - 1
    res = _auto("tight", memory_bytes=budget)
    assert res.chosen.memory_bytes <= budget
    assert res.index.memory_bytes() <= budget
    assert all(m.memory_bytes <= budget for m in res.tried)
    assert not res.met_target and "recall" in res.missed
    assert res.chosen.label not in _confirmed_labels(res.tried)
    assert res.chosen.recall == max(m.recall for m in _selection(res.tried))
    # A roomy budget changes nothing.
    roomy = auto_index(X, n_queries=100, memory_bytes=unconstrained.chosen.memory_bytes)
    assert roomy.met_target and roomy.chosen.label == unconstrained.chosen.label


def test_tiny_memory_budget_falls_back_to_smallest() -> None:
    """Regression: a budget nothing fits used to raise ValueError ("no index configuration
    could be built") instead of answering with a best effort."""
    x, _ = _data(2000, 32, 0, seed=1)
    res = auto_index(x, n_queries=40, memory_bytes=10)
    assert not res.met_target
    smallest = min(_estimated_memory(s, len(x), 32) for s in candidate_specs(len(x), 32))
    assert res.chosen.memory_bytes <= 1.2 * smallest
    assert res.index.spec.kind == "binary" and res.tried


def test_latency_budget() -> None:
    x, q = _data(3000, 48, 50, seed=2)
    impossible = auto_index(x, n_queries=50, latency_ms=1e-6)
    assert not impossible.met_target and impossible.missed == ("latency",)
    # Every configuration was tried (none is fast enough), so the list covers the candidates.
    labels = {m.label.split(" ")[0] for m in impossible.tried}
    assert {"Binary", "SQ8", "Flat"} <= labels
    # The answer is the fastest setting that reached the recall target (on both query sets).
    confirmed = _confirmed_labels(impossible.tried)
    reached = [m for m in _selection(impossible.tried) if m.label in confirmed]
    assert impossible.chosen.meets(0.95) and impossible.confirmed.meets(0.95)
    assert impossible.chosen.p50_ms == min(m.p50_ms for m in reached)
    generous = auto_index(x, n_queries=50, latency_ms=1e4)
    assert generous.met_target and generous.chosen.p50_ms <= 1e4 and generous.chosen.recall >= 0.95
    assert _recall(generous.index, x, q) >= 0.9
    # A budget between configurations: whatever is chosen with met_target honours it.
    median = float(np.median([m.p50_ms for m in impossible.tried]))
    mid = auto_index(x, n_queries=50, latency_ms=median)
    if mid.met_target:
        assert mid.chosen.p50_ms <= median and mid.chosen.recall >= 0.95


def test_latency_fallback_is_the_fastest_setting_meeting_recall(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: effort lines stopped at twice the latency budget, so when nothing met the
    recall target within it (text queries needing four times the effort, at 300k vectors)
    the fallback was exact search, however slow, not the fastest setting reaching recall."""
    x, _ = _data(4000, 32, 0, seed=8)
    spec = spec_for("ivf", len(x), 32)
    # Deterministic latencies: 1 ms a probed cell, 100 ms for exact search.
    _with_measure(monkeypatch, lambda m, ix: replace(m, p50_ms=100.0 if ix.spec.kind == "flat"
                                                      else float(ix.spec.nprobe)))
    res = auto_index(x, candidates=[spec, IndexSpec("flat")], n_queries=60, latency_ms=0.5)
    assert res.index.spec.kind == "ivf" and res.missed == ("latency",) and not res.met_target
    assert res.chosen.p50_ms > 4 * 0.5, "found beyond twice the budget"
    assert res.confirmed.meets(0.95) and res.chosen.meets(0.95)
    # Exact search was measured once and left: slower than the fallback already confirmed.
    assert len([m for m in res.tried if m.label == "Flat"]) == 1


def test_tried_is_cheapest_first() -> None:
    x, _ = _data(3000, 64, 0, seed=3)
    seen: list[Measurement] = []
    res = auto_index(x, n_queries=40, latency_ms=1e-6, on_measure=seen.append)  # tries everything
    assert res.tried and seen == res.tried
    firsts = _first_efforts(res.tried)
    assert firsts[-1].label == "Flat", "flat is the last resort"
    mems = [m.memory_bytes for m in firsts[:-1]]
    assert len(mems) >= 4 and mems == sorted(mems), [(m.label, m.memory_bytes) for m in firsts]
    # The estimate that orders them is close to what the built index measures.
    by_label = {s.label().split(" ")[0]: s for s in candidate_specs(len(x), 64)}
    for m in firsts:
        est = _estimated_memory(by_label[m.label.split(" ")[0]], len(x), 64)
        assert 0.85 * m.memory_bytes <= est <= 1.15 * m.memory_bytes, m.label


def test_candidate_order_by_memory() -> None:
    """Regression: the Matryoshka IVF (2d + 16 bytes a vector) came before SQ8 (d + 8), and
    IVF-PQ before PCA-SQ8 where its tables make it larger."""
    for n, d in [(100_000, 512), (10_000, 64), (2_000_000, 768), (500, 1280)]:
        specs = candidate_specs(n, d, matryoshka=True)
        est = [_estimated_memory(s, n, d) for s in specs[:-1]]
        assert est == sorted(est), (n, d, [s.label() for s in specs])
        assert specs[-1] == IndexSpec("flat")
        kinds = [s.kind for s in specs]
        assert kinds[0] == "binary" and "sq8" in kinds and "hnsw" in kinds
    labels = [s.label() for s in candidate_specs(100_000, 512, matryoshka=True)]
    assert labels.index("SQ8 rerank=4") < next(i for i, l in enumerate(labels) if l.startswith("MATRYOSHKA"))


def test_ground_truth_excludes_own_row() -> None:
    x, _ = _data(500, 16, 0, seed=4)
    x[7] = x[3]  # an exact duplicate of row 3: a real neighbour, unlike row 3 itself
    rows = np.arange(500)
    query_rows = np.array([3, 10, 499])
    truth = ground_truth(x, rows, query_rows, K)
    assert truth.shape == (3, K)
    for qr, t in zip(query_rows, truth):
        assert qr not in t
        s = x @ x[qr]
        s[qr] = -np.inf
        assert set(t.tolist()) == set(np.argsort(-s)[:K].tolist())
    assert truth[0, 0] == 7
    # Restricted to a subset of rows, the truth stays inside it.
    subset = np.arange(0, 500, 3)
    truth = ground_truth(x, subset, subset[:5], K)
    assert np.isin(truth, subset).all() and not np.any(truth == subset[:5, None])


def test_tiny_collections() -> None:
    """Regression: with one vector the ground truth had no row to hold, and auto_index
    crashed (a forced ``--index flat`` on a one-image collection)."""
    x, _ = _data(3, 16, 0, seed=6)
    truth = ground_truth(x, np.arange(1), np.array([0]), K)
    assert truth.tolist() == [[-1] * K]
    # As store/ann.py calls a forced kind: no latency budget (one or two timed queries on a
    # busy machine can take over 2 ms, and the budget is not what this is about).
    res = auto_index(x[:1], candidates=[IndexSpec("flat")], latency_ms=None)
    assert res.met_target and res.chosen.recall == 1.0 and res.index.ntotal == 1
    res = auto_index(x, k=10, candidates=[IndexSpec("flat")], latency_ms=None)
    assert res.met_target and res.chosen.recall == 1.0 and res.index.ntotal == 3
    assert res.confirmed.recall == 1.0 and len(res.tried) == 2, "selection and confirmation, one row each"


def test_recall_one_on_small_data() -> None:
    x, q = _data(600, 32, 40, seed=7)
    res = auto_index(x, recall=1.0, n_queries=60)
    assert res.met_target and res.chosen.recall == 1.0
    if res.index.spec.kind == "flat":
        _, want = exact_topk(x, q, K)
        _, got = res.index.search(x, q, K)
        np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(want, axis=1))
    else:
        assert _recall(res.index, x, q) >= 0.98


def test_forced_candidates() -> None:
    x, q = _data(4000, 32, 50, seed=8)
    spec = spec_for("ivf", len(x), 32)
    res = auto_index(x, candidates=[spec], n_queries=60)
    assert res.index.spec.kind == "ivf" and res.met_target
    assert res.index.spec.nlist == spec.nlist and res.chosen.recall >= 0.95
    assert _recall(res.index, x, q) >= 0.93
    # Efforts only change search parameters of the same build.
    assert {m.build_s for m in res.tried} == {res.chosen.build_s}
    # A configuration that cannot be built on this data, and nothing else: a clear error.
    with pytest.raises(IndexBuildError, match="no index configuration"):
        auto_index(x[:50], candidates=[IndexSpec("ivf", nlist=4096)])
    # rows: only those rows are indexed and measured.
    rows = np.arange(0, 4000, 2)
    res = auto_index(x, rows, candidates=[IndexSpec("sq8")], n_queries=40)
    assert np.array_equal(np.sort(res.index.rows), rows)
    _, found = res.index.search(x, q, K)
    assert np.isin(found, rows).all()


def test_spec_for() -> None:
    for n, d in [(1000, 64), (50_000, 512), (10, 8), (2_000_000, 768)]:
        ivf = spec_for("ivf", n, d)
        assert ivf.nlist >= 1 and ivf.nlist & (ivf.nlist - 1) == 0 and ivf.nlist <= n
        pq = spec_for("ivfpq", n, d)
        assert d % pq.pq_m == 0 and 1 <= pq.pq_bits <= 8 and not pq.opq
        assert replace(spec_for("binary", n, d), rerank=4) == IndexSpec("binary")
        # Float vectors score exactly: nothing to re-rank.
        assert spec_for("hnsw", n, d) == IndexSpec("hnsw", rerank=1) and ivf.rerank == 1
    # Cells are capped by the training sample (39 points a cell), not by n.
    assert spec_for("ivf", 2_000_000, 512).nlist == 2048
    assert spec_for("ivf", 2_000_000, 512, train_size=400_000).nlist == 4096
    assert spec_for("ivf", 1_000_000, 512, train_size=10_000).nlist == 256


def test_effort_lines() -> None:
    from lookalike.index.tune import _effort_lines

    pq = spec_for("ivfpq", 100_000, 512)
    lines = _effort_lines(pq)
    assert len(lines) > 1, "IVF-PQ: one line per re-rank depth"
    assert [line[0].rerank for line in lines] == sorted({line[0].rerank for line in lines})
    assert lines[-1][0].rerank == 256
    for line in lines:
        assert len({e.rerank for e in line}) == 1
        assert [e.nprobe for e in line] == sorted(e.nprobe for e in line) and line[-1].nprobe <= pq.nlist
    ivf = _effort_lines(spec_for("ivf", 100_000, 512))
    assert len(ivf) == 1 and {e.rerank for e in ivf[0]} == {1}
    binary = _effort_lines(spec_for("binary", 100_000, 512))
    assert len(binary) == 1 and binary[0][-1].rerank == 256
    hnsw = _effort_lines(spec_for("hnsw", 100_000, 512))
    assert len(hnsw) == 1 and [e.ef_search for e in hnsw[0]] == [16, 32, 64, 128, 256, 512]
    ivfsq = _effort_lines(IndexSpec("sq8", nlist=64, rerank=2))
    assert len(ivfsq) > 1 and ivfsq[0][-1].nprobe == 64


# ---------------------------------------------------------------------------- the recall promise
def _embedding_like(d: int, clusters: int, seed: int = 0):
    """A sampler of clustered, anisotropic, not centred unit vectors: the recipe of
    ``EmbeddingLike`` in benchmarks/bench_search.py, in brief (cluster sizes ~ (j+1)^-0.8,
    per-cluster spreads, per-dimension scales ~ i^-0.4, a random rotation, a shared mean)."""
    rng = np.random.default_rng([seed, 0])
    lam = np.arange(1, d + 1, dtype=np.float64) ** -0.8
    scale = np.sqrt(lam / lam.sum()).astype(np.float32)
    rot, r = np.linalg.qr(rng.standard_normal((d, d)))
    rotation = (rot * np.sign(np.diag(r))).astype(np.float32)
    centres = rng.standard_normal((clusters, d), dtype=np.float32)
    p = np.arange(1, clusters + 1, dtype=np.float64) ** -0.8
    cdf = np.cumsum(p / p.sum())
    sigma = (0.5 * rng.lognormal(0.0, 0.3, clusters)).astype(np.float32)
    spread = 1.0 + float(np.mean(sigma.astype(np.float64) ** 2))
    direction = rng.standard_normal(d)
    mean = (direction / np.linalg.norm(direction) * np.sqrt(0.3 / 0.7 * spread)).astype(np.float32)

    def draw(rng: np.random.Generator, m: int) -> np.ndarray:
        labels = np.minimum(np.searchsorted(cdf, rng.random(m)), clusters - 1)
        x = rng.standard_normal((m, d), dtype=np.float32)
        x *= sigma[labels, None]
        x += centres[labels]
        x *= scale
        x = x @ rotation.T
        x += mean
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return draw


def test_recall_holds_on_fresh_queries() -> None:
    """The recall auto_index promises holds on queries it never saw (the issue "auto does
    not keep its recall promise on new queries").

    Sign bits of these 128-d vectors have a single line of efforts, so the choice does not
    depend on timing; its re-rank 16 step measures 0.944 on 2,000 fresh queries, under the
    target. Tuned on one sample of 50 held-out rows with a one-SE margin, the old tuner took
    that step whenever the sample came out lucky: on seeds 0..19, five times (10, 11, 12,
    17, 18). Confirmation on an independent sample with the prediction margin must not.
    """
    draw = _embedding_like(128, 300)
    x = draw(np.random.default_rng(1), 10_000)
    fresh = draw(np.random.default_rng(2), 2_000)  # SE ~0.003: enough to tell 0.944 from 0.95
    _, truth = exact_topk(x, fresh, K)
    fresh_recall: dict[str, float] = {}
    for seed in range(20):
        res = auto_index(x, candidates=[IndexSpec("binary", rerank=16)], n_queries=50, seed=seed, latency_ms=None)
        label = res.chosen.label
        # Held-out rows are restored and sign bits need no training, so every index built
        # here holds the same codes: the fresh recall depends on the label alone.
        if label not in fresh_recall:
            _, found = res.index.search(x, fresh, K)
            fresh_recall[label] = float(np.mean([len(np.intersect1d(f, t)) / K for f, t in zip(found, truth)]))
        assert res.met_target and fresh_recall[label] >= 0.95, (
            f"seed {seed}: {label} reported recall {res.chosen.recall:.3f} on its selection queries, "
            f"measures {fresh_recall[label]:.3f} on fresh ones")


def test_held_out_sets_are_disjoint_and_out_of_every_build(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = np.arange(10, 5010)
    held = split_held_out(rows, 100, 150, seed=3)
    assert (len(held.select), len(held.confirm), len(held.build)) == (100, 150, 4750)
    assert not np.intersect1d(held.select, held.confirm).size
    assert np.array_equal(np.sort(np.concatenate([held.select, held.confirm, held.build])), rows)
    assert all(np.array_equal(a, np.sort(a)) for a in (held.select, held.confirm, held.build))
    assert np.array_equal(held.confirm, split_held_out(rows, 100, 150, seed=3).confirm), "deterministic"
    capped = split_held_out(np.arange(1000), 500)
    assert len(capped.select) == len(capped.confirm) == 50, "at most a tenth held out, shared evenly"
    for n, sizes in [(1, (1, 1, 1)), (2, (1, 1, 1)), (3, (1, 1, 1)), (25, (1, 1, 23))]:
        tiny = split_held_out(np.arange(n), 500)
        assert (len(tiny.select), len(tiny.confirm), len(tiny.build)) == sizes, n

    # Every candidate is built on the build rows alone, and each set is measured whole.
    built: list[np.ndarray] = []
    build = AnnIndex.build

    def recording_build(cls, spec, vectors, rows=None, **kwargs):
        built.append(np.asarray(rows).copy())
        return build(spec, vectors, rows, **kwargs)

    monkeypatch.setattr(tune.AnnIndex, "build", classmethod(recording_build))
    x = X[:3000]
    res = auto_index(x, n_queries=60, n_confirm=80, seed=4, restore_held_out=False)
    held = split_held_out(np.arange(len(x)), 60, 80, seed=4)
    assert built and all(np.array_equal(b, held.build) for b in built)
    assert not np.isin(np.concatenate([held.select, held.confirm]), res.index.rows).any()
    assert {m.n_queries for m in res.tried if m.query_set == "select"} == {60}
    assert {m.n_queries for m in res.tried if m.query_set == "confirm"} == {80}
    restored = auto_index(x, n_queries=60, n_confirm=80, seed=4)
    assert np.array_equal(np.sort(restored.index.rows), np.arange(len(x)))


def _with_measure(monkeypatch: pytest.MonkeyPatch, change) -> None:
    """Make the tuner's measurements pass through ``change(measurement, index) -> measurement``."""
    real = tune.measure

    def patched(index, *args, **kwargs):
        return change(real(index, *args, **kwargs), index)

    monkeypatch.setattr(tune, "measure", patched)


def test_step_up_when_confirmation_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    x, _ = _data(4000, 32, 0, seed=8)
    spec = spec_for("ivf", len(x), 32)
    labels = [e.label() for e in effort_lines(spec)[0]]
    base = auto_index(x, candidates=[spec], n_queries=60, latency_ms=None)
    first = next(m.label for m in base.tried if m.query_set == "select" and m.meets(0.95))

    # The first selected setting misses on the confirmation queries: its effort is stepped up.
    _with_measure(monkeypatch, lambda m, ix: replace(m, recall=0.5) if m.query_set == "confirm" and m.label == first
                  else m)
    res = auto_index(x, candidates=[spec], n_queries=60, latency_ms=None)
    assert res.met_target and res.confirmed.meets(0.95) and res.confirmed.label == res.chosen.label
    assert labels.index(res.chosen.label) > labels.index(first)
    nxt = labels[labels.index(first) + 1]
    assert {m.query_set for m in res.tried if m.label == nxt} == {"select", "confirm"}, "measured on both sets"
    assert [m.recall for m in res.tried if m.query_set == "confirm" and m.label == first] == [0.5]

    # Every confirmation of the IVF build misses: its line ends, and the next candidate is taken.
    _with_measure(monkeypatch, lambda m, ix: replace(m, recall=0.5) if m.query_set == "confirm" and ix.spec.kind == "ivf"
                  else m)
    res = auto_index(x, candidates=[spec, IndexSpec("flat")], n_queries=60, latency_ms=None)
    assert res.index.spec.kind == "flat" and res.met_target
    assert len([m for m in res.tried if m.query_set == "confirm" and m.label.startswith("IVF")]) >= 2
    # ... and with no other candidate, the result says the recall was missed.
    res = auto_index(x, candidates=[spec], n_queries=60, latency_ms=None)
    assert not res.met_target and "recall" in res.missed and not res.confirmed.meets(0.95)


def _text_like(x: np.ndarray, t: int, seed: int) -> np.ndarray:
    """Unit vectors shifted off the collection by one shared direction (a modality gap)."""
    rng = np.random.default_rng(seed)
    gap = rng.standard_normal(x.shape[1]).astype(np.float32)
    q = x[rng.choice(len(x), t, replace=False)] + 0.8 * gap / np.linalg.norm(gap)
    q += 0.3 * rng.standard_normal(q.shape).astype(np.float32) / np.sqrt(x.shape[1])
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def test_text_queries_must_meet_the_target_too(monkeypatch: pytest.MonkeyPatch) -> None:
    x, _ = _data(4000, 32, 0, seed=8)
    spec = spec_for("ivf", len(x), 32)
    text = _text_like(x, 81, seed=1)
    res = auto_index(x, candidates=[spec], n_queries=60, latency_ms=None, text_queries=text)
    assert res.met_target and res.missed == ()
    assert (res.text.query_set, res.text_confirmed.query_set) == ("text-select", "text-confirm")
    assert (res.text.n_queries, res.text_confirmed.n_queries) == (40, 41), "two halves of the text queries"
    assert res.text.meets(0.95) and res.text_confirmed.meets(0.95)
    assert res.text.label == res.text_confirmed.label == res.chosen.label
    # Fresh text-like queries, exact truth: the recall holds for them too.
    fresh = _text_like(x, 300, seed=2)
    assert _recall(res.index, x, fresh) >= 0.95

    # A setting that passes on image-like queries but not on text ones is not taken: when
    # the text queries need twice the image choice's nprobe (their recall 0.1 lower below
    # it, and rising with it, as it does), that is what is chosen.
    image_only = auto_index(x, candidates=[spec], n_queries=60, latency_ms=None)
    need = 2 * image_only.index.spec.nprobe
    assert need <= spec.nlist
    _with_measure(monkeypatch, lambda m, ix: replace(m, recall=m.recall - 0.1)
                  if m.query_set.startswith("text") and ix.spec.nprobe < need else m)
    res = auto_index(x, candidates=[spec], n_queries=60, latency_ms=None, text_queries=text)
    assert res.met_target and res.index.spec.nprobe >= need
    # Text queries no setting passes: the choice says so.
    _with_measure(monkeypatch, lambda m, ix: replace(m, recall=0.5) if m.query_set.startswith("text") else m)
    res = auto_index(x, candidates=[spec], n_queries=60, latency_ms=None, text_queries=text)
    assert not res.met_target and "text-recall" in res.missed


def test_result_record_and_measurements() -> None:
    res = _auto("default")
    assert res.chosen.query_set == "select" and res.confirmed.query_set == "confirm"
    assert res.chosen.label == res.confirmed.label == res.index.spec.label()
    assert res.chosen.n_queries == res.confirmed.n_queries == 100
    assert res.confirmed.memory_bytes == res.chosen.memory_bytes == res.index.memory_bytes()
    assert res.text is None and res.text_confirmed is None, "no text queries given"
    assert {m.query_set for m in res.tried} == {"select", "confirm"}
    record = json.loads(json.dumps(res.record()))
    assert record == {"measured": res.chosen.to_dict(), "confirmed": res.confirmed.to_dict(), "text": None,
                      "text_confirmed": None, "met_target": True, "missed": []}
    assert Measurement.from_dict(record["confirmed"]) == res.confirmed
    # Records written before query sets existed (or by later versions) still load.
    old = {k: v for k, v in record["measured"].items() if k != "query_set"}
    assert Measurement.from_dict({**old, "something_new": 1}) == res.chosen
    # The tuner's bar: RECALL_Z standard errors, the default of meets().
    m = Measurement("x", recall=0.96, p50_ms=1, p99_ms=1, memory_bytes=1, build_s=0, recall_se=0.005)
    assert m.meets(0.95, z=1.0) and not m.meets(0.95) and tune.RECALL_Z == pytest.approx(2.326, abs=1e-3)


def test_invalid_arguments() -> None:
    x = X[:500]
    for kwargs, match in [({"recall": 0.0}, "recall target"), ({"recall": 1.2}, "recall target"),
                          ({"k": 0}, "k "), ({"n_queries": 0}, "n_queries"), ({"n_confirm": 0}, "n_confirm"),
                          ({"latency_ms": 0}, "latency budget"), ({"memory_bytes": -1}, "memory budget"),
                          ({"text_queries": np.ones((4, 7), np.float32)}, r"\(T, 96\)"),
                          ({"text_queries": x[:1]}, "at least 2"),
                          ({"text_queries": 2 * x[:4]}, "L2-normalised")]:
        with pytest.raises(InvalidArgument, match=match):
            auto_index(x, candidates=[IndexSpec("flat")], **kwargs)
    assert issubclass(InvalidArgument, ValueError)


def test_tuning_prompts() -> None:
    prompts = tuning_prompts()
    assert 300 <= len(prompts) <= 600, "a few hundred"
    assert len(set(prompts)) == len(prompts), "no duplicates"
    assert all(p and p == p.strip() and not p.startswith("#") for p in prompts)
    assert "a photo of a dog on a beach" in prompts and "a scanned receipt" in prompts
    assert resources.files("lookalike.index").joinpath("tuning_prompts.txt").is_file(), "shipped in the package"
