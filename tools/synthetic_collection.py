"""Collections of any size in seconds, for benchmarks and UI tests: rows and vectors written
straight through the storage layer, with no images decoded and no model run.

The items' files do not exist (their paths are made up) unless the caller writes them; what
such a collection is for is everything downstream of the vectors: neighbour lists,
duplicate grouping, paging, the web UI. The model named in the manifest is the caller's
(a tiny local model directory is enough, since nothing is embedded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

import lookalike
from lookalike.store.storage import Storage

__all__ = ["write_synthetic_collection", "planted_vectors"]


def planted_vectors(n: int, groups: int, dim: int, *, seed: int = 0, noise: float = 0.05,
                    sizes: Sequence[int] = (2, 3)) -> tuple[np.ndarray, list[list[int]]]:
    """``n`` random unit vectors of which the first rows form ``groups`` planted near-duplicate
    groups (sizes cycling through ``sizes``); returns the vectors and the groups' rows."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    planted, row = [], 0
    for g in range(groups):
        size = sizes[g % len(sizes)]
        if row + size > n:
            break
        v[row + 1: row + size] = v[row] + rng.normal(size=(size - 1, dim)).astype(np.float32) * noise
        planted.append(list(range(row, row + size)))
        row += size
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v, planted


def write_synthetic_collection(path: Path, vectors: np.ndarray, *, model: str, folder: str = "/synthetic",
                               batch: int = 50_000) -> lookalike.Collection:
    """A collection at ``path`` whose items are ``folder/NNNNNNN.jpg`` with these vectors
    (``model`` must have their dimension). Returns it open."""
    coll = lookalike.Collection.create(path, model=model, device="cpu")
    storage: Storage = coll._storage  # the storage layer is what this tool exists to drive
    if storage.manifest.dim != vectors.shape[1]:
        raise ValueError(f"{model} has dimension {storage.manifest.dim}, the vectors {vectors.shape[1]}")
    with storage.write_lock():
        for start in range(0, len(vectors), batch):
            stop = min(len(vectors), start + batch)
            rows = [(f"{folder}/{i:07d}.jpg", 1000 + i, 1_700_000_000_000_000_000 + i * 10**9, f"{i:032x}",
                     640, 480, "ok", None, i) for i in range(start, stop)]
            storage.commit_vectors(np.ascontiguousarray(vectors[start:stop], dtype=np.float32),
                                   lambda rows=rows: storage.db.upsert(rows))
    return coll
