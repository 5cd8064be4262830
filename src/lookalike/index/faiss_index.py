"""Approximate nearest-neighbour indexes on FAISS, always re-ranked against exact vectors.

An :class:`AnnIndex` holds one FAISS index over the rows of a collection's vector file
(FAISS ids are vector row numbers). A search asks FAISS for ``rerank`` x k candidates,
then scores those candidates exactly against the float32 vectors, so compression only
decides *which* rows are looked at, never the scores returned. Filters and deletions are
applied inside FAISS with an ID selector over allowed rows, so a filtered query still
finds k results when k exist.

Kinds (see :class:`IndexSpec`): ``flat``, ``hnsw``, ``ivf``, ``ivfpq`` (optionally with
OPQ), ``sq8``, ``fp16`` and ``binary`` (sign bits, Hamming search); ``ivfpq-disk`` keeps
its IVF-PQ codes in a memory-mapped file (:mod:`lookalike.index.ondisk`). Any of them can be
preceded by a dimension reduction: PCA (learned), or Matryoshka truncation for models
trained for it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import CollectionCorrupt, InvalidArgument, MissingExtra
from ..fsutil import atomic_writer
from .exact import exact_topk
from .spec import KINDS, IndexSpec, factory_string

__all__ = ["IndexSpec", "AnnIndex", "KINDS", "import_faiss", "faiss_threads"]

log = logging.getLogger("lookalike")

def import_faiss() -> Any:
    """Import faiss, or raise :class:`MissingExtra` with the install command."""
    try:
        import faiss
    except ImportError as exc:
        raise MissingExtra("faiss-cpu", "faiss", "approximate (FAISS) indexes") from exc
    return faiss


@contextlib.contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """Limit FAISS's OpenMP and numpy's BLAS to ``n`` threads inside the block.

    A single query gains nothing from threads, and on a small machine shared with other work
    an OpenMP region waits for its slowest (descheduled) thread: a 0.3 ms search was measured
    at 30 ms that way. Latency is therefore timed on one thread, as a server answering
    concurrent queries runs. The setting is process-wide while the block runs.
    """
    faiss = import_faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # numpy's BLAS then keeps its own setting
            yield
        else:
            with threadpool_limits(n):
                yield
    finally:
        faiss.omp_set_num_threads(before)


def _reduce(vectors: np.ndarray, spec: IndexSpec) -> np.ndarray:
    """Matryoshka truncation (first ``reduce_dim`` dims, renormalised); identity otherwise."""
    if spec.reduce != "matryoshka":
        return vectors
    out = np.ascontiguousarray(vectors[:, : spec.reduce_dim], dtype=np.float32)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def _unwrapped(faiss: Any, index: Any) -> Any:
    """The index inside a pre-transform (PCA, OPQ) wrapper, as its concrete class."""
    if isinstance(index, faiss.IndexPreTransform):
        return faiss.downcast_index(index.index)
    return index


def _cluster_on_gpu(faiss: Any, ivf: Any) -> Any:
    """Run the IVF k-means on the GPUs when FAISS has any (the GPU build of FAISS).

    Training the coarse quantiser is most of an IVF build; FAISS lets an IVF index assign
    points during k-means through any flat index (``clustering_index``), so a GPU flat index
    speeds that up while the trained index stays a plain CPU index, saved and searched as
    usual. Without GPUs, or when cloning to them fails, the CPU does it.

    Returns the GPU index, which the caller keeps alive until training is done (the IVF
    index only borrows it), or None.
    """
    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() < 1:
        return None
    try:
        gpu = faiss.index_cpu_to_all_gpus(faiss.IndexFlat(ivf.d, ivf.metric_type))
    except (RuntimeError, AttributeError) as exc:
        log.warning("FAISS sees %d GPU(s) but could not use them for IVF training (%s); training on CPU",
                    faiss.get_num_gpus(), exc)
        return None
    ivf.clustering_index = gpu
    return gpu


def _sign_bits(vectors: np.ndarray) -> np.ndarray:
    return np.packbits(vectors > 0, axis=1)


class AnnIndex:
    """A FAISS index over vector rows, with exact re-ranking; see the module docstring.

    FAISS numbers its entries 0..ntotal-1 ("positions"); :attr:`rows` maps each position to
    its vector row. Selectors are built over positions, which keeps filtering correct through
    every wrapper (PCA pre-transforms included) without FAISS's id maps.
    """

    def __init__(self, spec: IndexSpec, dim: int, index: Any, rows: np.ndarray, trained_on: int,
                 added_since_training: int = 0) -> None:
        self.spec = spec
        self.dim = dim
        self.index = index
        self.rows = np.asarray(rows, dtype=np.int64)
        #: How many vectors the index was trained on, and how many were added since: the
        #: inputs of drift detection (see :meth:`drift`).
        self.trained_on = trained_on
        self.added_since_training = added_since_training
        self._pos_of_row: np.ndarray | None = None

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, spec: IndexSpec, vectors: np.ndarray, rows: np.ndarray | None = None, *,
              train_size: int = 100_000, seed: int = 0) -> "AnnIndex":
        """Train (where needed) on a sample of ``vectors`` and add the given rows.

        ``vectors`` is the whole ``(N, d)`` row matrix (a memory map is fine); ``rows``
        selects which rows to index (default: all).
        """
        faiss = import_faiss()
        if spec.on_disk:
            raise InvalidArgument(f"{spec.kind} is built in shards onto disk: use lookalike.index.ondisk.build_ondisk")
        dim = vectors.shape[1]
        rows = np.arange(vectors.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        if spec.reduce and spec.reduce_dim > dim:
            raise InvalidArgument(f"cannot reduce {dim}-d vectors to {spec.reduce_dim}")
        d = spec.reduce_dim if spec.reduce == "matryoshka" else dim
        if spec.kind == "binary":
            # np.packbits pads each code to whole bytes; FAISS wants the padded bit count.
            index = faiss.IndexBinaryFlat(8 * ((d + 7) // 8))
        else:
            index = faiss.index_factory(d, factory_string(spec, dim), faiss.METRIC_INNER_PRODUCT)
        if spec.kind == "hnsw":
            _unwrapped(faiss, index).hnsw.efConstruction = spec.ef_construction
        ivf = faiss.extract_index_ivf(index) if spec.is_ivf else None
        gpu_clustering = _cluster_on_gpu(faiss, ivf) if ivf is not None else None
        trained_on = 0
        if not index.is_trained:
            n_train = min(train_size, len(rows))
            d_opq = spec.reduce_dim if spec.reduce else dim
            if spec.opq and n_train < d_opq:
                # FAISS's OPQ training corrupts the heap (a crash, not an error) when it has
                # fewer training vectors than dimensions.
                raise InvalidArgument(f"OPQ needs at least {d_opq} training vectors (one per dimension), "
                                 f"got {n_train}")
            rng = np.random.default_rng(seed)
            sample = np.sort(rng.choice(rows, size=n_train, replace=False))
            index.train(_reduce(np.ascontiguousarray(vectors[sample], dtype=np.float32), spec))
            trained_on = len(sample)
        if gpu_clustering is not None:
            ivf.clustering_index = None  # training is over: drop the borrowed GPU index
            del gpu_clustering
        ann = cls(spec, dim, index, np.empty(0, dtype=np.int64), trained_on)
        ann.add(vectors, rows)
        ann.added_since_training = 0
        return ann

    def add(self, vectors: np.ndarray, rows: np.ndarray, chunk: int = 65536) -> None:
        """Append rows, taking their vectors from the row matrix ``vectors``."""
        rows = np.asarray(rows, dtype=np.int64)
        for start in range(0, len(rows), chunk):
            sel = rows[start : start + chunk]
            block = _reduce(np.ascontiguousarray(vectors[sel], dtype=np.float32), self.spec)
            self.index.add(_sign_bits(block) if self.spec.kind == "binary" else block)
        self.rows = np.concatenate([self.rows, rows])
        self.added_since_training += len(rows)
        self._pos_of_row = None

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def drift(self) -> float:
        """Vectors added since training, relative to the training set (0 for untrained kinds).

        IVF centroids and PQ codebooks describe the data they were trained on; when the
        additions rival that in number, cells grow unevenly and recall drops at the same
        nprobe. The collection rebuilds when this passes its threshold.
        """
        return self.added_since_training / self.trained_on if self.trained_on else 0.0

    # ------------------------------------------------------------------ search
    def _allowed_mask(self, allowed: np.ndarray | None) -> np.ndarray | None:
        """Boolean mask over positions whose rows are in ``allowed`` (None: all)."""
        if allowed is None:
            return None
        if self._pos_of_row is None:
            pos = np.full(int(self.rows.max()) + 1 if len(self.rows) else 0, -1, dtype=np.int64)
            pos[self.rows] = np.arange(len(self.rows))
            self._pos_of_row = pos
        allowed = np.asarray(allowed, dtype=np.int64).ravel()
        allowed = allowed[(allowed >= 0) & (allowed < len(self._pos_of_row))]
        positions = self._pos_of_row[allowed]
        mask = np.zeros(self.ntotal, dtype=bool)
        mask[positions[positions >= 0]] = True
        return mask

    def _selector(self, allowed: np.ndarray | None, mask: np.ndarray | None = None) -> Any:
        """An IDSelectorBitmap over positions whose rows are in ``allowed`` (None: all)."""
        if mask is None:
            mask = self._allowed_mask(allowed)
        if mask is None:
            return None, None
        faiss = import_faiss()
        bitmap = np.packbits(mask, bitorder="little")
        # IDSelectorBitmap's n is the bitmap's size in bytes (ids past it are not members).
        return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)), bitmap

    def candidates(self, queries: np.ndarray, n: int, allowed: np.ndarray | None = None) -> np.ndarray:
        """Up to ``n`` candidate rows per query (``-1`` pads), from FAISS alone."""
        return self._candidates(queries, n, self._allowed_mask(allowed))

    def _candidates(self, queries: np.ndarray, n: int, mask: np.ndarray | None) -> np.ndarray:
        faiss = import_faiss()
        q = _reduce(np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32), self.spec)
        n = min(n, self.ntotal) if self.ntotal else 0
        if n == 0:
            return np.full((len(q), 1), -1, dtype=np.int64)
        selector, bitmap = self._selector(None, mask)
        spec = self.spec
        # A filter that keeps a fraction f of the rows leaves ~f of each probed cell (or graph
        # neighbourhood) usable: search 1/f times harder so k allowed rows are still reached.
        # (Should that still fall short, search() answers from the allowed rows exactly.)
        boost = 1.0
        if mask is not None:
            boost = self.ntotal / max(1, int(np.count_nonzero(mask)))
        if spec.is_ivf:
            nlist = faiss.extract_index_ivf(self.index).nlist
            params = faiss.SearchParametersIVF(nprobe=int(min(nlist, np.ceil(spec.nprobe * boost))))
        elif spec.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=int(min(4096, np.ceil(spec.ef_search * boost))))
        else:
            params = faiss.SearchParameters()
        params.sel = selector
        if isinstance(self.index, faiss.IndexPreTransform):
            # A pre-transform (PCA, OPQ) wraps the real index; its parameters go one level down.
            outer = faiss.SearchParametersPreTransform()
            outer.index_params = params
            search_params = outer
        else:
            search_params = params
        pos = self._search_positions(_sign_bits(q) if spec.kind == "binary" else q, n, search_params)
        del bitmap  # the selector only borrows it; keep it alive until the search is done
        return np.where(pos >= 0, self.rows[np.maximum(pos, 0)], -1)

    def _search_positions(self, q: np.ndarray, n: int, params: Any) -> np.ndarray:
        """FAISS's top-``n`` positions per query (``-1`` pads); the on-disk kind overrides it."""
        return self.index.search(q, n, params=params)[1]

    def search(self, vectors: np.ndarray, queries: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows per query: FAISS proposes ``rerank * k`` rows, exact scores decide.

        Returns ``(scores, rows)`` shaped ``(Q, k)``, best first; ``-1`` rows and ``-inf``
        scores pad where fewer than k rows are allowed. Whenever k allowed rows exist, k are
        returned: if the allowed rows are no more than the candidates FAISS would propose,
        they are all scored exactly; if FAISS comes back with fewer than k (a graph or the
        probed cells hold too few allowed rows), that query is answered by exact search
        over the allowed rows.
        """
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        n = k if self.spec.kind == "flat" and not self.spec.reduce else self.spec.rerank * k
        mask = self._allowed_mask(allowed)
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        rows = np.full((len(q), k), -1, dtype=np.int64)
        pool = None  # sorted allowed rows, computed only when needed
        if mask is not None:
            pool = np.unique(self.rows[mask])
            available = len(pool)
        else:
            available = len(np.unique(self.rows)) if self.ntotal <= n else self.ntotal
        want = min(k, available)
        if want <= 0:
            return scores, rows
        if mask is not None and available <= n:
            # Few allowed rows: scoring them all is exact and cheaper than asking FAISS.
            cand = np.broadcast_to(pool, (len(q), len(pool)))
        else:
            cand = self._candidates(q, n, mask)
        for i, c in enumerate(cand):
            c = np.unique(c[c >= 0])  # sorted: sequential reads from the memory map
            if len(c) < want:
                if pool is None:
                    pool = np.unique(self.rows)
                s, p = exact_topk(vectors, q[i], k, rows=pool)
                scores[i, : p.shape[1]] = s[0]
                rows[i, : p.shape[1]] = pool[p[0]]
                continue
            exact = np.asarray(vectors[c], dtype=np.float32) @ q[i]
            top = np.argsort(-exact, kind="stable")[:k]
            scores[i, : len(top)] = exact[top]
            rows[i, : len(top)] = c[top]
        return scores, rows

    # ------------------------------------------------------------------ persistence
    def _serialised(self) -> np.ndarray:
        faiss = import_faiss()
        writer = faiss.serialize_index_binary if self.spec.kind == "binary" else faiss.serialize_index
        return writer(self.index)

    def memory_bytes(self) -> int:
        """Bytes the index occupies in RAM: its serialised size plus the row map."""
        return int(self._serialised().nbytes) + self.rows.nbytes

    def save(self, path: Path) -> None:
        """Write index, row map and metadata as one file, atomically (old or new, never half)."""
        meta = {"spec": self.spec.to_dict(), "dim": self.dim, "trained_on": self.trained_on,
                "added_since_training": self.added_since_training, "ntotal": self.ntotal}
        with atomic_writer(path) as f:
            np.savez(f, index=self._serialised(), rows=self.rows,
                     meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))

    @classmethod
    def load(cls, path: Path) -> "AnnIndex":
        """Read an index written by :meth:`save`.

        Raises:
            CollectionCorrupt: the file is missing, truncated or inconsistent.
        """
        faiss = import_faiss()
        try:
            with np.load(path) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                spec = IndexSpec.from_dict(meta["spec"])
                if spec.on_disk:
                    from .disk_index import DiskAnnIndex  # it builds on this module

                    return DiskAnnIndex.from_npz(path, data, meta)
                reader = faiss.deserialize_index_binary if spec.kind == "binary" else faiss.deserialize_index
                index = reader(data["index"])
                rows = np.asarray(data["rows"], dtype=np.int64)
                dim, ntotal = int(meta["dim"]), int(meta["ntotal"])
                trained_on, added = int(meta["trained_on"]), int(meta["added_since_training"])
        # zipfile.BadZipFile (a truncated or damaged archive) is not an OSError; TypeError and
        # AttributeError come from metadata of the wrong shape.
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError, EOFError,
                zipfile.BadZipFile) as exc:
            raise CollectionCorrupt(f"{path}: unreadable index ({exc}); it will be rebuilt") from exc
        if index.ntotal != len(rows) or index.ntotal != ntotal:
            raise CollectionCorrupt(f"{path}: index holds {index.ntotal} vectors but maps {len(rows)} rows")
        return cls(spec, dim, index, rows, trained_on, added)

    def with_search_params(self, **changes: Any) -> "AnnIndex":
        """The same built index with other search-time parameters (nprobe, ef_search, rerank)."""
        clone = copy.copy(self)  # shares the FAISS index; keeps the class (the on-disk kind's parts)
        clone.spec = replace(self.spec, **changes)
        return clone
