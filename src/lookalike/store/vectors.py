"""The vector half of a collection: a raw float32 file that is appended to and memory-mapped.

Rows are only ever appended; an item refers to its row by number (``vec_row`` in SQLite).
Rows no longer referenced (deleted or re-embedded files) are reclaimed by compaction, which
writes a new generation of the file. Durability order: a batch of rows is fsynced *before*
the SQLite transaction that references them commits, so a crash can leave unreferenced rows
at the tail (cut off on the next open) but never a reference to a missing row.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["VectorFile", "take_rows"]

log = logging.getLogger("lookalike")


def take_rows(matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``matrix[rows]`` as float32: a view (no copy) when ``rows`` is one ascending run, as
    the rows in use usually are, else a copy. Whole-collection work at 1M x 512 thus reads
    the memory map as it goes instead of first copying 2 GB."""
    rows = np.asarray(rows)
    if len(rows) and (len(rows) == 1 or bool((np.diff(rows) == 1).all())):
        return matrix[int(rows[0]) : int(rows[-1]) + 1]
    return np.asarray(matrix[rows], dtype=np.float32)


class VectorFile:
    """A ``(rows, dim)`` float32 matrix stored row-major in one file."""

    def __init__(self, path: str | os.PathLike[str], dim: int) -> None:
        self.path = Path(path)
        self.dim = dim
        self._row_bytes = 4 * dim

    def rows_on_disk(self) -> int:
        """Complete rows in the file (a torn final row from a crash is not counted)."""
        try:
            return self.path.stat().st_size // self._row_bytes
        except FileNotFoundError:
            return 0

    def repair(self, committed: int, lost: Callable[[int], str]) -> bool:
        """Make the file hold exactly the ``committed`` rows after a crash; whether it changed.

        An uncommitted tail is cut. A file shorter than that can only come from an OS crash
        that lost an fsynced write: ``lost(rows on disk)`` then forgets whatever referred to the
        missing rows (and says what, for the log), and the file is cut to its whole rows.
        """
        size = self.path.stat().st_size if self.path.exists() else 0
        expected = committed * self._row_bytes
        if size > expected:
            log.info("%s: cutting %d bytes of uncommitted rows left by an interrupted run", self.path, size - expected)
            self.truncate(committed)
        elif size < expected:
            on_disk = self.rows_on_disk()
            consequence = lost(on_disk)
            self.truncate(on_disk)
            log.warning("%s: shorter than recorded; %s", self.path, consequence)
        return size != expected

    def compact(self, keep: np.ndarray, record: Callable[[str], None]) -> None:
        """Replace this file by its next generation holding only the ``keep`` rows, in order.

        The rows are written (fsynced) to ``<stem>-<gen + 1>.f32`` beside it; ``record(new file
        name)`` then commits the transaction that makes it current and renumbers what refers to
        the rows; only then is this file deleted. A crash before ``record`` commits leaves the
        old generation current and the new file to the next writer's recovery.
        """
        stem, gen = self.path.stem.rsplit("-", 1)
        new = self.path.with_name(f"{stem}-{int(gen) + 1}{self.path.suffix}")
        self.write_rows(new, keep)
        record(new.name)
        self.path.unlink(missing_ok=True)

    def truncate(self, rows: int) -> None:
        """Cut the file to ``rows`` rows (drops an uncommitted tail after a crash)."""
        with open(self.path, "r+b" if self.path.exists() else "w+b") as f:
            f.truncate(rows * self._row_bytes)
            f.flush()
            os.fsync(f.fileno())

    def append(self, vectors: np.ndarray, start_row: int) -> None:
        """Write ``vectors`` at ``start_row`` (the committed row count) and fsync.

        Writing at the committed offset rather than the physical end overwrites any torn
        tail a crash left behind.
        """
        data = np.ascontiguousarray(vectors, dtype="<f4")
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise ValueError(f"expected (n, {self.dim}) vectors, got {data.shape}")
        with open(self.path, "r+b" if self.path.exists() else "w+b") as f:
            f.seek(start_row * self._row_bytes)
            f.write(data.tobytes())
            f.truncate(f.tell())
            f.flush()
            os.fsync(f.fileno())

    def view(self, rows: int) -> np.ndarray:
        """A read-only memory map of the first ``rows`` rows."""
        if rows == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.memmap(self.path, dtype="<f4", mode="r", shape=(rows, self.dim))

    def write_rows(self, dest: str | os.PathLike[str], source_rows: np.ndarray, chunk: int = 65536) -> None:
        """Copy the given rows, in order, into a new file ``dest`` (fsynced): used by compaction."""
        src = self.view(self.rows_on_disk())
        with open(dest, "wb") as f:
            for start in range(0, len(source_rows), chunk):
                f.write(np.ascontiguousarray(src[source_rows[start : start + chunk]], dtype="<f4").tobytes())
            f.flush()
            os.fsync(f.fileno())
