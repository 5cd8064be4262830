"""The collection's cached nearest-neighbour lists (``neighbours.npz``), kept up to date.

Finding duplicates needs each item's few nearest neighbours. They are computed once and
stored beside the vectors; a later run searches only the rows added since and drops the
rows removed (:func:`~lookalike.index.neighbours.update_knn_graph`), so a second run on an
unchanged collection reads one file. The file records the vector file generation it was
computed for: after a compaction renumbered the rows, it is recomputed from scratch.

Searching is exact below :data:`~lookalike.index.rank.EXACT_BELOW` live rows and goes through
the collection's tuned approximate index above it (exact scores either way).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from ..fsutil import atomic_writer
from ..index.neighbours import DEFAULT_K, KnnGraph, knn_graph, update_knn_graph
from ..index.rank import uses_index
from ..progress import ProgressCallback, ProgressEvent

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["NEIGHBOURS_FILE", "neighbour_graph"]

log = logging.getLogger("lookalike")

NEIGHBOURS_FILE = "neighbours.npz"
#: Recompute every list once more than this share of the cached rows is gone.
REBUILD_REMOVED_SHARE = 0.2


def _load(storage: "Storage", k: int) -> KnnGraph | None:
    path = storage.path / NEIGHBOURS_FILE
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["vector_file"]) != storage.vector_file.path.name or int(data["k"]) != k:
                return None
            graph = KnnGraph(data["rows"], data["nbrs"], data["sims"])
    except (OSError, KeyError, ValueError) as exc:
        log.warning("%s: unreadable neighbour cache (%s); recomputing it", path, exc)
        return None
    if len(graph.rows) and int(graph.rows.max()) >= storage.vector_rows:
        return None  # rows that were never committed: not ours to trust
    return graph


def _save(storage: "Storage", graph: KnnGraph) -> None:
    with atomic_writer(storage.path / NEIGHBOURS_FILE, durable=False) as f:  # a cache: rebuilt if lost
        np.savez(f, rows=graph.rows, nbrs=graph.nbrs, sims=graph.sims, k=np.int64(graph.k),
                 vector_file=np.str_(storage.vector_file.path.name))


def neighbour_graph(storage: "Storage", *, k: int = DEFAULT_K, save: bool = True,
                    progress: ProgressCallback | None = None) -> KnnGraph:
    """The ``k`` nearest neighbours of every live vector row, from the cache where it is
    current, searching only what changed. ``save`` writes the result back (the caller then
    holds the writer lock)."""
    live = storage.live_rows()
    vectors = storage.vectors()
    ann = storage.ann_index() if uses_index(len(live), forced=storage.index_settings().forced) else None
    cached = _load(storage, k)
    if cached is not None and np.array_equal(cached.rows, live):
        return cached
    if cached is not None and len(cached.rows) and np.isin(cached.rows, live).mean() < 1 - REBUILD_REMOVED_SHARE:
        cached = None  # lists that lost many neighbours are not refilled by an update: start over
    base = 0 if cached is None else int(np.isin(live, cached.rows).sum())
    total = len(live) - base

    def report(done: int) -> None:
        if progress is not None:
            progress(ProgressEvent("neighbours", done=done, total=total))

    if cached is None:
        graph = knn_graph(vectors, live, k, ann=ann, progress=report)
    else:
        graph = update_knn_graph(cached, vectors, live, ann=ann, progress=report)
    if save:
        _save(storage, graph)
    return graph
