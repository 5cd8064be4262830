"""Incremental indexing: bring a collection up to date with folders on disk.

:mod:`.plan` decides what each file needs (nothing, a stat update, a reused vector, an
embedding); this module runs the plan: discovery, the decode threads, batched embedding,
and commits. Rows from folders that were scanned but whose files are gone are swept at the
end. Work is committed in batches (vectors fsynced first, then one SQLite transaction), so
a run killed at any moment loses at most the uncommitted batch and the next run picks up
from there.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import InvalidArgument
from ..fsutil import user_path
from ..images.discover import FoundFile, discover
from ..images.traits import ImageTraits
from ..images.transforms import PreprocessConfig, build_transform
from ..pipeline.embed import Prepared, embed_prepared
from ..pipeline.loader import ordered_map
from ..progress import ProgressCallback, ProgressEvent
from ..models.lazy import LazyModel
from .ann import IndexSettings, refresh_index
from .assign import assign_pending
from .metadata import ItemRow
from .plan import Action, Job, KnownVector, Planned, Planner, changed_files, gone_rows, reuse_repeats

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["AddReport", "index_paths", "require_roots"]

#: Commit after this many files or this many seconds, whichever comes first.
COMMIT_EVERY_FILES = 1024
COMMIT_EVERY_SECONDS = 5.0
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


def index_paths(storage: "Storage", paths: Sequence[str | os.PathLike[str]], *,
                model: LazyModel, batch_size: int, workers: int | None = None, exclude: Sequence[str] = (),
                retry_failed: bool = False, progress: ProgressCallback | None = None,
                index: IndexSettings | None = None) -> AddReport:
    """Implementation of :meth:`Collection.add`; ``model`` loads only when the first batch
    of pixels is ready, so a run that finds only renames never loads it."""
    t0 = time.perf_counter()
    emit = progress or (lambda event: None)
    report = AddReport()
    roots = require_roots(paths)
    with storage.write_lock():
        found = _scan(roots, exclude, report, emit)
        # Only roots that could be read are swept: an unmounted drive must not empty the collection.
        known = storage.db.items_under([r for r in roots if os.path.exists(r)])
        jobs, report.unchanged = changed_files(found, known, retry_failed)
        gone = gone_rows(known, found, report.skipped)
        if jobs:
            _run(storage, jobs, gone, report, emit, model=model, batch_size=batch_size, workers=workers)
        if gone:
            storage.commit_vectors(None, lambda: storage.db.delete_ids(row.id for row in gone))
            report.removed = len(gone)
        garbage = storage.vector_rows - len(storage.db.referenced_vec_rows())
        if garbage >= COMPACT_MIN_ROWS and garbage > COMPACT_GARBAGE_SHARE * storage.vector_rows:
            storage.compact()
        if index is not None:
            storage.record_index(index, storage.index_state())  # refresh rebuilds for new settings
        refresh_index(storage, model)
    report.seconds = time.perf_counter() - t0
    emit(ProgressEvent("done", done=report.total_seen, total=report.total_seen))
    return report


def _scan(roots: list[str], exclude: Sequence[str], report: AddReport, emit: ProgressCallback) -> list[FoundFile]:
    def on_skip(path: str, reason: str) -> None:
        report.skipped.append((path, reason))
        emit(ProgressEvent("skip", path=path, reason=reason))

    found: list[FoundFile] = []
    for f in discover(roots, exclude=exclude, on_skip=on_skip):
        found.append(f)
        if len(found) % 1000 == 0:
            emit(ProgressEvent("scan", done=len(found)))
    emit(ProgressEvent("scan", done=len(found), total=len(found)))
    return found


def _run(storage: "Storage", jobs: list[Job], gone: list[ItemRow], report: AddReport, emit: ProgressCallback, *,
         model: LazyModel, batch_size: int, workers: int | None) -> None:
    """Prepare the jobs in the decode threads, embed in batches, apply and commit in order."""
    preprocess = PreprocessConfig.from_dict(storage.manifest.model["preprocess"])
    known = {h: KnownVector(*v) for h, v in storage.db.hash_index().items()}
    planner = Planner(known, build_transform(preprocess), preprocess.min_decode_side)
    batch = _Batch(storage, known, report, {row.hash for row in gone if row.hash and row.status == "ok"})
    prepared = reuse_repeats(ordered_map(planner, jobs, workers=workers, prefetch=batch_size * 2))

    def embed(pixels: np.ndarray) -> np.ndarray:
        return model.get().embed_pixels(pixels)

    for done, (p, vec) in enumerate(embed_prepared(embed, prepared, batch_size=batch_size), start=1):
        batch.apply(p, vec, emit)
        emit(ProgressEvent("embed", done=done, total=len(jobs), path=p.item.job.file.path))
        batch.commit_if_due()
    batch.commit()


class _Batch:
    """Rows and vectors waiting for the next commit, and the bookkeeping of one run."""

    def __init__(self, storage: "Storage", known: dict[str, KnownVector], report: AddReport,
                 gone_hashes: set[str]) -> None:
        self.storage = storage
        self.known = known  # the planner reads it; only this (main) thread writes it
        self.report = report
        self.gone_hashes = gone_hashes
        self.rows: list[tuple[Any, ...]] = []
        self.touched: list[tuple[int, int, int]] = []
        self.traits: list[tuple[ImageTraits, str]] = []
        self.reused = False
        self.vectors: list[np.ndarray] = []
        self.next_row = storage.vector_rows
        self.last_commit = time.monotonic()

    def apply(self, p: Prepared[Planned], vec: np.ndarray | None, emit: ProgressCallback) -> None:
        planned, report = p.item, self.report
        f, row, digest = planned.job.file, planned.job.row, planned.digest
        if planned.action is Action.FAIL:
            assert p.error is not None
            self.rows.append((f.path, f.size, f.mtime_ns, digest, None, None, "failed", p.error.reason, None))
            report.failed.append((f.path, p.error.reason))
            emit(ProgressEvent("skip", path=f.path, reason=p.error.reason))
        elif planned.action is Action.TOUCH:
            assert row is not None
            self.touched.append((f.size, f.mtime_ns, row.id))
            report.unchanged += 1
        elif planned.action is Action.REUSE:
            # (reuse is None for a repeat within this run: the earlier file registered its row by now)
            known = planned.reuse or self.known[digest]  # type: ignore[index]
            self.rows.append((f.path, f.size, f.mtime_ns, digest, known.width, known.height, "ok", None,
                              known.vec_row))
            self.reused = True  # its traits are copied from the row it shares content with
            if row is not None:
                report.updated += 1
            elif digest in self.gone_hashes:
                report.renamed += 1
            else:
                report.copied += 1
        else:
            vec_row = self.next_row + len(self.vectors)
            self.vectors.append(vec)  # type: ignore[arg-type]
            self.rows.append((f.path, f.size, f.mtime_ns, digest, p.width, p.height, "ok", None, vec_row))
            if p.traits is not None:
                self.traits.append((p.traits, f.path))
            self.known[digest] = KnownVector(vec_row, p.width, p.height)  # type: ignore[index]
            report.embedded += 1
            if row is None:
                report.added += 1
            else:
                report.updated += 1

    def commit_if_due(self) -> None:
        if (len(self.rows) + len(self.touched) >= COMMIT_EVERY_FILES
                or time.monotonic() - self.last_commit > COMMIT_EVERY_SECONDS):
            self.commit()

    def commit(self) -> None:
        """Vectors first (fsynced), then the rows that refer to them, in one transaction."""
        db = self.storage.db

        def write() -> None:
            db.upsert(self.rows)
            db.touch(self.touched)
            db.set_traits(self.traits)
            if self.reused:
                db.copy_traits_by_hash()

        self.storage.commit_vectors(np.stack(self.vectors) if self.vectors else None, write)
        # New items join the stored clustering and labelling now (a cheap product with the
        # stored centroids and prototypes); an interruption leaves them pending for later.
        assign_pending(self.storage)
        self.next_row += len(self.vectors)
        self.rows, self.touched, self.vectors, self.traits, self.reused = [], [], [], [], False
        self.last_commit = time.monotonic()
