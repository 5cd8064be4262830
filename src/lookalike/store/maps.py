"""The 2-D map of a collection: fit, store, place new items, read (``Collection.map``).

The layouts are :mod:`lookalike.explore.layout` (UMAP by default, openTSNE, or PCA). A fit
stores every item's position in its row and the fitted reducer beside the database
(``map-<token>.pkl``, named in the ``map`` state, written before the transaction that makes
it current), so items added later are placed with the reducer's ``transform`` the next time
the map is read, without a refit; ``refresh`` refits. Copies of one file share a vector and
so a position; the fit sees each vector once.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidArgument
from ..explore import fit_layout, load_reducer, save_reducer
from ..progress import ProgressCallback, ProgressEvent
from .explore_db import MAP, ExploreTables
from .explore_types import MapPoints
from .npz_cache import load_cached, save_cached
from .vectors import take_rows

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["compute_map", "place_pending", "read_points", "map_settings"]

_PLACE_CHUNK = 50_000
POINTS_CACHE = "map-points.npz"


def map_settings(storage: "Storage") -> dict | None:
    return ExploreTables(storage.db, storage.manifest.dim).settings(MAP)


def compute_map(storage: "Storage", method: str, *, seed: int = 0, progress: ProgressCallback | None = None) -> None:
    """Fit a map of every searchable item and store it (the caller holds the write lock).

    Raises:
        InvalidArgument: an unknown method.
        MissingExtra: umap-learn or openTSNE is not installed.
    """
    t0 = time.perf_counter()
    ids, rows, mm = storage.search_arrays(None)
    unique, inverse = np.unique(rows, return_inverse=True)
    coords, reducer, info = fit_layout(take_rows(mm, unique), method, seed=seed, progress=progress)
    name = f"map-{secrets.token_hex(4)}.pkl"
    save_reducer(reducer, storage.path / name)
    tables = ExploreTables(storage.db, storage.manifest.dim)
    with storage.db.transaction():
        tables.clear_map()
        tables.set_positions(ids, coords[inverse.reshape(-1)] if len(ids) else coords)
        tables.set_settings(MAP, {"method": info.method, "requested": method, "reducer": name, "seed": seed,
                                  "fitted_on": info.fitted_on, "sampled": info.sampled, "items": len(ids),
                                  "placed": len(unique) - info.fitted_on,
                                  "seconds": round(time.perf_counter() - t0, 3)})
    _remove_other_reducers(storage, keep=name)


def _remove_other_reducers(storage: "Storage", keep: str) -> None:
    for path in storage.path.glob("map-*.pkl"):
        if path.name != keep:
            path.unlink(missing_ok=True)


def place_pending(storage: "Storage", progress: ProgressCallback | None = None) -> int:
    """Place items that have no position yet with the stored reducer's ``transform`` (the
    caller holds the write lock); returns how many were placed. No map: nothing to do.

    Raises:
        InvalidArgument: the reducer file is gone or unreadable (a refit makes a new one).
    """
    tables = ExploreTables(storage.db, storage.manifest.dim)
    meta = tables.settings(MAP)
    if meta is None:
        return 0
    (ids, rows), mm = storage.consistent_read(lambda: tables.pending("map_x"))
    if len(ids) == 0:
        return 0
    try:
        reducer = load_reducer(storage.path / str(meta["reducer"]))
    except (FileNotFoundError, InvalidArgument) as exc:
        raise InvalidArgument(f"{storage.path}: the map's fitted reducer {meta['reducer']} is missing or unreadable "
                              f"({exc}), so new items cannot be placed; refit the map with `lookalike map "
                              f"--refresh` (Collection.map(refresh=True))") from exc
    emit = progress or (lambda e: None)
    for start in range(0, len(ids), _PLACE_CHUNK):
        chunk_ids = ids[start : start + _PLACE_CHUNK]
        xy = reducer.transform(np.asarray(mm[rows[start : start + _PLACE_CHUNK]], dtype=np.float32))
        with storage.db.transaction():
            tables.set_positions(chunk_ids, xy)
        emit(ProgressEvent("map", done=start + len(chunk_ids), total=len(ids), reason="placing new items"))
    with storage.db.transaction():
        tables.set_settings(MAP, {**meta, "placed": int(meta.get("placed", 0)) + len(ids)})
    return len(ids)


def read_points(storage: "Storage") -> MapPoints | None:
    """Every placed item's position with its cluster, top label and folder; None: no map.

    The arrays are cached in ``map-points.npz``, keyed on the collection's generation and
    explore version (:meth:`ExploreTables.version`): reading a million rows from SQLite takes
    seconds, loading them from the cache a few tens of milliseconds.
    """
    tables = ExploreTables(storage.db, storage.manifest.dim)
    with storage.db.snapshot():
        meta = tables.settings(MAP)
        if meta is None:
            return None
        key = "{}/{}".format(*tables.version())
        arrays = load_cached(storage.path / POINTS_CACHE, key)
        if arrays is None:
            ids, xy, clusters, labels, folders, folder_names = tables.map_rows()
            arrays = {"ids": ids, "xy": xy, "clusters": clusters, "labels": labels, "folders": folders,
                      "label_names": np.array(tables.label_set()[0], dtype=str),
                      "folder_names": np.array([f.rstrip(os.sep) or os.sep for f in folder_names], dtype=str)}
            save_cached(storage.path / POINTS_CACHE, key, **arrays)
    return MapPoints(method=str(meta["method"]), ids=arrays["ids"], xy=arrays["xy"], clusters=arrays["clusters"],
                     labels=arrays["labels"], label_names=[str(x) for x in arrays["label_names"]],
                     folders=arrays["folders"], folder_names=[str(x) for x in arrays["folder_names"]],
                     sampled=bool(meta["sampled"]), fitted_on=int(meta["fitted_on"]),
                     placed=int(meta.get("placed", 0)))
