"""The on-disk IVF-PQ as an :class:`~lookalike.index.faiss_index.AnnIndex` (kind ``ivfpq-disk``).

:class:`DiskAnnIndex` wraps the merged index of :mod:`lookalike.index.ondisk`, its inverted
lists memory-mapped read-only: row map, selectors over positions and exact re-ranking work
as for every kind, so ranking and filtering are unchanged. Vectors added after the build go
to an in-RAM *delta* IVF-PQ sharing the trained quantiser and codebooks, and searches merge
both: the mapped file is never written once built, so processes searching it are never
disturbed. The collection rebuilds (new files) once the delta passes its drift threshold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CollectionCorrupt, InvalidArgument
from ..fsutil import atomic_writer
from .faiss_index import AnnIndex, import_faiss
from .ondisk import (CHUNK_BYTES, DATA_SUFFIX, INDEX_SUFFIX, MapFn, OnDiskBuild, RowChunks, build_ondisk,
                     load_ondisk, trained_index)
from .spec import IndexSpec

__all__ = ["DiskAnnIndex", "build_disk_index"]


class DiskAnnIndex(AnnIndex):
    """An ``ivfpq-disk`` index: the merged IVF-PQ memory-mapped from ``folder``, plus an
    in-RAM delta index holding the vectors added since (see the module docstring).

    Positions ``0 .. n_main - 1`` are the on-disk entries, the delta's continue from there;
    :attr:`rows` maps both, so selectors and the row map work as for any AnnIndex.
    """

    def __init__(self, spec: IndexSpec, dim: int, index: Any, rows: np.ndarray, trained_on: int,
                 added_since_training: int = 0, *, trained: bytes, folder: Path, stem: str,
                 delta: Any = None) -> None:
        super().__init__(spec, dim, index, rows, trained_on, added_since_training)
        self.trained, self.folder, self.stem, self.delta = trained, Path(folder).resolve(), stem, delta

    @classmethod
    def open(cls, spec: IndexSpec, build: OnDiskBuild, rows: np.ndarray, dim: int) -> "DiskAnnIndex":
        """The index :func:`build_ondisk` wrote, ids being positions in ``rows``."""
        index = load_ondisk(build.index_path)
        if index.ntotal != len(rows):
            raise InvalidArgument(f"the on-disk index holds {index.ntotal} vectors for {len(rows)} rows")
        return cls(spec, dim, index, rows, build.trained_on, trained=build.trained, folder=build.index_path.parent,
                   stem=build.index_path.name[: -len(INDEX_SUFFIX)])

    @property
    def files(self) -> tuple[str, str]:
        """The names of its index and inverted-list files, in :attr:`folder`."""
        return self.stem + INDEX_SUFFIX, self.stem + DATA_SUFFIX

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal) + (int(self.delta.ntotal) if self.delta is not None else 0)

    def add(self, vectors: np.ndarray, rows: np.ndarray, chunk: int = 65536) -> None:
        """Append rows to the in-RAM delta (the mapped file is read-only)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.delta is None:
            self.delta = trained_index(self.trained)
        base = self.ntotal
        for start in range(0, len(rows), chunk):
            sel = rows[start : start + chunk]
            self.delta.add_with_ids(np.ascontiguousarray(vectors[sel], dtype=np.float32), np.arange(base + start, base + start + len(sel)))
        self.rows = np.concatenate([self.rows, rows])
        self.added_since_training += len(rows)
        self._pos_of_row = None

    def _search_positions(self, q: np.ndarray, n: int, params: Any) -> np.ndarray:
        scores, pos = self.index.search(q, n, params=params)
        if self.delta is None or self.delta.ntotal == 0:
            return pos
        extra_scores, extra_pos = self.delta.search(q, n, params=params)
        # Both score with the same quantiser and codebooks: one ranking. FAISS pads with
        # -inf-like scores and -1 positions, which sort last.
        scores, pos = np.hstack([scores, extra_scores]), np.hstack([pos, extra_pos])
        best = np.argsort(-scores, axis=1, kind="stable")[:, :n]
        return np.take_along_axis(pos, best, axis=1)

    def _delta_bytes(self) -> np.ndarray:
        if self.delta is None or self.delta.ntotal == 0:
            return np.empty(0, dtype=np.uint8)
        return import_faiss().serialize_index(self.delta)

    def memory_bytes(self) -> int:
        """RAM: centroids, codebooks and cell offsets (the codes stay in the mapped file), the
        delta and the row map."""
        return int(import_faiss().serialize_index(self.index).nbytes + self._delta_bytes().nbytes + self.rows.nbytes)

    def save(self, path: Path) -> None:
        """Write the row map, delta and metadata next to the on-disk files, atomically.

        Raises:
            InvalidArgument: ``path`` is not in the folder holding the on-disk files.
        """
        if Path(path).resolve().parent != self.folder:
            raise InvalidArgument(f"an on-disk index is saved beside its files in {self.folder}, not at {path}")
        meta = {"spec": self.spec.to_dict(), "dim": self.dim, "trained_on": self.trained_on,
                "added_since_training": self.added_since_training, "ntotal": self.ntotal, "stem": self.stem}
        with atomic_writer(Path(path)) as f:
            np.savez(f, index=np.frombuffer(self.trained, dtype=np.uint8), rows=self.rows, delta=self._delta_bytes(),
                     meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))

    @classmethod
    def from_npz(cls, path: Path, data: Any, meta: dict[str, Any]) -> "DiskAnnIndex":
        """Read what :meth:`save` wrote (``data``: the open npz, ``meta``: its metadata).

        Raises:
            CollectionCorrupt: the on-disk files are missing or disagree with the row map.
        """
        spec = IndexSpec.from_dict(meta["spec"])
        folder, stem = Path(path).resolve().parent, str(meta["stem"])
        if Path(stem).name != stem or not (folder / (stem + DATA_SUFFIX)).exists():
            raise CollectionCorrupt(f"{path}: its inverted lists {stem}{DATA_SUFFIX} are missing")
        index = load_ondisk(folder / (stem + INDEX_SUFFIX))
        delta_bytes = np.asarray(data["delta"], dtype=np.uint8)
        delta = import_faiss().deserialize_index(delta_bytes) if len(delta_bytes) else None
        rows = np.asarray(data["rows"], dtype=np.int64)
        out = cls(spec, int(meta["dim"]), index, rows, int(meta["trained_on"]), int(meta["added_since_training"]),
                  trained=bytes(data["index"]), folder=folder, stem=stem, delta=delta)
        if out.ntotal != len(rows) or out.ntotal != int(meta["ntotal"]):
            raise CollectionCorrupt(f"{path}: index holds {out.ntotal} vectors but maps {len(rows)} rows")
        return out


def build_disk_index(spec: IndexSpec, vectors: np.ndarray, rows: np.ndarray, out_dir: Path, *, stem: str = "index",
                     map_fn: MapFn = map, train_size: int = 100_000, seed: int = 0,
                     chunk_bytes: int = CHUNK_BYTES) -> DiskAnnIndex:
    """Build ``spec`` (kind ``ivfpq-disk``) over ``rows`` of the ``(N, d)`` matrix ``vectors``
    (a memory map: chunks are read from it, by workers too) into ``out_dir``.

    The training sample is drawn uniformly from ``rows``, as :meth:`AnnIndex.build` does.
    """
    rows = np.asarray(rows, dtype=np.int64)
    dim = vectors.shape[1]
    n_train = min(train_size, len(rows))
    picked = np.sort(np.random.default_rng(seed).choice(rows, size=n_train, replace=False))
    sample = np.ascontiguousarray(vectors[picked], dtype=np.float32)
    chunks = RowChunks(vectors, rows, chunk_bytes // (4 * dim))
    build = build_ondisk(chunks, len(chunks), dim, out_dir, nlist=spec.nlist, m=spec.pq_m, nbits=spec.pq_bits,
                         map_fn=map_fn, sample=sample, seed=seed, stem=stem)
    return DiskAnnIndex.open(spec, build, rows, dim)
