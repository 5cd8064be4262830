"""Metadata filters for search: folder, glob, modification time, image size, and a predicate.

The structured parts become one SQL ``WHERE`` clause; the Python predicate (``where``) then
runs over the rows that pass it. The result is the set of rows a search may return, handed
to exact search as a row subset and to FAISS as an ID selector, so a filtered query still
returns k results whenever k items match.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from .metadata import ItemRow

__all__ = ["Filter"]


_INT64 = (-(2**63), 2**63 - 1)


def _sql_int(value: float) -> int:
    """``value`` as an SQLite INTEGER: bounds beyond its range are clamped to it, which
    selects exactly the same rows (no stored value lies outside it)."""
    return int(min(max(value, _INT64[0]), _INT64[1]))


def _timestamp(value: float | datetime | None) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    return value.timestamp()


@dataclass(frozen=True)
class Filter:
    """Which items a search may return. Every given condition must hold.

    Attributes:
        under: folders; items must lie below one of them.
        glob: shell pattern matched against the full path (``*`` also crosses folders).
        modified_after, modified_before: file modification time bounds (datetime or Unix seconds).
        min_width, min_height, max_width, max_height: image size bounds in pixels.
        where: any Python predicate over the item's row (path, size, mtime_ns, width...).
    """

    under: Sequence[str] = ()
    glob: str | None = None
    modified_after: float | datetime | None = None
    modified_before: float | datetime | None = None
    min_width: int | None = None
    min_height: int | None = None
    max_width: int | None = None
    max_height: int | None = None
    where: Callable[["ItemRow"], bool] | None = None

    def is_empty(self) -> bool:
        return not self.under and self.where is None and not self.sql()[0]

    def folders(self) -> tuple[str, ...]:
        return tuple(os.path.abspath(os.path.expanduser(os.fspath(u))) for u in self.under)

    def sql(self) -> tuple[list[str], list[object]]:
        """``(clauses, params)`` for everything but ``under`` and ``where``."""
        clauses: list[str] = []
        params: list[object] = []
        if self.glob:
            clauses.append("path GLOB ?")
            params.append(self.glob if os.path.isabs(self.glob) else "*" + self.glob.lstrip("*"))
        after, before = _timestamp(self.modified_after), _timestamp(self.modified_before)
        if after is not None:
            clauses.append("mtime_ns >= ?")
            params.append(_sql_int(after * 1e9))
        if before is not None:
            clauses.append("mtime_ns < ?")
            params.append(_sql_int(before * 1e9))
        for column, op, value in (("width", ">=", self.min_width), ("height", ">=", self.min_height),
                                  ("width", "<=", self.max_width), ("height", "<=", self.max_height)):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(_sql_int(value))
        return clauses, params
