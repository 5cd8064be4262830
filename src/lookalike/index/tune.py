"""Choosing and tuning an index by measured recall on the collection's own vectors.

The procedure, faiss-contrib style (approximate results are always checked against an
exact reference):

1. draw ``n_queries`` rows of the collection as queries, and compute their exact top-k
   (each query's own row excluded, as a user never needs to be told an image matches itself);
2. walk the candidate configurations from the smallest memory footprint to the largest;
   for each, build it once, then raise its search effort (nprobe, efSearch, re-rank depth)
   step by step until recall@k reaches the target;
3. keep the first configuration that meets the recall target within the memory and latency
   budgets. Its measured recall, latency and memory are what ``lookalike info`` shows.

Flat (exact) search is always a valid last resort, so the procedure cannot fail; it can
only report that nothing cheaper met the target.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .exact import exact_topk
from .faiss_index import AnnIndex, IndexSpec

__all__ = ["Measurement", "TuneResult", "ground_truth", "measure", "candidate_specs", "auto_index", "spec_for"]


@dataclass(frozen=True)
class Measurement:
    """One configuration, measured: recall@k against exact, single-query latency, memory."""

    label: str
    recall: float
    p50_ms: float
    p99_ms: float
    memory_bytes: int
    build_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TuneResult:
    """The chosen index, its measurement, and every configuration tried on the way."""

    index: AnnIndex
    chosen: Measurement
    tried: list[Measurement] = field(default_factory=list)
    met_target: bool = True


def ground_truth(vectors: np.ndarray, rows: np.ndarray, query_rows: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k rows for each query row among ``rows``, the query's own row excluded.

    ``-1`` pads where fewer than k other rows exist (a collection of one or a few vectors).
    """
    queries = np.asarray(vectors[query_rows], dtype=np.float32)
    _, pos = exact_topk(vectors, queries, k + 1, rows=rows)
    found = rows[pos]
    out = np.full((len(query_rows), k), -1, dtype=np.int64)
    for i, (qr, f) in enumerate(zip(query_rows, found)):
        others = f[f != qr][:k]
        out[i, : len(others)] = others
    return out


def measure(index: AnnIndex, vectors: np.ndarray, query_rows: np.ndarray, truth: np.ndarray, k: int,
            build_s: float = 0.0, memory_bytes: int | None = None) -> Measurement:
    """Recall@k (own row excluded) and per-query latency, queries sent one at a time.

    ``memory_bytes``: the index's size if already known (measuring it serialises the index).
    """
    queries = np.asarray(vectors[query_rows], dtype=np.float32)
    times = np.empty(len(queries))
    hits = 0
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        _, found = index.search(vectors, q, k + 1)
        times[i] = time.perf_counter() - t0
        got = found[0][found[0] != query_rows[i]][:k]
        hits += len(np.intersect1d(got[got >= 0], truth[i][truth[i] >= 0]))
    expected = int(np.count_nonzero(truth >= 0))
    return Measurement(
        label=index.spec.label(),
        recall=hits / expected if expected else 1.0,  # nothing to find: nothing missed
        p50_ms=float(np.percentile(times, 50) * 1e3),
        p99_ms=float(np.percentile(times, 99) * 1e3),
        memory_bytes=index.memory_bytes() if memory_bytes is None else memory_bytes,
        build_s=build_s,
    )


def spec_for(kind: str, n: int, dim: int) -> IndexSpec:
    """Sensible build parameters for a forced ``--index KIND`` on n vectors of dim d."""
    # ~4 sqrt(n) cells, but never fewer than 39 training points per cell (FAISS's minimum for
    # stable k-means; below it FAISS warns on stderr), as a power of two.
    nlist = int(min(65536, 4 * np.sqrt(n), max(1, n // 39)))
    nlist = 1 << max(0, int(np.floor(np.log2(max(1, nlist)))))
    if kind == "ivf":
        return IndexSpec("ivf", nlist=nlist)
    if kind == "ivfpq":
        # 8 bytes of code per 64 dims (dim/8 bytes = 1/32 of float32), the usual sweet spot.
        m = max(4, dim // 8)
        while dim % m:
            m -= 1
        # 2**bits centroids per sub-quantiser also need 39 training points each.
        bits = int(max(1, min(8, np.floor(np.log2(max(2, n // 39))))))
        return IndexSpec("ivfpq", nlist=nlist, pq_m=m, pq_bits=bits, opq=False, rerank=8)
    if kind == "binary":
        return IndexSpec("binary", rerank=16)
    return IndexSpec(kind)  # type: ignore[arg-type]


def _estimated_memory(spec: IndexSpec, n: int, dim: int) -> int:
    """Approximate RAM of ``spec`` built over n vectors of dim d (what :meth:`AnnIndex.memory_bytes`
    will measure): codes per vector, IVF list ids, the row map, and trained tables."""
    d = spec.reduce_dim if spec.reduce else dim
    per = 8  # the row map
    fixed = 4 * (dim + d) * dim if spec.reduce == "pca" else 0  # PCA: eigenvectors, projection
    if spec.kind == "binary":
        per += (d + 7) // 8
    elif spec.kind == "ivfpq":
        per += (spec.pq_m * spec.pq_bits + 7) // 8 + 8
        fixed += 4 * d * (spec.nlist + (1 << spec.pq_bits)) + (4 * d * d if spec.opq else 0)
    elif spec.kind == "sq8":
        per += d
        fixed += 8 * d
    elif spec.kind == "fp16":
        per += 2 * d
    elif spec.kind == "ivf":
        per += 4 * d + 8
        fixed += 4 * d * spec.nlist
    elif spec.kind == "hnsw":
        per += 4 * d + 4 * 2 * spec.hnsw_m + 4 * 2  # level-0 links, upper levels on average
    else:
        per += 4 * d
    return per * n + fixed


def candidate_specs(n: int, dim: int, *, matryoshka: bool = False) -> list[IndexSpec]:
    """Configurations to try, cheapest memory first (flat last, as the exact fallback)."""
    specs = [spec_for("binary", n, dim), spec_for("ivfpq", n, dim)]
    if dim >= 64:
        specs.append(IndexSpec("sq8", reduce="pca", reduce_dim=dim // 4, rerank=8))
    specs.append(IndexSpec("sq8"))
    if matryoshka and dim >= 256:
        specs.append(replace(spec_for("ivf", n, dim // 2), reduce="matryoshka", reduce_dim=dim // 2))
    specs += [spec_for("ivf", n, dim), IndexSpec("hnsw")]
    # Which is smaller depends on n and d (IVF-PQ's tables against PCA-SQ8's codes, say).
    specs.sort(key=lambda s: _estimated_memory(s, n, dim))
    return specs + [IndexSpec("flat")]


def _efforts(spec: IndexSpec) -> Iterator[IndexSpec]:
    """The same index searched harder and harder, cheapest first."""
    if spec.kind in ("ivf", "ivfpq"):
        reranks = (spec.rerank,) if spec.kind == "ivf" else (4, 8, 16, 32)
        for rerank in reranks:
            for nprobe in (1, 2, 4, 8, 16, 32, 64, 128, 256):
                if nprobe <= spec.nlist:
                    yield replace(spec, nprobe=nprobe, rerank=rerank)
    elif spec.kind == "hnsw":
        for ef in (16, 32, 64, 128, 256, 512):
            yield replace(spec, ef_search=ef)
    elif spec.kind in ("binary", "sq8", "fp16"):
        for rerank in (2, 4, 8, 16, 32, 64):
            yield replace(spec, rerank=rerank)
    else:
        yield spec


def auto_index(
    vectors: np.ndarray,
    rows: np.ndarray | None = None,
    *,
    recall: float = 0.95,
    k: int = 10,
    memory_bytes: int | None = None,
    latency_ms: float | None = None,
    n_queries: int = 200,
    candidates: Iterable[IndexSpec] | None = None,
    seed: int = 0,
    on_measure: Callable[[Measurement], None] | None = None,
) -> TuneResult:
    """Build the cheapest index that reaches ``recall``@``k`` within the budgets; see module doc.

    ``memory_bytes`` bounds the index's RAM (re-ranking reads float32 vectors from the
    memory-mapped vector file, which the OS pages in and out); ``latency_ms`` bounds the
    median single-query latency.
    """
    rows = np.arange(vectors.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    rng = np.random.default_rng(seed)
    query_rows = np.sort(rng.choice(rows, size=min(n_queries, len(rows)), replace=False))
    kk = min(k, max(1, len(rows) - 1))
    truth = ground_truth(vectors, rows, query_rows, kk)
    tried: list[Measurement] = []
    best_effort: tuple[float, AnnIndex, Measurement] | None = None
    # The smallest index over the memory budget: the best effort when none fits.
    smallest: tuple[int, AnnIndex, float] | None = None

    def sweep(built: AnnIndex, build_s: float, memory: int) -> TuneResult | None:
        nonlocal best_effort
        for effort in _efforts(built.spec):
            candidate = built.with_search_params(**{f: getattr(effort, f) for f in ("nprobe", "ef_search", "rerank")})
            m = measure(candidate, vectors, query_rows, truth, kk, build_s, memory_bytes=memory)
            tried.append(m)
            if on_measure is not None:
                on_measure(m)
            if best_effort is None or m.recall > best_effort[0]:
                best_effort = (m.recall, candidate, m)
            if m.recall >= recall:
                if latency_ms is None or m.p50_ms <= latency_ms:
                    return TuneResult(candidate, m, tried, True)
                break  # more effort only gets slower
        return None

    specs = list(candidates) if candidates is not None else candidate_specs(len(rows), vectors.shape[1])
    for spec in specs:
        t0 = time.perf_counter()
        try:
            built = AnnIndex.build(spec, vectors, rows, seed=seed)
        except (ValueError, RuntimeError):
            continue  # e.g. too few vectors to train this many cells
        build_s = time.perf_counter() - t0
        memory = built.memory_bytes()  # serialises the index: once per build, not per effort
        if memory_bytes is not None and memory > memory_bytes:
            if smallest is None or memory < smallest[0]:
                smallest = (memory, built, build_s)
            continue
        result = sweep(built, build_s, memory)
        if result is not None:
            return result
    if best_effort is None and smallest is not None:
        # Nothing fits the memory budget: rather than fail (the procedure promises an answer),
        # report the smallest index, searched as well as it can be, as not meeting the target.
        result = sweep(smallest[1], smallest[2], smallest[0])
        if result is not None:
            return TuneResult(result.index, result.chosen, tried, False)
    if best_effort is None:
        raise ValueError("no index configuration could be built for these vectors")
    return TuneResult(best_effort[1], best_effort[2], tried, False)
