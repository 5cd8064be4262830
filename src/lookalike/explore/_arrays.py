"""Shared array plumbing for the explore algorithms: input checks and bounded-memory chunking."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..errors import InvalidArgument

#: Rows handled at once by the chunked passes. 65,536 x 512 float32 is 128 MiB, so a pass over
#: a million-row memmap never holds more than a chunk (and its products) in memory.
CHUNK = 65_536


def as_matrix(vectors: np.ndarray, what: str = "vectors") -> np.ndarray:
    """``vectors`` as a 2-D float32 array, without copying float32 input (a memmap stays one).

    An empty 1-D input is read as zero rows. NaN or infinite values raise
    :class:`InvalidArgument`, since every algorithm here would turn them into garbage silently.
    """
    x = np.asarray(vectors)
    if x.ndim == 1 and x.size == 0:
        x = x.reshape(0, 0)
    if x.ndim != 2:
        raise InvalidArgument(f"{what} must be a 2-D array (rows x dimensions), got shape {x.shape}")
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    for start, block in chunks(x):
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = start + int(np.argmin(finite))
            raise InvalidArgument(f"{what} row {row} holds NaN or infinite values; re-embed that item")
    return x


def chunks(x: np.ndarray, size: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, x[start:start+size])`` over the rows of ``x``."""
    for start in range(0, len(x), size):
        yield start, x[start : start + size]


def unit_rows(x: np.ndarray) -> np.ndarray:
    """A float32 copy of ``x`` with rows scaled to unit length (all-zero rows stay zero)."""
    out = np.array(x, dtype=np.float32, copy=True)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out /= np.maximum(norms, 1e-12)
    return out


def sample_rows(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random sample of ``min(n, limit)`` of ``n`` rows (all when n <= limit).

    Sorted so that gathering them from a memmap reads the file front to back.
    """
    if n <= limit:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=limit, replace=False)).astype(np.int64)
