"""File-system helpers: user paths in one normal form, and atomic file replacement."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["atomic_writer", "user_path"]


def user_path(path: str | os.PathLike[str]) -> str:
    """A path as the user gave it (``~``, relative, a ``Path``) in the one form stored and
    compared everywhere: absolute, user-expanded, normalised, symlinks left as they are."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


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
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
