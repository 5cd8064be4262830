"""Parquet shards of a remote (Ray) indexing run: one per source part, each with a done-marker.

A shard holds what the workers made of a part's pending items: one row per item with the
stat fields, the worker's decision, hash, size, traits, metadata and (for embedded items)
the vector. It is written atomically, then its ``.done`` marker (JSON with the row count):
a shard without a marker, or whose row count disagrees, is not trusted and is recomputed.
The shards live under ``<collection>/work/<run token>/``; the token names the source and
the model, so a rerun after a crash finds the parts already done and does not redo them.
pyarrow is imported inside the functions (the ``ray`` and ``scale`` extras bring it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from ..errors import MissingExtra
from ..fsutil import atomic_writer

if TYPE_CHECKING:
    from .manifest import Manifest
    from .plan import Job

__all__ = ["Record", "ShardRow", "ShardStore", "run_token", "WORK_DIR"]

#: Folder of a collection that holds the shards of unfinished remote runs.
WORK_DIR = "work"

_TRAITS = ("phash", "dhash", "phash_mirror", "sharpness", "taken", "exif_tags")


@dataclass(frozen=True)
class Record:
    """A worker's result for one job, without pixels (they travel separately, to the embedder).

    ``action`` is a :class:`~lookalike.store.plan.Action` value; ``size`` is the item's size
    after reading (a fetched URL's bytes); ``traits`` is an
    :class:`~lookalike.images.traits.ImageTraits` as a dict, for embedded items.
    """

    action: str
    digest: str | None
    width: int | None
    height: int | None
    error: str | None
    size: int
    traits: dict[str, Any] | None = None


@dataclass(frozen=True)
class ShardRow:
    """One row read back from a shard: the item's stat key, its :class:`Record`, its vector."""

    path: str
    mtime_ns: int
    record: Record
    vector: np.ndarray | None


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingExtra("pyarrow", "ray", "Indexing on a Ray cluster") from exc
    return pa, pq


def run_token(label: str, manifest: "Manifest") -> str:
    """What names a run's work folder: the source and the model (so vectors are never mixed)."""
    key = json.dumps([label, manifest.model_id, manifest.fingerprint])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class ShardStore:
    """The shards of one run, under ``folder`` (created on the first write)."""

    def __init__(self, folder: Path, dim: int) -> None:
        self.folder = folder
        self.dim = dim

    def _paths(self, index: int) -> tuple[Path, Path]:
        shard = self.folder / f"part-{index:08d}.parquet"
        return shard, shard.with_suffix(".done")

    def done(self, index: int) -> bool:
        """True when part ``index`` has a shard and its marker, and the two agree."""
        shard, marker = self._paths(index)
        if not marker.is_file() or not shard.is_file():
            return False
        try:
            expected = json.loads(marker.read_text())["rows"]
            _, pq = _pyarrow()
            return bool(pq.ParquetFile(shard).metadata.num_rows == expected)
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def covers(self, index: int, jobs: Sequence["Job"], *, retry_failed: bool = False) -> bool:
        """True when part ``index`` is done and holds every one of ``jobs`` with the same size
        and mtime (else the inputs changed since it was written: it must be recomputed).
        With ``retry_failed``, a shard that recorded any of them as failed is recomputed too."""
        if not self.done(index):
            return False
        _, pq = _pyarrow()
        try:
            table = pq.read_table(self._paths(index)[0], columns=["path", "size", "mtime_ns", "action"])
        except (OSError, ValueError):
            return False
        have: dict[str, set[tuple[int, int, bool]]] = {}
        for path, size, mtime, action in zip(*(table.column(c).to_pylist() for c in table.column_names)):
            have.setdefault(path, set()).add((size, mtime, action == "fail"))
        for job in jobs:
            f = job.file
            # A URL's size is unknown (-1) until it is fetched: only the path and mtime can agree.
            if not any(m == f.mtime_ns and (f.size < 0 or s == f.size) and not (failed and retry_failed)
                       for s, m, failed in have.get(f.path, ())):
                return False
        return True

    def write(self, index: int, jobs: Sequence["Job"], records: Sequence[Record], vectors: np.ndarray) -> None:
        """Write part ``index``: one row per job (``records`` in the same order), the
        ``vectors`` (one per embedded record, in order) beside theirs; then the marker."""
        pa, pq = _pyarrow()
        if len(jobs) != len(records):
            raise ValueError(f"part {index}: {len(jobs)} jobs but {len(records)} records")
        embedded = np.array([r.action == "embed" for r in records], dtype=bool)
        if int(embedded.sum()) != len(vectors):
            raise ValueError(f"part {index}: {int(embedded.sum())} embedded items but {len(vectors)} vectors")
        full = np.zeros((len(records), self.dim), dtype=np.float32)
        if len(vectors):
            full[embedded] = vectors
        vector = pa.FixedSizeListArray.from_arrays(pa.array(full.ravel(), pa.float32()), self.dim,
                                                   mask=pa.array(~embedded))
        traits = [r.traits or {} for r in records]
        columns = {
            "path": pa.array([j.file.path for j in jobs], pa.string()),
            "size": pa.array([r.size for r in records], pa.int64()),
            "mtime_ns": pa.array([j.file.mtime_ns for j in jobs], pa.int64()),
            "hash": pa.array([r.digest for r in records], pa.string()),
            "width": pa.array([r.width for r in records], pa.int64()),
            "height": pa.array([r.height for r in records], pa.int64()),
            "action": pa.array([r.action for r in records], pa.string()),
            "error": pa.array([r.error for r in records], pa.string()),
            **{name: pa.array([t.get(name) for t in traits],
                              pa.float64() if name in ("sharpness", "taken") else pa.int64()) for name in _TRAITS},
            "meta": pa.array([None if j.file.meta is None else json.dumps(dict(j.file.meta)) for j in jobs],
                             pa.string()),
            "vector": vector,
        }
        shard, marker = self._paths(index)
        with atomic_writer(shard) as f:
            pq.write_table(pa.table(columns), f)
        with atomic_writer(marker) as f:
            f.write(json.dumps({"rows": len(records)}).encode())

    def read(self, index: int) -> list[ShardRow]:
        """The rows of part ``index``, in the order they were written."""
        _, pq = _pyarrow()
        table = pq.read_table(self._paths(index)[0])
        cols = {name: table.column(name).to_pylist() for name in table.column_names if name != "vector"}
        vec_col = table.column("vector").combine_chunks()
        valid = np.asarray(vec_col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        # flatten() drops the null slots: what is left are the embedded rows' vectors, in order.
        flat = vec_col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        vectors = iter(flat.reshape(-1, self.dim))
        out = []
        for i, path in enumerate(cols["path"]):
            traits = None
            if cols["phash"][i] is not None:
                traits = {name: cols[name][i] for name in _TRAITS}
            record = Record(cols["action"][i], cols["hash"][i], cols["width"][i], cols["height"][i],
                            cols["error"][i], cols["size"][i], traits)
            out.append(ShardRow(path, cols["mtime_ns"][i], record, next(vectors) if valid[i] else None))
        return out

    def remove(self) -> None:
        """Delete the run's folder (after a complete merge), and ``work/`` if that empties it."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()
        except OSError:
            pass  # other runs' shards are still there, or it never existed


def rows_by_path(rows: Iterable[ShardRow]) -> dict[str, list[ShardRow]]:
    """Shard rows grouped by path, in order (a file list may name one path twice)."""
    out: dict[str, list[ShardRow]] = {}
    for row in rows:
        out.setdefault(row.path, []).append(row)
    return out
