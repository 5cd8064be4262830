"""File-system helpers: user paths in one normal form, and atomic file replacement."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["atomic_folder", "atomic_writer", "file_digest", "user_path"]


def user_path(path: str | os.PathLike[str]) -> str:
    """A path as the user gave it (``~``, relative, a ``Path``) in the one form stored and
    compared everywhere: absolute, user-expanded, normalised, symlinks left as they are."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def file_digest(path: str | os.PathLike[str]) -> str:
    """The first 16 hex digits of the sha256 of a file's bytes, read 1 MB at a time (what model
    fingerprints record of their weight files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@contextmanager
def atomic_writer(path: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """``with atomic_writer(path) as f: f.write(...)``: written to a temp file in the same
    folder, fsynced, then renamed over ``path``; on any error the temp file is removed and
    ``path`` is untouched. ``durable=False`` skips the fsyncs, for caches that may be lost
    in a power cut but must never be seen half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(path.parent)  # make the rename itself durable


@contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """``with atomic_folder(path) as work: (write files into work)``: the folder is built in a
    hidden work folder beside ``path`` and swapped in whole at the end, so ``path`` holds its
    old files or all the new ones, never a mix; on any error the work folder is removed and
    ``path`` is untouched. An existing folder at ``path`` is replaced (moved aside, then
    deleted: a crash between the two renames leaves it as ``.NAME.*.old`` beside ``path``).
    Write the files with :func:`atomic_writer` to make them durable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".new"))
    try:
        yield work
        old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old") if path.exists() else None
        if old is not None:
            os.rename(path, old)
        os.rename(work, path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
