"""A collection: embeddings of a set of images, kept on disk, searchable.

:class:`Collection` is the public facade. Its files and their consistency rules are
:class:`~lookalike.store.storage.Storage`; adding is :mod:`.indexer`, the approximate
index policy :mod:`.ann`. A search runs one way through the layers: the query code turns
the query into vectors (given the model and the vectors of the items it names), the
ranking code picks the best rows (given the arrays and the index), and the collection
turns rows into :class:`~lookalike.store.items.Hit`\\ s.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from ..errors import (CollectionCorrupt, CollectionError, CollectionExists, CollectionMismatch, CollectionNotFound,
                      ItemNotFound)
from ..fsutil import user_path
from ..index.rank import rank
from ..models.lazy import LazyModel
from ..models.names import parse_model_name
from ..query import QueryLike, QueryOptions, as_query, query_vectors
from ..sources.base import is_url
from ..sources.folder import FolderSource
from ..version import __version__
from .ann import IndexSettings
from .deduplicating import Deduplicating
from .exploring import Exploring
from .facing import Facing
from .indexing import Indexing
from .filters import Filter
from .indexer import AddReport, default_download, index_source, require_roots
from .info import CollectionInfo
from .item_access import ItemAccess
from .items import Hit, Item, StoredItem
from .manifest import Manifest
from .model_files import MODELS_DIR, check_request, keep_model_files, lazy_model, load_named
from .person_search import search_by_person, wants_persons
from .storage import DATABASE, LOCKFILE, MANIFEST, Storage

if TYPE_CHECKING:
    from ..images.decode import ImageSource
    from ..models.base import EmbeddingModel
    from ..progress import ProgressCallback
    from ..sources import Source
    from ..sources.download import DownloadSettings

__all__ = ["Collection", "CollectionInfo"]

#: What :meth:`Collection.create` writes before the manifest that makes a folder a collection.
_CREATE_LEFTOVERS = frozenset({DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", f"{DATABASE}-journal", LOCKFILE,
                               MODELS_DIR})


class Collection(Exploring, Deduplicating, ItemAccess, Facing, Indexing):
    """Embeddings of a set of images, kept on disk, searchable.

    Make one with :meth:`create`, reopen it with :meth:`open`. Adding is incremental: unchanged
    files are skipped, renamed or copied files reuse their vectors, and files gone from the
    scanned folders are removed. Opening never loads the model (nor imports torch); it loads on
    the first embedding. Clusters, labels and the map are :class:`.exploring.Exploring`'s, the
    search index :class:`.indexing.Indexing`'s, faces and people :class:`.facing.Facing`'s."""

    def __init__(self, storage: Storage, model: "EmbeddingModel | None" = None, device: str | None = None, *,
                 runtime: str | None = None, compile: bool = False) -> None:
        self._storage = storage
        self._model = lazy_model(storage.path, storage.manifest.model, device=device, runtime=runtime, compile=compile)
        if model is not None:
            self._model.use(model)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, path: str | os.PathLike[str], model: "str | EmbeddingModel" = "lite", *,
               device: str | None = None, exist_ok: bool = False, runtime: str | None = None,
               precision: str | None = None, calibration: "Sequence[ImageSource] | None" = None,
               compile: bool = False) -> "Collection":
        """Create an empty collection at ``path`` for ``model`` (a name or a loaded model).

        ``runtime`` (torch, onnx, openvino; default ``auto``: the fastest this machine measured)
        and ``precision`` (fp32, or int8 calibrated on ``calibration`` images, a few hundred of
        the collection's own) say how a model given by name runs; see
        :func:`lookalike.load_model`. An int8 collection keeps its quantized model and is tied to
        its runtime; an fp32 one runs on any runtime, since their vectors agree.

        Raises:
            CollectionExists: ``path`` already holds a collection (unless ``exist_ok``, which
                opens it instead and checks that the model matches).
            InvalidArgument: an unknown runtime or precision, or int8 without calibration images.
        """
        root = Path(user_path(path))
        if (root / MANIFEST).exists():
            if exist_ok:
                return cls.open(root, model=model, device=device, runtime=runtime, precision=precision,
                                compile=compile)
            raise CollectionExists(f"{root}: a collection already exists here; open it, or pick another path")
        if root.exists() and not root.is_dir():
            raise CollectionError(f"{root}: exists and is not a directory; pick another path")
        if root.exists():
            names = {p.name for p in root.iterdir()}
            if names and not names <= _CREATE_LEFTOVERS:
                raise CollectionError(f"{root}: directory is not empty and is not a collection; pick another path")
            # Only files a create interrupted before its manifest was written: start over.
            for name in names:
                if name == MODELS_DIR:
                    shutil.rmtree(root / name)
                else:
                    (root / name).unlink()
        loaded = load_named(model, device, runtime=runtime, precision=precision, calibration=calibration,
                            compile=compile)
        root.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(model=keep_model_files(root, loaded), lookalike_version=__version__)
        return cls(Storage.initialise(root, manifest), loaded, device, runtime=runtime, compile=compile)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, model: "str | EmbeddingModel | None" = None,
             device: str | None = None, runtime: str | None = None, precision: str | None = None,
             compile: bool = False) -> "Collection":
        """Open an existing collection. If ``model`` is given it must match the one that built it.

        ``runtime`` picks how an fp32 model runs in this process (default ``auto``); an int8
        collection always runs the runtime it was built with, and ``precision``, when given,
        must be the collection's.

        Raises:
            CollectionNotFound: nothing at ``path``.
            CollectionMismatch: ``model`` differs from the collection's model, or ``precision``
                (or, for int8, ``runtime``) from what built it.
        """
        root = Path(user_path(path))
        if not (root / MANIFEST).is_file():
            raise CollectionNotFound(
                f"{root}: no lookalike collection here. Create one with "
                f"`lookalike index FOLDER --collection {root}` or Collection.create()"
            )
        manifest = Manifest.load(root / MANIFEST)
        if isinstance(model, str) and parse_model_name(model).model_id != manifest.model_id:  # before SQLite opens
            raise LazyModel(manifest.model_id, manifest.fingerprint, owner=str(root)).mismatch(model)
        storage = Storage(root, manifest)
        try:
            check_request(str(root), storage.manifest, runtime, precision)
            return cls(storage, model if not isinstance(model, str) else None, device, runtime=runtime,
                       compile=compile)
        except (CollectionMismatch, CollectionCorrupt):
            storage.close()
            raise

    def close(self) -> None:
        reader = self.__dict__.pop("_item_reader", None)  # made by item_access.item_reader
        if reader is not None:
            reader.close()
        self._storage.close()

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Collection({str(self.path)!r}, model={self.manifest.model_id!r})"

    @property
    def path(self) -> Path:
        """The collection's directory (absolute)."""
        return self._storage.path

    @property
    def manifest(self) -> Manifest:
        """What built the collection: model id, fingerprint, dimension, preprocessing."""
        return self._storage.manifest

    # ------------------------------------------------------------------ model
    @property
    def model(self) -> "EmbeddingModel":
        """The collection's model, loaded on first use and checked against the manifest.

        Raises:
            CollectionMismatch: its weights or preprocessing changed since the collection was built.
        """
        return self._model.get()

    @property
    def loaded_model(self) -> "EmbeddingModel | None":
        """The model if this collection has loaded it (it loads on the first embedding), else None."""
        return self._model.loaded

    # ------------------------------------------------------------------ add
    def add(self, paths: "Sequence[str | os.PathLike[str]] | Source", *, exclude: Sequence[str] = (),
            batch_size: int | None = None, workers: int | None = None, retry_failed: bool = False,
            progress: "ProgressCallback | None" = None, index: IndexSettings | None = None,
            download: "DownloadSettings | None" = None) -> AddReport:
        """Index the images under ``paths`` (folders or files), or those of a
        :class:`~lookalike.sources.Source` (a file list, a table, WebDataset shards), incrementally.

        Unchanged files (same path, size and mtime) are skipped; a new path whose content
        hash is known reuses that vector (renames and copies cost no embedding); files that
        were in the collection under ``paths`` but are gone are removed. Files that fail to
        decode are recorded with their reason and not retried until they change (or
        ``retry_failed``). Safe to interrupt at any point: the next run resumes.

        Afterwards the search index is brought up to date: new rows are appended, and it is
        rebuilt when drift, deletions or new ``index`` settings call for it (see
        :mod:`lookalike.store.ann`; by default exact search below 50,000 images).

        URLs are fetched under ``download`` (default: cached in the collection's
        ``downloads`` folder); a table's other columns and captions become item metadata.

        Raises:
            InvalidArgument: none of ``paths`` exists (one missing among several is a skip).
            CollectionError: another process is adding to this collection.
        """
        if batch_size is None:
            # Larger batches only pay on an accelerator; the model may not be loaded yet (and
            # need not be, if nothing new is found), and then the CPU default is right.
            loaded = self._model.loaded
            batch_size = 32 if loaded is None or loaded.device.type == "cpu" else 128
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]  # one folder given bare: a str is not a list of one-letter folders
        source = paths if callable(getattr(paths, "parts", None)) else FolderSource(require_roots(paths),
                                                                                    exclude=exclude)
        return index_source(self._storage, source, model=self._model, batch_size=batch_size, workers=workers,
                            retry_failed=retry_failed, progress=progress, index=index,
                            download=download or default_download(self.path))

    def compact(self) -> int:
        """Reclaim the vector rows no item uses any more; returns how many were dropped.

        :meth:`add` does this by itself once enough rows are garbage.

        Raises:
            CollectionError: another process is adding to this collection.
        """
        with self._storage.write_lock():
            return self._storage.compact()

    def forget(self, ids: Sequence[int]) -> list[StoredItem]:
        """Remove items from the collection, leaving their files alone (after a file was moved
        away or deleted). Returns their rows as they were, for :meth:`restore`.

        Raises:
            ItemNotFound: an id is unknown (nothing is removed then).
            CollectionError: another process is adding to this collection.
        """
        with self._storage.write_lock():
            return self._storage.forget(ids)

    def restore(self, snapshots: Sequence[StoredItem]) -> list[StoredItem]:
        """Put back items that :meth:`forget` removed, with their ids and vectors (their files
        are back). Returns the snapshots that could not be put back: their vectors were
        compacted away since, or their path or id is taken again; index those files again
        with :meth:`add`.

        Raises:
            CollectionError: another process is adding to this collection.
        """
        with self._storage.write_lock():
            return self._storage.restore(snapshots)

    # ------------------------------------------------------------------ read
    def __len__(self) -> int:
        """Searchable (embedded) items."""
        return self._storage.db.counts()["ok"]

    def item(self, item_id: int) -> Item:
        """One item by id.

        Raises:
            ItemNotFound: no such id.
        """
        row = self._storage.db.get(int(item_id))
        if row is None:
            raise ItemNotFound(int(item_id), f"no item with id {item_id} in {self.path}")
        return row.public()

    def item_at(self, path: str | os.PathLike[str]) -> Item | None:
        """The item of the file at ``path`` (relative and ``~`` paths allowed), of a URL, or
        of a tar member (``shard.tar#member``), or None."""
        key = os.fspath(path)
        row = self._storage.db.get_by_path(key if is_url(key) else user_path(key))
        return row.public() if row is not None else None

    def items(self, ids: Sequence[int] | None = None) -> Iterator[Item]:
        """Every item (failed ones too) by id, or the given ids in order (unknown ones left out)."""
        if ids is None:
            yield from (row.public() for row in self._storage.db.iter_rows())
            return
        rows = self._storage.db.get_many([int(i) for i in ids])
        yield from (rows[int(i)].public() for i in ids if int(i) in rows)

    def get_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The vectors of the given item ids, ``(len(ids), dim)`` float32, in order.

        Raises:
            ItemNotFound: an id is unknown or its image failed to embed.
        """
        found = self._storage.item_vectors(ids)
        out = np.empty((len(ids), self.manifest.dim), dtype=np.float32)
        for i, item_id in enumerate(ids):
            out[i] = found[int(item_id)]
        return out

    def embeddings(self, where: Filter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of every searchable item (or those passing ``where``), by vector row."""
        (ids, rows), mm = self._storage.consistent_read(lambda: self._storage.searchable(where))
        return ids, np.asarray(mm[rows], dtype=np.float32)

    # ------------------------------------------------------------------ search
    def query_vectors(self, queries: Sequence[QueryLike], *, options: QueryOptions | None = None) -> np.ndarray:
        """Queries (any form :meth:`search` takes) as normalised ``(Q, dim)`` vectors in this
        collection's space; texts are embedded in one batch."""
        options = options or QueryOptions()
        parsed = [as_query(q, allow_files=options.allow_files) for q in queries]
        ids = sorted({i for q in parsed for i in q.ids()})
        return query_vectors(parsed, dim=self.manifest.dim, model=self._model.get,
                             item_vectors=self._storage.item_vectors(ids) if ids else {}, options=options)

    def query_vector(self, query: QueryLike, *, options: QueryOptions | None = None) -> np.ndarray:
        """One query as a normalised ``(dim,)`` vector; see :meth:`query_vectors`."""
        return self.query_vectors([query], options=options)[0]

    def search(self, query: QueryLike, k: int = 10, *, min_score: float | None = None,
               under: Sequence[str | os.PathLike[str]] = (), where: Filter | None = None,
               options: QueryOptions | None = None) -> list[Hit]:
        """The ``k`` items most similar to ``query``, best first.

        ``query`` is text, an image path or URL, ``"id:N"``, a weighted mix such as
        ``"2:dog + ./a.jpg - grass"``, a PIL image, a :class:`~lookalike.query.Query`, or a
        vector. ``under`` keeps only files below those folders, ``where`` applies a
        :class:`~lookalike.store.filters.Filter` (dates, sizes, glob, any predicate) inside
        the search; ``min_score`` drops weaker hits. ``options`` sets how queries are read
        (files allowed, URL policy, a text-embedding cache).

        Raises:
            QueryError: the query does not parse or names an unknown item.
            PersonNotFound: a ``person:`` or ``where.person`` the collection does not hold.
            UnreadableImage: a query image cannot be read or fetched.
            UnsupportedModality: a text query on an image-only model.
        """
        return self.search_batch([query], k, min_score=min_score, under=under, where=where, options=options)[0]

    def search_batch(self, queries: Sequence[QueryLike], k: int = 10, *, min_score: float | None = None,
                     under: Sequence[str | os.PathLike[str]] = (), where: Filter | None = None,
                     options: QueryOptions | None = None) -> list[list[Hit]]:
        """:meth:`search` for many queries at once (texts are embedded in batches); one list per query.

        ``person:`` in a query, or ``where.person``, keeps the photos showing those people
        (:mod:`.person_search`; PersonNotFound for an unknown one); a query of persons alone
        ranks them by how typical the person's face is."""
        if not queries:
            return []
        options = options or QueryOptions()
        parsed = [as_query(q, allow_files=options.allow_files) for q in queries]
        flt = (where or Filter()).below(under)
        if wants_persons(parsed, flt):
            return search_by_person(self, parsed, k, min_score, flt, options, self._ranked)
        return self._ranked(parsed, k, min_score, flt, options)

    def _ranked(self, queries: Sequence[QueryLike], k: int, min_score: float | None, flt: Filter,
                options: QueryOptions) -> list[list[Hit]]:
        """Rank queries by their vectors among the items ``flt`` passes."""
        vectors = self.query_vectors(queries, options=options)
        ids, rows, matrix = self._storage.search_arrays(None if flt.is_empty() else flt)
        ann = self._storage.ann_index()
        ranked = rank(matrix, ids, rows, vectors, k, ann=ann, forced=self._storage.index_settings().forced,
                      live_rows=len(self._storage.live_rows()) if ann is not None else None)
        found = self._storage.db.get_many(sorted({i for hits in ranked for i, _ in hits}))
        return [[Hit(i, found[i].path, score) for i, score in hits
                 if i in found and (min_score is None or score >= min_score)] for hits in ranked]

    @property
    def generation(self) -> int:
        """A number that changes whenever the collection's items or vectors change (in any
        process): results computed at one generation are current while it holds."""
        return self._storage.db.generation()

    # ------------------------------------------------------------------ summary
    def info(self, max_errors: int = 20) -> CollectionInfo:
        """Counts, sizes, the index and recent errors, for ``lookalike info``."""
        return CollectionInfo.of(self._storage, max_errors)

