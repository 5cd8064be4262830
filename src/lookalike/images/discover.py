"""Finding image files under folders.

Walks recursively in a stable (sorted) order, skips hidden and excluded folders, follows
symbolic links while refusing to enter a folder twice (so link loops terminate), and
reports every skipped entry through a callback instead of printing. Folders reached through
a symbolic link are walked after every real folder under the roots, so a folder that is
also linked from elsewhere is found under its own path rather than the link's.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from ..fsutil import user_path
from .decode import avif_via_libvips, heif_available

__all__ = [
    "FoundFile",
    "IMAGE_EXTENSIONS",
    "HEIF_EXTENSIONS",
    "DEFAULT_EXCLUDES",
    "discover",
    "is_image_name",
    "is_unreadable_reason",
]

#: Extensions Pillow reads out of the box.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".tga"}
)
#: Extensions that need the ``heif`` extra (pillow-heif).
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".avif"})
#: Folder names never worth indexing: OS metadata, thumbnails caches, lookalike collections.
DEFAULT_EXCLUDES: tuple[str, ...] = ("@eaDir", "__MACOSX", "$RECYCLE.BIN", "node_modules", "*.lkl")

SkipCallback = Callable[[str, str], None]

#: Reasons that start with this mean "could not be read", as opposed to "chose to pass over":
#: an indexer must not take the files under such a path for deleted.
UNREADABLE_PREFIX = "cannot "


def is_unreadable_reason(reason: str) -> bool:
    """True for an ``on_skip`` reason saying the path could not be read (stat or listing failed)."""
    return reason.startswith(UNREADABLE_PREFIX)


@dataclass(frozen=True)
class FoundFile:
    """An image file found on disk, with the stat fields incremental indexing compares."""

    path: str
    size: int
    mtime_ns: int


def is_image_name(name: str, extensions: frozenset[str] | None = None) -> bool:
    """True when ``name`` has an image extension lookalike will try to read."""
    exts = extensions if extensions is not None else _default_extensions()
    return os.path.splitext(name)[1].lower() in exts


def _default_extensions() -> frozenset[str]:
    if heif_available():
        return IMAGE_EXTENSIONS | HEIF_EXTENSIONS
    # Without pillow-heif, libvips may still read AVIF (not HEIC: the wheel has no HEVC decoder).
    return IMAGE_EXTENSIONS | {".avif"} if avif_via_libvips() else IMAGE_EXTENSIONS


def discover(
    roots: Iterable[str | os.PathLike[str]],
    *,
    exclude: Sequence[str] = (),
    include_hidden: bool = False,
    follow_symlinks: bool = True,
    extensions: frozenset[str] | None = None,
    on_skip: SkipCallback | None = None,
) -> Iterator[FoundFile]:
    """Yield the image files under ``roots``, each once, in sorted order per folder.

    Args:
        roots: folders to walk, or single files (always yielded, whatever their extension).
        exclude: glob patterns matched against each folder or file name and against its
            path relative to the root (``"raw"``, ``"*.tmp"``, ``"2019/*"``); added to
            :data:`DEFAULT_EXCLUDES`.
        include_hidden: also walk names starting with ``.``.
        follow_symlinks: follow links to files and folders; folders already visited
            (by device and inode) are not entered again, which breaks link loops. Linked
            folders are walked last, so a real folder keeps its own path.
        extensions: lower-case extensions to accept (default: Pillow's, plus HEIC/AVIF
            when pillow-heif is installed).
        on_skip: called as ``on_skip(path, reason)`` for each entry passed over for a
            reason a user may care about (broken link, loop, permission denied).
    """
    walker = _Walker(
        extensions if extensions is not None else _default_extensions(),
        tuple(DEFAULT_EXCLUDES) + tuple(exclude), include_hidden, follow_symlinks,
        on_skip or (lambda path, reason: None),
    )
    for root in roots:
        root_path = user_path(root)
        try:
            st = os.stat(root_path)
        except OSError as exc:
            walker.skip(root_path, f"{UNREADABLE_PREFIX}access: {exc.strerror or exc}")
            continue
        if not os.path.isdir(root_path):
            if root_path not in walker.seen_files:
                walker.seen_files.add(root_path)
                yield FoundFile(root_path, st.st_size, st.st_mtime_ns)
            continue
        yield from walker.walk(root_path, root_path)
    # Walking a linked folder may find more links; those join the end of the queue.
    i = 0
    while i < len(walker.linked):
        root_path, folder = walker.linked[i]
        i += 1
        yield from walker.walk(root_path, folder)


class _Walker:
    """One :func:`discover` run: its options, and what it has seen so far."""

    def __init__(self, extensions: frozenset[str], patterns: tuple[str, ...], include_hidden: bool,
                 follow_symlinks: bool, skip: SkipCallback) -> None:
        self.extensions = extensions
        self.patterns = patterns
        self.include_hidden = include_hidden
        self.follow_symlinks = follow_symlinks
        self.skip = skip
        self.seen_dirs: set[tuple[int, int]] = set()
        self.seen_files: set[str] = set()
        # Folders reached through a link wait until every real folder of every root has been
        # walked: otherwise a link sorting before its target would claim the target's files
        # and the real folder would be reported as a duplicate.
        self.linked: list[tuple[str, str]] = []

    def walk(self, root_path: str, start: str) -> Iterator[FoundFile]:
        """Depth first from ``start``, sub-folders in sorted order; files as they are listed."""
        stack: list[str] = [start]
        while stack:
            folder = stack.pop()
            entries = self._list(folder)
            subdirs: list[str] = []
            for entry in entries:
                found = self._entry(entry, root_path, subdirs)
                if found is not None and found.path not in self.seen_files:
                    self.seen_files.add(found.path)
                    yield found
            # Reverse so the stack pops sub-folders in sorted order.
            stack.extend(reversed(subdirs))

    def _list(self, folder: str) -> list[os.DirEntry[str]]:
        """The folder's entries by name; none for a folder already visited or unreadable."""
        try:
            fst = os.stat(folder)
        except OSError as exc:
            self.skip(folder, f"{UNREADABLE_PREFIX}access: {exc.strerror or exc}")
            return []
        key = (fst.st_dev, fst.st_ino)
        if key in self.seen_dirs:
            self.skip(folder, "folder already visited (symlink loop or duplicate link); skipped")
            return []
        self.seen_dirs.add(key)
        try:
            with os.scandir(folder) as it:
                return sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.skip(folder, f"{UNREADABLE_PREFIX}list folder: {exc.strerror or exc}")
            return []

    def _entry(self, entry: os.DirEntry[str], root_path: str, subdirs: list[str]) -> FoundFile | None:
        """The image file ``entry`` is, or None; a folder is queued in ``subdirs`` or :attr:`linked`."""
        name = entry.name
        if not self.include_hidden and name.startswith("."):
            return None
        rel = os.path.relpath(entry.path, root_path)
        if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in self.patterns):
            return None
        try:
            is_link = entry.is_symlink()
            if is_link and not self.follow_symlinks:
                return None
            if entry.is_dir(follow_symlinks=True):
                if is_link:
                    self.linked.append((root_path, entry.path))
                else:
                    subdirs.append(entry.path)
                return None
            if not entry.is_file(follow_symlinks=True):
                if is_link and not os.path.exists(entry.path):
                    self.skip(entry.path, "broken symbolic link")
                return None
            if os.path.splitext(name)[1].lower() not in self.extensions:
                return None
            est = entry.stat(follow_symlinks=True)
        except OSError as exc:
            self.skip(entry.path, f"{UNREADABLE_PREFIX}access: {exc.strerror or exc}")
            return None
        return FoundFile(entry.path, est.st_size, est.st_mtime_ns)
