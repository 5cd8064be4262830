"""Retrieval quality on labelled images: kNN accuracy, recall@k and mean average precision.

All metrics are leave-one-out over one labelled set: each image queries all the others, and
an image is relevant when it shares the query's label. Vectors are assumed L2-normalised,
so the inner product ranks by cosine similarity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["RetrievalScores", "image_retrieval", "text_retrieval_map", "average_precision"]


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
