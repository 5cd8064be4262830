"""The keyed .npz caches beside a collection: a hit only under the same key, never a crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lookalike.store.npz_cache import load_cached, save_cached


def test_a_hit_needs_the_same_key_and_a_bad_file_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    assert load_cached(path, "a") is None  # no file yet
    save_cached(path, "a", xy=np.arange(6, dtype=np.float32).reshape(3, 2), names=np.array(["x", "y"]))
    hit = load_cached(path, "a")
    assert hit is not None and hit["xy"].tolist() == [[0, 1], [2, 3], [4, 5]] and hit["names"].tolist() == ["x", "y"]
    assert load_cached(path, "b") is None  # computed from something else
    path.write_bytes(b"not an npz")
    assert load_cached(path, "a") is None
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left behind
