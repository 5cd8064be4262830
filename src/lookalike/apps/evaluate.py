"""Retrieval quality on labelled images: kNN accuracy, recall@k and mean average precision.

All metrics are leave-one-out over one labelled set: each image queries all the others, and
an image is relevant when it shares the query's label. Vectors are assumed L2-normalised,
so the inner product ranks by cosine similarity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..images.decode import ImageSource, decode_image

__all__ = [
    "RetrievalScores",
    "image_retrieval",
    "text_retrieval_map",
    "average_precision",
    "colour_histogram",
    "raw_pixels",
]


@dataclass(frozen=True)
class RetrievalScores:
    """Leave-one-out image-to-image retrieval quality."""

    knn1: float
    recall_at: dict[int, float]
    map: float
    n: int

    def __str__(self) -> str:
        recalls = " ".join(f"R@{k} {v:.3f}" for k, v in sorted(self.recall_at.items()))
        return f"kNN@1 {self.knn1:.3f}  {recalls}  mAP {self.map:.3f}  (n={self.n})"


def average_precision(relevant_sorted: np.ndarray) -> float:
    """AP of one ranking, given the relevance (bool) of results in ranked order."""
    hits = np.flatnonzero(relevant_sorted)
    if hits.size == 0:
        return 0.0
    return float(np.mean(np.arange(1, hits.size + 1) / (hits + 1)))


def _labels_array(labels: Sequence[object]) -> np.ndarray:
    _, codes = np.unique(np.asarray([str(x) for x in labels]), return_inverse=True)
    return codes


def image_retrieval(vectors: np.ndarray, labels: Sequence[object], ks: Sequence[int] = (1, 5, 10)) -> RetrievalScores:
    """Leave-one-out kNN@1 accuracy, recall@k (any relevant in the top k) and mAP."""
    codes = _labels_array(labels)
    v = np.asarray(vectors, dtype=np.float32)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :-1]  # drop self, ranked last
    relevant = codes[order] == codes[:, None]
    recall = {k: float(np.mean(relevant[:, :k].any(axis=1))) for k in ks}
    aps = [average_precision(row) for row in relevant]
    return RetrievalScores(knn1=float(np.mean(relevant[:, 0])), recall_at=recall, map=float(np.mean(aps)), n=len(v))


def text_retrieval_map(query_vectors: np.ndarray, query_labels: Sequence[object], vectors: np.ndarray,
                       labels: Sequence[object]) -> float:
    """mAP of ranking all images for each text query; relevant = images with the query's label."""
    img_labels = np.asarray([str(x) for x in labels])
    sims = np.asarray(query_vectors, dtype=np.float32) @ np.asarray(vectors, dtype=np.float32).T
    order = np.argsort(-sims, axis=1, kind="stable")
    aps = [average_precision(img_labels[row] == str(lab)) for row, lab in zip(order, query_labels)]
    return float(np.mean(aps))


# Baselines: what any learned embedding must beat to be worth its compute. Both return
# L2-normalised float32 rows, like a model, so the same metrics apply.


def colour_histogram(images: Sequence[ImageSource], bins: int = 8) -> np.ndarray:
    """Joint RGB histograms (``bins**3``), square-rooted (Hellinger) and L2-normalised."""
    out = np.empty((len(images), bins**3), dtype=np.float32)
    for i, src in enumerate(images):
        img = decode_image(src, min_side=128).image.resize((128, 128))
        q = (np.asarray(img, dtype=np.uint16) * bins // 256).reshape(-1, 3)
        idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
        h = np.sqrt(np.bincount(idx, minlength=bins**3).astype(np.float32))
        out[i] = h / np.linalg.norm(h)
    return out


def raw_pixels(images: Sequence[ImageSource], side: int = 16) -> np.ndarray:
    """Raw ``side x side`` RGB pixels, mean-centred and L2-normalised."""
    out = np.empty((len(images), side * side * 3), dtype=np.float32)
    for i, src in enumerate(images):
        v = np.asarray(decode_image(src, min_side=side).image.resize((side, side)), dtype=np.float32).reshape(-1)
        v -= v.mean()
        out[i] = v / (np.linalg.norm(v) + 1e-8)
    return out
