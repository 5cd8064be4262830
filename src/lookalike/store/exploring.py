"""``Collection``'s exploring methods: clusters, zero-shot labels and the 2-D map.

A mixin, so that :mod:`.collection` stays the facade for adding and searching; each method
here takes the writer lock when it computes, and reads what :mod:`.clusters`,
:mod:`.labels` and :mod:`.maps` stored. Reads first catch up on items added since (when no
other process is writing): their cluster and labels from the stored centroids and
prototypes, their map position from the stored reducer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..errors import InvalidArgument, UnsupportedModality
from ..explore import DEFAULT_TEMPLATES
from ..progress import ProgressCallback, ProgressEvent
from .assign import assign_pending
from .clusters import ClusterSettings, compute_clusters, ranked_members, read_clustering
from .explore_db import CLUSTERING, ExploreTables
from .explore_types import Clustering, Labelling, MapPoints
from .items import Hit
from .labels import LabelSettings, compute_labels, read_labelling
from .maps import compute_map, map_settings, place_pending, read_points

if TYPE_CHECKING:
    from ..models.lazy import LazyModel
    from .storage import Storage

__all__ = ["Exploring"]

log = logging.getLogger("lookalike")


class Exploring:
    """Clusters, labels and the map of a collection (mixed into ``Collection``)."""

    _storage: "Storage"
    _model: "LazyModel"
    _map_cache: tuple[tuple[int, int], MapPoints | None] | None = None

    # ------------------------------------------------------------------ clusters
    def cluster(self, k: int | None = None, *, method: str = "kmeans", vocabulary: Sequence[str] | None = None,
                min_cluster_size: int | None = None, refresh: bool = False,
                progress: ProgressCallback | None = None) -> Clustering:
        """Cluster the collection, or return the stored clustering made with the same settings.

        ``method`` is ``"kmeans"`` (spherical k-means; ``k`` None chooses k by the best
        silhouette on a sample, see :func:`lookalike.explore.choose_k`) or ``"hdbscan"``
        (density clusters plus a noise group, ``min_cluster_size`` tunes it). Clusters are
        named by the best label from ``vocabulary`` (default: the built-in one) with a text
        model, by their most common folder otherwise. Items added later join the nearest
        cluster as they are indexed; ``refresh`` recomputes.

        Raises:
            InvalidArgument: ``k`` larger than the collection, an unknown method.
            UnsupportedModality: a ``vocabulary`` with an image-only model.
            CollectionError: another process is adding to this collection.
            MissingExtra: FAISS or scikit-learn is not installed.
        """
        settings = ClusterSettings(method, k, min_cluster_size, tuple(vocabulary) if vocabulary is not None else None)
        with self._storage.write_lock():
            stored = ExploreTables(self._storage.db, self._storage.manifest.dim).settings(CLUSTERING)
            same = stored is not None and all(stored.get(key) == value for key, value in settings.as_dict().items())
            if refresh or not same:
                compute_clusters(self._storage, settings, self._text_encoder(required=vocabulary is not None),
                                 progress)
            else:
                assign_pending(self._storage)
        return read_clustering(self._storage)  # type: ignore[return-value]

    def clustering(self) -> Clustering | None:
        """The stored clustering (None: :meth:`cluster` was never run); computes nothing."""
        self._catch_up()
        return read_clustering(self._storage)

    def cluster_members(self, cluster_id: int, *, offset: int = 0, limit: int = 100) -> list[Hit]:
        """A cluster's items, closest to its centre first (``score``: cosine to the centroid).

        Raises:
            InvalidArgument: no such cluster.
        """
        self._catch_up()
        ids, scores = ranked_members(self._storage, int(cluster_id))
        ids, scores = ids[offset : offset + limit], scores[offset : offset + limit]
        rows = self._storage.db.get_many(ids.tolist())
        return [Hit(int(i), rows[int(i)].path, float(s)) for i, s in zip(ids, scores) if int(i) in rows]

    # ------------------------------------------------------------------ labels
    def label(self, labels: Sequence[str], *, templates: Sequence[str] | None = None, multi: bool = False,
              min_score: float | None = None, progress: ProgressCallback | None = None) -> Labelling:
        """Label every item with the zero-shot label its image is most similar to, and store it.

        Each label is embedded in every prompt template (default:
        :data:`lookalike.explore.DEFAULT_TEMPLATES`) and averaged. An item keeps its top label
        when it scores at least ``min_score`` (always, when None); ``multi`` keeps every label
        that does. The labels replace any earlier ones; items added later are labelled as they
        are indexed. Search with ``Filter(label=[...])``.

        Raises:
            UnsupportedModality: the collection's model embeds images only.
            InvalidArgument: no labels, repeated labels, ``multi`` without ``min_score``.
            CollectionError: another process is adding to this collection.
        """
        settings = LabelSettings(tuple(labels), tuple(templates) if templates else DEFAULT_TEMPLATES, multi, min_score)
        encode = self._text_encoder(required=True)
        assert encode is not None
        emit = progress or (lambda e: None)
        emit(ProgressEvent("label", done=0, total=1, reason=f"{len(settings.labels)} labels"))
        with self._storage.write_lock():
            compute_labels(self._storage, settings, encode)
        emit(ProgressEvent("label", done=1, total=1))
        return read_labelling(self._storage)  # type: ignore[return-value]

    def labelling(self) -> Labelling | None:
        """The stored labelling with current counts (None: :meth:`label` was never run)."""
        self._catch_up()
        return read_labelling(self._storage)

    def item_labels(self, ids: Sequence[int]) -> dict[int, list[tuple[str, float]]]:
        """``{id: [(label, score), ...]}``, best first, for the given ids that carry labels."""
        return ExploreTables(self._storage.db, self._storage.manifest.dim).item_labels(list(ids))

    # ------------------------------------------------------------------ map
    def map(self, *, method: str = "umap", refresh: bool = False,
            progress: ProgressCallback | None = None) -> MapPoints:
        """Every item's place on a 2-D map, fitted now or the stored one made with ``method``.

        ``method`` is ``"umap"`` (umap-learn), ``"tsne"`` (openTSNE) or ``"pca"`` (fast, no
        extra). Above :data:`lookalike.explore.layout.FULL_FIT_LIMIT` items the reducer is
        fitted on a sample and the rest placed with its ``transform`` (``MapPoints.sampled``).
        Items added later are placed with ``transform`` when the map is next read;
        ``refresh`` refits.

        Raises:
            InvalidArgument: an unknown method.
            MissingExtra: umap-learn or openTSNE is not installed.
            CollectionError: another process is adding to this collection.
        """
        with self._storage.write_lock():
            meta = map_settings(self._storage)
            if not (refresh or meta is None or meta.get("requested") != method):
                try:
                    place_pending(self._storage, progress)
                except InvalidArgument:
                    refresh = True  # the stored reducer is gone: a new fit is the only way on
            if refresh or meta is None or meta.get("requested") != method:
                compute_map(self._storage, method, progress=progress)
            assign_pending(self._storage)
        self._map_cache = None
        return read_points(self._storage)  # type: ignore[return-value]

    def map_points(self, progress: ProgressCallback | None = None) -> MapPoints | None:
        """The stored map (None: :meth:`map` was never run), new items placed first when no
        other process is writing. Cached until the collection changes."""
        self._catch_up(place=True, progress=progress)
        db = self._storage.db
        key = (db.data_version(), db.generation())
        if self._map_cache is None or self._map_cache[0] != key:
            self._map_cache = (key, read_points(self._storage))
        return self._map_cache[1]

    # ------------------------------------------------------------------ helpers
    def _catch_up(self, place: bool = False, progress: ProgressCallback | None = None) -> None:
        with self._storage.writer_if_free() as writer:
            if not writer:
                return
            changed = assign_pending(self._storage)
            if place:
                try:
                    changed += place_pending(self._storage, progress)
                except InvalidArgument as exc:
                    # A read shows the map as stored; Collection.map() refits (and says why here).
                    log.warning("%s", exc)
            if changed:
                self._map_cache = None  # this connection's own writes do not change data_version

    def _text_encoder(self, *, required: bool) -> Callable[[list[str]], np.ndarray] | None:
        model = self._model.get()
        if model.supports_text:
            return model.encode_text
        if required:
            raise UnsupportedModality(
                f"model '{self._storage.manifest.model_id}' embeds images only, so it cannot score text labels. "
                "Cluster instead (`lookalike cluster`: clusters are named by folder), or build a collection with "
                "a text model such as 'lite' or an openclip: model (see `lookalike models`).")
        return None
