"""A collection: a directory holding a manifest, an SQLite database and a vector file.

::

    pics.lkl/
      manifest.json        model id, fingerprint, dim, preprocessing (atomic JSON)
      items.sqlite         one row per file: id, path, size, mtime, hash, status, vec_row (WAL)
      vectors-<gen>.f32    float32 rows, appended; <gen> changes when compaction rewrites it
      .lock                held by the one process allowed to write

Consistency rule: the SQLite ``state`` table records the vector file's name and how many of
its rows are committed; everything past that is an interrupted write and is cut off when a
writer next opens the collection.
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence, TypeVar

import numpy as np

from ..errors import CollectionError, CollectionExists, CollectionMismatch, CollectionNotFound, QueryError
from ..index.tune import DEFAULT_LATENCY_MS
from .manifest import Manifest
from .metadata import ItemRow, MetadataDB
from .vectors import VectorFile

if TYPE_CHECKING:
    from ..index.faiss_index import AnnIndex
    from ..models.base import EmbeddingModel
    from ..progress import ProgressCallback
    from ..search import Hit, QueryLike
    from .ann import IndexSettings
    from .filters import Filter
    from .indexer import AddReport

__all__ = ["Collection", "CollectionInfo"]

T = TypeVar("T")

log = logging.getLogger("lookalike")

MANIFEST = "manifest.json"
DATABASE = "items.sqlite"
LOCKFILE = ".lock"
#: What :meth:`Collection.create` writes before the manifest that makes a folder a collection.
_CREATE_LEFTOVERS = frozenset({DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", f"{DATABASE}-journal", LOCKFILE})


@dataclass(frozen=True)
class CollectionInfo:
    """Summary shown by ``lookalike info``."""

    path: str
    model_id: str
    fingerprint: str
    dim: int
    items: int
    failed: int
    vector_rows: int
    bytes_on_disk: int
    created: float
    errors: list[tuple[str, str]]
    #: ``{"settings": ..., "state": ...}`` as in the manifest (None: never configured).
    index: dict | None = None


class Collection:
    """Embeddings of a set of images, kept on disk, searchable.

    Make one with :meth:`create`, reopen it with :meth:`open`. Adding is incremental:
    unchanged files are skipped, renamed or copied files reuse their vectors, and files gone
    from the scanned folders are removed.
    """

    def __init__(self, path: Path, manifest: Manifest, model: "EmbeddingModel | None" = None,
                 device: str | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self._model = model
        self._device = device
        self.db = MetadataDB(path / DATABASE)
        self._search_cache: tuple[int, tuple[str, ...], tuple[np.ndarray, np.ndarray]] | None = None
        self._ann_cache: tuple[tuple[int, ...], "AnnIndex | None"] | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, path: str | os.PathLike[str], model: "str | EmbeddingModel" = "lite", *,
               device: str | None = None, exist_ok: bool = False) -> "Collection":
        """Create an empty collection at ``path`` for ``model`` (a name or a loaded model).

        Raises:
            CollectionExists: ``path`` already holds a collection (unless ``exist_ok``, which
                opens it instead and checks that the model matches).
        """
        root = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
        if (root / MANIFEST).exists():
            if exist_ok:
                return cls.open(root, model=model, device=device)
            raise CollectionExists(f"{root}: a collection already exists here; open it, or pick another path")
        if root.exists() and not root.is_dir():
            raise CollectionError(f"{root}: exists and is not a directory")
        if root.exists():
            names = {p.name for p in root.iterdir()}
            if names and not names <= _CREATE_LEFTOVERS:
                raise CollectionError(f"{root}: directory is not empty and is not a collection; pick another path")
            # Only files a create interrupted before its manifest was written: start over.
            for name in names:
                (root / name).unlink()
        loaded = _load(model, device)
        from .. import __version__

        root.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(model=loaded.info(), lookalike_version=__version__)
        coll = cls(root, manifest, loaded, device)
        with coll.db.transaction():
            coll.db.set_state("vector_file", "vectors-0.f32")
            coll.db.set_state("vector_rows", "0")
        # The manifest goes last: its presence is what makes the directory a collection.
        manifest.save(root / MANIFEST)
        return coll

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, model: "str | EmbeddingModel | None" = None,
             device: str | None = None) -> "Collection":
        """Open an existing collection. If ``model`` is given it must match the one that built it.

        Raises:
            CollectionNotFound: nothing at ``path``.
            CollectionMismatch: ``model`` differs from the collection's model.
        """
        root = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
        if not (root / MANIFEST).is_file():
            raise CollectionNotFound(
                f"{root}: no lookalike collection here. Create one with "
                f"`lookalike index FOLDER --collection {root}` or Collection.create()"
            )
        manifest = Manifest.load(root / MANIFEST)
        coll = cls(root, manifest, None, device)
        if model is not None:
            if isinstance(model, str):
                from ..models.registry import parse_model_name

                if parse_model_name(model).canonical != manifest.model_id:
                    raise coll._mismatch(model)
            else:
                coll._check_model(model)
                coll._model = model
        return coll

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Collection({str(self.path)!r}, model={self.manifest.model_id!r})"

    # ------------------------------------------------------------------ model
    @property
    def model(self) -> "EmbeddingModel":
        """The collection's model, loaded on first use and checked against the manifest."""
        if self._model is None:
            loaded = _load(self.manifest.model_id, self._device)
            self._check_model(loaded)
            self._model = loaded
        return self._model

    def _mismatch(self, requested: str) -> CollectionMismatch:
        return CollectionMismatch(
            f"{self.path} was built with model '{self.manifest.model_id}' "
            f"(fingerprint {self.manifest.fingerprint}); its vectors cannot be mixed with '{requested}'. "
            f"Index into a new collection instead: lookalike index FOLDER --collection NEW.lkl --model {requested}"
        )

    def _check_model(self, model: "EmbeddingModel") -> None:
        if model.model_id != self.manifest.model_id:
            raise self._mismatch(model.model_id)
        if model.fingerprint() != self.manifest.fingerprint:
            raise CollectionMismatch(
                f"{self.path}: model '{model.model_id}' now has fingerprint {model.fingerprint()}, but the "
                f"collection was built with {self.manifest.fingerprint}: its weights or preprocessing changed. "
                "Rebuild into a new collection: lookalike index FOLDER --collection NEW.lkl"
            )

    # ------------------------------------------------------------------ vectors
    @property
    def vectors_file(self) -> VectorFile:
        name = self.db.get_state("vector_file", "vectors-0.f32")
        return VectorFile(self.path / str(name), self.manifest.dim)

    @property
    def vector_rows(self) -> int:
        """Rows of the vector file that are committed (referenced rows all lie below this)."""
        return int(self.db.get_state("vector_rows", "0") or 0)

    def vectors(self) -> np.ndarray:
        """A read-only memory map of every committed vector row (including unreferenced ones)."""
        return self.vectors_file.view(self.vector_rows)

    def get_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Vectors of the given item ids, in order.

        Raises:
            QueryError: an id is unknown or its image failed to embed.
        """
        rows, mm = self._consistent_read(lambda: self.db.get_many(list(ids)))
        out = np.empty((len(ids), self.manifest.dim), dtype=np.float32)
        for i, item_id in enumerate(ids):
            row = rows.get(int(item_id))
            if row is None:
                raise QueryError(f"no item with id {item_id} in {self.path}")
            if row.vec_row is None:
                raise QueryError(f"item {item_id} ({row.path}) has no vector: {row.error or 'it failed to embed'}")
            out[i] = mm[row.vec_row]
        return out

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the collection's writer lock, and repair any interrupted write first.

        Raises:
            CollectionError: another process is writing to this collection.
        """
        fd = os.open(self.path / LOCKFILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CollectionError(
                    f"{self.path}: another process is adding to this collection; wait for it to finish"
                ) from None
            self._recover()
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _recover(self) -> None:
        """Make the vector file agree with the committed row count after a crash."""
        vf = self.vectors_file
        committed = self.vector_rows
        size = vf.path.stat().st_size if vf.path.exists() else 0
        expected = committed * 4 * vf.dim
        if size > expected:
            log.info("%s: cutting %d bytes of uncommitted vectors left by an interrupted run",
                     self.path, size - expected)
            vf.truncate(committed)
        elif size < expected:
            # Only an OS crash that lost an fsynced write can get here: forget the items whose
            # vectors are gone so the next add re-embeds them, rather than serve garbage.
            on_disk = vf.rows_on_disk()
            with self.db.transaction():
                lost = self.db.drop_rows_beyond(on_disk)
                self.db.set_state("vector_rows", str(on_disk))
            vf.truncate(on_disk)
            log.warning("%s: vector file is shorter than recorded; %d items will be re-embedded", self.path, lost)
        for stale in self.path.glob("vectors-*.f32"):
            if stale.name != vf.path.name:
                stale.unlink()  # an older generation, or a compaction that never committed
        self.invalidate_cache()

    def invalidate_cache(self) -> None:
        """Forget cached search arrays (SQLite's data_version misses this connection's own writes)."""
        self._search_cache = None
        self._ann_cache = None

    def compact(self) -> int:
        """Rewrite the vector file without unreferenced rows; returns how many were dropped.

        Call while holding :meth:`write_lock`. Crash-safe: the new generation only becomes
        current in the same transaction that renumbers the items.
        """
        keep = self.db.referenced_vec_rows()
        dropped = self.vector_rows - len(keep)
        if dropped <= 0:
            return 0
        current = self.vectors_file
        gen = int(current.path.stem.split("-")[1]) + 1
        new_name = f"vectors-{gen}.f32"
        current.write_rows(self.path / new_name, keep)
        with self.db.transaction():
            self.db.remap_vec_rows({int(old): new for new, old in enumerate(keep) if int(old) != new})
            self.db.set_state("vector_file", new_name)
            self.db.set_state("vector_rows", str(len(keep)))
        current.path.unlink(missing_ok=True)
        self.invalidate_cache()
        return dropped

    # ------------------------------------------------------------------ add
    def add(self, paths: Sequence[str | os.PathLike[str]], *, exclude: Sequence[str] = (),
            batch_size: int | None = None, workers: int | None = None, retry_failed: bool = False,
            progress: "ProgressCallback | None" = None, index: "IndexSettings | None" = None) -> "AddReport":
        """Index the images under ``paths`` (folders or files), incrementally.

        Unchanged files (same path, size and mtime) are skipped; a new path whose content
        hash is known reuses that vector (renames and copies cost no embedding); files that
        were in the collection under ``paths`` but are gone are removed. Files that fail to
        decode are recorded with their reason and not retried until they change (or
        ``retry_failed``). Safe to interrupt at any point: the next run resumes.

        Afterwards the search index is brought up to date: new rows are appended, and it is
        rebuilt when drift, deletions or new ``index`` settings call for it (see
        :mod:`lookalike.store.ann`; by default exact search below 50,000 images).
        """
        from .indexer import index_paths

        return index_paths(self, paths, exclude=exclude, batch_size=batch_size, workers=workers,
                           retry_failed=retry_failed, progress=progress, index=index)

    # ------------------------------------------------------------------ read
    def __len__(self) -> int:
        return self.db.counts()["ok"]

    def item(self, item_id: int) -> ItemRow:
        """The stored row of one item. Raises QueryError for an unknown id."""
        row = self.db.get(int(item_id))
        if row is None:
            raise QueryError(f"no item with id {item_id} in {self.path}")
        return row

    def searchable(self, under: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vec_rows)`` of the items search considers; cached until the database changes."""
        folders = tuple(os.path.abspath(os.path.expanduser(u)) for u in under)
        version = self.db.data_version()
        key = (version, folders)
        if self._search_cache is None or self._search_cache[:2] != key:
            self._search_cache = (version, folders, self.db.searchable(folders))
        return self._search_cache[2]

    def search_arrays(self, under: Sequence[str] = (), flt: "Filter | None" = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids, vec_rows, vectors)`` from one consistent moment, for ranking.

        Reading the rows and the vector file separately could pair row numbers from before a
        concurrent compaction with the renumbered file written by it.
        """
        if flt is None or flt.is_empty():
            read = lambda: self.searchable(under)  # noqa: E731 - cached path
        else:
            read = lambda: self.db.searchable(tuple(under), flt)  # noqa: E731
        (ids, rows), vectors = self._consistent_read(read)
        return ids, rows, vectors

    # ------------------------------------------------------------------ ANN index
    @property
    def index_settings(self) -> "IndexSettings":
        """The index mode and budgets asked for (``auto``, recall 0.95, no budgets by default)."""
        from .ann import IndexSettings

        return IndexSettings.from_dict((self.manifest.index or {}).get("settings"))

    def set_index_state(self, settings: "IndexSettings", state: dict | None) -> None:
        """Record the index settings and what was built, in the manifest (atomically)."""
        self.manifest.index = {"settings": settings.to_dict(), "state": state}
        self.manifest.save(self.path / MANIFEST)
        self._ann_cache = None

    def build_index(self, mode: str = "auto", *, recall: float = 0.95, memory_bytes: int | None = None,
                    latency_ms: float | None = DEFAULT_LATENCY_MS) -> "AnnIndex | None":
        """Choose, build and save the search index now; see :mod:`lookalike.store.ann`.

        ``mode`` is ``auto`` (exact below the size threshold, else the cheapest index that
        meets ``recall``@10 within the budgets: ``memory_bytes`` of RAM, a median
        single-query latency of ``latency_ms``, None for no bound), ``exact``, or a kind to
        force: ``flat``, ``hnsw``, ``ivf``, ``ivfpq``, ``sq8``, ``fp16``, ``binary``.
        Returns None for exact.
        """
        from .ann import IndexSettings, build_index

        settings = IndexSettings(mode, recall, memory_bytes, latency_ms)
        with self.write_lock():
            return build_index(self, settings)

    def ann_index(self) -> "AnnIndex | None":
        """The approximate index searches use, or None for exact search (cached per file version)."""
        from .ann import INDEX_FILE, load_index

        path = self.path / INDEX_FILE
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (st.st_mtime_ns, st.st_size, self.vector_rows, self.db.data_version())
        if self._ann_cache is None or self._ann_cache[0] != key:
            self._ann_cache = (key, load_index(self))
        return self._ann_cache[1]

    def _consistent_read(self, read: "Callable[[], T]", attempts: int = 5) -> "tuple[T, np.ndarray]":
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

    def search(self, query: "QueryLike", k: int = 10, *, min_score: float | None = None,
               under: Sequence[str] = (), where: "Filter | None" = None) -> list["Hit"]:
        """The ``k`` items most similar to ``query``, best first.

        ``query`` is text, an image path or URL, ``"id:N"``, a weighted mix such as
        ``"2:dog + ./a.jpg - grass"``, a PIL image, a :class:`~lookalike.search.Query`, or a
        vector. ``under`` keeps only files below those folders, ``where`` applies a
        :class:`~lookalike.store.filters.Filter` (dates, sizes, glob, any predicate) inside
        the search; ``min_score`` drops weaker hits.
        """
        from ..search import search_collection

        return search_collection(self, query, k=k, min_score=min_score, under=under, where=where)

    def search_batch(self, queries: Sequence["QueryLike"], k: int = 10, *, min_score: float | None = None,
                     under: Sequence[str] = (), where: "Filter | None" = None) -> list[list["Hit"]]:
        """:meth:`search` for many queries at once (texts are embedded in batches); one list per query."""
        from ..search import search_many

        return search_many(self, queries, k=k, min_score=min_score, under=under, where=where)

    def info(self, max_errors: int = 20) -> CollectionInfo:
        """Counts, sizes and recent errors, for ``lookalike info``."""
        counts = self.db.counts()
        size = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        return CollectionInfo(
            path=str(self.path),
            model_id=self.manifest.model_id,
            fingerprint=self.manifest.fingerprint,
            dim=self.manifest.dim,
            items=counts["ok"],
            failed=counts["failed"],
            vector_rows=self.vector_rows,
            bytes_on_disk=size,
            created=self.manifest.created,
            errors=[(r.path, r.error or "") for r in self.db.failures(limit=max_errors)],
            index=self.manifest.index,
        )


def _load(model: "str | EmbeddingModel", device: str | None) -> "EmbeddingModel":
    if isinstance(model, str):
        from ..models.registry import load_model

        return load_model(model, device=device)
    return model

