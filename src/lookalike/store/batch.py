"""Rows and vectors waiting for the next commit: the one place indexing writes a collection.

The local indexer and the Ray merge both feed :class:`CommitBatch` the planned items with
their vectors, in source order, so both give the same ids, rows and vectors. Each commit
appends and fsyncs the vectors first, then writes the rows that refer to them in one SQLite
transaction: a run killed at any moment loses at most the uncommitted batch.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..images.traits import ImageTraits
from ..pipeline.embed import Prepared
from ..progress import ProgressCallback, ProgressEvent
from .assign import assign_pending
from .plan import Action, KnownVector, PartDone, Planned

if TYPE_CHECKING:
    from .indexer import AddReport
    from .metadata import ItemRow
    from .storage import Storage

__all__ = ["CommitBatch", "COMMIT_EVERY_FILES", "COMMIT_EVERY_SECONDS"]

#: Commit after this many files or this many seconds, whichever comes first.
COMMIT_EVERY_FILES = 1024
COMMIT_EVERY_SECONDS = 5.0


class CommitBatch:
    """Applies planned items to pending rows and vectors, and commits them.

    ``known`` maps content hashes to vector rows; the planner threads read it, only this
    (main) thread writes it. An item planned for embedding whose content is known by the
    time it is applied (an earlier copy in the same run, or a worker that could not know)
    reuses the known vector, so copies never add a vector row.
    """

    def __init__(self, storage: "Storage", known: dict[str, KnownVector], report: "AddReport",
                 gone_hashes: set[str]) -> None:
        self.storage = storage
        self.known = known
        self.report = report
        self.gone_hashes = gone_hashes
        self.rows: list[tuple[Any, ...]] = []
        self.touched: list[tuple[int, int, int]] = []
        self.traits: list[tuple[ImageTraits, str]] = []
        self.meta: list[tuple[str, Mapping[str, Any]]] = []
        self.parts: list[PartDone] = []
        self.removed: list[int] = []
        self.reused = False
        self.vectors: list[np.ndarray] = []
        self.next_row = storage.vector_rows
        self.last_commit = time.monotonic()

    def apply(self, p: Prepared[Planned], vec: np.ndarray | None, emit: ProgressCallback) -> None:
        planned = p.item
        if planned.action is Action.EMBED and planned.digest in self.known:
            planned.action, planned.reuse = Action.REUSE, self.known[planned.digest]  # type: ignore[index]
        f = planned.job.file
        if planned.action is Action.FAIL:
            assert p.error is not None
            self.rows.append((f.path, max(f.size, 0), f.mtime_ns, planned.digest, None, None, "failed",
                              p.error.reason, None))
            self.report.failed.append((f.path, p.error.reason))
            emit(ProgressEvent("skip", path=f.path, reason=p.error.reason))
        elif planned.action is Action.TOUCH:
            assert planned.job.row is not None
            self.touched.append((f.size, f.mtime_ns, planned.job.row.id))
            self.report.unchanged += 1
        elif planned.action is Action.REUSE:
            self._reuse(planned)
        else:
            self._embed(p, vec)
        if f.meta is not None:  # a touched file's table row may have changed too
            self.meta.append((f.path, f.meta))
        if planned.job.part_done is not None:
            self.parts.append(planned.job.part_done)

    def _reuse(self, planned: Planned) -> None:
        f, report = planned.job.file, self.report
        # (reuse is None for a repeat within this run: the earlier item registered its row by now)
        known = planned.reuse or self.known[planned.digest]  # type: ignore[index]
        self.rows.append((f.path, f.size, f.mtime_ns, planned.digest, known.width, known.height, "ok", None,
                          known.vec_row))
        self.reused = True  # its traits are copied from the row it shares content with
        if planned.job.row is not None:
            report.updated += 1
        elif planned.digest in self.gone_hashes:
            report.renamed += 1
        else:
            report.copied += 1

    def _embed(self, p: Prepared[Planned], vec: np.ndarray | None) -> None:
        planned, report = p.item, self.report
        f = planned.job.file
        assert vec is not None, f"{f.path}: planned for embedding but no vector came back"
        vec_row = self.next_row + len(self.vectors)
        self.vectors.append(vec)
        self.rows.append((f.path, f.size, f.mtime_ns, planned.digest, p.width, p.height, "ok", None, vec_row))
        if p.traits is not None:
            self.traits.append((p.traits, f.path))
        self.known[planned.digest] = KnownVector(vec_row, p.width, p.height)  # type: ignore[index]
        report.embedded += 1
        if planned.job.row is None:
            report.added += 1
        else:
            report.updated += 1

    def add_meta(self, path: str, meta: Mapping[str, Any]) -> None:
        """Store metadata of an unchanged item (a table's columns may change without the image)."""
        self.meta.append((path, meta))

    def add_part(self, part: PartDone) -> None:
        """Record a part none of whose items needed work (they are all committed already)."""
        self.parts.append(part)

    def remove(self, rows: "list[ItemRow]") -> None:
        """Delete these rows at the next commit (members gone from a shard that was re-read)."""
        self.removed += [row.id for row in rows]
        self.report.removed += len(rows)

    def commit_if_due(self) -> None:
        pending = len(self.rows) + len(self.touched) + len(self.meta)
        if pending >= COMMIT_EVERY_FILES or time.monotonic() - self.last_commit > COMMIT_EVERY_SECONDS:
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
            db.meta.set(self.meta)
            db.meta.mark_parts(self.parts)
            db.delete_ids(self.removed)

        if self.rows or self.touched or self.meta or self.parts or self.vectors or self.removed:
            self.storage.commit_vectors(np.stack(self.vectors) if self.vectors else None, write)
            # New items join the stored clustering and labelling now (a cheap product with the
            # stored centroids and prototypes); an interruption leaves them pending for later.
            assign_pending(self.storage)
        self.next_row += len(self.vectors)
        self.rows, self.touched, self.vectors, self.traits, self.reused = [], [], [], [], False
        self.meta, self.parts, self.removed = [], [], []
        self.last_commit = time.monotonic()
