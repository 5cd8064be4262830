"""What incremental indexing does with each file: the typed plan records and the worker step.

For each file found, cheapest first:

1. same path, size and mtime as stored -> unchanged, nothing read (:func:`changed_files`);
2. otherwise read and hash it (blake2b-128); same hash as its own row -> only the stat
   fields are updated (:attr:`Action.TOUCH`);
3. a hash already embedded anywhere in the collection -> reuse that vector row
   (:attr:`Action.REUSE`): this is how renames and copies cost no embedding;
4. else decode, preprocess and embed (:attr:`Action.EMBED`), or record why it failed
   (:attr:`Action.FAIL`).
"""

from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import UnreadableImage
from ..images.discover import FoundFile, is_unreadable_reason
from ..pipeline.embed import Prepared, prepare_image
from .metadata import ItemRow

__all__ = ["Action", "Job", "Planned", "KnownVector", "Planner", "changed_files", "gone_rows", "file_hash"]

#: Files up to this size are read once into memory (hash and decode share the bytes).
IN_MEMORY_BYTES = 64 * 1024 * 1024


class Action(enum.Enum):
    EMBED = "embed"   # new content: decode, preprocess, embed
    TOUCH = "touch"   # same content as its own row: update size and mtime only
    REUSE = "reuse"   # content embedded elsewhere in the collection: share that vector row
    FAIL = "fail"     # unreadable or undecodable: record the reason


@dataclass(frozen=True)
class KnownVector:
    """An embedded vector row and the size of the image it came from."""

    vec_row: int
    width: int | None
    height: int | None


@dataclass(frozen=True)
class Job:
    """A file to look at, and its stored row if the path is already in the collection."""

    file: FoundFile
    row: ItemRow | None


@dataclass
class Planned:
    """The worker's decision for one job (``reuse`` is set for :attr:`Action.REUSE`)."""

    job: Job
    action: Action
    digest: str | None = None
    reuse: KnownVector | None = None


def file_hash(path: str, chunk: int = 1 << 20) -> str:
    """blake2b-128 hex digest of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def changed_files(found: Iterable[FoundFile], known: Mapping[str, ItemRow],
                  retry_failed: bool) -> tuple[list[Job], int]:
    """``(jobs, unchanged)``: the files whose path, size or mtime differ from their row (or
    that failed before, with ``retry_failed``), and how many are unchanged."""
    jobs: list[Job] = []
    unchanged = 0
    for f in found:
        row = known.get(f.path)
        if row is not None and row.size == f.size and row.mtime_ns == f.mtime_ns and (
            row.status == "ok" or not retry_failed
        ):
            unchanged += 1
        else:
            jobs.append(Job(f, row))
    return jobs, unchanged


def gone_rows(known: Mapping[str, ItemRow], found: Iterable[FoundFile],
              skipped: Sequence[tuple[str, str]]) -> list[ItemRow]:
    """Rows whose files are positively missing from a folder that was listed.

    Rows under a path discovery could not read (permissions, a flaky mount) are kept as they
    are. (A folder skipped as already visited was read under another path, so rows below it
    may still go.)
    """
    found_paths = {f.path for f in found}
    gone = [row for path, row in known.items() if path not in found_paths]
    unreadable = {p for p, reason in skipped if is_unreadable_reason(reason)}
    if gone and unreadable:
        gone = [row for row in gone if not _below_any(row.path, unreadable)]
    return gone


def _below_any(path: str, folders: set[str]) -> bool:
    """True for a path in ``folders``, or below one of them."""
    while True:
        if path in folders:
            return True
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent


class Planner:
    """The worker step: read, hash and, when needed, decode and preprocess one file.

    Runs in the decode threads; ``known`` (hash -> vector row) is only read here and only
    written by the main thread, between batches.
    """

    def __init__(self, known: dict[str, KnownVector], transform: Callable[[Any], np.ndarray], min_side: int) -> None:
        self.known = known
        self.transform = transform
        self.min_side = min_side

    def __call__(self, job: Job) -> Prepared[Planned]:
        f, row = job.file, job.row
        try:
            if f.size <= IN_MEMORY_BYTES:
                with open(f.path, "rb") as fh:
                    data: bytes | str = fh.read()
                digest = hashlib.blake2b(data, digest_size=16).hexdigest()  # type: ignore[arg-type]
            else:
                data, digest = f.path, file_hash(f.path)
        except OSError as exc:
            error = UnreadableImage(f.path, f"cannot read: {exc.strerror or exc}")
            return Prepared.failed(Planned(job, Action.FAIL), error)
        if row is not None and row.status == "ok" and row.hash == digest:
            return Prepared(Planned(job, Action.TOUCH, digest))
        if digest in self.known:
            return Prepared(Planned(job, Action.REUSE, digest, self.known[digest]))
        prepared = prepare_image(Planned(job, Action.EMBED, digest), data, self.transform, min_side=self.min_side,
                                 name=f.path, traits=True)
        if prepared.error is not None:
            prepared.item.action = Action.FAIL
        return prepared


def reuse_repeats(items: Iterable[Prepared[Planned]]) -> Iterator[Prepared[Planned]]:
    """Turn a file whose content an earlier file of this run brings too into a reuse.

    Workers prepare files ahead of the main loop, so a copy decoded before its original's
    vector was registered would be embedded again; marked here, in order, it reuses the
    original's row instead (the main loop resolves the row when it gets there).
    """
    seen: set[str] = set()
    for p in items:
        planned = p.item
        if planned.action is Action.EMBED and planned.digest is not None:
            if planned.digest in seen:
                p.pixels = None
                planned.action = Action.REUSE  # reuse stays None: the earlier file's row
            seen.add(planned.digest)
        yield p
