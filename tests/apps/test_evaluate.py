"""The retrieval metrics against hand-computed values, and the baselines' contracts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.apps.evaluate import (
    average_precision,
    colour_histogram,
    image_retrieval,
    raw_pixels,
    text_retrieval_map,
)


def test_average_precision_by_hand() -> None:
    """AP of relevant at ranks 1 and 3 is (1/1 + 2/3) / 2."""
    assert average_precision(np.array([True, False, True, False])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([False, False])) == 0.0


def test_image_retrieval_perfect_and_inverted() -> None:
    """Two tight, well separated clusters score 1.0 everywhere; a swapped labelling scores lower."""
    a = np.array([[1.0, 0.0], [0.99, 0.14], [0.98, 0.2]])
    b = np.array([[0.0, 1.0], [0.14, 0.99], [0.2, 0.98]])
    v = np.vstack([a, b]).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    perfect = image_retrieval(v, ["a", "a", "a", "b", "b", "b"], ks=(1, 2))
    assert perfect.knn1 == 1.0 and perfect.map == pytest.approx(1.0) and perfect.recall_at[2] == 1.0
    mixed = image_retrieval(v, ["a", "b", "a", "b", "a", "b"], ks=(1, 2))
    assert mixed.knn1 < 1.0 and mixed.map < 1.0


def test_text_retrieval_map_ranks_by_label() -> None:
    """A query vector equal to one image's direction retrieves its label's images first."""
    imgs = np.eye(3, dtype=np.float32)
    queries = np.array([[1, 0, 0], [0, 0, 1]], dtype=np.float32)
    assert text_retrieval_map(queries, ["x", "z"], imgs, ["x", "y", "z"]) == pytest.approx(1.0)
    # "y" ranks 2nd for the first query (ties keep input order) and 3rd for the second.
    assert text_retrieval_map(queries, ["y", "y"], imgs, ["x", "y", "z"]) == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_baselines_are_unit_rows() -> None:
    """Histogram and raw-pixel baselines return L2-normalised float32 rows, distinct per image."""
    imgs = [Image.new("RGB", (40, 30), c) for c in [(255, 0, 0), (0, 0, 255)]]
    for fn, dim in [(colour_histogram, 512), (raw_pixels, 768)]:
        out = fn(imgs)
        assert out.shape == (2, dim) and out.dtype == np.float32
        assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    hist = colour_histogram(imgs)
    assert float(hist[0] @ hist[1]) < 0.01
