"""The SQLite half of a collection: one row per image, plus a small key/value state table.

The schema is versioned with ``PRAGMA user_version`` and upgraded by the ordered
:data:`MIGRATIONS` list, so collections written by older releases open in newer ones.
WAL mode lets searches read while an indexer writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from ..errors import CollectionCorrupt
from ..images.traits import ImageTraits
from .item_meta import ItemMeta
from .items import Item
from .schema import MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    from .filters import Filter

__all__ = ["MetadataDB", "ItemRow", "SCHEMA_VERSION", "MIGRATIONS", "path_prefix_range"]



@dataclass(frozen=True)
class ItemRow(Item):
    """One row of the ``items`` table: the public :class:`Item` and where its vector is."""

    vec_row: int | None = None  # row in the vector file; None unless status is "ok"

    def public(self) -> Item:
        """The row as the public :class:`~lookalike.store.items.Item` (no storage fields)."""
        return Item(self.id, self.path, self.size, self.mtime_ns, self.hash, self.width, self.height,
                    self.status, self.error)


_COLUMNS = "id, path, size, mtime_ns, hash, width, height, status, error, vec_row"
_TRAITS = "phash, dhash, phash_mirror, sharpness, taken, exif_tags"


def path_prefix_range(folder: str) -> tuple[str, str]:
    """The half-open string range ``[lo, hi)`` holding every path under ``folder``."""
    lo = folder.rstrip(os.sep) + os.sep
    return lo, lo[:-1] + chr(ord(os.sep) + 1)


class MetadataDB:
    """A thin typed wrapper over the collection's SQLite file."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = os.fspath(path)
        try:
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives process crashes (kill -9) with every commit intact;
            # only an OS crash can lose the last commits, never consistency.
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            if not readonly:
                self._migrate()
            else:
                self._check_version()
        except sqlite3.DatabaseError as exc:
            raise CollectionCorrupt(f"{self.path}: not a readable lookalike database ({exc})") from exc

    def _check_version(self) -> int:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CollectionCorrupt(
                f"{self.path}: written by a newer lookalike (schema {version} > {SCHEMA_VERSION}); upgrade lookalike"
            )
        return int(version)

    def _migrate(self) -> None:
        version = self._check_version()
        for target in range(version, SCHEMA_VERSION):
            with self.transaction():
                # executescript would COMMIT our transaction early, so run statements one by one
                # (hence: no semicolons inside the SQL comments of a string migration; a tuple
                # migration lists its statements, for those with semicolons of their own).
                entry = MIGRATIONS[target]
                for statement in entry if isinstance(entry, tuple) else entry.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {target + 1}")

    def transaction(self) -> "_Transaction":
        """``with db.transaction(): ...`` commits on success and rolls back on error."""
        return _Transaction(self.conn)

    def snapshot(self) -> "_Snapshot":
        """``with db.snapshot(): ...``: every read inside sees the database as of one moment.

        Concurrent writers still commit (WAL); this connection just does not see them until the
        block ends. Inside a transaction already open on this connection it adds nothing.
        """
        return _Snapshot(self.conn)

    def close(self) -> None:
        self.conn.close()

    @property
    def meta(self) -> ItemMeta:
        """Per-item metadata (captions, table columns) and the record of finished source parts."""
        return ItemMeta(self.conn)

    # ------------------------------------------------------------------ state
    def get_state(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_state(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def get_json(self, key: str) -> dict[str, Any] | None:
        """A ``state`` value stored by :meth:`set_json` (settings of a result); None if absent."""
        raw = self.get_state(key)
        return json.loads(raw) if raw else None

    def set_json(self, key: str, value: dict[str, Any]) -> None:
        self.set_state(key, json.dumps(value, sort_keys=True))

    def bump(self, counter: str) -> None:
        """Add one to a ``state`` counter (inside the transaction whose change it counts)."""
        self.conn.execute("INSERT INTO state (key, value) VALUES (?, '1') ON CONFLICT(key) "
                          "DO UPDATE SET value = CAST(value AS INTEGER) + 1", (counter,))

    def counter(self, counter: str) -> int:
        """A ``state`` counter's value (0 until first bumped)."""
        return int(self.get_state(counter, "0") or 0)

    def bump_generation(self) -> None:
        """Count a change to the items (inside the transaction that makes it)."""
        self.bump("generation")

    def generation(self) -> int:
        """How many committed changes the items have seen: equal numbers, equal contents."""
        return self.counter("generation")

    def data_version(self) -> int:
        """Changes whenever another connection commits; used to invalidate caches."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # ------------------------------------------------------------------ items
    def items_under(self, folders: Sequence[str]) -> dict[str, ItemRow]:
        """Every row whose path is one of ``folders`` or lies below one of them."""
        out: dict[str, ItemRow] = {}
        for folder in folders:
            lo, hi = path_prefix_range(folder)
            rows = self.conn.execute(
                f"SELECT {_COLUMNS} FROM items WHERE (path >= ? AND path < ?) OR path = ?", (lo, hi, folder)
            )
            out.update((r[1], ItemRow(*r)) for r in rows)
        return out

    def rows_with_prefix(self, prefix: str) -> dict[str, ItemRow]:
        """Every row whose path starts with ``prefix`` (the members of a tar shard: ``shard#``)."""
        hi = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM items WHERE path >= ? AND path < ?", (prefix, hi))
        return {r[1]: ItemRow(*r) for r in rows}

    def rows_for_paths(self, paths: Sequence[str]) -> dict[str, ItemRow]:
        """The stored rows of those ``paths`` that have one."""
        out: dict[str, ItemRow] = {}
        for start in range(0, len(paths), 500):
            chunk = list(paths[start : start + 500])
            rows = self.conn.execute(f"SELECT {_COLUMNS} FROM items WHERE path IN ({','.join('?' * len(chunk))})", chunk)
            out.update((r[1], ItemRow(*r)) for r in rows)
        return out

    def hash_index(self) -> dict[str, tuple[int, int | None, int | None]]:
        """``hash -> (vec_row, width, height)`` over embedded items, for rename and copy detection."""
        rows = self.conn.execute("SELECT hash, vec_row, width, height FROM items WHERE status = 'ok' AND hash IS NOT NULL")
        return {h: (v, w, ht) for h, v, w, ht in rows}

    def upsert(self, rows: Iterable[tuple]) -> None:
        """Insert or update ``(path, size, mtime_ns, hash, width, height, status, error, vec_row)`` rows.

        An existing path keeps its id, so links to an item survive edits of the file.
        """
        self.conn.executemany(
            """
            INSERT INTO items (path, size, mtime_ns, hash, width, height, status, error, vec_row)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(path) DO UPDATE SET
                size = excluded.size, mtime_ns = excluded.mtime_ns, hash = excluded.hash,
                width = excluded.width, height = excluded.height, status = excluded.status,
                error = excluded.error, vec_row = excluded.vec_row,
                updated_at = ((julianday('now') - 2440587.5) * 86400.0),
                phash = NULL, dhash = NULL, phash_mirror = NULL, sharpness = NULL, taken = NULL, exif_tags = NULL,
                cluster = NULL, label = NULL, label_score = NULL, map_x = NULL, map_y = NULL
            """,
            rows,
        )

    # ------------------------------------------------------------------ traits
    def set_traits(self, rows: Iterable[tuple[ImageTraits, str]]) -> None:
        """Store ``(traits, path)`` pairs (after :meth:`upsert` wrote the rows)."""
        self.conn.executemany(
            f"UPDATE items SET ({_TRAITS}) = (?, ?, ?, ?, ?, ?) WHERE path = ?",
            ((t.phash, t.dhash, t.phash_mirror, t.sharpness, t.taken, t.exif_tags, path) for t, path in rows),
        )

    def copy_traits_by_hash(self) -> None:
        """Give rows without traits those of another row with the same content (a reused vector)."""
        self.conn.execute(
            f"""
            UPDATE items SET ({_TRAITS}) = (
                SELECT {_TRAITS} FROM items AS o WHERE o.hash = items.hash AND o.phash IS NOT NULL LIMIT 1)
            WHERE phash IS NULL AND status = 'ok' AND hash IS NOT NULL AND EXISTS (
                SELECT 1 FROM items AS o WHERE o.hash = items.hash AND o.phash IS NOT NULL)
            """
        )

    def traits(self, ids: Sequence[int]) -> dict[int, ImageTraits]:
        """``{id: traits}`` for the given ids that have them."""
        out: dict[int, ImageTraits] = {}
        for start in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(f"SELECT id, {_TRAITS} FROM items WHERE id IN ({marks}) AND phash IS NOT NULL",
                                       chunk):
                out[r[0]] = ImageTraits(*r[1:])
        return out

    def trait_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(ids, phash, dhash, phash_mirror, has_traits)`` of every embedded item, by id."""
        rows = self.conn.execute(
            "SELECT id, COALESCE(phash, 0), COALESCE(dhash, 0), COALESCE(phash_mirror, 0), phash IS NOT NULL "
            "FROM items WHERE status = 'ok' ORDER BY id").fetchall()
        arr = np.array(rows, dtype=np.int64).reshape(-1, 5)
        return arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(), arr[:, 3].copy(), arr[:, 4].astype(bool)

    def missing_traits(self, after_id: int = 0, limit: int = 100_000) -> list[ItemRow]:
        """Embedded rows with ids above ``after_id`` that have no traits yet, by id."""
        return [ItemRow(*r) for r in self.conn.execute(
            f"SELECT {_COLUMNS} FROM items WHERE status = 'ok' AND phash IS NULL AND id > ? ORDER BY id LIMIT ?",
            (after_id, limit))]

    def count_missing_traits(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM items WHERE status = 'ok' AND phash IS NULL").fetchone()[0])

    def insert_rows(self, rows: Iterable[tuple[ItemRow, ImageTraits | None]]) -> None:
        """Put back rows exactly as they were, ids included (undoing a removal)."""
        self.conn.executemany(
            f"INSERT INTO items ({_COLUMNS}, {_TRAITS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((r.id, r.path, r.size, r.mtime_ns, r.hash, r.width, r.height, r.status, r.error, r.vec_row,
              *((t.phash, t.dhash, t.phash_mirror, t.sharpness, t.taken, t.exif_tags) if t else (None,) * 6))
             for r, t in rows),
        )

    def touch(self, rows: Iterable[tuple[int, int, int]]) -> None:
        """Update ``(size, mtime_ns, id)`` of files whose content did not change."""
        self.conn.executemany("UPDATE items SET size = ?, mtime_ns = ? WHERE id = ?", rows)

    def delete_ids(self, ids: Iterable[int]) -> None:
        self.conn.executemany("DELETE FROM items WHERE id = ?", ((i,) for i in ids))

    def get(self, item_id: int) -> ItemRow | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
        return ItemRow(*row) if row else None

    def get_many(self, ids: Sequence[int]) -> dict[int, ItemRow]:
        out: dict[int, ItemRow] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(f"SELECT {_COLUMNS} FROM items WHERE id IN ({marks})", chunk):
                out[r[0]] = ItemRow(*r)
        return out

    def get_by_path(self, path: str) -> ItemRow | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM items WHERE path = ?", (path,)).fetchone()
        return ItemRow(*row) if row else None

    def iter_rows(self, page: int = 1000) -> Iterator[ItemRow]:
        """Every row by id, read a page at a time (memory stays bounded at any size)."""
        last = -1
        while True:
            rows = self.conn.execute(f"SELECT {_COLUMNS} FROM items WHERE id > ? ORDER BY id LIMIT ?",
                                     (last, page)).fetchall()
            if not rows:
                return
            yield from (ItemRow(*r) for r in rows)
            last = rows[-1][0]

    def searchable(self, flt: "Filter | None" = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vec_rows)`` of embedded items passing ``flt``, ordered by vec_row."""
        sql = "SELECT id, vec_row FROM items WHERE status = 'ok'"
        params: list[object] = []
        if flt is not None:
            folders = flt.folders()
            if folders:
                clauses = []
                for folder in folders:
                    lo, hi = path_prefix_range(folder)
                    clauses.append("(path >= ? AND path < ?) OR path = ?")
                    params += [lo, hi, folder]
                sql += " AND (" + " OR ".join(clauses) + ")"
            clauses, extra = flt.sql()
            for clause in clauses:
                sql += f" AND {clause}"
            params += extra
        sql += " ORDER BY vec_row"
        if flt is not None and flt.where is not None:
            sql = sql.replace("SELECT id, vec_row", f"SELECT {_COLUMNS}", 1)
            keep = [(r[0], r[9]) for r in self.conn.execute(sql, params) if flt.where(ItemRow(*r).public())]
            arr = np.array(keep, dtype=np.int64).reshape(-1, 2)
        else:
            arr = np.array(self.conn.execute(sql, params).fetchall(), dtype=np.int64).reshape(-1, 2)
        return arr[:, 0].copy(), arr[:, 1].copy()

    def counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, COUNT(*) FROM items GROUP BY status").fetchall()
        return {"ok": 0, "failed": 0, **{s: int(n) for s, n in rows}}

    def failures(self, limit: int | None = None) -> list[ItemRow]:
        sql = f"SELECT {_COLUMNS} FROM items WHERE status = 'failed' ORDER BY path"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [ItemRow(*r) for r in self.conn.execute(sql)]

    def referenced_vec_rows(self) -> np.ndarray:
        """Distinct vector rows in use (several items may share one: copies of a file)."""
        rows = self.conn.execute("SELECT DISTINCT vec_row FROM items WHERE vec_row IS NOT NULL ORDER BY vec_row")
        return np.array([r[0] for r in rows], dtype=np.int64)

    def remap_vec_rows(self, mapping: dict[int, int]) -> None:
        self.conn.executemany("UPDATE items SET vec_row = ? WHERE vec_row = ?", ((n, o) for o, n in mapping.items()))

    def drop_rows_beyond(self, n_rows: int) -> int:
        """Forget items whose vector lies past the end of the vector file (see recovery)."""
        cur = self.conn.execute("DELETE FROM items WHERE vec_row >= ?", (n_rows,))
        return cur.rowcount


class _Snapshot:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.owned = False

    def __enter__(self) -> sqlite3.Connection:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")
            # A deferred transaction takes its read snapshot at the first read, so read now.
            self.conn.execute("SELECT 1 FROM state LIMIT 1").fetchall()
            self.owned = True
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.owned:
            self.conn.execute("COMMIT")


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
