"""The files of a collection and the rules that keep them consistent.

::

    pics.lkl/
      manifest.json        model id, fingerprint, dim, preprocessing, index settings (atomic JSON)
      items.sqlite         one row per file: id, path, size, mtime, hash, status, vec_row (WAL)
      vectors-<gen>.f32    float32 rows, appended; <gen> changes when compaction rewrites it
      faces-<gen>.f32      face descriptors (float32 x 128), the same rules (store/face_vectors.py)
      index.npz            the approximate index, when there is one
      .lock                held by the one process allowed to write

Consistency rule: the SQLite ``state`` table records the vector file's name and how many of
its rows are committed; everything past that is an interrupted write and is cut off when a
writer next opens the collection. :class:`Storage` is what the indexer, the index policy and
the :class:`~lookalike.store.collection.Collection` facade share; it knows nothing of models.
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence, TypeVar

import numpy as np

from ..errors import CollectionError, ItemNotFound
from . import ann
from .face_vectors import FaceVectors
from .filters import Filter
from .items import StoredItem
from .manifest import Manifest
from .metadata import ItemRow, MetadataDB
from .vectors import VectorFile

if TYPE_CHECKING:
    from ..index.faiss_index import AnnIndex

__all__ = ["Storage", "MANIFEST", "DATABASE", "LOCKFILE"]

T = TypeVar("T")

log = logging.getLogger("lookalike")

MANIFEST = "manifest.json"
DATABASE = "items.sqlite"
LOCKFILE = ".lock"
FIRST_VECTOR_FILE = "vectors-0.f32"


class Storage:
    """A collection's manifest, database and vector file, with the writer lock and caches."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        self.db = MetadataDB(path / DATABASE)
        self._searchable: tuple[int, tuple[str, ...], tuple[np.ndarray, np.ndarray]] | None = None
        self._ann: tuple[tuple[int, ...], "AnnIndex | None"] | None = None
        self._live: tuple[np.ndarray, np.ndarray] | None = None
        self._traits: tuple[int, tuple[np.ndarray, ...]] | None = None

    @classmethod
    def initialise(cls, path: Path, manifest: Manifest) -> "Storage":
        """Lay out a new, empty collection at ``path``; the manifest is written last, since its
        presence is what makes the directory a collection."""
        path.mkdir(parents=True, exist_ok=True)
        storage = cls(path, manifest)
        with storage.db.transaction():
            storage.db.set_state("vector_file", FIRST_VECTOR_FILE)
            storage.db.set_state("vector_rows", "0")
            storage.db.set_state("traits_backfilled", "1")  # every row of a new collection gets traits
        manifest.save(path / MANIFEST)
        return storage

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ vectors
    @property
    def vector_file(self) -> VectorFile:
        name = self.db.get_state("vector_file", FIRST_VECTOR_FILE)
        return VectorFile(self.path / str(name), self.manifest.dim)

    @property
    def vector_rows(self) -> int:
        """Rows of the vector file that are committed (referenced rows all lie below this)."""
        return int(self.db.get_state("vector_rows", "0") or 0)

    def vectors(self) -> np.ndarray:
        """A read-only memory map of every committed vector row (including unreferenced ones)."""
        return self.vector_file.view(self.vector_rows)

    def item_vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """``{id: vector}`` for the given item ids, read in one consistent snapshot.

        Raises:
            ItemNotFound: an id is unknown, or its image failed to embed.
        """
        rows, mm = self.consistent_read(lambda: self.db.get_many(list(ids)))
        out: dict[int, np.ndarray] = {}
        for item_id in ids:
            row = rows.get(int(item_id))
            if row is None:
                raise ItemNotFound(int(item_id), f"no item with id {item_id} in {self.path}")
            if row.vec_row is None:
                raise ItemNotFound(int(item_id), f"item {item_id} ({row.path}) has no vector: "
                                                 f"{row.error or 'it failed to embed'}")
            out[int(item_id)] = np.array(mm[row.vec_row])
        return out

    def consistent_read(self, read: Callable[[], T], attempts: int = 5) -> tuple[T, np.ndarray]:
        """Run ``read()`` and map the vector file within one database snapshot.

        A compaction that commits meanwhile deletes the file the snapshot names; then the map
        cannot be opened and the read is retried on a fresh snapshot.
        """
        for attempt in range(attempts):
            try:
                with self.db.snapshot():
                    result = read()
                    return result, self.vectors()
            except FileNotFoundError:
                if attempt == attempts - 1:
                    raise CollectionError(
                        f"{self.path}: the vector file kept changing while reading it; try again"
                    ) from None
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ search inputs
    def searchable(self, flt: Filter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vec_rows)`` of the items a search may return; cached until the database
        changes when the filter is folders alone."""
        key = Filter().cache_key() if flt is None else flt.cache_key()
        if key is None:
            return self.db.searchable(flt)
        version = self.db.data_version()
        if self._searchable is None or self._searchable[:2] != (version, key):
            self._searchable = (version, key, self.db.searchable(flt))
        return self._searchable[2]

    def search_arrays(self, flt: Filter | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids, vec_rows, vectors)`` from one consistent moment, for ranking.

        Reading the rows and the vector file separately could pair row numbers from before a
        concurrent compaction with the renumbered file written by it.
        """
        (ids, rows), vectors = self.consistent_read(lambda: self.searchable(flt))
        return ids, rows, vectors

    def trait_arrays(self) -> tuple[np.ndarray, ...]:
        """:meth:`MetadataDB.trait_arrays`, cached while the collection's generation holds."""
        generation = self.db.generation()
        if self._traits is None or self._traits[0] != generation:
            self._traits = (generation, self.db.trait_arrays())
        return self._traits[1]

    def live_rows(self) -> np.ndarray:
        """The distinct vector rows of every searchable item, sorted (cached with :meth:`searchable`)."""
        rows = self.searchable()[1]
        if self._live is None or self._live[0] is not rows:
            self._live = (rows, np.unique(rows))
        return self._live[1]

    # ------------------------------------------------------------------ the approximate index
    def ann_index(self) -> "AnnIndex | None":
        """The approximate index searches use, or None for exact search (cached per file version)."""
        try:
            st = (self.path / ann.INDEX_FILE).stat()
        except FileNotFoundError:
            return None
        key = (st.st_mtime_ns, st.st_size, self.vector_rows, self.db.data_version())
        if self._ann is None or self._ann[0] != key:
            self._ann = (key, ann.load_index(self))
        return self._ann[1]

    def index_settings(self) -> ann.IndexSettings:
        return ann.IndexSettings.from_dict((self.manifest.index or {}).get("settings"))

    def index_state(self) -> ann.IndexState | None:
        return ann.IndexState.from_dict((self.manifest.index or {}).get("state"))

    def record_index(self, settings: ann.IndexSettings, state: ann.IndexState | None) -> None:
        """Record the index settings and what was built, in the manifest (atomically)."""
        self.manifest.index = {"settings": settings.to_dict(), "state": state.to_dict() if state else None}
        self.manifest.save(self.path / MANIFEST)
        self._ann = None

    # ------------------------------------------------------------------ writing
    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the collection's writer lock, and repair any interrupted write first.

        Raises:
            CollectionError: another process is writing to this collection.
        """
        with self.writer_if_free() as held:
            if not held:
                raise CollectionError(
                    f"{self.path}: another process is adding to this collection; wait for it to finish"
                )
            yield

    @contextmanager
    def writer_if_free(self) -> Iterator[bool]:
        """Hold the writer lock if no other process does (yields True, after repairing any
        interrupted write), else yield False: for work that may write, but can do without."""
        fd = os.open(self.path / LOCKFILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            self._recover()
            yield True
        finally:
            os.close(fd)  # closing releases the flock

    def _recover(self) -> None:
        """Make the vector files (items' and faces') agree with the committed row counts after a crash."""
        FaceVectors(self.path, self.db).recover()
        vf = self.vector_file
        stale = [p for p in self.path.glob("vectors-*.f32") if p.name != vf.path.name]

        def lost(on_disk: int) -> str:
            # Forget the items whose vectors are gone so the next add re-embeds them, rather
            # than serve garbage.
            with self.db.transaction():
                n = self.db.drop_rows_beyond(on_disk)
                self.db.set_state("vector_rows", str(on_disk))
            return f"{n} items will be re-embedded"
        if not vf.repair(self.vector_rows, lost) and not stale:
            return  # nothing to repair: the caches stay valid
        for path in stale:
            path.unlink()  # an older generation, or a compaction that never committed
        self.invalidate()

    def invalidate(self) -> None:
        """Forget cached search arrays (SQLite's data_version misses this connection's own writes)."""
        self._searchable = None
        self._ann = None

    def commit_vectors(self, vectors: np.ndarray | None, write: Callable[[], None]) -> None:
        """Append ``vectors`` (fsynced), then run ``write`` (database changes) in the one
        transaction that also commits the new row count: the durability order that makes a
        crash at any moment recoverable."""
        start = self.vector_rows
        n = 0 if vectors is None else len(vectors)
        if n:
            self.vector_file.append(vectors, start)
        with self.db.transaction():
            write()
            self.db.set_state("vector_rows", str(start + n))
            self.db.bump_generation()
        self.invalidate()

    def forget(self, ids: Sequence[int]) -> list[StoredItem]:
        """Implementation of :meth:`Collection.forget` (the caller holds :meth:`write_lock`)."""
        rows = self.db.get_many([int(i) for i in ids])
        missing = [int(i) for i in ids if int(i) not in rows]
        if missing:
            raise ItemNotFound(missing[0], f"no item with id {missing[0]} in {self.path}")
        traits = self.db.traits(list(rows))
        generation = self.vector_file.path.name
        snapshots = [StoredItem(rows[int(i)].public(), traits.get(int(i)), rows[int(i)].vec_row, generation)
                     for i in ids]
        self.commit_vectors(None, lambda: self.db.delete_ids(rows))
        return snapshots

    def restore(self, snapshots: Sequence[StoredItem]) -> list[StoredItem]:
        """Implementation of :meth:`Collection.restore` (the caller holds :meth:`write_lock`):
        a row goes back only while its vector row is still in the current vector file and
        neither its id nor its path is taken; the others are returned."""
        current, committed = self.vector_file.path.name, self.vector_rows
        back, left = [], []
        for snap in snapshots:
            usable = (snap.vector_file == current and snap.vec_row is not None and snap.vec_row < committed
                      and self.db.get(snap.item.id) is None and self.db.get_by_path(snap.item.path) is None)
            (back if usable else left).append(snap)
        rows = [(ItemRow(*vars(s.item).values(), vec_row=s.vec_row), s.traits) for s in back]
        self.commit_vectors(None, lambda: self.db.insert_rows(rows))
        return left

    def compact(self) -> int:
        """Rewrite the vector file without unreferenced rows; returns how many were dropped.

        The caller holds :meth:`write_lock`. Crash-safe: the new generation only becomes
        current in the same transaction that renumbers the items.
        """
        keep = self.db.referenced_vec_rows()
        dropped = self.vector_rows - len(keep)
        if dropped <= 0:
            return 0

        def record(new_name: str) -> None:
            with self.db.transaction():
                self.db.remap_vec_rows({int(old): new for new, old in enumerate(keep) if int(old) != new})
                self.db.set_state("vector_file", new_name)
                self.db.set_state("vector_rows", str(len(keep)))
                self.db.bump_generation()
        self.vector_file.compact(keep, record)
        self.invalidate()
        return dropped
