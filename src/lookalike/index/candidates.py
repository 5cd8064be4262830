"""What :func:`~lookalike.index.tune.auto_index` tries: build configurations and search efforts.

:func:`candidate_specs` lists the configurations, cheapest memory first (flat last, as the
exact fallback); :func:`effort_lines` lists, for one built configuration, the search settings
(nprobe, efSearch, re-rank depth) from the cheapest up; :func:`spec_for` gives the build
parameters of a forced ``--index KIND``; :func:`estimated_memory` is what orders them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .faiss_index import IndexSpec

__all__ = ["spec_for", "candidate_specs", "effort_lines", "estimated_memory"]


def _nlist(n: int, train_size: int) -> int:
    """~4 sqrt(n) IVF cells as a power of two, but never fewer than 39 training points per
    cell (FAISS's minimum for stable k-means; below it FAISS warns on stderr)."""
    nlist = int(min(65536, 4 * np.sqrt(n), max(1, min(n, train_size) // 39)))
    return 1 << max(0, int(np.floor(np.log2(max(1, nlist)))))


def spec_for(kind: str, n: int, dim: int, *, train_size: int = 100_000) -> IndexSpec:
    """Sensible build parameters for a forced ``--index KIND`` on n vectors of dim d.

    ``train_size`` is what :meth:`AnnIndex.build` trains on; it caps the IVF cells.
    """
    nlist = _nlist(n, train_size)
    if kind == "ivf":
        # Full float vectors in the cells: FAISS's scores are already exact, nothing to re-rank.
        return IndexSpec("ivf", nlist=nlist, rerank=1)
    if kind == "ivfpq":
        # 8 bytes of code per 64 dims (dim/8 bytes = 1/32 of float32), the usual sweet spot.
        m = max(4, dim // 8)
        while dim % m:
            m -= 1
        # 2**bits centroids per sub-quantiser also need 39 training points each.
        bits = int(max(1, min(8, np.floor(np.log2(max(2, min(n, train_size) // 39))))))
        return IndexSpec("ivfpq", nlist=nlist, pq_m=m, pq_bits=bits, opq=False, rerank=8)
    if kind == "ivfpq-disk":
        # Its codes stay in the mapped file, not in RAM: twice the in-RAM code (d/4 bytes, 1/16
        # of float32) ranks candidates finely enough that far fewer float vectors are read
        # back to re-rank. Measured on 1M x 256 synthetic (benchmarks/bench_scale.py data),
        # nprobe 16: recall@10 0.92 at re-rank depth 16 and 0.97 at 64, against 0.79 and 0.92
        # with d/8 bytes.
        m = max(4, dim // 4)
        while dim % m:
            m -= 1
        return replace(spec_for("ivfpq", n, dim, train_size=train_size), kind="ivfpq-disk", pq_m=m)
    if kind == "binary":
        return IndexSpec("binary", rerank=16)
    if kind == "hnsw":
        return IndexSpec("hnsw", rerank=1)  # stores float vectors: exact scores
    return IndexSpec(kind)  # type: ignore[arg-type]


def estimated_memory(spec: IndexSpec, n: int, dim: int) -> int:
    """Approximate RAM of ``spec`` built over n vectors of dim d (what :meth:`AnnIndex.memory_bytes`
    will measure): codes per vector, IVF list ids, the row map, and trained tables."""
    d = spec.reduce_dim if spec.reduce else dim
    per = 8  # the row map
    fixed = 4 * (dim + d) * dim if spec.reduce == "pca" else 0  # PCA: eigenvectors, projection
    if spec.is_ivf:
        per += 8  # IVF list ids
        fixed += 4 * d * spec.nlist  # centroids
    if spec.kind == "binary":
        per += (d + 7) // 8
    elif spec.kind == "ivfpq":
        per += (spec.pq_m * spec.pq_bits + 7) // 8
        fixed += 4 * d * (1 << spec.pq_bits) + (4 * d * d if spec.opq else 0)
    elif spec.kind == "ivfpq-disk":
        # Codes and list ids are in the memory-mapped file, paged in by the OS as cells are
        # probed; RAM holds the row map, centroids, codebooks and each cell's offset and size.
        per -= 8
        fixed += 4 * d * (1 << spec.pq_bits) + 24 * spec.nlist
    elif spec.kind == "sq8":
        per += d
        fixed += 8 * d
    elif spec.kind == "fp16":
        per += 2 * d
    elif spec.kind == "ivf":
        per += 4 * d
    elif spec.kind == "hnsw":
        per += 4 * d + 4 * 2 * spec.hnsw_m + 4 * 2  # level-0 links, upper levels on average
    else:
        per += 4 * d
    return per * n + fixed


def candidate_specs(n: int, dim: int, *, matryoshka: bool = False, train_size: int = 100_000) -> list[IndexSpec]:
    """Configurations to try, cheapest memory first (flat last, as the exact fallback).

    From sign bits (d/8 bytes a vector) through product quantisation (d/8 and d/4 bytes)
    and 8-bit scalar codes (d/4 with PCA, d bytes, either scanned whole or inside IVF cells)
    to full float vectors (IVF cells or an HNSW graph). Compressed codes rank candidates;
    exact re-ranking from the vector file decides the results.
    """
    ivfpq = spec_for("ivfpq", n, dim, train_size=train_size)
    nlist = _nlist(n, train_size)
    specs = [spec_for("binary", n, dim), ivfpq]
    if ivfpq.pq_bits == 8 and dim % (2 * ivfpq.pq_m) == 0:
        specs.append(replace(ivfpq, pq_m=2 * ivfpq.pq_m))  # twice the code: finer ranking
    if dim >= 64:
        specs.append(IndexSpec("sq8", reduce="pca", reduce_dim=dim // 4, rerank=8))
    specs += [IndexSpec("sq8"), IndexSpec("sq8", nlist=nlist, rerank=2)]
    if matryoshka and dim >= 256:
        specs.append(replace(spec_for("ivf", n, dim // 2, train_size=train_size), reduce="matryoshka",
                             reduce_dim=dim // 2, rerank=4))
    specs += [spec_for("ivf", n, dim, train_size=train_size), spec_for("hnsw", n, dim)]
    # Which is smaller depends on n and d (IVF-PQ's tables against PCA-SQ8's codes, say).
    specs.sort(key=lambda s: estimated_memory(s, n, dim))
    return specs + [IndexSpec("flat")]


_NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_RERANKS = (2, 4, 8, 16, 32, 64, 128, 256)


def effort_lines(spec: IndexSpec) -> list[list[IndexSpec]]:
    """The same index searched harder and harder: lines of settings, each cheapest first.

    IVF kinds whose codes are compressed have two knobs, so one line per re-rank depth with
    nprobe rising along it; other kinds have one knob and one line. Kinds that hold float
    vectors (IVF-Flat, HNSW, unreduced) score exactly and are never re-ranked deeper.
    """
    exact_scores = spec.kind in ("ivf", "hnsw", "flat") and not spec.reduce
    reranks = (spec.rerank,) if exact_scores else tuple(r for r in _RERANKS if r >= min(spec.rerank, 2))
    if spec.is_ivf:
        return [[replace(spec, nprobe=p, rerank=r) for p in _NPROBES if p <= spec.nlist] for r in reranks]
    if spec.kind == "hnsw":
        return [[replace(spec, ef_search=ef, rerank=r) for r in reranks for ef in (16, 32, 64, 128, 256, 512)]]
    return [[replace(spec, rerank=r) for r in reranks]]
