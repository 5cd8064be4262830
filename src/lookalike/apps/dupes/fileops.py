"""The file operations behind resolving duplicates, each one safe on its own.

Every function here either completes or leaves the file system as it found it (apart
from empty folders it made, which it reports so undo can remove them):

* :func:`move_file` never overwrites: a hard link to the destination then an unlink of the
  source on one file system; across file systems (``EXDEV``) a copy into a file opened
  with ``O_EXCL``, fsynced, its hash checked, and only then the source unlinked. A partial
  copy is always removed.
* :func:`replace_with_link` links the kept file to a temp name in the duplicate's folder and
  renames that over the duplicate, so the duplicate's path never goes missing.
* :func:`restore_copy` puts a separate copy back where a link stood (undo of a link).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path
from typing import Sequence

from ...store.plan import file_hash

__all__ = ["file_hash", "fsync_dir", "make_dirs", "move_file", "replace_with_link", "restore_copy",
           "same_file", "temp_name", "remove_empty", "failure_reason", "Exists", "HashMismatch"]

_CHUNK = 1 << 20


class Exists(FileExistsError):
    """The destination is taken: the step is skipped, nothing was touched."""


class HashMismatch(OSError):
    """A copy's bytes differ from its source's (a failing disk, or the source changed while copied)."""


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the creation, rename or removal of an entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> list[str]:
    """``mkdir -p path``; returns the folders it created, outermost first (each one's parent
    is fsynced, so the folder survives a power cut)."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    made: list[str] = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue  # made meanwhile by someone else: not ours to remove later
        made.append(str(d))
        fsync_dir(d.parent)
    return made


def same_file(a: str, b: str) -> bool:
    """True when both paths exist and are the same inode (a hard link of each other)."""
    try:
        sa, sb = os.stat(a, follow_symlinks=False), os.stat(b, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def temp_name(path: str) -> str:
    """A fresh hidden name next to ``path`` (same folder, so a rename over ``path`` is atomic)."""
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.lookalike-{secrets.token_hex(4)}.tmp")


def move_file(src: str, dst: str, digest: str) -> str:
    """Move ``src`` to ``dst`` without ever overwriting; returns ``"link"`` (same file system)
    or ``"copy"`` (across file systems, the copy's hash checked against ``digest``).

    The destination's folder must exist. Raises :class:`Exists` when ``dst`` is taken (nothing
    touched), :class:`HashMismatch` when a copy does not match (copy removed, source kept),
    and ``OSError`` for anything else (a partial copy removed, the source kept).
    """
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError as exc:
        raise Exists(errno.EEXIST, "destination exists", dst) from exc
    except OSError as exc:
        # EXDEV: another file system; EPERM/ENOTSUP/EMLINK: one that refuses hard links here.
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EOPNOTSUPP):
            raise
        _copy_exclusive(src, dst, digest)
        method = "copy"
    else:
        method = "link"
    try:
        fsync_dir(os.path.dirname(dst))
        os.unlink(src)
    except BaseException:
        # The source is still there: take the new name away again, so nothing is duplicated.
        # A hard link shares the source's inode; a verified copy is a second copy. Either way
        # unlinking dst loses nothing.
        os.unlink(dst)
        raise
    _fsync_after(os.path.dirname(src))
    return method


def _fsync_after(folder: str) -> None:
    """fsync a folder once the operation is complete: past that point a failure must not
    read as "nothing changed" (the journal would then say the step failed while it happened),
    so an error here is not raised; the change is made, only its durability is in doubt."""
    try:
        fsync_dir(folder)
    except OSError:
        pass


def _copy_exclusive(src: str, dst: str, digest: str | None) -> None:
    """Copy ``src`` into a new file ``dst`` (``O_EXCL``), with its mode and times, fsynced and
    (given ``digest``) verified; on any failure ``dst`` is removed."""
    st = os.stat(src)
    try:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, st.st_mode & 0o7777)
    except FileExistsError as exc:
        raise Exists(errno.EEXIST, "destination exists", dst) from exc
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, _CHUNK)
            out.flush()
            os.fsync(out.fileno())
        _copy_owner(st, dst)  # first: chown may clear set-id bits that copystat then restores
        shutil.copystat(src, dst, follow_symlinks=False)
        if digest is not None and file_hash(dst) != digest:
            raise HashMismatch(errno.EIO, f"the copy's bytes differ from {src}'s (expected blake2b {digest})", dst)
    except BaseException:
        _remove_quietly(dst)
        raise


def replace_with_link(dup: str, kept: str, kind: str, tmp: str) -> None:
    """Replace the file ``dup`` by a hard link (``kind="hardlink"``) or an absolute symbolic link
    (``"symlink"``) to ``kept``: made at the free name ``tmp`` beside ``dup``, then renamed over
    it, so ``dup`` is at every moment either the old file or the link. ``tmp`` is removed on
    failure."""
    try:
        if kind == "hardlink":
            os.link(kept, tmp, follow_symlinks=False)
        else:
            os.symlink(os.path.abspath(kept), tmp)
        os.replace(tmp, dup)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_after(os.path.dirname(dup))


def restore_copy(source: str, path: str, digest: str, mode: int, mtime_ns: int, tmp: str) -> None:
    """Put a separate file back at ``path`` (where a link now stands) with the bytes of
    ``source``, checked against ``digest``, and the given mode and modification time."""
    _copy_exclusive(source, tmp, digest)
    try:
        os.chmod(tmp, mode & 0o7777)
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_after(os.path.dirname(path))


def failure_reason(exc: BaseException, path: str) -> str:
    """One line for a failed file operation: the file, the reason, the fix."""
    where = getattr(exc, "filename", None) or path
    if isinstance(exc, FileNotFoundError):
        return f"{where}: vanished (no such file) while acting on it; nothing was changed for this file — " \
               f"re-index the collection and run again"
    if isinstance(exc, PermissionError):
        return f"{where}: permission denied; nothing was changed for this file — give write access to its " \
               f"folder (and the destination's) and run again"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"{where}: no space left on the device; the partial copy was removed and the original kept — " \
               f"free some space and run again"
    if isinstance(exc, HashMismatch):
        return f"{where}: {exc.strerror}; the copy was removed and the original kept — check the disk and run again"
    if isinstance(exc, OSError):
        return f"{where}: {exc.strerror or exc}; nothing was changed for this file"
    return f"{where}: {exc}"


def _copy_owner(st: os.stat_result, dst: str) -> None:
    try:
        os.chown(dst, st.st_uid, st.st_gid)
    except PermissionError:
        pass  # not root: the copy belongs to whoever runs this, as any copy would


def remove_empty(folders: Sequence[str]) -> None:
    """Remove the folders a step made, innermost first, where they are still empty."""
    for d in reversed(folders):
        try:
            os.rmdir(d)
        except OSError:
            break  # not empty (or gone): leave it and its parents


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
