"""What every source yields: :class:`SourceItem` records, grouped into :class:`Part` units.

A source (a folder, a file list, a table, WebDataset shards) is read as a sequence of parts.
A part is the unit of work: the indexer commits and records it, and the Ray runner ships it
to a worker, so a part must be small, picklable and readable anywhere the files are. A part
with a ``key`` (a tar shard: its path, size and mtime) is skipped wholesale when the
collection recorded the same key as done; items are then compared one by one with their
stored rows (size and mtime, or the URL itself).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

__all__ = ["SourceItem", "Part", "PartKey", "Source", "SkipCallback", "is_url", "MEMBER_SEPARATOR",
           "read_local"]

SkipCallback = Callable[[str, str], None]

#: Separates a tar shard's path from a member's name in an item's identity.
MEMBER_SEPARATOR = "#"


def is_url(text: str) -> bool:
    """True for an http or https URL (the only schemes lookalike fetches)."""
    head = text[:8].lower()
    return head.startswith("http://") or head.startswith("https://")


@dataclass(frozen=True)
class SourceItem:
    """One image a source names.

    Attributes:
        path: the item's identity, stored as its path: an absolute local path, an http(s) URL,
            or ``"<absolute shard path>#<member name>"`` for a member of a tar shard.
        size, mtime_ns: the cheap key incremental indexing compares (-1 and 0 where the
            source cannot tell before reading, as for a URL).
        data: the bytes, when the source has already read them (tar members).
        meta: caption and extra table columns (JSON scalars), stored per item.
    """

    path: str
    size: int
    mtime_ns: int
    data: bytes | None = field(default=None, repr=False)
    meta: Mapping[str, Any] | None = None

    @property
    def kind(self) -> str:
        """``"url"``, ``"member"`` (of a tar shard) or ``"file"``."""
        if self.data is not None:
            return "member"
        return "url" if is_url(self.path) else "file"


@dataclass(frozen=True)
class PartKey:
    """What makes a whole part skippable: the file it reads and that file's size and mtime."""

    path: str
    size: int
    mtime_ns: int


class Part(Protocol):
    """A unit of reading: picklable, read where the files are (the driver or a Ray worker)."""

    #: Position of the part within its source (stable across runs over the same inputs).
    index: int
    #: Set when the whole part can be skipped by a cheap key; None when items are checked one by one.
    key: PartKey | None

    def read(self, on_skip: SkipCallback) -> Iterator[SourceItem]:
        """The part's items, in order. Entries passed over are reported, not raised."""
        ...


class Source(Protocol):
    """Something to index: a sequence of parts, read lazily so memory stays flat."""

    #: How messages name the source (a folder list, a table path, a shard pattern).
    label: str
    #: Folders whose vanished files are removed from the collection (folder sources only).
    sweep_folders: Sequence[str]

    def parts(self, on_skip: SkipCallback) -> Iterator[Part]:
        """The parts, in order."""
        ...


def read_local(path: str) -> tuple[int, int] | str:
    """``(size, mtime_ns)`` of a local file, or the reason it cannot be used."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot access: {exc.strerror or exc}"
    except ValueError:  # a NUL byte in a list or table cell: os.stat refuses it, and no file has it
        return "not a valid path (it holds a NUL byte)"
    if not os.path.isfile(path):
        return "not a regular file"
    return st.st_size, st.st_mtime_ns
