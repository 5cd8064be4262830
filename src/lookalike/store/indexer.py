"""Incremental indexing: bring a collection up to date with folders on disk.

The plan for each file found, cheapest first:

1. same path, size and mtime as stored -> unchanged, nothing read;
2. otherwise read and hash it (blake2b-128); same hash as its own row -> only the stat
   fields are updated ("touched");
3. a hash already embedded anywhere in the collection -> reuse that vector row: this is
   how renames and copies cost no embedding;
4. else decode, preprocess and embed.

Rows from folders that were scanned but whose files are gone are swept at the end. Work is
committed in batches (vectors fsynced first, then one SQLite transaction), so a run killed
at any moment loses at most the uncommitted batch and the next run picks up from there.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from ..errors import UnreadableImage
from ..images.decode import decode_image
from ..images.discover import FoundFile, discover, is_unreadable_reason
from ..images.transforms import PreprocessConfig, build_transform
from ..pipeline.embed import Prepared, embed_prepared
from ..pipeline.loader import ordered_map
from ..progress import ProgressCallback, ProgressEvent
from .ann import refresh_index
from .metadata import ItemRow

if TYPE_CHECKING:
    from .ann import IndexSettings
    from .collection import Collection

__all__ = ["AddReport", "index_paths", "file_hash"]

#: Files up to this size are read once into memory (hash and decode share the bytes).
IN_MEMORY_BYTES = 64 * 1024 * 1024
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
    symlink loops, unreadable folders).
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


def file_hash(path: str, chunk: int = 1 << 20) -> str:
    """blake2b-128 hex digest of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


Job = tuple[FoundFile, "ItemRow | None"]


def index_paths(
    coll: "Collection",
    paths: Sequence[str | os.PathLike[str]],
    *,
    exclude: Sequence[str] = (),
    batch_size: int | None = None,
    workers: int | None = None,
    retry_failed: bool = False,
    progress: ProgressCallback | None = None,
    index: "IndexSettings | None" = None,
) -> AddReport:
    """Implementation of :meth:`Collection.add`."""
    t0 = time.perf_counter()
    emit = progress or (lambda event: None)
    report = AddReport()
    roots = [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in paths]

    def on_skip(path: str, reason: str) -> None:
        report.skipped.append((path, reason))
        emit(ProgressEvent("skip", path=path, reason=reason))

    def unseen(path: str, unreadable: set[str]) -> bool:
        """True for a path discovery could not read, or one below such a folder."""
        while True:
            if path in unreadable:
                return True
            parent = os.path.dirname(path)
            if parent == path:
                return False
            path = parent

    with coll.write_lock():
        found: list[FoundFile] = []
        for f in discover(roots, exclude=exclude, on_skip=on_skip):
            found.append(f)
            if len(found) % 1000 == 0:
                emit(ProgressEvent("scan", done=len(found)))
        emit(ProgressEvent("scan", done=len(found), total=len(found)))

        # Only roots that could be read are swept: an unmounted drive must not empty the collection.
        readable_roots = [r for r in roots if os.path.exists(r)]
        known = coll.db.items_under(readable_roots)
        todo: list[Job] = []
        for f in found:
            row = known.get(f.path)
            if row is not None and row.size == f.size and row.mtime_ns == f.mtime_ns and (
                row.status == "ok" or not retry_failed
            ):
                report.unchanged += 1
            else:
                todo.append((f, row))
        found_paths = {f.path for f in found}
        # Only files positively missing from a folder that was listed are gone: rows under a
        # folder that could not be read (permissions, a flaky mount) are kept as they are.
        gone = [row for path, row in known.items() if path not in found_paths]
        # (A folder skipped as already visited was read under another path, so rows below it
        # may still be swept.)
        unreadable = {p for p, reason in report.skipped if is_unreadable_reason(reason)}
        if gone and unreadable:
            gone = [row for row in gone if not unseen(row.path, unreadable)]
        if todo:
            _process(coll, todo, gone, report, emit, batch_size=batch_size, workers=workers)
        if gone:
            with coll.db.transaction():
                coll.db.delete_ids(row.id for row in gone)
            report.removed = len(gone)
            coll.invalidate_cache()
        garbage = coll.vector_rows - len(coll.db.referenced_vec_rows())
        if garbage >= COMPACT_MIN_ROWS and garbage > COMPACT_GARBAGE_SHARE * coll.vector_rows:
            coll.compact()
        if index is not None:
            coll.set_index_state(index, coll.manifest.index_state)
        refresh_index(coll)
    report.seconds = time.perf_counter() - t0
    emit(ProgressEvent("done", done=report.total_seen, total=report.total_seen))
    return report


def _process(
    coll: "Collection",
    todo: list[Job],
    gone: list[ItemRow],
    report: AddReport,
    emit: ProgressCallback,
    *,
    batch_size: int | None,
    workers: int | None,
) -> None:
    preprocess = PreprocessConfig.from_dict(coll.manifest.model["preprocess"])
    transform = build_transform(preprocess)
    min_side = preprocess.min_decode_side
    hashes = coll.db.hash_index()  # shared with the workers; only the main thread writes to it
    gone_hashes = {row.hash for row in gone if row.hash and row.status == "ok"}

    def prepare(job: Job) -> Prepared[Job]:
        f, row = job
        try:
            if f.size <= IN_MEMORY_BYTES:
                with open(f.path, "rb") as fh:
                    data: bytes | str = fh.read()
                digest = hashlib.blake2b(data, digest_size=16).hexdigest()  # type: ignore[arg-type]
            else:
                data, digest = f.path, file_hash(f.path)
        except OSError as exc:
            return Prepared.failed(job, UnreadableImage(f.path, f"cannot read: {exc.strerror or exc}"))
        if row is not None and row.status == "ok" and row.hash == digest:
            return Prepared(job, extra={"hash": digest, "touch": True})
        if digest in hashes:
            return Prepared(job, extra={"hash": digest, "reuse": hashes[digest]})
        try:
            decoded = decode_image(data, min_side=min_side, name=f.path)
            pixels = transform(decoded.image)
        except UnreadableImage as exc:
            return Prepared.failed(job, exc, hash=digest)
        return Prepared(job, pixels=pixels, width=decoded.width, height=decoded.height, extra={"hash": digest})

    # The model is loaded only when the first batch of pixels is ready, so a run that only
    # finds renames or touched files never pays for it.
    def embed(pixels: np.ndarray) -> np.ndarray:
        return coll.model.embed_pixels(pixels)

    if batch_size is None:
        batch_size = 32 if coll._model is None or coll.model.device.type == "cpu" else 128

    rows: list[tuple[Any, ...]] = []
    touched: list[tuple[int, int, int]] = []
    vectors: list[np.ndarray] = []
    next_row = coll.vector_rows
    last_commit = time.monotonic()

    def commit() -> None:
        nonlocal next_row, last_commit
        if vectors:
            coll.vectors_file.append(np.stack(vectors), next_row)
        with coll.db.transaction():
            coll.db.upsert(rows)
            coll.db.touch(touched)
            coll.db.set_state("vector_rows", str(next_row + len(vectors)))
        next_row += len(vectors)
        rows.clear()
        touched.clear()
        vectors.clear()
        last_commit = time.monotonic()
        coll.invalidate_cache()

    def skip_repeats(items: Iterable[Prepared[Job]]) -> Iterator[Prepared[Job]]:
        """Drop the pixels of a file whose content an earlier file of this run brings too.

        Workers prepare files ahead of the loop below, so a copy decoded before its original's
        vector was registered in ``hashes`` would be embedded again; marked here, in order, it
        reuses the original's row instead.
        """
        seen: set[str] = set()
        for item in items:
            digest = item.extra.get("hash")
            if item.pixels is not None and digest is not None:
                if digest in seen:
                    item.pixels = None
                    item.extra["same_as_earlier"] = True
                seen.add(digest)
            yield item

    prepared = skip_repeats(ordered_map(prepare, todo, workers=workers, prefetch=batch_size * 2))
    for done, (p, vec) in enumerate(embed_prepared(embed, prepared, batch_size=batch_size), start=1):
        f, row = p.item
        digest = p.extra.get("hash")
        if p.error is not None:
            rows.append((f.path, f.size, f.mtime_ns, digest, None, None, "failed", p.error.reason, None))
            report.failed.append((f.path, p.error.reason))
            emit(ProgressEvent("skip", path=f.path, reason=p.error.reason))
        elif p.extra.get("touch"):
            assert row is not None
            touched.append((f.size, f.mtime_ns, row.id))
            report.unchanged += 1
        elif "reuse" in p.extra or p.extra.get("same_as_earlier"):
            # (an earlier file of this run with the same content has registered its row by now)
            vec_row, width, height = p.extra["reuse"] if "reuse" in p.extra else hashes[digest]
            rows.append((f.path, f.size, f.mtime_ns, digest, width, height, "ok", None, vec_row))
            if row is not None:
                report.updated += 1
            elif digest in gone_hashes:
                report.renamed += 1
            else:
                report.copied += 1
        else:
            vec_row = next_row + len(vectors)
            vectors.append(vec)
            rows.append((f.path, f.size, f.mtime_ns, digest, p.width, p.height, "ok", None, vec_row))
            hashes[digest] = (vec_row, p.width, p.height)  # later copies in this run reuse it
            report.embedded += 1
            if row is None:
                report.added += 1
            else:
                report.updated += 1
        emit(ProgressEvent("embed", done=done, total=len(todo), path=f.path))
        if len(rows) + len(touched) >= COMMIT_EVERY_FILES or time.monotonic() - last_commit > COMMIT_EVERY_SECONDS:
            commit()
    commit()
