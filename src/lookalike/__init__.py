"""lookalike: turn image collections into embeddings and make them searchable.

Quick use::

    import lookalike
    model = lookalike.load_model("lite")
    vecs = model.encode_images(["a.jpg", "b.png"])        # float32 (N, d), L2-normalised
    coll = lookalike.Collection.create("pics.lkl", model="lite")
    coll.add(["~/Pictures"])
    hits = coll.search("a red apple", k=10)                 # list[Hit(id, path, score)]
    q = lookalike.parse_query("2:dog - grass")              # a Query, for search() or inspection

Heavy dependencies (torch, the model backends) load on first use, so importing this
package and opening a collection stay fast.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

from .errors import (
    CollectionCorrupt,
    CollectionError,
    CollectionExists,
    CollectionMismatch,
    CollectionNotFound,
    IndexBuildError,
    InvalidArgument,
    FaceNotFound,
    ItemNotFound,
    LookalikeError,
    MissingExtra,
    ModelLoadError,
    PersonNotFound,
    QueryError,
    UnknownModel,
    UnreadableImage,
    UnsupportedModality,
)
from .progress import ProgressCallback, ProgressEvent
from .query import Query, QueryOptions, Term, TextCache, UrlPolicy, parse_query, parse_query_tokens
from .sources import FileListSource, FolderSource, Source, SourceItem, TableSource, WebDatasetSource
from .sources.download import DownloadSettings
from .store.ann import IndexSettings, IndexState
from .store.collection import Collection, CollectionInfo
from .store.dupes import DuplicateGroup, DuplicateSettings, Member, SimilarityHistogram
from .store.explore_types import Cluster, Clustering, LabelCount, Labelling, MapPoints
from .store.exchange import ExportReport, ImportReport, export_collection, import_embeddings
from .store.face_types import FaceIndexReport, FaceRecord, FaceStats, PeopleSettings, Person, RegroupReport
from .store.facing import Faces, People
from .store.filters import Filter
from .store.indexer import AddReport
from .store.items import Hit, Item, StoredItem
from .version import __version__

if TYPE_CHECKING:
    from .apps.align import AlignReport
    from .apps.distill import DistillReport
    from .apps.evaluation import EvaluationReport
    from .apps.matrix import MatrixItem, SimilarityMatrix
    from .apps.train_head import TrainReport
    from .models.base import EmbeddingModel
    from .models.names import ModelInfo

__all__ = [
    "__version__",
    "load_model",
    "list_models",
    "similarity_matrix",
    "evaluate",
    "distill",
    "train_head",
    "align_text",
    "SimilarityMatrix",
    "EmbeddingModel",
    "ModelInfo",
    "Collection",
    "CollectionInfo",
    "AddReport",
    "Item",
    "Hit",
    "Filter",
    "Source",
    "SourceItem",
    "FolderSource",
    "FileListSource",
    "TableSource",
    "WebDatasetSource",
    "DownloadSettings",
    "export_collection",
    "import_embeddings",
    "reproject",
    "ExportReport",
    "ImportReport",
    "IndexSettings",
    "IndexState",
    "DuplicateGroup",
    "DuplicateSettings",
    "Member",
    "SimilarityHistogram",
    "StoredItem",
    "Cluster",
    "Clustering",
    "LabelCount",
    "Labelling",
    "MapPoints",
    "Faces",
    "People",
    "Person",
    "FaceRecord",
    "FaceIndexReport",
    "FaceStats",
    "PeopleSettings",
    "RegroupReport",
    "Query",
    "Term",
    "QueryOptions",
    "TextCache",
    "UrlPolicy",
    "parse_query",
    "parse_query_tokens",
    "ProgressEvent",
    "ProgressCallback",
    "LookalikeError",
    "UnknownModel",
    "ModelLoadError",
    "MissingExtra",
    "UnsupportedModality",
    "UnreadableImage",
    "QueryError",
    "ItemNotFound",
    "PersonNotFound",
    "FaceNotFound",
    "InvalidArgument",
    "IndexBuildError",
    "CollectionError",
    "CollectionNotFound",
    "CollectionExists",
    "CollectionMismatch",
    "CollectionCorrupt",
]


def load_model(name: str = "lite", *, device: str | None = None, runtime: str | None = None,
               precision: str | None = None, calibration: Any = None, compile: bool = False) -> "EmbeddingModel":
    """Load an embedding model by name; see :func:`lookalike.models.registry.parse_model_name`.

    ``runtime`` is torch, onnx, openvino or auto (default ``$LOOKALIKE_RUNTIME``, else auto:
    the fastest measured on this machine); ``precision`` fp32 (default) or int8, which needs
    ``calibration`` images or an int8 .onnx; ``compile`` torch.compiles the torch runtime.
    See :func:`lookalike.models.registry.load_model`.
    """
    from .models.registry import load_model as _load

    return _load(name, device=device, runtime=runtime, precision=precision, calibration=calibration,
                 compile=compile)


def list_models() -> "list[ModelInfo]":
    """The tested model names with dimension, modalities and offline availability."""
    from .models.names import list_models as _list

    return _list()


def reproject(collection: "Collection | str | os.PathLike[str]", head: Any, out: "str | os.PathLike[str]", *,
              progress: ProgressCallback | None = None) -> Collection:
    """A new collection at ``out`` with ``head`` (a head folder, or a loaded head) applied to
    ``collection``'s stored vectors: no image decoded, the index rebuilt, the source untouched;
    returned open. See :func:`lookalike.apps.reproject.reproject`."""
    from .apps.reproject import reproject as _reproject

    return _reproject(collection, head, out, progress=progress)


def similarity_matrix(model_or_coll: "Collection | EmbeddingModel | str", items: "Sequence[MatrixItem]", *,
                      limit: int = 64) -> "SimilarityMatrix":
    """The cosine similarity of every pair of ``items`` (paths, ``"id:N"`` or ints, texts),
    in a collection's space or a model's; see :func:`lookalike.apps.matrix.similarity_matrix`."""
    from .apps.matrix import similarity_matrix as _matrix

    return _matrix(model_or_coll, items, limit=limit)


def distill(teacher: str, images: Any, *, student: str = "lite", out: Any, views: int = 2, arch: str = "auto",
            epochs: int = 100, seed: int = 0, progress: ProgressCallback | None = None, **options: Any) -> "DistillReport":
    """Fit a head on ``student`` that puts its image vectors into ``teacher``'s space, on the
    images of a folder (or a list of files), and save it to ``out``; load the result as
    ``f"{student}+head:{out}"``. Returns a :class:`~lookalike.apps.distill.DistillReport`.
    See :func:`lookalike.apps.distill.distill` for the other options."""
    from .apps.distill import distill as _distill

    return _distill(teacher, images, student=student, out=out, views=views, arch=arch, epochs=epochs, seed=seed,
                    progress=progress, **options)


def train_head(source: Any, *, base: Any = "lite", out: Any, arch: str = "linear", loss: str = "supcon",
               dim: int | None = None, seed: int = 0, progress: ProgressCallback | None = None,
               **options: Any) -> "TrainReport":
    """Train a projection head on ``base``'s vectors of labelled images (a folder whose sub-folders
    name the labels, a CSV of path,label, or a LabelledSet) and save it to ``out``; load the
    result as ``f"{base}+head:{out}"``. The report compares base and head on held-out images of
    seen labels and on held-out labels. See :func:`lookalike.apps.train_head.train_head`."""
    from .apps.train_head import train_head as _train

    return _train(source, base=base, out=out, arch=arch, loss=loss, dim=dim, seed=seed, progress=progress, **options)


def align_text(collection: Any, *, captions: Any = None, from_filenames: bool = False, out: Any, seed: int = 0,
               progress: ProgressCallback | None = None, **options: Any) -> "AlignReport":
    """Fit a text head mapping the collection model's text features into its image space from
    (image, caption) pairs (a CSV of path,caption, or ``from_filenames=True``), keeping ridge or
    contrastive, whichever wins on held-out pairs; save it to ``out`` and apply it with
    :func:`reproject`. See :func:`lookalike.apps.align.align_text`."""
    from .apps.align import align_text as _align

    return _align(collection, captions=captions, from_filenames=from_filenames, out=out, seed=seed,
                  progress=progress, **options)


def evaluate(source: Any, models: "str | Sequence[str]", *, depth: int = 1, seed: int = 0, on: str = "held-out",
             html: Any = None, json: Any = None, batch_size: int = 32, device: str | None = None,
             cache: Any = None, progress: ProgressCallback | None = None) -> "EvaluationReport":
    """Score ``models`` (names, or ``"a,b"``; ``histogram`` is a colour baseline) on labelled images
    (a folder whose sub-folders name the labels, or a CSV of path,label): kNN@1, recall@5/10, mAP,
    text->image mAP, speed and peak memory, on the seeded split's held-out images (``on="all"``:
    every image). Writes an HTML page and/or JSON when paths are given. ``cache``: an
    :class:`~lookalike.apps.embed_cache.EmbeddingCache` (default: the one in the cache folder).
    See :func:`lookalike.apps.evaluation.evaluate`."""
    from .apps import eval_report
    from .apps.evaluation import evaluate as _evaluate

    eval_report.check_destinations(html, json)  # before the embedding, not after
    report = _evaluate(source, models, depth=depth, seed=seed, on=on, batch_size=batch_size, device=device,
                       cache=cache, progress=progress)
    if html is not None:
        eval_report.write_html(report, html)
    if json is not None:
        eval_report.write_json(report, json)
    return report


def __getattr__(name: str) -> Any:
    # EmbeddingModel lives next to torch; import it only when asked for.
    if name == "EmbeddingModel":
        from .models.base import EmbeddingModel

        return EmbeddingModel
    if name == "ModelInfo":
        from .models.names import ModelInfo

        return ModelInfo
    if name == "SimilarityMatrix":
        from .apps.matrix import SimilarityMatrix

        return SimilarityMatrix
    raise AttributeError(f"module 'lookalike' has no attribute {name!r}")
