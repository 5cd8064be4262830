"""Incremental indexing: bring a collection up to date with a source (folders, a file list, a
table, WebDataset shards, URLs).

:mod:`.plan` decides what each item needs (nothing, a stat update, a reused vector, an
embedding); this module runs the plan: the source's parts, read lazily, the decode threads,
batched embedding, and commits through :class:`~.batch.CommitBatch`. Rows from folders that
were scanned but whose files are gone are swept at the end. A run killed at any moment
loses at most the uncommitted batch and the next run picks up from there.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..errors import InvalidArgument
from ..fsutil import user_path
from ..images.transforms import PreprocessConfig, build_transform
from ..pipeline.embed import embed_prepared
from ..pipeline.loader import default_workers, ordered_map
from ..progress import ProgressCallback, ProgressEvent
from ..models.lazy import LazyModel
from ..sources.base import MEMBER_SEPARATOR, Part, SkipCallback, Source, SourceItem
from ..sources.folder import FolderSource
from .ann import IndexSettings, refresh_index
from .batch import CommitBatch
from .item_bytes import DOWNLOAD_DIR_STATE, DOWNLOAD_MAX_SIDE_STATE
from .metadata import ItemRow
from .plan import Fetch, Job, KnownVector, Planner, changed_files, gone_rows, reuse_repeats

if TYPE_CHECKING:
    from ..index.ondisk import MapFn
    from ..sources.download import Downloader, DownloadSettings
    from .storage import Storage

__all__ = ["AddReport", "index_paths", "index_source", "pending_jobs", "part_jobs", "require_roots", "finish_add",
           "default_download", "LazyFetch",
           "scan_folders", "skip_recorder", "folder_total", "record_download"]
#: Compact the vector file when more than this share of its rows is unreferenced.
COMPACT_GARBAGE_SHARE = 0.3
COMPACT_MIN_ROWS = 1000


@dataclass
class AddReport:
    """What one :meth:`Collection.add` did.

    ``failed`` and ``skipped`` hold ``(path, reason)``: ``failed`` are files that could not be
    decoded in this run, ``skipped`` are entries discovery passed over (broken links,
    symlink loops, unreadable folders, roots that do not exist).
    """

    added: int = 0
    updated: int = 0
    renamed: int = 0
    copied: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    embedded: int = 0
    seconds: float = 0.0

    @property
    def total_seen(self) -> int:
        return self.added + self.updated + self.renamed + self.copied + self.unchanged + len(self.failed)


def require_roots(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The paths in stored form; at least one must exist (one missing among several is only
    a skip, reported by the add).

    Raises:
        InvalidArgument: no path given, or none of them exists (a mistyped folder).
    """
    roots = [user_path(p) for p in paths]
    if not roots:
        raise InvalidArgument("nothing to index: give at least one folder or image file")
    if not any(os.path.exists(r) for r in roots):
        listed = ", ".join(roots)
        raise InvalidArgument(f"{listed}: no such folder or file; check the path (nothing was indexed)")
    return roots


def index_paths(storage: "Storage", paths: Sequence[str | os.PathLike[str]], *, exclude: Sequence[str] = (),
                **settings: object) -> AddReport:
    """Implementation of :meth:`Collection.add` for folders and image files."""
    return index_source(storage, FolderSource(require_roots(paths), exclude=exclude), **settings)  # type: ignore[arg-type]


def default_download(collection: "os.PathLike[str] | str") -> "DownloadSettings":
    """Download settings that cache fetched images in the collection's ``downloads`` folder."""
    from ..sources.download import DownloadSettings

    return DownloadSettings(cache_dir=Path(collection) / "downloads")


def record_download(storage: "Storage", download: "DownloadSettings") -> None:
    """Record where (and at what size) URL items are cached: the server reads their
    thumbnails from this cache, and never fetches."""
    storage.db.set_state(DOWNLOAD_DIR_STATE, os.fspath(download.cache_dir))
    storage.db.set_state(DOWNLOAD_MAX_SIDE_STATE, str(download.max_side or "none"))


class LazyFetch:
    """A :class:`~lookalike.sources.download.Downloader` made at the first URL (a folder
    source never needs httpx); callable from many threads."""

    def __init__(self, settings: "DownloadSettings") -> None:
        self.settings = settings
        self._downloader: "Downloader | None" = None
        self._lock = threading.Lock()

    def __call__(self, url: str) -> Any:
        with self._lock:
            if self._downloader is None:
                from ..sources.download import Downloader

                self._downloader = Downloader(self.settings)
        return self._downloader.fetch(url)

    def close(self) -> None:
        if self._downloader is not None:
            self._downloader.close()


def index_source(storage: "Storage", source: Source, *, model: LazyModel, batch_size: int,
                 workers: int | None = None, retry_failed: bool = False, progress: ProgressCallback | None = None,
                 index: IndexSettings | None = None, download: "DownloadSettings | None" = None) -> AddReport:
    """Implementation of :meth:`Collection.add`; ``model`` loads only when the first batch
    of pixels is ready, so a run that finds only renames never loads it. URLs are fetched
    under ``download`` (without it, a URL item fails and says so)."""
    fetch = None
    if download is not None and not isinstance(source, FolderSource):
        fetch = LazyFetch(download)
        record_download(storage, download)
        if workers is None:
            workers = max(default_workers(), download.concurrency)  # threads mostly wait on the network
    try:
        return _index(storage, source, model=model, batch_size=batch_size, workers=workers,
                      retry_failed=retry_failed, progress=progress, index=index, fetch=fetch)
    finally:
        if fetch is not None:
            fetch.close()


def _index(storage: "Storage", source: Source, *, model: LazyModel, batch_size: int, workers: int | None,
           retry_failed: bool, progress: ProgressCallback | None, index: IndexSettings | None,
           fetch: Fetch | None) -> AddReport:
    t0 = time.perf_counter()
    emit = progress or (lambda event: None)
    report = AddReport()
    with storage.write_lock():
        known, gone = scan_folders(storage, source, report, emit)
        preprocess = PreprocessConfig.from_dict(storage.manifest.model["preprocess"])
        hashes = {h: KnownVector(*v) for h, v in storage.db.hash_index().items()}
        batch = CommitBatch(storage, hashes, report,
                            {row.hash for row in gone if row.hash and row.status == "ok"})
        jobs = pending_jobs(storage, source, batch, retry_failed, emit, known)
        planner = Planner(hashes, build_transform(preprocess), preprocess.min_decode_side, fetch)
        prepared = reuse_repeats(ordered_map(planner, jobs, workers=workers, prefetch=batch_size * 2))

        def embed(pixels: np.ndarray) -> np.ndarray:
            return model.get().embed_pixels(pixels)

        total = folder_total(source, known, retry_failed)
        def on_gpu() -> bool:  # batches reach a GPU from pinned memory; asked once there is a batch
            return model.get().device.type == "cuda"

        for done, (p, vec) in enumerate(embed_prepared(embed, prepared, batch_size=batch_size, pin_memory=on_gpu),
                                        start=1):
            batch.apply(p, vec, emit)
            emit(ProgressEvent("embed", done=done, total=total, path=p.item.job.file.path))
            batch.commit_if_due()
        batch.commit()
        finish_add(storage, gone, report, model, index)
    report.seconds = time.perf_counter() - t0
    emit(ProgressEvent("done", done=report.total_seen, total=report.total_seen))
    return report


def finish_add(storage: "Storage", gone: list[ItemRow], report: AddReport, model: LazyModel,
               index: IndexSettings | None, *, map_fn: "MapFn" = map) -> None:
    """After the items are committed: sweep vanished files, compact, refresh the index
    (``map_fn`` encodes an on-disk index's chunks: a Ray run passes a map over Ray tasks)."""
    if gone:
        storage.commit_vectors(None, lambda: storage.db.delete_ids(row.id for row in gone))
        report.removed += len(gone)
    garbage = storage.vector_rows - len(storage.db.referenced_vec_rows())
    if garbage >= COMPACT_MIN_ROWS and garbage > COMPACT_GARBAGE_SHARE * storage.vector_rows:
        storage.compact()
    if index is not None:
        storage.record_index(index, storage.index_state())  # refresh rebuilds for new settings
    refresh_index(storage, model, map_fn=map_fn)


def scan_folders(storage: "Storage", source: Source, report: AddReport,
                  emit: ProgressCallback) -> tuple[dict[str, ItemRow] | None, list[ItemRow]]:
    """For a folder source: walk it, and find the rows of files gone from the folders.
    ``(rows under the folders, gone rows)``; ``(None, [])`` for other sources."""
    if not isinstance(source, FolderSource):
        return None, []

    def on_found(n: int) -> None:
        if n % 1000 == 0:
            emit(ProgressEvent("scan", done=n))

    found = source.scan(skip_recorder(report, emit), on_found)
    emit(ProgressEvent("scan", done=len(found), total=len(found)))
    known = storage.db.items_under(list(source.sweep_folders))
    return known, gone_rows(known, found, report.skipped)


def folder_total(source: Source, known: dict[str, ItemRow] | None, retry_failed: bool) -> int | None:
    """How many files of a folder source need work (the progress total); None for other sources."""
    if not isinstance(source, FolderSource) or known is None:
        return None
    items = (SourceItem(f.path, f.size, f.mtime_ns) for f in source.found)
    return len(changed_files(items, known, retry_failed)[0])


def skip_recorder(report: AddReport, emit: ProgressCallback) -> SkipCallback:
    def on_skip(path: str, reason: str) -> None:
        report.skipped.append((path, reason))
        emit(ProgressEvent("skip", path=path, reason=reason))
    return on_skip


def pending_jobs(storage: "Storage", source: Source, batch: CommitBatch, retry_failed: bool,
                 emit: ProgressCallback, known: dict[str, ItemRow] | None = None) -> Iterator[Job]:
    """The jobs of every part, in order, read lazily (so a table of any length streams).

    A part recorded as done under the same key is skipped unread; unchanged items are
    counted (and their metadata refreshed); the last job of a keyed part carries the key,
    which is recorded when that job is committed.
    """
    on_skip = skip_recorder(batch.report, emit)
    for part in source.parts(on_skip):
        jobs = part_jobs(storage, part, batch, retry_failed, on_skip, known)
        if jobs is not None:
            yield from jobs


def _refresh_meta(storage: "Storage", items: list[SourceItem], rows: dict[str, ItemRow], pending: set[str],
                  batch: CommitBatch) -> None:
    """Store the metadata of unchanged items whose table row changed (a rerun over an
    unchanged table reads the stored metadata, one query a part, and writes nothing)."""
    unchanged = [(item, rows[item.path]) for item in items
                 if item.meta is not None and item.path not in pending and item.path in rows]
    if not unchanged:
        return
    stored = storage.db.meta.get([row.id for _, row in unchanged])
    for item, row in unchanged:
        if stored.get(row.id, {}) != dict(item.meta):  # type: ignore[arg-type]
            batch.add_meta(item.path, item.meta)  # type: ignore[arg-type]


def part_jobs(storage: "Storage", part: Part, batch: CommitBatch, retry_failed: bool,
              on_skip: SkipCallback, known: dict[str, ItemRow] | None = None) -> list[Job] | None:
    """The jobs of one part (None: skipped whole); the Ray runner plans parts with it too.

    A keyed part (a tar shard) read to its end is recorded as done once its last job is
    committed, and its members that are gone from it are removed. One cut short (truncated,
    damaged) is neither: the next run reads it again and reports the damage again.
    """
    key = part.key
    if key is not None and storage.db.meta.part_done(key.path, key.size, key.mtime_ns) and not retry_failed:
        batch.report.unchanged += storage.db.meta.part_items(key.path)
        return None
    cut_short = False

    def watch(path: str, reason: str) -> None:
        nonlocal cut_short
        cut_short = cut_short or (key is not None and path == key.path)
        on_skip(path, reason)

    items = list(part.read(watch))
    rows = known if known is not None else storage.db.rows_for_paths([i.path for i in items])
    jobs, unchanged = changed_files(items, rows, retry_failed)
    batch.report.unchanged += unchanged
    _refresh_meta(storage, items, rows, {job.file.path for job in jobs}, batch)
    if key is None or cut_short:
        return jobs
    held = {item.path for item in items}
    batch.remove([row for path, row in storage.db.rows_with_prefix(key.path + MEMBER_SEPARATOR).items()
                  if path not in held])
    done = (key.path, key.size, key.mtime_ns, len(items))
    if jobs:
        jobs[-1] = replace(jobs[-1], part_done=done)
    else:
        batch.add_part(done)
    return jobs
