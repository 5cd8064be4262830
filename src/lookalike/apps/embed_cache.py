"""Image vectors cached per model fingerprint and file content hash, shared by evaluate, train
and distill, so that a re-run (or a run with one more model) embeds only what is new.

One SQLite file per model fingerprint under ``cache_dir()/embeddings``: a table of content
hash -> float32 vector, and the speed and peak memory measured the last time that model
embedded a batch of images (the largest such batch wins, as the steadier figure). SQLite in
WAL mode lets several processes read and write one file at once; every chunk of vectors is
committed (and fsynced) as it is embedded, so an interrupted run keeps its work.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from ..errors import InvalidArgument, UnreadableImage
from ..models.cache import cache_dir
from ..progress import ProgressCallback, ProgressEvent
from .labelled import LabelledSet

if TYPE_CHECKING:
    from ..models.base import EmbeddingModel  # torch: imported only where a model is used

__all__ = ["Embedded", "EmbeddingCache", "rss_mb", "MemoryPeak"]

#: Misses are embedded and committed this many at a time: an interruption loses at most one chunk.
CHUNK = 256

EmbedFn = Callable[[list[Path]], np.ndarray]


@dataclass(frozen=True)
class Embedded:
    """Vectors for the images asked for, in their order, and what producing them cost.

    ``embedded`` counts the images embedded by this call (the rest came from the cache);
    ``seconds`` is the time this call spent embedding them. ``images_per_second`` and
    ``peak_memory_mb`` are the model's measurement (this call's, or the cached one when this
    call embedded fewer images than the run that measured it); None when never measured.
    Peak memory is the process's resident memory above its level before embedding began
    (or above ``baseline_mb``, when given), sampled every 20 ms.
    """

    vectors: np.ndarray
    embedded: int
    seconds: float
    images_per_second: float | None
    peak_memory_mb: float | None
    #: Images that could not be read or decoded, as ``(path, reason)``: their rows are NaN (a
    #: bad file never ends the run, nor is it cached: it is tried again next time).
    failed: tuple[tuple[Path, str], ...] = ()
    #: Which rows hold a vector; None when all do.
    readable: np.ndarray | None = None

    @property
    def cached(self) -> int:
        """How many of the vectors came from the cache."""
        return len(self.vectors) - self.embedded - len(self.failed)

    @property
    def ok(self) -> np.ndarray:
        """A boolean mask of the rows that hold a vector (False for :attr:`failed` images)."""
        return np.ones(len(self.vectors), dtype=bool) if self.readable is None else self.readable


def rss_mb() -> float | None:
    """This process's resident memory in MB, or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil  # not a dependency: used where /proc is missing (macOS, Windows) if installed
    except ImportError:
        return None
    return float(psutil.Process().memory_info().rss) / 1e6


class MemoryPeak:
    """Samples :func:`rss_mb` in a thread while the ``with`` block runs; :attr:`peak_mb` is the
    highest reading above ``baseline_mb`` (default: the reading on entry)."""

    def __init__(self, baseline_mb: float | None = None, interval: float = 0.02) -> None:
        self.baseline_mb = baseline_mb
        self.interval = interval
        self._max: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "MemoryPeak":
        now = rss_mb()
        if self.baseline_mb is None:
            self.baseline_mb = now
        self._max = now
        if now is not None:
            self._thread = threading.Thread(target=self._sample, name="lookalike-rss", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            now = rss_mb()
            if now is not None and self._max is not None:
                self._max = max(self._max, now)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        now = rss_mb()
        if now is not None and self._max is not None:
            self._max = max(self._max, now)

    @property
    def peak_mb(self) -> float | None:
        if self._max is None or self.baseline_mb is None:
            return None
        return max(0.0, self._max - self.baseline_mb)


class EmbeddingCache:
    """Image vectors on disk, keyed by (model fingerprint, content hash)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "embeddings"

    def path_for(self, key: str) -> Path:
        """The SQLite file holding one model's (or baseline's) vectors."""
        return self.root / f"{key}.sqlite"

    def embed(self, model: "EmbeddingModel", images: Sequence[tuple[Path, str]] | LabelledSet, *,
              batch_size: int = 32, progress: ProgressCallback | None = None,
              baseline_mb: float | None = None) -> Embedded:
        """Vectors of ``images`` (``(path, content hash)`` pairs, or a labelled set) from
        ``model``, in input order: cached ones read back, only the misses embedded.

        An fp32 head model (``BASE+head:DIR``) takes its base's vectors (cached, or embedded and
        cached under the base) through the head: evaluating a head trained on vectors this cache
        holds decodes no image, and a base and its heads decode each image once.
        """
        if _is_head_model(model) and model.precision == "fp32":
            return self._through_head(model, images, batch_size=batch_size, progress=progress,
                                      baseline_mb=baseline_mb)

        def fn(paths: list[Path]) -> np.ndarray:
            return model.encode_images(paths, batch_size=batch_size)

        def build_engine() -> None:
            # The first use of a runtime exports the model and, for auto, times the runtimes
            # (seconds, once per machine): part of the peak memory, not of images/s.
            if hasattr(type(model), "engine"):  # an EmbeddingModel (tests pass simpler stand-ins)
                model.engine  # noqa: B018 - the property builds it

        return self.embed_with(model.fingerprint(), fn, images, dim=model.dim, progress=progress,
                               baseline_mb=baseline_mb, name=model.model_id, prepare=build_engine)

    def _through_head(self, model: "EmbeddingModel", images: Sequence[tuple[Path, str]] | LabelledSet, *,
                      batch_size: int, progress: ProgressCallback | None, baseline_mb: float | None) -> Embedded:
        from dataclasses import replace

        from ..models.head import apply_head

        got = self.embed(model.base, images, batch_size=batch_size, progress=progress,  # type: ignore[attr-defined]
                         baseline_mb=baseline_mb)
        head = model.head  # type: ignore[attr-defined]
        if head.config.kind == "text":  # a text head leaves the image vectors as they are
            return got
        vectors = np.full((len(got.vectors), head.config.out_dim), np.nan, dtype=np.float32)
        if got.ok.any():
            vectors[got.ok] = apply_head(head, got.vectors[got.ok])
        return replace(got, vectors=vectors)

    def embed_with(self, key: str, fn: EmbedFn, images: Sequence[tuple[Path, str]] | LabelledSet, *,
                   dim: int | None = None, progress: ProgressCallback | None = None,
                   baseline_mb: float | None = None, name: str = "",
                   prepare: Callable[[], None] | None = None) -> Embedded:
        """:meth:`embed` for any function of paths -> float32 rows (a baseline such as colour
        histograms), cached under ``key`` (which must change whenever its vectors would).
        ``prepare`` runs once before any miss is embedded, outside the timing."""
        pairs = [(im.path, im.hash) for im in images.images] if isinstance(images, LabelledSet) else list(images)
        with self._connect(key) as db:
            found = _read(db, [h for _, h in pairs])
            todo: dict[str, Path] = {}
            for path, h in pairs:
                if h not in found and h not in todo:
                    todo[h] = Path(path)  # one copy of each missing file is enough
            failed: dict[str, str] = {}
            seconds, peak = self._embed_missing(db, fn, todo, found, failed, progress, baseline_mb, prepare)
            if len(todo) > len(failed):
                _store_measurement(db, len(todo) - len(failed), seconds, peak, name)
            speed, memory = _measurement(db)
        width = dim if dim is not None else (len(next(iter(found.values()))) if found else 0)
        missing = np.full(width, np.nan, dtype=np.float32)
        vectors = (np.stack([found.get(h, missing) for _, h in pairs]) if pairs
                   else np.zeros((0, width), np.float32))
        bad = tuple((Path(path), failed[h]) for path, h in pairs if h in failed)
        readable = np.array([h not in failed for _, h in pairs], dtype=bool) if failed else None
        return Embedded(vectors.astype(np.float32, copy=False), len(todo) - len(failed), seconds, speed, memory, bad,
                        readable)

    def _embed_missing(self, db: sqlite3.Connection, fn: EmbedFn, todo: dict[str, Path],
                       found: dict[str, np.ndarray], failed: dict[str, str], progress: ProgressCallback | None,
                       baseline_mb: float | None, prepare: Callable[[], None] | None) -> tuple[float, float | None]:
        items = list(todo.items())
        with MemoryPeak(baseline_mb) as peak:
            if items and prepare is not None:
                prepare()
            start = time.perf_counter()
            for begin in range(0, len(items), CHUNK):
                chunk = items[begin:begin + CHUNK]
                good, vectors = _embed_chunk(fn, chunk, failed, progress)
                with db:  # one transaction per chunk
                    db.executemany("INSERT OR REPLACE INTO vectors (hash, vector) VALUES (?, ?)",
                                   [(h, v.tobytes()) for (h, _), v in zip(good, vectors)])
                found.update((h, v) for (h, _), v in zip(good, vectors))
                if progress is not None:
                    progress(ProgressEvent("embed", done=begin + len(chunk), total=len(items)))
        return time.perf_counter() - start, peak.peak_mb

    @contextmanager
    def _connect(self, key: str) -> Iterator[sqlite3.Connection]:
        path = self.path_for(key)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            try:
                db = _open(path)
            except sqlite3.DatabaseError as exc:
                # Only a file that is not a database (damaged, or foreign) may be dropped: a busy or
                # unwritable one (OperationalError, also a DatabaseError) is another process's live cache.
                if isinstance(exc, sqlite3.OperationalError) or "not a database" not in str(exc):
                    raise
                for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                    stale.unlink(missing_ok=True)
                db = _open(path)
        except (OSError, sqlite3.Error) as exc:
            raise _unusable(self.root, exc) from None
        with closing(db):
            try:
                yield db
            except sqlite3.Error as exc:  # a full disk, a file damaged while in use
                raise _unusable(self.root, exc) from None


def _is_head_model(model: object) -> bool:
    if not hasattr(model, "head"):  # no import of torch for the stand-ins tests use
        return False
    from ..models.head_model import HeadModel

    return isinstance(model, HeadModel)


def _embed_chunk(fn: EmbedFn, chunk: list[tuple[str, Path]], failed: dict[str, str],
                 progress: ProgressCallback | None) -> tuple[list[tuple[str, Path]], np.ndarray]:
    """The chunk's vectors in one call; when an image in it cannot be read, one image at a time,
    so the bad ones are left out (recorded in ``failed``, reported as ``skip`` events) and the
    rest still embed. Returns the images that embedded and their vectors."""
    try:
        return chunk, np.asarray(fn([p for _, p in chunk]), dtype=np.float32)
    except UnreadableImage:
        pass
    good, rows = [], []
    for h, path in chunk:
        try:
            rows.append(np.asarray(fn([path]), dtype=np.float32)[0])
            good.append((h, path))
        except UnreadableImage as exc:
            failed[h] = exc.reason
            if progress is not None:
                progress(ProgressEvent("skip", path=str(path), reason=exc.reason))
    return good, (np.stack(rows) if rows else np.zeros((0, 0), np.float32))


def _unusable(root: Path, exc: Exception) -> InvalidArgument:
    reason = getattr(exc, "strerror", None) or exc
    return InvalidArgument(f"cannot use the embedding cache {root}: {reason}. Make it writable (and give it room), "
                           "or point $LOOKALIKE_CACHE at a writable folder.")


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=60.0)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a committed chunk survives a power cut
        with db:
            db.execute("CREATE TABLE IF NOT EXISTS vectors (hash TEXT PRIMARY KEY, vector BLOB NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS measurement (id INTEGER PRIMARY KEY CHECK (id = 0), "
                       "images INTEGER, seconds REAL, peak_mb REAL, name TEXT, at REAL)")
    except BaseException:
        db.close()
        raise
    return db


def _read(db: sqlite3.Connection, hashes: list[str]) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    unique = list(dict.fromkeys(hashes))
    for begin in range(0, len(unique), 500):  # under SQLite's limit on bound parameters
        part = unique[begin:begin + 500]
        rows = db.execute(f"SELECT hash, vector FROM vectors WHERE hash IN ({','.join('?' * len(part))})", part)
        found.update((h, np.frombuffer(blob, dtype=np.float32)) for h, blob in rows)
    return found


def _store_measurement(db: sqlite3.Connection, images: int, seconds: float, peak: float | None, name: str) -> None:
    row = db.execute("SELECT images FROM measurement WHERE id = 0").fetchone()
    if row is not None and row[0] is not None and row[0] > images:
        return  # a larger run measured this model: its figure is the steadier one
    with db:
        db.execute("INSERT OR REPLACE INTO measurement (id, images, seconds, peak_mb, name, at) "
                   "VALUES (0, ?, ?, ?, ?, ?)", (images, seconds, peak, name, time.time()))


def _measurement(db: sqlite3.Connection) -> tuple[float | None, float | None]:
    row = db.execute("SELECT images, seconds, peak_mb FROM measurement WHERE id = 0").fetchone()
    if row is None:
        return None, None
    images, seconds, peak = row
    speed = images / seconds if images and seconds and seconds > 0 else None
    return speed, peak
