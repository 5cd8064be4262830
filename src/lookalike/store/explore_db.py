"""The SQL of exploring: clusters, zero-shot labels and map positions (schema migration 3).

What each item gets is derived from its vector and lives in its row (``cluster``, ``label``,
``label_score``, ``map_x``, ``map_y``: NULL until assigned, reset by
:meth:`MetadataDB.upsert` when the file's content changes). What a run computed for the
whole collection lives in tables (``clusters``: centroids and names; ``label_set``: each
label's prompt prototype; ``item_labels``: every stored label of an item, deleted with it)
and its settings as JSON in the ``state`` table. Keeping the centroids and prototypes lets
the indexer assign new items without the text model or a refit.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Sequence

import numpy as np

from .metadata import MetadataDB

__all__ = ["ExploreTables", "CLUSTERING", "LABELLING", "MAP"]

#: ``state`` keys holding each result's settings (JSON); absent: never computed.
CLUSTERING, LABELLING, MAP = "clustering", "labelling", "map"

_CHUNK = 500  # SQLite's variable limit is 999 on old builds


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _matrix(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)


class ExploreTables:
    """Typed reads and writes of the explore columns and tables over one :class:`MetadataDB`.

    Writers call these inside ``db.transaction()``; readers inside ``db.snapshot()`` when they
    need several reads to agree.
    """

    def __init__(self, db: MetadataDB, dim: int) -> None:
        self.db = db
        self.conn = db.conn
        self.dim = dim

    # ------------------------------------------------------------------ settings
    def settings(self, key: str) -> dict[str, Any] | None:
        return self.db.get_json(key)

    def set_settings(self, key: str, value: dict[str, Any]) -> None:
        self.db.set_json(key, value)

    def bump(self) -> None:
        """Count a change to what exploring stored (inside the transaction that makes it)."""
        self.db.bump("explore_version")

    def version(self) -> tuple[int, int]:
        """``(generation, explore version)``: equal pairs, equal clusters, labels and positions."""
        return self.db.generation(), self.db.counter("explore_version")

    # ------------------------------------------------------------------ clusters
    def replace_clusters(self, centroids: np.ndarray, names: Sequence[str], central: Sequence[Sequence[int]],
                         ids: np.ndarray, assignment: np.ndarray) -> None:
        """Make ``centroids`` (cluster ``i`` is row ``i``, named ``names[i]``, with the item ids
        ``central[i]`` nearest its centre) the clustering and ``assignment`` (-1: noise) the
        cluster of each of ``ids``; every other item becomes unassigned."""
        self.conn.execute("DELETE FROM clusters")
        self.conn.executemany("INSERT INTO clusters (id, name, centroid, central) VALUES (?, ?, ?, ?)",
                              ((i, str(n), _blob(c), json.dumps([int(x) for x in cc]))
                               for i, (n, c, cc) in enumerate(zip(names, centroids, central))))
        self.conn.execute("UPDATE items SET cluster = NULL WHERE cluster IS NOT NULL")
        self.set_clusters(ids, assignment)

    def set_clusters(self, ids: Iterable[int], assignment: Iterable[int]) -> None:
        self.bump()
        self.conn.executemany("UPDATE items SET cluster = ? WHERE id = ?",
                              ((int(c), int(i)) for i, c in zip(ids, assignment)))

    def clusters(self) -> list[tuple[int, str, np.ndarray, list[int]]]:
        """``(id, name, centroid, central ids)`` of every stored cluster, by id."""
        rows = self.conn.execute("SELECT id, name, centroid, central FROM clusters ORDER BY id").fetchall()
        return [(int(i), str(n), np.frombuffer(c, dtype="<f4").astype(np.float32), json.loads(cc))
                for i, n, c, cc in rows]

    def centroids(self) -> np.ndarray:
        """``(k, dim)`` float32, row ``i`` the centroid of cluster ``i`` (ids are 0..k-1)."""
        return _matrix([r[0] for r in self.conn.execute("SELECT centroid FROM clusters ORDER BY id")], self.dim)

    def cluster_sizes(self) -> dict[int | None, int]:
        """Searchable items per cluster id (None: unassigned, -1: noise)."""
        rows = self.conn.execute("SELECT cluster, COUNT(*) FROM items WHERE status = 'ok' GROUP BY cluster")
        return {(None if c is None else int(c)): int(n) for c, n in rows}

    def cluster_members(self, cluster_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vec_rows)`` of the searchable items in one cluster."""
        rows = self.conn.execute("SELECT id, vec_row FROM items WHERE status = 'ok' AND cluster = ? ORDER BY id",
                                 (int(cluster_id),)).fetchall()
        arr = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return arr[:, 0].copy(), arr[:, 1].copy()

    # ------------------------------------------------------------------ labels
    def replace_label_set(self, labels: Sequence[str], prototypes: np.ndarray) -> None:
        """Make ``labels`` the label set; every item becomes unlabelled."""
        self.bump()
        self.conn.execute("DELETE FROM label_set")
        self.conn.executemany("INSERT INTO label_set (position, label, prototype) VALUES (?, ?, ?)",
                              ((i, str(lb), _blob(p)) for i, (lb, p) in enumerate(zip(labels, prototypes))))
        self.conn.execute("DELETE FROM item_labels")
        self.conn.execute("UPDATE items SET label = NULL, label_score = NULL WHERE label_score IS NOT NULL")

    def label_set(self) -> tuple[list[str], np.ndarray]:
        """``(labels, prototypes (L, dim))`` in the order given."""
        rows = self.conn.execute("SELECT label, prototype FROM label_set ORDER BY position").fetchall()
        return [str(r[0]) for r in rows], _matrix([r[1] for r in rows], self.dim)

    def set_labels(self, ids: Sequence[int], top: Sequence[str | None], top_scores: Sequence[float],
                   extra: Iterable[tuple[int, str, float]]) -> None:
        """Store each item's top label (None: below the minimum score) and score, and the
        ``(id, label, score)`` rows of ``item_labels`` (the top label and, multi-label, the rest)."""
        self.bump()
        for start in range(0, len(ids), _CHUNK):
            chunk = [int(i) for i in ids[start : start + _CHUNK]]
            self.conn.execute(f"DELETE FROM item_labels WHERE item_id IN ({','.join('?' * len(chunk))})", chunk)
        self.conn.executemany("UPDATE items SET label = ?, label_score = ? WHERE id = ?",
                              ((t, float(s), int(i)) for i, t, s in zip(ids, top, top_scores)))
        self.conn.executemany("INSERT OR REPLACE INTO item_labels (item_id, label, score) VALUES (?, ?, ?)",
                              ((int(i), str(lb), float(s)) for i, lb, s in extra))

    def label_counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT label, COUNT(*) FROM items WHERE status = 'ok' AND label IS NOT NULL "
                                 "GROUP BY label")
        return {str(lb): int(n) for lb, n in rows}

    def item_labels(self, ids: Sequence[int]) -> dict[int, list[tuple[str, float]]]:
        """``{id: [(label, score), ...]}`` best first, for the given ids that have labels."""
        out: dict[int, list[tuple[str, float]]] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = [int(i) for i in ids[start : start + _CHUNK]]
            for i, lb, s in self.conn.execute(
                    f"SELECT item_id, label, score FROM item_labels WHERE item_id IN ({','.join('?' * len(chunk))}) "
                    "ORDER BY item_id, score DESC", chunk):
                out.setdefault(int(i), []).append((str(lb), float(s)))
        return out

    # ------------------------------------------------------------------ pending work
    def pending(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vec_rows)`` of searchable items whose ``column`` (``cluster``,
        ``label_score`` or ``map_x``) is not assigned yet."""
        # The partial indexes of migration 3 hold exactly the rows whose column is NULL, so this
        # costs what is pending, not the collection's size (the planner would take items_status).
        index = {"cluster": "items_no_cluster", "label_score": "items_no_label", "map_x": "items_no_position"}[column]
        rows = self.conn.execute(f"SELECT id, vec_row FROM items INDEXED BY {index} WHERE {column} IS NULL "
                                 "AND status = 'ok' ORDER BY vec_row").fetchall()
        arr = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return arr[:, 0].copy(), arr[:, 1].copy()

    # ------------------------------------------------------------------ map
    def clear_map(self) -> None:
        self.bump()
        self.conn.execute("UPDATE items SET map_x = NULL, map_y = NULL WHERE map_x IS NOT NULL")

    def set_positions(self, ids: Sequence[int], xy: np.ndarray) -> None:
        self.bump()
        self.conn.executemany("UPDATE items SET map_x = ?, map_y = ? WHERE id = ?",
                              ((float(x), float(y), int(i)) for i, (x, y) in zip(ids, xy)))

    def map_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """``(ids, xy, clusters, label positions, folders)`` of every placed searchable item, by
        id: ``clusters`` -2 where there is none, label positions index the label set (-1: none),
        ``folders`` index the returned list of folders (each with its trailing separator)."""
        # rtrim(path, <path without separators>) cuts the file name in SQLite's C code: a
        # million os.path.dirname calls would cost seconds.
        rows = self.conn.execute(
            "SELECT id, map_x, map_y, COALESCE(cluster, -2), "
            "COALESCE((SELECT position FROM label_set WHERE label_set.label = items.label), -1), "
            "rtrim(path, replace(path, ?, '')) FROM items WHERE status = 'ok' AND map_x IS NOT NULL ORDER BY id",
            (os.sep,)).fetchall()
        if not rows:
            return (np.zeros(0, np.int64), np.zeros((0, 2), np.float32), np.zeros(0, np.int32),
                    np.zeros(0, np.int32), np.zeros(0, np.int32), [])
        ids, xs, ys, clusters, labels, folders = zip(*rows)
        index: dict[str, int] = {}
        folder_idx = np.fromiter((index.setdefault(f, len(index)) for f in folders), np.int32, len(rows))
        xy = np.column_stack([np.array(xs, np.float32), np.array(ys, np.float32)])
        return (np.array(ids, np.int64), xy, np.array(clusters, np.int32), np.array(labels, np.int32),
                folder_idx, list(index))
