"""Give items that have none yet their cluster and zero-shot labels, from what is stored.

The clustering's centroids and the label set's prompt prototypes are stored in the
collection, so assigning a new item needs only its vector: no model, no refit. The indexer
calls :func:`assign_pending` after each commit (new items join the nearest cluster and get
their labels at index time); reads call it too when they can take the write lock, so items
restored by an undo, or added by an older release, catch up. It is idempotent: an
interrupted run leaves items pending, and the next call finishes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..explore import assign, score
from .explore_db import CLUSTERING, LABELLING, ExploreTables

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["assign_pending", "label_rows"]

_CHUNK = 50_000  # rows read and written per transaction: bounded memory at any size


def assign_pending(storage: "Storage") -> int:
    """Assign every pending item its cluster and labels (the caller holds the write lock);
    returns how many assignments were written."""
    tables = ExploreTables(storage.db, storage.manifest.dim)
    done = 0
    if tables.settings(CLUSTERING) is not None:
        centroids = tables.centroids()
        done += _each_chunk(storage, tables, "cluster", lambda ids, v: tables.set_clusters(ids, _nearest(v, centroids)))
    meta = tables.settings(LABELLING)
    if meta is not None:
        labels, prototypes = tables.label_set()

        def write(ids: np.ndarray, vectors: np.ndarray) -> None:
            tables.set_labels(ids, *label_rows(ids, vectors, labels, prototypes, bool(meta["multi"]),
                                               meta["min_score"]))

        done += _each_chunk(storage, tables, "label_score", write)
    return done


def _nearest(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    if len(centroids) == 0:
        return np.full(len(vectors), -1, dtype=np.int32)  # a clustering of nothing: noise
    return assign(vectors, centroids)[0]


def _each_chunk(storage: "Storage", tables: ExploreTables, column: str, write) -> int:  # noqa: ANN001
    (ids, rows), mm = storage.consistent_read(lambda: tables.pending(column))
    for start in range(0, len(ids), _CHUNK):
        vectors = np.asarray(mm[rows[start : start + _CHUNK]], dtype=np.float32)
        with storage.db.transaction():
            write(ids[start : start + _CHUNK], vectors)
    return len(ids)


def label_rows(ids: np.ndarray, vectors: np.ndarray, labels: Sequence[str], prototypes: np.ndarray, multi: bool,
               min_score: float | None) -> tuple[list[str | None], np.ndarray, list[tuple[int, str, float]]]:
    """``(top label or None, top score, item_labels rows)`` of the given items.

    The top label is kept when it scores at least ``min_score`` (always, when None); with
    ``multi``, every label that does is an ``item_labels`` row too.
    """
    if len(prototypes) == 0 or len(vectors) == 0:
        return [None] * len(ids), np.zeros(len(ids), np.float32), []
    scores = score(vectors, prototypes)
    best = scores.argmax(axis=1)
    top_scores = scores[np.arange(len(ids)), best]
    keep = np.ones(len(ids), bool) if min_score is None else top_scores >= min_score
    top = [labels[int(b)] if k else None for b, k in zip(best, keep)]
    rows = [(int(i), labels[int(b)], float(s)) for i, b, s, k in zip(ids, best, top_scores, keep) if k]
    if multi and min_score is not None:
        r, c = np.nonzero(scores >= min_score)
        rows += [(int(ids[i]), labels[j], float(scores[i, j])) for i, j in zip(r, c) if j != best[i]]
    return top, top_scores, rows
