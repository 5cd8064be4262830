"""Clustering a collection: compute, store, read (``Collection.cluster`` and friends).

The algorithms are :mod:`lookalike.explore` (spherical k-means through FAISS with k chosen by
silhouette, or HDBSCAN); this module feeds them the collection's vectors and keeps the
result: each cluster's centroid, name and most central items in the ``clusters`` table and
each item's cluster in its row. Items added later join the nearest centroid at index time
(:mod:`.assign`); ``refresh`` recomputes.

A cluster is named from what the model can say about its centroid: with a text model, the
best zero-shot label from a vocabulary (the built-in one by default); with an image-only
model, the most common folder name among its members.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..errors import InvalidArgument
from ..explore import builtin_vocabulary, central, choose_k, hdbscan_clusters, label_prototypes, spherical_kmeans
from ..progress import ProgressCallback, ProgressEvent
from .explore_db import CLUSTERING, ExploreTables
from .explore_types import NOISE, Cluster, Clustering
from .npz_cache import load_cached, save_cached
from .vectors import take_rows

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["ClusterSettings", "compute_clusters", "read_clustering", "ranked_members", "METHODS", "CENTRAL"]

METHODS = ("kmeans", "hdbscan")
#: Central items kept per cluster (the contact sheet's size).
CENTRAL = 12
#: Naming needs only the rough sense of a word, so one neutral template (labelling, where the
#: scores are what the user sees, averages all of DEFAULT_TEMPLATES).
NAMING_TEMPLATES = ("a picture of a {}.",)
VOCABULARY_CACHE = "vocabulary.npz"

EncodeText = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class ClusterSettings:
    """How to cluster. ``k`` None chooses it (k-means) or lets density decide (HDBSCAN);
    ``vocabulary`` None names clusters from the built-in vocabulary."""

    method: str = "kmeans"
    k: int | None = None
    min_cluster_size: int | None = None
    vocabulary: tuple[str, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidArgument(f"unknown clustering method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.k is not None and self.k < 1:
            raise InvalidArgument(f"k must be at least 1, not {self.k}")
        if self.k is not None and self.method == "hdbscan":
            raise InvalidArgument("HDBSCAN finds the number of clusters itself; drop k, or use method 'kmeans'")
        if self.min_cluster_size is not None and self.min_cluster_size < 2:
            raise InvalidArgument(f"min_cluster_size must be at least 2, not {self.min_cluster_size}")
        if self.vocabulary is not None and not self.vocabulary:
            raise InvalidArgument("the vocabulary is empty; give some names, or leave it out for the built-in one")

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["vocabulary"] = list(self.vocabulary) if self.vocabulary is not None else None
        return d


def compute_clusters(storage: "Storage", settings: ClusterSettings, encode_text: EncodeText | None,
                     progress: ProgressCallback | None = None) -> None:
    """Cluster every searchable item and store the result (the caller holds the write lock).

    ``encode_text`` names clusters by zero-shot label (None: by folder).

    Raises:
        InvalidArgument: ``k`` is larger than the collection.
    """
    emit = progress or (lambda e: None)
    ids, rows, mm = storage.search_arrays(None)
    n = len(ids)
    if settings.k is not None and settings.k > max(n, 1):
        raise InvalidArgument(f"k={settings.k} but {storage.path} has {n} searchable item(s); "
                              f"ask for {max(n, 1)} or fewer clusters, or leave k out to choose it")
    vectors = take_rows(mm, rows)
    k_chosen_by, k_scores = "given", {}
    if n == 0:
        assignment, centroids = np.zeros(0, np.int32), np.zeros((0, storage.manifest.dim), np.float32)
    elif settings.method == "hdbscan":
        emit(ProgressEvent("cluster", done=0, total=1, reason="finding dense regions"))
        assignment, centroids = hdbscan_clusters(vectors, min_cluster_size=settings.min_cluster_size,
                                                 seed=settings.seed, progress=progress)
        k_chosen_by = "density"
    else:
        k = settings.k
        if k is None:
            emit(ProgressEvent("cluster", done=0, total=2, reason="choosing k"))
            choice = choose_k(vectors, seed=settings.seed, progress=progress)
            k, k_chosen_by, k_scores = choice.k, "silhouette", dict(choice.scores)
        emit(ProgressEvent("cluster", done=1, total=2, reason=f"k-means, k={k}"))
        result = spherical_kmeans(vectors, k, seed=settings.seed)  # clusters numbered largest first
        assignment, centroids = result.assignment, result.centroids
    members = [np.flatnonzero(assignment == c) for c in range(len(centroids))]
    centrals = [ids[m[central(vectors[m], centroids[c], CENTRAL)]] for c, m in enumerate(members)]
    emit(ProgressEvent("cluster", done=2, total=2, reason="naming clusters"))
    names = _names(centroids, [ids[m] for m in members], storage, settings, encode_text)
    tables = ExploreTables(storage.db, storage.manifest.dim)
    with storage.db.transaction():
        tables.replace_clusters(centroids, names, [c.tolist() for c in centrals], ids, assignment)
        tables.set_settings(CLUSTERING, {**settings.as_dict(), "k_chosen_by": k_chosen_by,
                                         "k_scores": {str(k): v for k, v in k_scores.items()}})


def _names(centroids: np.ndarray, members: Sequence[np.ndarray], storage: "Storage", settings: ClusterSettings,
           encode_text: EncodeText | None) -> list[str]:
    if len(centroids) == 0:
        return []
    if encode_text is not None:
        vocabulary = list(settings.vocabulary) if settings.vocabulary is not None else builtin_vocabulary()
        scores = centroids @ _vocabulary_prototypes(storage, vocabulary, encode_text).T
        names = [vocabulary[int(i)] for i in scores.argmax(axis=1)]
    else:
        names = [_common_folder([r.path for r in storage.db.get_many(ids[:10_000].tolist()).values()])
                 for ids in members]
    return _distinct(names)


def _vocabulary_prototypes(storage: "Storage", vocabulary: list[str], encode_text: EncodeText) -> np.ndarray:
    """The vocabulary's label prototypes, cached in the collection (``vocabulary.npz``): the
    built-in vocabulary is a few hundred words, seconds to tens of seconds of text embedding
    on a CPU, and the same for every clustering of one collection (one model)."""
    key = hashlib.sha256(json.dumps([storage.manifest.fingerprint, vocabulary, NAMING_TEMPLATES]).encode()).hexdigest()
    cache = storage.path / VOCABULARY_CACHE
    stored = load_cached(cache, key)
    if stored is not None:
        return np.asarray(stored["prototypes"], dtype=np.float32)
    prototypes = label_prototypes(vocabulary, encode_text, NAMING_TEMPLATES)
    save_cached(cache, key, prototypes=prototypes)
    return prototypes


def _common_folder(paths: Sequence[str]) -> str:
    folders = Counter(os.path.basename(os.path.dirname(p)) or os.sep for p in paths)
    return folders.most_common(1)[0][0] if folders else "(empty)"


def _distinct(names: list[str]) -> list[str]:
    """Clusters are largest first: the largest keeps a shared name, the others get "name 2", "name 3"."""
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name} {seen[name]}")
    return out


def read_clustering(storage: "Storage") -> Clustering | None:
    """The stored clustering, or None; sizes are counted now, deleted items left out."""
    tables = ExploreTables(storage.db, storage.manifest.dim)
    with storage.db.snapshot():
        meta = tables.settings(CLUSTERING)
        if meta is None:
            return None
        stored = tables.clusters()
        sizes = tables.cluster_sizes()
        wanted = sorted({i for _, _, _, cc in stored for i in cc})
        items = storage.db.get_many(wanted)
        generation = storage.db.generation()
    clusters = []
    for cid, name, centroid, cc in stored:
        central_items = [items[i].public() for i in cc if i in items]
        clusters.append(Cluster(cid, name, sizes.get(cid, 0), centroid, central_items))
    clusters.sort(key=lambda c: (-c.size, c.id))
    return Clustering(method=str(meta["method"]), k=len(stored), k_chosen_by=str(meta["k_chosen_by"]),
                      k_scores={int(k): float(v) for k, v in meta["k_scores"].items()}, clusters=clusters,
                      noise=sizes.get(NOISE, 0), unassigned=sizes.get(None, 0), generation=generation)


def ranked_members(storage: "Storage", cluster_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, cosine to the centroid)`` of a cluster's members, closest first (the noise
    group, -1, by id with no score).

    Raises:
        InvalidArgument: no cluster with that id.
    """
    tables = ExploreTables(storage.db, storage.manifest.dim)
    centroids = tables.centroids()
    if cluster_id != NOISE and not 0 <= cluster_id < len(centroids):
        raise InvalidArgument(f"no cluster {cluster_id} in {storage.path}: the clustering has "
                              f"{len(centroids)} cluster(s), ids 0 to {len(centroids) - 1}")
    (ids, rows), mm = storage.consistent_read(lambda: tables.cluster_members(cluster_id))
    if cluster_id == NOISE:
        return ids, np.full(len(ids), np.nan, dtype=np.float32)
    scores = np.asarray(mm[rows], dtype=np.float32) @ centroids[cluster_id]
    order = np.argsort(-scores, kind="stable")
    return ids[order], scores[order]
