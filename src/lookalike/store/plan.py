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
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from ..errors import UnreadableImage
from ..images.discover import FoundFile, is_unreadable_reason
from ..pipeline.embed import Prepared, prepare_image
from ..sources.base import SourceItem
from .metadata import ItemRow

__all__ = ["Action", "Job", "Planned", "KnownVector", "Planner", "Fetch", "PartDone", "changed_files", "gone_rows",
           "file_hash"]

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


#: ``(path, size, mtime_ns, items)`` of a source part (a tar shard) to record as done.
PartDone = tuple[str, int, int, int]


class Fetched(Protocol):
    """What a URL fetch returns (:class:`lookalike.sources.download.Fetched`)."""

    data: bytes
    width: int
    height: int


#: Fetches a URL, raising UnreadableImage with the reason when it cannot.
Fetch = Callable[[str], Fetched]


@dataclass(frozen=True)
class Job:
    """An item to look at, and its stored row if its path is already in the collection.

    ``part_done`` is set on the last job of a source part that is recorded once committed.
    """

    file: SourceItem
    row: ItemRow | None
    part_done: PartDone | None = None


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


def changed_files(found: Iterable[SourceItem], known: Mapping[str, ItemRow],
                  retry_failed: bool) -> tuple[list[Job], int]:
    """``(jobs, unchanged)``: the items whose size or mtime differ from their row (or that
    failed before, with ``retry_failed``), and how many are unchanged. A URL already in the
    collection is unchanged: URLs are taken as immutable (their bytes are cached anyway)."""
    jobs: list[Job] = []
    unchanged = 0
    for f in found:
        row = known.get(f.path)
        same = row is not None and (f.size < 0 or (row.size == f.size and row.mtime_ns == f.mtime_ns))
        if same and (row.status == "ok" or not retry_failed):  # type: ignore[union-attr]
            unchanged += 1
        else:
            jobs.append(Job(f, row))
    return jobs, unchanged


def gone_rows(known: Mapping[str, ItemRow], found: Iterable[FoundFile | SourceItem],
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
    """The worker step: read, hash and, when needed, decode and preprocess one item.

    Runs in the decode threads (or a Ray worker); ``known`` (hash -> vector row) is only
    read here and only written by the main thread, between batches. ``fetch`` reads URLs.
    """

    def __init__(self, known: dict[str, KnownVector], transform: Callable[[Any], np.ndarray], min_side: int,
                 fetch: Fetch | None = None) -> None:
        self.known = known
        self.transform = transform
        self.min_side = min_side
        self.fetch = fetch

    def _read(self, job: Job) -> tuple[Job, bytes | str, tuple[int, int] | None]:
        """``(job, bytes or a path to stream, original size of a fetched image)``; raises
        UnreadableImage. A fetched URL's job gets the size of the bytes it stored."""
        f = job.file
        if f.data is not None:
            return job, f.data, None
        if f.kind == "url":
            if self.fetch is None:
                raise UnreadableImage(f.path, "URLs need a download folder; pass one (--download-dir)")
            fetched = self.fetch(f.path)
            job = replace(job, file=replace(f, size=len(fetched.data)))
            return job, fetched.data, (fetched.width, fetched.height)
        if f.size > IN_MEMORY_BYTES:
            return job, f.path, None
        try:
            with open(f.path, "rb") as fh:
                return job, fh.read(), None
        except OSError as exc:
            raise UnreadableImage(f.path, f"cannot read: {exc.strerror or exc}") from None

    def __call__(self, job: Job) -> Prepared[Planned]:
        try:
            job, data, original = self._read(job)
            digest = (hashlib.blake2b(data, digest_size=16).hexdigest() if isinstance(data, bytes)
                      else file_hash(data))
        except OSError as exc:
            return Prepared.failed(Planned(job, Action.FAIL), UnreadableImage(job.file.path,
                                                                              f"cannot read: {exc.strerror or exc}"))
        except UnreadableImage as exc:
            return Prepared.failed(Planned(job, Action.FAIL), exc)
        row = job.row
        if row is not None and row.status == "ok" and row.hash == digest:
            return Prepared(Planned(job, Action.TOUCH, digest))
        if digest in self.known:
            return Prepared(Planned(job, Action.REUSE, digest, self.known[digest]))
        prepared = prepare_image(Planned(job, Action.EMBED, digest), data, self.transform, min_side=self.min_side,
                                 name=job.file.path, traits=True)
        if prepared.error is not None:
            prepared.item.action = Action.FAIL
        elif original is not None:
            prepared.width, prepared.height = original  # the image as published, not the cached resize
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
