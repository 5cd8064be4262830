"""The face descriptors of a collection: ``faces-<gen>.f32``, float32 x 128, appended.

The same rules as the items' vectors (:mod:`.vectors`, :class:`~.storage.Storage`): a batch
of rows is appended and fsynced *before* the SQLite transaction that records the new row
count (``state.face_vector_rows``) and the faces that refer to them, so a crash leaves at
most an unreferenced tail, which :meth:`FaceVectors.recover` cuts when a writer next takes
the lock. Rows of deleted faces stay as garbage until :meth:`FaceVectors.compact` writes the
next generation, which becomes current in the transaction that renumbers the faces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from ..errors import CollectionError
from ..models.faces import DESCRIPTOR_DIM
from .face_db import FaceTables
from .metadata import MetadataDB
from .vectors import VectorFile

__all__ = ["FaceVectors", "FILE_KEY", "ROWS_KEY", "FIRST_FILE", "COMPACT_GARBAGE", "COMPACT_MIN_ROWS"]

T = TypeVar("T")

#: ``state`` keys: the current file's name, and how many of its rows are committed.
FILE_KEY, ROWS_KEY = "face_vector_file", "face_vector_rows"
FIRST_FILE = "faces-0.f32"
#: Compact when more than this share of the rows is garbage, and at least this many rows are.
COMPACT_GARBAGE = 0.3
COMPACT_MIN_ROWS = 1


class FaceVectors:
    """The face descriptor file of the collection at ``folder`` (its database ``db``)."""

    def __init__(self, folder: Path, db: MetadataDB) -> None:
        self.folder = folder
        self.db = db

    @property
    def file(self) -> VectorFile:
        return VectorFile(self.folder / str(self.db.get_state(FILE_KEY, FIRST_FILE)), DESCRIPTOR_DIM)

    @property
    def rows(self) -> int:
        """Committed rows (every face's ``vec_row`` lies below)."""
        return int(self.db.get_state(ROWS_KEY, "0") or 0)

    def view(self) -> np.ndarray:
        """A read-only map of the committed rows (call inside a snapshot, see :meth:`read`)."""
        return self.file.view(self.rows)

    def read(self, fn: Callable[[np.ndarray], T], attempts: int = 5) -> T:
        """``fn(rows)`` with the rows and the database of one moment: a compaction in another
        process deletes the file an older snapshot names, and then the read is retried."""
        for _ in range(attempts):
            try:
                with self.db.snapshot():
                    return fn(self.view())
            except FileNotFoundError:
                continue
        raise CollectionError(f"{self.folder}: the face vector file kept changing while reading it; try again")

    def commit(self, vectors: np.ndarray, write: Callable[[int], None]) -> None:
        """Append ``vectors`` (fsynced), then run ``write(first row)`` in the one transaction that
        also commits the new row count: the order that makes a crash at any moment recoverable."""
        start = self.rows
        if len(vectors):
            self.file.append(np.asarray(vectors, dtype=np.float32).reshape(-1, DESCRIPTOR_DIM), start)
        name = self.file.path.name
        with self.db.transaction():
            write(start)
            self.db.set_state(FILE_KEY, name)  # recorded from the first commit on: see recover
            self.db.set_state(ROWS_KEY, str(start + len(vectors)))

    def recover(self) -> None:
        """Cut an uncommitted tail; remove files of other generations (the writer lock is held)."""
        current, committed = self.file, self.rows
        if self.db.get_state(FILE_KEY) is None:
            self.drop_files()  # no faces recorded (never indexed, or forgotten before its files went)
            return

        def lost(on_disk: int) -> str:
            # Forget the faces whose rows are gone, and their scans, so the next `faces index`
            # finds them again.
            with self.db.transaction():
                self.db.conn.execute("DELETE FROM face_scans WHERE item_id IN "
                                     "(SELECT item_id FROM faces WHERE vec_row >= ?)", (on_disk,))
                n = self.db.conn.execute("DELETE FROM faces WHERE vec_row >= ?", (on_disk,)).rowcount
                self.db.set_state(ROWS_KEY, str(on_disk))
            return f"{n} faces will be found again by the next `faces index`"
        current.repair(committed, lost)
        for path in self.folder.glob("faces-*.f32"):
            if path.name != current.path.name:
                path.unlink()  # an older generation, or a compaction that never committed

    def garbage(self) -> int:
        """Committed rows no face refers to."""
        return self.rows - FaceTables(self.db).face_count()

    def compact(self, *, force: bool = False) -> int:
        """Rewrite the file without garbage rows when they are more than :data:`COMPACT_GARBAGE`
        of it (or ``force``); returns how many were dropped. The writer lock is held."""
        tables = FaceTables(self.db)
        ids, keep = tables.vec_row_order()
        dropped = self.rows - len(keep)
        if dropped < max(1, COMPACT_MIN_ROWS) or (not force and dropped <= COMPACT_GARBAGE * self.rows):
            return 0

        def record(new_name: str) -> None:
            with self.db.transaction():
                tables.set_vec_rows((int(f), new) for new, (f, old) in enumerate(zip(ids, keep)) if int(old) != new)
                self.db.set_state(FILE_KEY, new_name)
                self.db.set_state(ROWS_KEY, str(len(keep)))
        self.file.compact(keep, record)
        return dropped

    def drop_files(self) -> None:
        """Delete every face vector file (after the transaction that forgot the faces)."""
        for path in self.folder.glob("faces-*.f32"):
            path.unlink()
