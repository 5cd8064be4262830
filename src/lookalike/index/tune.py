"""Choosing and tuning an index by measured recall on the collection's own vectors.

The procedure, faiss-contrib style (approximate results are always checked against an
exact reference):

1. hold out ``n_queries`` rows of the collection as queries; candidates are built on the
   other rows, so a query is a new vector, as a user's query is, and recall@k is measured
   with exactly the k-result searches users make. Their exact top-k among the built rows is
   the ground truth;
2. walk the candidate configurations from the smallest memory footprint to the largest;
   for each, build it once, then raise its search effort (nprobe, efSearch, re-rank depth)
   along each line of :func:`_effort_lines` until recall@k reaches the target, or gains
   less than half a point a step, or gets slower than a setting that already reached it
   (or twice the latency budget);
3. a setting *meets the recall target* when its measured recall minus one standard error
   (of the per-query recalls) is at or above it, so that the sampling noise of a few
   hundred queries does not pass an index that misses; the fastest such setting of the
   cheapest configuration within the memory and latency budgets is chosen;
4. the held-out rows are added to the chosen index, which then covers every row.

Flat (exact) search is always a valid last resort, so the procedure cannot fail; it can
only report that nothing cheaper met the target. When nothing meets every budget, the
answer is, in order: the fastest setting that reaches the recall (latency budget missed),
else the best recall within the memory budget, else the smallest index; ``met_target`` is
False and ``missed`` says which budget.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable

import numpy as np

from .candidates import candidate_specs, effort_lines, estimated_memory, spec_for
from .exact import exact_topk
from .faiss_index import AnnIndex, IndexSpec, faiss_threads

__all__ = ["Measurement", "TuneResult", "DEFAULT_LATENCY_MS", "split_queries", "ground_truth", "measure",
           "candidate_specs", "auto_index", "spec_for"]

#: The default median single-query latency budget: what a server answering several users
#: at once on one core per query needs to feel instant. ``None`` lifts it (memory alone
#: then decides, and at a million vectors the smallest index is several times slower).
DEFAULT_LATENCY_MS = 2.0

# The names these had when they lived here (tests and benchmarks use them).
_effort_lines = effort_lines
_estimated_memory = estimated_memory


@dataclass(frozen=True)
class Measurement:
    """One configuration, measured: recall@k against exact (and its standard error over
    the queries), single-query latency on one thread, memory, build time."""

    label: str
    recall: float
    p50_ms: float
    p99_ms: float
    memory_bytes: int
    build_s: float
    recall_se: float = 0.0
    n_queries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def meets(self, target: float) -> bool:
        """Whether the recall reaches ``target`` with a one-standard-error margin."""
        return self.recall - self.recall_se >= target


@dataclass
class TuneResult:
    """The chosen index, its measurement, and every configuration tried on the way.

    ``missed`` names the budgets the choice does not meet (``"recall"``, ``"latency"``,
    ``"memory"``); empty when ``met_target``.
    """

    index: AnnIndex
    chosen: Measurement
    tried: list[Measurement] = field(default_factory=list)
    met_target: bool = True
    missed: tuple[str, ...] = ()


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


def measure(index: AnnIndex, vectors: np.ndarray, query_rows: np.ndarray, truth: np.ndarray, k: int,
            build_s: float = 0.0, memory_bytes: int | None = None) -> Measurement:
    """Recall@k and single-query latency (one thread), queries sent one at a time.

    The queries should be held out of ``index`` (see :func:`split_queries`): a query's own
    row, if indexed, takes one of the k results and is not in ``truth``.
    ``memory_bytes``: the index's size if already known (measuring it serialises the index).
    """
    queries = np.asarray(vectors[query_rows], dtype=np.float32)
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
    )


def _chosen(met: list[tuple[Measurement, AnnIndex]], latency_ms: float | None) -> tuple[Measurement, AnnIndex] | None:
    """The fastest setting within the latency budget, or None."""
    ok = [(m, ix) for m, ix in met if latency_ms is None or m.p50_ms <= latency_ms]
    return min(ok, key=lambda t: t[0].p50_ms) if ok else None


def auto_index(
    vectors: np.ndarray,
    rows: np.ndarray | None = None,
    *,
    recall: float = 0.95,
    k: int = 10,
    memory_bytes: int | None = None,
    latency_ms: float | None = DEFAULT_LATENCY_MS,
    n_queries: int = 500,
    candidates: Iterable[IndexSpec] | None = None,
    seed: int = 0,
    train_size: int = 100_000,
    restore_held_out: bool = True,
    on_measure: Callable[[Measurement], None] | None = None,
) -> TuneResult:
    """Build the cheapest index that reaches ``recall``@``k`` within the budgets; see module doc.

    ``memory_bytes`` bounds the index's RAM (re-ranking reads float32 vectors from the
    memory-mapped vector file, which the OS pages in and out); ``latency_ms`` bounds the
    median single-query latency on one thread (``None``: no bound). ``restore_held_out=False``
    leaves the held-out query rows (:func:`split_queries` with the same ``n_queries`` and
    ``seed``) out of the returned index, for benchmarks that measure on it further.
    """
    rows = np.arange(vectors.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    query_rows, build_rows = split_queries(rows, n_queries, seed)
    kk = max(1, min(k, len(build_rows)))
    truth = ground_truth(vectors, build_rows, query_rows, kk)
    tried: list[Measurement] = []
    reached: tuple[Measurement, AnnIndex] | None = None  # fastest that met recall within memory
    best_effort: tuple[Measurement, AnnIndex] | None = None  # best recall within memory
    smallest: tuple[int, AnnIndex, float] | None = None  # smallest build over the memory budget

    def record(m: Measurement) -> None:
        tried.append(m)
        if on_measure is not None:
            on_measure(m)

    def sweep(built: AnnIndex, build_s: float, memory: int) -> list[tuple[Measurement, AnnIndex]]:
        """Every line of efforts, walked as far as it can still win; the settings that met recall."""
        nonlocal best_effort
        met: list[tuple[Measurement, AnnIndex]] = []
        for line in _effort_lines(built.spec):
            previous: Measurement | None = None
            for effort in line:
                candidate = built.with_search_params(nprobe=effort.nprobe, ef_search=effort.ef_search,
                                                     rerank=effort.rerank)
                m = measure(candidate, vectors, query_rows, truth, kk, build_s, memory_bytes=memory)
                record(m)
                if best_effort is None or m.recall > best_effort[0].recall:
                    best_effort = (m, candidate)
                if m.meets(recall):
                    met.append((m, candidate))
                    break  # more effort on this line is only slower
                fastest = _chosen(met, latency_ms)
                if fastest is not None and m.p50_ms >= fastest[0].p50_ms:
                    break  # already slower than a setting that met the target
                if latency_ms is not None and m.p50_ms > 2 * latency_ms:
                    break  # far over budget, and more effort only gets slower
                if previous is not None and m.recall < previous.recall + 0.005:
                    break  # saturated: doubling this knob gains less than half a point
                previous = m
        return met

    def finish(choice: tuple[Measurement, AnnIndex], missed: tuple[str, ...]) -> TuneResult:
        m, index = choice
        missing = np.setdiff1d(query_rows, index.rows) if restore_held_out else np.empty(0, np.int64)
        if len(missing):
            added = index.added_since_training
            index.add(vectors, missing)
            index.added_since_training = added  # part of the collection it was built for
            m = replace(m, memory_bytes=index.memory_bytes())
        return TuneResult(index, m, tried, not missed, missed)

    specs = list(candidates) if candidates is not None else candidate_specs(
        len(rows), vectors.shape[1], train_size=train_size)
    for spec in specs:
        t0 = time.perf_counter()
        try:
            built = AnnIndex.build(spec, vectors, build_rows, seed=seed, train_size=train_size)
        except (ValueError, RuntimeError):
            continue  # e.g. too few vectors to train this many cells
        build_s = time.perf_counter() - t0
        # Serialising measures the index (once per build, not per effort); the held-out rows
        # it will also hold are added at their estimated per-vector cost, so that the budget
        # is not overrun by them.
        d = vectors.shape[1]
        memory = built.memory_bytes() + _estimated_memory(spec, len(rows), d) - _estimated_memory(
            spec, len(build_rows), d)
        if memory_bytes is not None and memory > memory_bytes:
            if smallest is None or memory < smallest[0]:
                smallest = (memory, built, build_s)
            continue
        met = sweep(built, build_s, memory)
        choice = _chosen(met, latency_ms)
        if choice is not None:
            return finish(choice, ())
        fastest = _chosen(met + ([reached] if reached else []), None)
        reached = fastest if fastest is not None else reached
    if reached is not None:
        return finish(reached, ("latency",))
    if best_effort is not None:
        return finish(best_effort, ("recall",))
    if smallest is not None:
        # Nothing fits the memory budget: rather than fail (the procedure promises an answer),
        # report the smallest index, searched as well as it can be.
        met = sweep(smallest[1], smallest[2], smallest[0])
        pick = min(met, key=lambda t: t[0].p50_ms) if met else best_effort
        assert pick is not None  # sweep measured at least one setting
        return finish(pick, ("memory",) if met else ("memory", "recall"))
    raise ValueError("no index configuration could be built for these vectors")
