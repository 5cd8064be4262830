"""Derived arrays cached beside a collection in ``.npz`` files, each under a string key.

The key says what the arrays were computed from (a model fingerprint and inputs, a
generation); a file with another key, a missing file or an unreadable one is a miss, and
the caller computes the arrays again. Writes are atomic but not fsynced: a cache lost in a
power cut is recomputed, one half-written is never read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fsutil import atomic_writer

__all__ = ["load_cached", "save_cached"]


def load_cached(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path`` under ``key``, or None."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) == key:
                return {name: stored[name] for name in stored.files if name != "key"}
    except (OSError, KeyError, ValueError):
        pass  # none yet, or unreadable: the caller computes them again
    return None


def save_cached(path: Path, key: str, **arrays: np.ndarray) -> None:
    """Store ``arrays`` at ``path`` under ``key``, replacing what was there."""
    with atomic_writer(path, durable=False) as f:
        np.savez(f, key=np.array(key), **arrays)
