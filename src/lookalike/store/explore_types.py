"""The typed results of exploring a collection: clusters, zero-shot labels and the 2-D map.

They are what :class:`~lookalike.store.collection.Collection` returns from ``cluster``,
``label`` and ``map``; the arrays behind them are stored in the collection (SQLite, and the
map's fitted reducer beside it), so they stay current as items are added and removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .items import Item

__all__ = ["Cluster", "Clustering", "LabelCount", "Labelling", "MapPoints", "NO_CLUSTER", "NOISE"]

#: ``MapPoints.clusters`` for an item with no cluster (none computed, or added since).
NO_CLUSTER = -2
#: The cluster id of HDBSCAN's noise group (items in no dense region).
NOISE = -1


@dataclass(frozen=True)
class Cluster:
    """One cluster of a :class:`Clustering`.

    Attributes:
        id: stable within one clustering (0, 1, ...); a new clustering renumbers.
        name: the best zero-shot label from the vocabulary (text models), or the most common
            folder name among its members (image-only models).
        size: items in it now (items added since clustering are assigned at index time).
        centroid: unit ``(dim,)`` float32.
        central: its most central items, the medoid first.
    """

    id: int
    name: str
    size: int
    centroid: np.ndarray = field(repr=False)
    central: list[Item] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class Clustering:
    """The stored clustering of a collection.

    Attributes:
        method: ``"kmeans"`` or ``"hdbscan"``.
        k: how many clusters (the noise group not counted).
        k_chosen_by: ``"given"`` (``k=``), ``"silhouette"`` (best on a sample over a grid of
            k, see :func:`lookalike.explore.kmeans.choose_k`) or ``"density"`` (HDBSCAN).
        k_scores: the silhouette of each k tried (empty unless chosen by silhouette).
        clusters: largest first.
        noise: items in the noise group (HDBSCAN), else 0.
        unassigned: searchable items in no cluster and not noise (normally 0).
        generation: :attr:`Collection.generation` when this was read.
    """

    method: str
    k: int
    k_chosen_by: str
    k_scores: dict[int, float]
    clusters: list[Cluster]
    noise: int = 0
    unassigned: int = 0
    generation: int = 0

    def by_id(self, cluster_id: int) -> Cluster | None:
        return next((c for c in self.clusters if c.id == cluster_id), None)


@dataclass(frozen=True)
class LabelCount:
    label: str
    count: int


@dataclass(frozen=True)
class Labelling:
    """The stored zero-shot labels of a collection.

    Attributes:
        labels: the label set, in the order given.
        templates: the prompt templates averaged per label (``"a photo of a {}."`` ...).
        multi: whether every label scoring at least ``min_score`` is stored, not only the top one.
        min_score: items whose best label scores below it get no label (None: every item
            gets its best label).
        counts: items whose top label is each label, in label order.
        labelled: items with a top label.
    """

    labels: list[str]
    templates: list[str]
    multi: bool
    min_score: float | None
    counts: list[LabelCount]
    labelled: int


@dataclass(frozen=True)
class MapPoints:
    """Every searchable item's place on the 2-D map, with what the map can colour by.

    Attributes:
        method: ``"umap"``, ``"tsne"`` or ``"pca"``.
        ids: ``(n,)`` int64 item ids.
        xy: ``(n, 2)`` float32 coordinates.
        clusters: ``(n,)`` int32 cluster ids (:data:`NOISE`, or :data:`NO_CLUSTER` for none).
        labels: ``(n,)`` int32 index into ``label_names`` of the top label, -1 for none.
        folders: ``(n,)`` int32 index into ``folder_names`` (each item's parent folder).
        sampled: whether the reducer was fitted on a sample and the rest placed with ``transform``.
        fitted_on: how many items the reducer was fitted on.
        placed: items placed with ``transform`` after the fit (new items, and the rest of a sample fit).
    """

    method: str
    ids: np.ndarray
    xy: np.ndarray
    clusters: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    folders: np.ndarray
    folder_names: list[str]
    sampled: bool = False
    fitted_on: int = 0
    placed: int = 0

    def __len__(self) -> int:
        return len(self.ids)
