"""Exploring a collection's vectors: clusters, zero-shot labels, a 2-D map, and faces grouped into people.

Pure array algorithms (no collection, no SQLite): the store layer feeds them vectors and
keeps what they return. Optional libraries (faiss, scikit-learn, umap-learn, openTSNE) are
imported only when an algorithm that needs them runs; a missing one raises
:class:`lookalike.errors.MissingExtra` naming ``pip install 'lookalike[explore]'``.
"""

from .density import SAMPLE_LIMIT, default_min_cluster_size, hdbscan_clusters
from .kmeans import DEFAULT_K_GRID, KChoice, KMeansResult, assign, central, choose_k, spherical_kmeans
from .layout import (
    FULL_FIT_LIMIT,
    METHODS,
    LayoutInfo,
    NeighbourReducer,
    PcaReducer,
    Reducer,
    fit_layout,
    load_reducer,
    save_reducer,
)
from .people import DEFAULT_MIN_FACES, DEFAULT_THRESHOLD, assign_new, face_neighbours, group_faces
from .zeroshot import DEFAULT_TEMPLATES, builtin_vocabulary, label_prototypes, parse_labels, score, top_labels

__all__ = [
    "KMeansResult",
    "KChoice",
    "DEFAULT_K_GRID",
    "spherical_kmeans",
    "choose_k",
    "assign",
    "central",
    "SAMPLE_LIMIT",
    "default_min_cluster_size",
    "hdbscan_clusters",
    "DEFAULT_TEMPLATES",
    "builtin_vocabulary",
    "parse_labels",
    "label_prototypes",
    "score",
    "top_labels",
    "METHODS",
    "FULL_FIT_LIMIT",
    "LayoutInfo",
    "Reducer",
    "PcaReducer",
    "NeighbourReducer",
    "fit_layout",
    "save_reducer",
    "load_reducer",
    "DEFAULT_THRESHOLD",
    "DEFAULT_MIN_FACES",
    "group_faces",
    "assign_new",
    "face_neighbours",
]
