"""Per-item metadata (captions and extra table columns) and the record of finished source parts.

Values keep the type SQLite stores them with (INTEGER, REAL, TEXT), so a ``--where
width>=512`` compares numbers and ``license=cc-by`` compares text. An item's metadata goes
with the item (``ON DELETE CASCADE``).
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any, Iterable, Iterator, Mapping, Sequence

__all__ = ["ItemMeta"]


#: SQLite's INTEGER range; a larger int (a uint64 hash column, a big JSON number) is kept as text.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
        return str(value)  # sqlite3 raises OverflowError on these, failing the whole commit
    if isinstance(value, float) and math.isnan(value):
        return None  # (a JSON sidecar's NaN) SQLite would store NULL: no value, so no key
    return value


def _pairs(meta: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` in the stored form, leaving out keys without a value."""
    for key, value in meta.items():
        stored = _value(value)
        if stored is not None:
            yield str(key), stored


class ItemMeta:
    """Reads and writes ``item_meta`` and ``source_parts`` over a collection's connection;
    writes belong inside the caller's transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def set(self, rows: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Replace the metadata of the items at these paths (rows must exist: after upsert)."""
        for path, meta in rows:
            self.conn.execute("DELETE FROM item_meta WHERE item_id = (SELECT id FROM items WHERE path = ?)", (path,))
            self.conn.executemany(
                "INSERT INTO item_meta (item_id, key, value) SELECT id, ?, ? FROM items WHERE path = ?",
                ((k, v, path) for k, v in _pairs(meta)))

    def set_by_id(self, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> None:
        """Like :meth:`set`, by item id (imports and restores); two statements for the lot."""
        rows = list(rows)
        self.conn.executemany("DELETE FROM item_meta WHERE item_id = ?", ((item_id,) for item_id, _ in rows))
        self.conn.executemany("INSERT INTO item_meta (item_id, key, value) VALUES (?, ?, ?)",
                              ((item_id, k, v) for item_id, meta in rows for k, v in _pairs(meta)))

    def get(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """``{id: {key: value}}`` for the given ids that have metadata."""
        out: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[start : start + 500]]
            sql = f"SELECT item_id, key, value FROM item_meta WHERE item_id IN ({','.join('?' * len(chunk))})"
            for item_id, key, value in self.conn.execute(sql, chunk):
                out.setdefault(item_id, {})[key] = value
        return out

    def keys(self) -> list[str]:
        """Every metadata key in use, sorted."""
        return [r[0] for r in self.conn.execute("SELECT DISTINCT key FROM item_meta ORDER BY key")]

    # ------------------------------------------------------------------ source parts
    def part_done(self, path: str, size: int, mtime_ns: int) -> bool:
        """True when this file (a tar shard) was indexed to the end with this size and mtime."""
        row = self.conn.execute("SELECT size, mtime_ns FROM source_parts WHERE path = ?", (path,)).fetchone()
        return row is not None and row[0] == size and row[1] == mtime_ns

    def part_items(self, path: str) -> int:
        """How many items the recorded part held."""
        row = self.conn.execute("SELECT items FROM source_parts WHERE path = ?", (path,)).fetchone()
        return int(row[0]) if row else 0

    def mark_parts(self, parts: Iterable[tuple[str, int, int, int]]) -> None:
        """Record ``(path, size, mtime_ns, items)`` of parts whose items are all committed."""
        self.conn.executemany(
            "INSERT INTO source_parts (path, size, mtime_ns, items) VALUES (?, ?, ?, ?) ON CONFLICT(path) DO UPDATE "
            "SET size = excluded.size, mtime_ns = excluded.mtime_ns, items = excluded.items, "
            "done_at = ((julianday('now') - 2440587.5) * 86400.0)", parts)
