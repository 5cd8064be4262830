"""The SQL of faces and people (schema migration 5), typed.

Tables: ``faces`` (box, landmarks, score, the descriptor's row in ``faces-<gen>.f32``, the
person and whether a person put it there), ``face_crops`` (a small JPEG per face),
``face_scans`` (which content of an item was scanned, how many faces it showed, or why it
could not be read), ``people`` and ``face_rejects`` ("this face is not that person"). Settings
live as JSON in ``state``: :data:`FACES` (how faces were found), :data:`PEOPLE` (how they are
grouped); :data:`PEOPLE_VERSION` counts changes to who is who, so that a grouping computed
outside a transaction can tell whether an edit came in meanwhile.

Writers call these inside ``db.transaction()``; readers inside ``db.snapshot()`` when several
reads must agree.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import numpy as np

from .face_types import FaceRecord, FaceStats, Person
from .metadata import MetadataDB

__all__ = ["FaceTables", "FACES", "PEOPLE", "PEOPLE_VERSION", "FaceRow"]

#: ``state`` keys: how faces were found (JSON), how they are grouped (JSON), a change counter.
FACES, PEOPLE, PEOPLE_VERSION = "faces", "people", "people_version"

_CHUNK = 500  # SQLite's variable limit is 999 on old builds

_FACE_SELECT = ('SELECT f.id, f.item_id, i.path, f."left", f.top, f."right", f.bottom, f.landmarks, f.score, '
                "f.size, f.person_id, f.manual FROM faces f JOIN items i ON i.id = f.item_id")

#: A face to insert: ``(box, landmarks, score, size, vec_row, jpeg)``.
FaceRow = tuple[tuple[int, int, int, int], Sequence[tuple[float, float]], float, int, int, bytes]


def _record(row: Sequence[Any]) -> FaceRecord:
    fid, item_id, path, left, top, right, bottom, landmarks, score, size, person, manual = row
    return FaceRecord(int(fid), int(item_id), str(path), (int(left), int(top), int(right), int(bottom)),
                      tuple((float(x), float(y)) for x, y in json.loads(landmarks)), float(score), int(size),
                      None if person is None else int(person), bool(manual))


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield [int(i) for i in ids[start : start + _CHUNK]]


def _marks(n: int) -> str:
    return ",".join("?" * n)


class FaceTables:
    """Typed reads and writes of the face tables over one :class:`MetadataDB`."""

    def __init__(self, db: MetadataDB) -> None:
        self.db = db
        self.conn = db.conn

    # ------------------------------------------------------------------ settings and versions
    def settings(self, key: str) -> dict[str, Any] | None:
        return self.db.get_json(key)

    def set_settings(self, key: str, value: dict[str, Any]) -> None:
        self.db.set_json(key, value)

    def bump(self) -> None:
        """Count a change to who is who (inside the transaction that makes it)."""
        self.db.bump(PEOPLE_VERSION)

    def version(self) -> int:
        return self.db.counter(PEOPLE_VERSION)

    # ------------------------------------------------------------------ scanning
    _PENDING = ("FROM items i LEFT JOIN face_scans s ON s.item_id = i.id WHERE i.status = 'ok' AND "
                "(s.item_id IS NULL OR s.hash IS NOT i.hash OR (? AND s.error IS NOT NULL))")

    def pending(self, retry_failed: bool = False) -> list[tuple[int, str, str | None]]:
        """``(id, path, hash)`` of the searchable items to scan: never scanned, changed since, or
        (``retry_failed``) unreadable last time; by id."""
        rows = self.conn.execute(f"SELECT i.id, i.path, i.hash {self._PENDING} ORDER BY i.id",
                                 (int(retry_failed),)).fetchall()
        return [(int(i), str(p), h) for i, p, h in rows]

    def pending_count(self) -> int:
        return int(self.conn.execute(f"SELECT COUNT(*) {self._PENDING}", (0,)).fetchone()[0])

    def searchable_items(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM items WHERE status = 'ok'").fetchone()[0])

    def record_scan(self, item_id: int, content_hash: str | None, faces: Sequence[FaceRow],
                    error: str | None) -> list[int]:
        """Replace what is stored for one item by this scan's faces (or its error); their ids."""
        self.conn.execute("DELETE FROM faces WHERE item_id = ?", (int(item_id),))
        ids = []
        for box, landmarks, score, size, vec_row, jpeg in faces:
            cur = self.conn.execute(
                'INSERT INTO faces (item_id, "left", top, "right", bottom, landmarks, score, size, vec_row) '
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (int(item_id), *(int(v) for v in box), json.dumps([[round(x, 2), round(y, 2)] for x, y in landmarks]),
                 float(score), int(size), int(vec_row)))
            face_id = int(cur.lastrowid or 0)
            self.conn.execute("INSERT INTO face_crops (face_id, jpeg) VALUES (?, ?)", (face_id, jpeg))
            ids.append(face_id)
        self.conn.execute("INSERT OR REPLACE INTO face_scans (item_id, hash, faces, error) VALUES (?, ?, ?, ?)",
                          (int(item_id), content_hash, len(faces), error))
        return ids

    # ------------------------------------------------------------------ faces
    def face(self, face_id: int) -> FaceRecord | None:
        row = self.conn.execute(f"{_FACE_SELECT} WHERE f.id = ?", (int(face_id),)).fetchone()
        return _record(row) if row else None

    def faces_of_item(self, item_id: int) -> list[FaceRecord]:
        rows = self.conn.execute(f"{_FACE_SELECT} WHERE f.item_id = ? ORDER BY f.score DESC, f.id", (int(item_id),))
        return [_record(r) for r in rows]

    def faces_of_person(self, person_id: int | None, offset: int = 0, limit: int | None = None) -> list[FaceRecord]:
        """A person's faces (None: faces in no person), best score first."""
        where = "f.person_id IS NULL" if person_id is None else "f.person_id = ?"
        args: tuple[Any, ...] = () if person_id is None else (int(person_id),)
        rows = self.conn.execute(f"{_FACE_SELECT} WHERE {where} ORDER BY f.score DESC, f.id LIMIT ? OFFSET ?",
                                 (*args, -1 if limit is None else int(limit), int(offset)))
        return [_record(r) for r in rows]

    def person_of_faces(self, face_ids: Sequence[int]) -> dict[int, int | None]:
        """``{face id: person id or None}`` for the given faces that exist."""
        out: dict[int, int | None] = {}
        for chunk in _chunks(face_ids):
            for fid, pid in self.conn.execute(f"SELECT id, person_id FROM faces WHERE id IN ({_marks(len(chunk))})",
                                              chunk):
                out[int(fid)] = None if pid is None else int(pid)
        return out

    def crop(self, face_id: int) -> bytes | None:
        row = self.conn.execute("SELECT jpeg FROM face_crops WHERE face_id = ?", (int(face_id),)).fetchone()
        return bytes(row[0]) if row else None

    def vec_rows(self, face_ids: Sequence[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for chunk in _chunks(face_ids):
            rows = self.conn.execute(f"SELECT id, vec_row FROM faces WHERE id IN ({_marks(len(chunk))})", chunk)
            out.update((int(i), int(r)) for i, r in rows)
        return out

    def grouping_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(face ids, vec_rows, person ids (-1: none), manual)`` of every face, by id."""
        rows = self.conn.execute("SELECT id, vec_row, COALESCE(person_id, -1), manual FROM faces ORDER BY id").fetchall()
        arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
        return arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(), arr[:, 3].astype(bool)

    def rejects(self) -> list[tuple[int, int]]:
        """Every ``(face id, person id)`` "not this person" pair."""
        return [(int(f), int(p)) for f, p in self.conn.execute("SELECT face_id, person_id FROM face_rejects")]

    def vec_row_order(self) -> tuple[np.ndarray, np.ndarray]:
        """``(face ids, vec_rows)`` of every face, by vec_row."""
        rows = self.conn.execute("SELECT id, vec_row FROM faces ORDER BY vec_row").fetchall()
        arr = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return arr[:, 0].copy(), arr[:, 1].copy()

    def face_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM faces").fetchone()[0])

    def set_vec_rows(self, pairs: Iterable[tuple[int, int]]) -> None:
        """``(face id, new vec_row)`` pairs (compaction)."""
        self.conn.executemany("UPDATE faces SET vec_row = ? WHERE id = ?", ((int(r), int(f)) for f, r in pairs))

    # ------------------------------------------------------------------ people
    def people(self, min_faces: int = 1, person_id: int | None = None) -> list[Person]:
        """People with at least ``min_faces`` faces (or the one ``person_id``), most faces first."""
        where = "" if person_id is None else "WHERE p.id = ?"
        args: tuple[Any, ...] = () if person_id is None else (int(person_id),)
        rows = self.conn.execute(
            "SELECT p.id, p.name, COUNT(f.id), COUNT(DISTINCT f.item_id) FROM people p "
            f"LEFT JOIN faces f ON f.person_id = p.id {where} GROUP BY p.id HAVING COUNT(f.id) >= ? "
            "ORDER BY COUNT(f.id) DESC, p.id", (*args, int(min_faces) if person_id is None else 0)).fetchall()
        covers = self._covers([int(r[0]) for r in rows] if person_id is not None else None)
        return [Person(int(pid), name, int(n), int(photos), *covers.get(int(pid), (None, None)))
                for pid, name, n, photos in rows]

    def _covers(self, ids: list[int] | None) -> dict[int, tuple[int, str]]:
        """``{person id: (cover face id, its path)}``: the best score among faces placed by hand, else among all."""
        where = "f.person_id IS NOT NULL" if ids is None else f"f.person_id IN ({_marks(len(ids))})"
        rows = self.conn.execute(
            "SELECT person_id, id, path FROM (SELECT f.person_id, f.id, i.path, ROW_NUMBER() OVER "
            "(PARTITION BY f.person_id ORDER BY f.manual DESC, f.score DESC, f.id) AS rn FROM faces f "
            f"JOIN items i ON i.id = f.item_id WHERE {where}) WHERE rn = 1", ids or ())
        return {int(p): (int(f), str(path)) for p, f, path in rows}

    def person_ids(self) -> set[int]:
        return {int(r[0]) for r in self.conn.execute("SELECT id FROM people")}

    def person_by_name(self, name: str) -> int | None:
        row = self.conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else None

    def person_name(self, person_id: int) -> str | None:
        row = self.conn.execute("SELECT name FROM people WHERE id = ?", (int(person_id),)).fetchone()
        return row[0] if row else None

    def names(self) -> list[str]:
        return [str(r[0]) for r in self.conn.execute("SELECT name FROM people WHERE name IS NOT NULL ORDER BY name")]

    def create_person(self, name: str | None = None) -> int:
        cur = self.conn.execute("INSERT INTO people (name) VALUES (?)", (name,))
        return int(cur.lastrowid or 0)

    def rename(self, person_id: int, name: str | None) -> None:
        self.conn.execute("UPDATE people SET name = ? WHERE id = ?", (name, int(person_id)))

    def delete_people(self, ids: Iterable[int]) -> None:
        self.conn.executemany("DELETE FROM people WHERE id = ?", ((int(i),) for i in ids))

    def delete_empty_unnamed(self) -> int:
        """Delete the people without a name who hold no face; how many."""
        cur = self.conn.execute("DELETE FROM people WHERE name IS NULL AND id NOT IN "
                                "(SELECT person_id FROM faces WHERE person_id IS NOT NULL)")
        return cur.rowcount

    def set_person(self, face_ids: Sequence[int], person_id: int | None, manual: bool) -> None:
        self.conn.executemany("UPDATE faces SET person_id = ?, manual = ? WHERE id = ?",
                              ((person_id, int(manual), int(f)) for f in face_ids))

    def assign(self, pairs: Iterable[tuple[int, int | None]], *, unpinned_only: bool = True) -> None:
        """Give faces a person automatically (``(face id, person id or None)``), never a pinned face."""
        guard = " AND manual = 0" if unpinned_only else ""
        self.conn.executemany(f"UPDATE faces SET person_id = ? WHERE id = ?{guard}",
                              ((None if p is None else int(p), int(f)) for f, p in pairs))

    def pin_person(self, person_id: int) -> None:
        """Mark every face the person holds now as placed by hand."""
        self.conn.execute("UPDATE faces SET manual = 1 WHERE person_id = ?", (int(person_id),))

    def add_rejects(self, pairs: Iterable[tuple[int, int]]) -> None:
        self.conn.executemany("INSERT OR IGNORE INTO face_rejects (face_id, person_id) VALUES (?, ?)",
                              ((int(f), int(p)) for f, p in pairs))

    def move_rejects(self, source: int, dest: int) -> None:
        """A merged person's rejects become the surviving person's, except for faces it now holds."""
        self.conn.execute("INSERT OR IGNORE INTO face_rejects (face_id, person_id) SELECT r.face_id, ? "
                          "FROM face_rejects r JOIN faces f ON f.id = r.face_id WHERE r.person_id = ? "
                          "AND f.person_id IS NOT ?", (int(dest), int(source), int(dest)))

    def drop_rejects(self, face_ids: Sequence[int], person_id: int) -> None:
        self.conn.executemany("DELETE FROM face_rejects WHERE face_id = ? AND person_id = ?",
                              ((int(f), int(person_id)) for f in face_ids))

    # ------------------------------------------------------------------ whole tables
    def stats(self) -> FaceStats:
        one = lambda sql: int(self.conn.execute(sql).fetchone()[0])  # noqa: E731
        scanned = one("SELECT COUNT(*) FROM face_scans")
        return FaceStats(scanned_items=scanned, pending_items=self.pending_count(), faces=one("SELECT COUNT(*) FROM faces"),
                         people=one("SELECT COUNT(*) FROM people"),
                         named_people=one("SELECT COUNT(*) FROM people WHERE name IS NOT NULL"),
                         unassigned_faces=one("SELECT COUNT(*) FROM faces WHERE person_id IS NULL"))

    def clear(self) -> int:
        """Delete every face, crop, scan, person, reject and face setting; the faces deleted."""
        n = self.face_count()
        for table in ("face_rejects", "face_crops", "faces", "face_scans", "people"):
            self.conn.execute(f"DELETE FROM {table}")
        self.conn.execute("DELETE FROM sqlite_sequence WHERE name IN ('faces', 'people')")
        self.conn.execute("DELETE FROM state WHERE key IN (?, ?, ?)", (FACES, PEOPLE, PEOPLE_VERSION))
        return n
