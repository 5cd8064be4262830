"""Indexing with the work done elsewhere (Ray workers): the library side of ``--ray``.

The driver plans each part of the source exactly as the local indexer does
(:func:`~.indexer.part_jobs`), hands the pending jobs to an executor, and writes each
part's results as a Parquet shard with a done-marker (:mod:`.shards`) as they arrive. A
merge then feeds the shards, in part order, through the same
:class:`~.batch.CommitBatch` the local indexer uses, so both give the same ids, rows and
vectors. Merging runs while later parts are still being computed, so the driver holds only
the jobs of the parts in between, never the results of the whole run.

The executor (:class:`PartExecutor`) is the only thing that knows about Ray: the runner in
:mod:`lookalike.distributed.runner` runs :func:`prepare_jobs` as CPU tasks and
:class:`PartEmbedder` as an actor pool; :class:`LocalExecutor` runs both in this process.

Crash safety: a shard counts only once its marker is written; the merge commits through
``CommitBatch`` (vectors fsynced before the rows that refer to them). A rerun re-plans
every part against the collection, so items committed before a crash are unchanged now and
skipped; the pending ones come from their part's shard when it is done and still matches
the inputs, and are recomputed otherwise. The work folder is removed after a complete merge.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

from ..errors import UnreadableImage
from ..images.traits import ImageTraits
from ..images.transforms import PreprocessConfig, build_transform
from ..pipeline.embed import Prepared
from ..pipeline.loader import ordered_map
from ..progress import ProgressCallback, ProgressEvent
from ..sources.base import Source
from ..sources.folder import FolderSource
from .batch import CommitBatch
from .model_files import lazy_model
from .indexer import (AddReport, LazyFetch, finish_add, folder_total, part_jobs, record_download, scan_folders,
                      skip_recorder)
from .plan import Action, Job, KnownVector, Planned, Planner
from .shards import WORK_DIR, Record, ShardRow, ShardStore, rows_by_path, run_token

if TYPE_CHECKING:
    from ..index.ondisk import MapFn
    from ..sources.download import DownloadSettings
    from .ann import IndexSettings
    from .collection import Collection

__all__ = ["PartExecutor", "LocalExecutor", "PartEmbedder", "prepare_jobs", "add_remote", "MAX_WINDOW"]

#: Parts planned but not yet merged, at most (their jobs wait on the driver; the results are on disk).
MAX_WINDOW = 64


def prepare_jobs(jobs: Sequence[Job], preprocess: dict[str, Any],
                 download: "DownloadSettings | None" = None) -> tuple[list[Record], np.ndarray]:
    """The worker step for a list of jobs: read, hash, decode and preprocess each
    (:class:`~.plan.Planner` with no known hashes: the merge turns a known one into a reuse).

    Returns the records, in job order, and the pixels of the embedded ones stacked
    ``(n, 3, H, W)`` (an empty array when none needs embedding). Failures are records.
    """
    config = PreprocessConfig.from_dict(preprocess)
    fetch = LazyFetch(download) if download is not None else None
    planner = Planner({}, build_transform(config), config.min_decode_side, fetch)
    # URLs wait on the network: fetch them in threads. Files decode on this task's one CPU.
    workers = download.concurrency if download is not None and any(j.file.kind == "url" for j in jobs) else 1
    records: list[Record] = []
    pixels: list[np.ndarray] = []
    try:
        for p in ordered_map(planner, jobs, workers=workers, prefetch=max(2, workers)):
            records.append(_record(p))
            if p.item.action is Action.EMBED:
                pixels.append(p.pixels)  # type: ignore[arg-type]
    finally:
        if fetch is not None:
            fetch.close()
    size = config.size
    stacked = np.stack(pixels) if pixels else np.empty((0, 3, size, size), dtype=np.float32)
    return records, stacked


def _record(p: Prepared[Planned]) -> Record:
    planned = p.item
    return Record(planned.action.value, planned.digest, p.width, p.height,
                  p.error.reason if p.error is not None else None, planned.job.file.size,
                  p.traits.to_dict() if p.traits is not None else None)


class PartEmbedder:
    """The model, loaded once (per Ray actor), mapping stacked pixels to vectors in batches.

    Raises:
        CollectionMismatch: the model's weights or preprocessing differ from the collection's.
    """

    def __init__(self, model: dict[str, Any], *, owner: str, device: str | None = None,
                 batch_size: int = 32, threads: int | None = None, runtime: str | None = None) -> None:
        if threads is not None:
            import torch  # already imported by any model; set before the model loads

            # A Ray worker starts with one thread per CPU it reserved; a CPU actor shares its
            # node with the decode tasks the way the local pipeline's threads share a machine.
            torch.set_num_threads(threads)
        # ``model`` is the manifest's model entry: it says how an int8 model must run, and
        # where the collection keeps it (a worker reads it there, as it reads the images).
        self.model = lazy_model(Path(owner), model, device=device, runtime=runtime).get()
        self.batch_size = batch_size

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """``(n, 3, H, W)`` pixels -> ``(n, dim)`` float32 vectors, normalised."""
        if not len(pixels):
            return np.empty((0, self.model.dim), dtype=np.float32)
        parts = [self.model.embed_pixels(pixels[i:i + self.batch_size])
                 for i in range(0, len(pixels), self.batch_size)]
        return np.concatenate(parts).astype(np.float32, copy=False)


class PartExecutor(Protocol):
    """Runs parts' jobs somewhere; results come back in any order."""

    #: Parts submitted whose results have not been taken yet.
    pending: int

    def submit(self, index: int, jobs: Sequence[Job]) -> None:
        """Start work on part ``index`` (its jobs in order)."""
        ...

    def busy(self) -> bool:
        """True when no more parts should be submitted until :meth:`wait` returns."""
        ...

    def wait(self) -> list[tuple[int, list[Record], np.ndarray]]:
        """Wait until some work finished; the parts now complete (maybe none):
        ``(index, records in job order, vectors of the embedded records)``."""
        ...


class LocalExecutor:
    """An executor that does the work in this process, at submit time (tests, no cluster)."""

    def __init__(self, embedder: PartEmbedder, preprocess: dict[str, Any],
                 download: "DownloadSettings | None" = None) -> None:
        self.embedder = embedder
        self.preprocess = preprocess
        self.download = download
        self._done: list[tuple[int, list[Record], np.ndarray]] = []

    @property
    def pending(self) -> int:
        return len(self._done)

    def submit(self, index: int, jobs: Sequence[Job]) -> None:
        records, pixels = prepare_jobs(jobs, self.preprocess, self.download)
        self._done.append((index, records, self.embedder.embed(pixels)))

    def busy(self) -> bool:
        return bool(self._done)

    def wait(self) -> list[tuple[int, list[Record], np.ndarray]]:
        done, self._done = self._done, []
        return done


@dataclass
class _Planned:
    index: int
    jobs: list[Job]
    ready: bool = False


@dataclass
class _Merger:
    """Parts in source order, merged into the batch as soon as the first ones are on disk."""

    batch: CommitBatch
    shards: ShardStore
    emit: ProgressCallback
    total: int | None
    window: deque[_Planned] = field(default_factory=deque)
    by_index: dict[int, _Planned] = field(default_factory=dict)
    merged: int = 0

    def add(self, index: int, jobs: list[Job], ready: bool) -> None:
        # Tar members carry their bytes: the workers have them now, the merge needs only the keys.
        light = [replace(j, file=replace(j.file, data=None)) if j.file.data is not None else j for j in jobs]
        planned = _Planned(index, light, ready)
        self.window.append(planned)
        self.by_index[index] = planned

    def done(self, index: int, records: list[Record], vectors: np.ndarray) -> None:
        planned = self.by_index[index]
        self.shards.write(index, planned.jobs, records, vectors)
        planned.ready = True

    def take(self, finished: list[tuple[int, list[Record], np.ndarray]]) -> None:
        """Write the shards of parts just finished, then merge what is ready."""
        for index, records, vectors in finished:
            self.done(index, records, vectors)
        self.merge_ready()

    def merge_ready(self) -> None:
        while self.window and self.window[0].ready:
            planned = self.window.popleft()
            del self.by_index[planned.index]
            self._merge(planned)

    def _merge(self, planned: _Planned) -> None:
        rows = rows_by_path(self.shards.read(planned.index))
        for job in planned.jobs:
            row = _take(rows, job)
            p, vec = _prepared(job, row.record, row.vector)
            self.batch.apply(p, vec, self.emit)
            self.merged += 1
            self.emit(ProgressEvent("embed", done=self.merged, total=self.total, path=job.file.path))
            self.batch.commit_if_due()


def _take(rows: dict[str, list[ShardRow]], job: Job) -> ShardRow:
    """The shard row of ``job``: same path and mtime, and size unless a URL's; each row once."""
    f = job.file
    candidates = rows[f.path]
    for i, row in enumerate(candidates):
        if row.mtime_ns == f.mtime_ns and (f.size < 0 or row.record.size == f.size):
            return candidates.pop(i) if len(candidates) > 1 else row
    raise AssertionError(f"{f.path}: no row in its part's shard (ShardStore.covers checks this)")


def _prepared(job: Job, rec: Record, vector: np.ndarray | None) -> tuple[Prepared[Planned], np.ndarray | None]:
    """A shard row as the local pipeline would have handed it to the batch."""
    if rec.size != job.file.size:
        job = replace(job, file=replace(job.file, size=rec.size))  # a fetched URL's bytes
    action = Action(rec.action)
    planned = Planned(job, action, rec.digest)
    error = UnreadableImage(job.file.path, rec.error) if action is Action.FAIL else None
    traits = ImageTraits.from_dict(rec.traits)
    return Prepared(planned, error=error, width=rec.width, height=rec.height, traits=traits), vector


def add_remote(collection: "Collection", source: Source, executor: PartExecutor, *, retry_failed: bool = False,
               progress: ProgressCallback | None = None, index: "IndexSettings | None" = None,
               download: "DownloadSettings | None" = None, map_fn: "MapFn" = map) -> AddReport:
    """:meth:`Collection.add` with the reading, decoding and embedding done by ``executor``.

    Same result as the local indexer on the same inputs (ids, rows, vectors up to float
    rounding), and as safe to interrupt; see the module docstring for resuming. ``download``
    is where the executor's workers cache URL items (recorded for the server's thumbnails,
    as the local indexer does); ``map_fn`` encodes an on-disk index's chunks (see
    :func:`~.indexer.finish_add`).

    Raises:
        CollectionError: another process is adding to this collection.
    """
    storage = collection._storage
    t0 = time.perf_counter()
    emit = progress or (lambda event: None)
    report = AddReport()
    manifest = storage.manifest
    shards = ShardStore(storage.path / WORK_DIR / run_token(source.label, manifest), manifest.dim)
    with storage.write_lock():
        if download is not None and not isinstance(source, FolderSource):
            record_download(storage, download)
        known, gone = scan_folders(storage, source, report, emit)
        hashes = {h: KnownVector(*v) for h, v in storage.db.hash_index().items()}
        batch = CommitBatch(storage, hashes, report, {row.hash for row in gone if row.hash and row.status == "ok"})
        merger = _Merger(batch, shards, emit, folder_total(source, known, retry_failed))
        on_skip = skip_recorder(report, emit)
        for part in source.parts(on_skip):
            jobs = part_jobs(storage, part, batch, retry_failed, on_skip, known)
            if not jobs:
                continue
            ready = shards.covers(part.index, jobs, retry_failed=retry_failed)
            if not ready:
                executor.submit(part.index, jobs)
            merger.add(part.index, jobs, ready)
            merger.merge_ready()
            while executor.pending and (executor.busy() or len(merger.window) >= MAX_WINDOW):
                merger.take(executor.wait())
        while executor.pending:
            merger.take(executor.wait())
        merger.merge_ready()
        assert not merger.window, "every planned part is merged"
        batch.commit()
        finish_add(storage, gone, report, collection._model, index, map_fn=map_fn)
    shards.remove()
    report.seconds = time.perf_counter() - t0
    emit(ProgressEvent("done", done=report.total_seen, total=report.total_seen))
    return report
