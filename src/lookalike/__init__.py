"""lookalike: turn image collections into embeddings and make them searchable.

Quick use::

    import lookalike
    model = lookalike.load_model("lite")
    vecs = model.encode_images(["a.jpg", "b.png"])        # float32 (N, d), L2-normalised
    coll = lookalike.Collection.create("pics.lkl", model="lite")
    coll.add(["~/Pictures"])
    hits = coll.search("a red apple", k=10)                 # list[Hit(id, path, score)]

Heavy dependencies (torch, the model backends) load on first use, so importing this
package and opening a collection stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    CollectionCorrupt,
    CollectionError,
    CollectionExists,
    CollectionMismatch,
    CollectionNotFound,
    LookalikeError,
    MissingExtra,
    ModelLoadError,
    QueryError,
    UnknownModel,
    UnreadableImage,
    UnsupportedModality,
)
from .progress import ProgressCallback, ProgressEvent
from .search import Hit, Query, parse_query
from .store.collection import Collection, CollectionInfo
from .store.filters import Filter
from .store.indexer import AddReport

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .models.base import EmbeddingModel, ModelInfo

__all__ = [
    "__version__",
    "load_model",
    "list_models",
    "EmbeddingModel",
    "ModelInfo",
    "Collection",
    "CollectionInfo",
    "AddReport",
    "Hit",
    "Filter",
    "Query",
    "parse_query",
    "ProgressEvent",
    "ProgressCallback",
    "LookalikeError",
    "UnknownModel",
    "ModelLoadError",
    "MissingExtra",
    "UnsupportedModality",
    "UnreadableImage",
    "QueryError",
    "CollectionError",
    "CollectionNotFound",
    "CollectionExists",
    "CollectionMismatch",
    "CollectionCorrupt",
]


def load_model(name: str = "lite", *, device: str | None = None) -> "EmbeddingModel":
    """Load an embedding model by name; see :func:`lookalike.models.registry.parse_model_name`."""
    from .models.registry import load_model as _load

    return _load(name, device=device)


def list_models() -> "list[ModelInfo]":
    """The tested model names with dimension, modalities and offline availability."""
    from .models.registry import list_models as _list

    return _list()


def __getattr__(name: str) -> Any:
    # EmbeddingModel and ModelInfo live next to torch; import them only when asked for.
    if name in ("EmbeddingModel", "ModelInfo"):
        from .models import base

        return getattr(base, name)
    raise AttributeError(f"module 'lookalike' has no attribute {name!r}")
