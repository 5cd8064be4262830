"""A new collection made from another's stored vectors: ``reproject`` applies a head to them.

What is copied: every item row (ids, paths, sizes, hashes, failures), its image traits
(perceptual hashes, sharpness, EXIF date: they come from the pixels, not the vectors), its
metadata (captions, table columns), the finished source parts, where URL items are cached,
the index settings, and the cached thumbnails (keyed by item id and content hash, both kept;
hard-linked where the file system allows, as they are only ever replaced, never edited).
What is not: anything computed from the vectors (clusters, zero-shot labels, map positions,
cached neighbours, the approximate index), since the new vectors differ; the index is
rebuilt, the rest is computed again on demand.

The vectors are written as ``transform(stored vectors)`` a chunk at a time, so memory stays
bounded at any size, and only the rows some item uses are carried over (a compacted file).
No image is read.

Crash safety: everything is built in a hidden folder beside ``out``
(``.NAME.derive-XXXX``) and renamed to ``out`` only once complete, index included, so an
interruption never leaves a collection at ``out``; the hidden folder is removed on any error
(a hard kill may leave it behind, harmless and safe to delete). The source is only read,
inside one database snapshot, so an add running on it meanwhile does not tear the copy.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import CollectionError, CollectionExists, InvalidArgument
from ..fsutil import user_path
from ..images.thumbnails import THUMBNAIL_DIR
from ..models.lazy import LazyModel
from ..progress import ProgressCallback, ProgressEvent
from ..version import __version__
from .ann import build_index
from .exchange import CHUNK_BYTES
from .item_bytes import DOWNLOAD_DIR_STATE, DOWNLOAD_MAX_SIDE_STATE
from .manifest import Manifest
from .metadata import ItemRow
from .model_files import keep_model_files
from .storage import FIRST_VECTOR_FILE, MANIFEST, Storage
from .traits import BACKFILLED

if TYPE_CHECKING:
    from ..models.base import EmbeddingModel
    from .collection import Collection
    from .metadata import MetadataDB

__all__ = ["derive_collection", "check_target", "DeriveReport", "Transform"]

#: Maps a chunk of stored vectors ``(n, source dim)`` to the new ones ``(n, model dim)``.
Transform = Callable[[np.ndarray], np.ndarray]

#: ``state`` keys that describe the items rather than their vectors, carried over as they are.
_COPIED_STATE = (DOWNLOAD_DIR_STATE, DOWNLOAD_MAX_SIDE_STATE, BACKFILLED)
#: Rows read from the source database at a time.
_PAGE = 10_000


@dataclass(frozen=True)
class DeriveReport:
    """What :func:`derive_collection` made: the new collection's folder, how many items it
    holds (``items``: every row; ``embedded``: those with a vector), how many distinct
    vectors were transformed, the new model's id, the index built (None: exact search),
    and the seconds it took."""

    path: Path
    items: int
    embedded: int
    vectors: int
    model_id: str
    index: str | None
    seconds: float


def derive_collection(source: "Collection", out: str | os.PathLike[str], model: "EmbeddingModel",
                      transform: Transform | None = None, *, progress: ProgressCallback | None = None,
                      chunk_rows: int | None = None) -> DeriveReport:
    """Make a new collection at ``out`` for ``model`` whose vectors are ``transform`` applied to
    ``source``'s stored vectors (None: copied unchanged), with ``source``'s items and their
    metadata, and its index rebuilt. ``source`` is only read; no image is decoded.

    ``model`` must be the model whose vectors the transform produces: the new collection
    records it (and keeps its files, see :func:`.model_files.keep_model_files`), and embeds
    images added later with it. Progress is reported as ``derive`` events (vectors done of
    total), then ``done``.

    Raises:
        CollectionExists: ``out`` already holds a collection.
        CollectionError: ``out`` is a file, or a folder that is not empty.
        InvalidArgument: ``out`` lies inside the source collection, or the transform returns
            vectors of the wrong shape or non-finite values.
    """
    t0 = time.perf_counter()
    emit = progress or (lambda event: None)
    target = check_target(source.path, out)
    work = target.parent / f".{target.name}.derive-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        entry = keep_model_files(work, model)
        manifest = Manifest(model=entry, lookalike_version=__version__,
                            index={"settings": source.index_settings.to_dict(), "state": None})
        storage = Storage(work, manifest)
        try:
            counts = _copy(source._storage, storage, model.dim, transform, emit, chunk_rows)
            _link_thumbnails(source.path, work)
            lazy = LazyModel(manifest.model_id, manifest.fingerprint, owner=str(target))
            lazy.use(model)
            build_index(storage, source.index_settings, lazy)  # records the index in the manifest
            manifest.save(work / MANIFEST)
            state = storage.index_state()
        finally:
            storage.close()
        try:
            os.rename(work, target)  # an empty folder at out is replaced; anything else was refused
        except OSError as exc:
            raise CollectionError(f"{target}: cannot put the new collection there ({exc}); something was "
                                  "written to it meanwhile: pick a new path") from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    items, embedded, vectors = counts
    emit(ProgressEvent("done", done=vectors, total=vectors))
    return DeriveReport(target, items, embedded, vectors, manifest.model_id, state.label if state else None,
                        time.perf_counter() - t0)


def check_target(source: Path, out: str | os.PathLike[str]) -> Path:
    """``out`` as an absolute path (its parent made), refused when it holds anything or lies
    inside the ``source`` collection; callers check it before any slow work.

    Raises:
        CollectionExists, CollectionError, InvalidArgument: as :func:`derive_collection`.
    """
    target = Path(user_path(out)).absolute()
    if (target / MANIFEST).exists():
        raise CollectionExists(f"{target}: a collection already exists here; pick a new path for the derived "
                               "collection (it is never written over another)")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CollectionError(f"{target}: exists and is not an empty folder; pick a new path for the derived "
                              "collection")
    if target.resolve() == source.resolve() or source.resolve() in target.resolve().parents:
        raise InvalidArgument(f"{target}: lies inside the source collection {source}, which is never written "
                              "to; pick a path outside it")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _copy(src: Storage, dst: Storage, dim: int, transform: Transform | None, emit: ProgressCallback,
          chunk_rows: int | None) -> tuple[int, int, int]:
    """Copy the vectors (transformed) and then the rows from one snapshot of ``src``;
    ``(items, embedded items, vectors)``."""
    with src.db.snapshot():
        keep = src.db.referenced_vec_rows()
        _write_vectors(src.vectors(), keep, dst.path / FIRST_VECTOR_FILE, dim, transform, emit, chunk_rows)
        with dst.db.transaction():
            items, embedded = _copy_rows(src.db, dst.db, keep)
            for key in _COPIED_STATE:
                value = src.db.get_state(key)
                if value is not None:
                    dst.db.set_state(key, value)
            dst.db.set_state("vector_file", FIRST_VECTOR_FILE)
            dst.db.set_state("vector_rows", str(len(keep)))
            dst.db.bump_generation()
    dst.invalidate()
    return items, embedded, len(keep)


def _link_thumbnails(source: Path, dest: Path) -> None:
    """The source's cached thumbnails, hard-linked (copied across file systems); one that a
    server replaces or removes meanwhile is left out (it is made again on demand)."""
    for path in sorted((source / THUMBNAIL_DIR).rglob("*.jpg")):
        if path.name.startswith("."):
            continue  # an atomic writer's temporary file
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
        except FileNotFoundError:
            continue


def _write_vectors(stored: np.ndarray, keep: np.ndarray, dest: Path, dim: int, transform: Transform | None,
                   emit: ProgressCallback, chunk_rows: int | None) -> None:
    """Write ``transform(stored[keep])`` to ``dest`` a chunk at a time (fsynced at the end)."""
    widest = max(dim, stored.shape[1])
    chunk = chunk_rows or max(1024, min(65536, CHUNK_BYTES // (4 * widest)))
    total = len(keep)
    emit(ProgressEvent("derive", done=0, total=total))
    with open(dest, "wb") as f:
        for start in range(0, total, chunk):
            rows = keep[start : start + chunk]
            vectors = np.asarray(stored[rows], dtype=np.float32)
            if transform is not None:
                vectors = _checked(transform(vectors), len(rows), dim)
            elif vectors.shape[1] != dim:
                raise InvalidArgument(f"the stored vectors have dim {vectors.shape[1]}, the new model {dim}: "
                                      "vectors are copied unchanged only into a model of the same dim")
            f.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
            emit(ProgressEvent("derive", done=start + len(rows), total=total))
        f.flush()
        os.fsync(f.fileno())


def _checked(vectors: np.ndarray, n: int, dim: int) -> np.ndarray:
    out = np.asarray(vectors, dtype=np.float32)
    if out.shape != (n, dim):
        raise InvalidArgument(f"the transform turned {n} vectors into an array of shape {out.shape}, not ({n}, {dim}) "
                              "as the new model's dim says")
    if not np.isfinite(out).all():
        raise InvalidArgument("the transform returned NaN or infinite values; check the head's weights")
    return out


def _copy_rows(src: "MetadataDB", dst: "MetadataDB", keep: np.ndarray) -> tuple[int, int]:
    """Every item row with its traits and metadata, ids kept, vector rows renumbered to the
    compacted file; then the finished source parts and the id counter (ids are never reused)."""
    items = embedded = 0
    page: list[ItemRow] = []
    rows = src.iter_rows(page=_PAGE)
    while True:
        page = [row for _, row in zip(range(_PAGE), rows)]
        if not page:
            break
        ids = [row.id for row in page]
        traits, meta = src.traits(ids), src.meta.get(ids)
        old = np.array([-1 if row.vec_row is None else row.vec_row for row in page], dtype=np.int64)
        new = np.searchsorted(keep, old)
        moved = [ItemRow(*vars(row.public()).values(), vec_row=None if row.vec_row is None else int(n))
                 for row, n in zip(page, new)]
        dst.insert_rows((row, traits.get(row.id)) for row in moved)
        dst.meta.set_by_id(meta.items())
        items += len(page)
        embedded += sum(row.vec_row is not None for row in page)
    parts = src.conn.execute("SELECT path, size, mtime_ns, items FROM source_parts").fetchall()
    dst.meta.mark_parts(parts)
    seq = src.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'items'").fetchone()
    if seq is not None:
        dst.conn.execute("INSERT INTO sqlite_sequence (name, seq) SELECT 'items', ? WHERE NOT EXISTS "
                         "(SELECT 1 FROM sqlite_sequence WHERE name = 'items')", (seq[0],))
        dst.conn.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'items'", (seq[0],))
    return items, embedded
