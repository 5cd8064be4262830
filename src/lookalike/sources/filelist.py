"""A list of paths or URLs, one per line, from a file or from standard input (``-``)."""

from __future__ import annotations

import hashlib
import io
import os
import sys
from dataclasses import dataclass
from typing import IO, Iterator

from ..errors import InvalidArgument
from ..fsutil import user_path
from .base import Part, PartKey, SkipCallback, SourceItem, is_url, read_local
from .folder import PART_SIZE

__all__ = ["FileListSource", "ListPart"]


@dataclass(frozen=True)
class ListPart:
    """Paths (absolute) or URLs, in list order; files are stat'ed when the part is read."""

    index: int
    entries: tuple[str, ...]
    key: PartKey | None = None

    def read(self, on_skip: SkipCallback) -> Iterator[SourceItem]:
        for entry in self.entries:
            if is_url(entry):
                yield SourceItem(entry, -1, 0)
                continue
            stat = read_local(entry)
            if isinstance(stat, str):
                on_skip(entry, stat)
            else:
                yield SourceItem(entry, *stat)


class FileListSource:
    """One path or URL per line. Blank lines and ``#`` comments are ignored; a repeated entry
    is indexed once (the repeat is reported); relative paths are taken from the current
    folder, as a shell would."""

    sweep_folders: tuple[str, ...] = ()

    def __init__(self, list_path: str, *, part_size: int = PART_SIZE, stdin: IO[str] | None = None) -> None:
        self.list_path = list_path
        self.part_size = part_size
        self._stdin = stdin
        self.label = "standard input" if list_path == "-" else user_path(list_path)
        if list_path != "-" and not os.path.isfile(self.label):
            raise InvalidArgument(f"{self.label}: no such file list; give a text file with one path or URL per line, "
                                  "or '-' to read standard input")

    def _open(self) -> IO[str]:
        if self.list_path == "-":
            return self._stdin or sys.stdin
        # utf-8-sig: a list saved by a Windows editor starts with a byte-order mark.
        return io.open(self.label, encoding="utf-8-sig", errors="replace", newline=None)

    def parts(self, on_skip: SkipCallback) -> Iterator[Part]:
        # Repeats are found by a 64-bit digest of each entry: 8 bytes a line, not the line.
        seen: set[bytes] = set()
        batch: list[str] = []
        index = 0
        fh = self._open()
        try:
            for line in fh:
                entry = line.strip()
                if not entry or entry.startswith("#"):
                    continue
                if not is_url(entry):
                    entry = user_path(entry)
                digest = hashlib.blake2b(entry.encode("utf-8", "surrogateescape"), digest_size=8).digest()
                if digest in seen:
                    on_skip(entry, "listed more than once; indexed once")
                    continue
                seen.add(digest)
                batch.append(entry)
                if len(batch) >= self.part_size:
                    yield ListPart(index, tuple(batch))
                    index, batch = index + 1, []
        finally:
            if fh is not self._stdin and fh is not sys.stdin:
                fh.close()
        if batch:
            yield ListPart(index, tuple(batch))
