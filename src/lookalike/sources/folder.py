"""Folders (and single image files): today's source, walked by :func:`lookalike.images.discover`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from ..images.discover import FoundFile, discover
from .base import Part, PartKey, SkipCallback, SourceItem

__all__ = ["FolderSource", "FilesPart", "PART_SIZE"]

#: Items per part: small enough to ship to a worker, large enough to amortise the trip.
PART_SIZE = 256


@dataclass(frozen=True)
class FilesPart:
    """Files already found (and stat'ed) by the driver."""

    index: int
    files: tuple[FoundFile, ...]
    key: PartKey | None = None

    def read(self, on_skip: SkipCallback) -> Iterator[SourceItem]:
        for f in self.files:
            try:
                f.path.encode("utf-8")
            except UnicodeEncodeError:
                # The collection stores paths as UTF-8 text; a name in another encoding would
                # fail the whole commit, so it is passed over, shown with the bytes replaced.
                shown = os.fsencode(f.path).decode("utf-8", "replace")
                on_skip(shown, "file name is not valid UTF-8; rename the file to index it")
                continue
            yield SourceItem(f.path, f.size, f.mtime_ns)


class FolderSource:
    """Image files under folders, recursively, in sorted order.

    Discovery runs to the end before the first part is handed out: the sweep of vanished
    files needs the complete listing, and a listing of paths is small next to the images.
    """

    def __init__(self, roots: Sequence[str], *, exclude: Sequence[str] = (), part_size: int = PART_SIZE) -> None:
        self.roots = list(roots)
        self.exclude = tuple(exclude)
        self.part_size = part_size
        self.label = ", ".join(self.roots)
        self.found: list[FoundFile] = []

    @property
    def sweep_folders(self) -> Sequence[str]:
        # Only roots that could be read are swept: an unmounted drive must not empty the collection.
        return [r for r in self.roots if os.path.exists(r)]

    def scan(self, on_skip: SkipCallback, on_found: Callable[[int], None] | None = None) -> list[FoundFile]:
        """Walk the roots once (the result is kept for :meth:`parts`)."""
        self.found = []
        for f in discover(self.roots, exclude=self.exclude, on_skip=on_skip):
            self.found.append(f)
            if on_found is not None:
                on_found(len(self.found))
        return self.found

    def parts(self, on_skip: SkipCallback) -> Iterator[Part]:
        for index, start in enumerate(range(0, len(self.found), self.part_size)):
            yield FilesPart(index, tuple(self.found[start:start + self.part_size]))
