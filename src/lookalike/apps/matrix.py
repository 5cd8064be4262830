"""Cosine similarity matrices of a handful of images, stored items and texts.

``similarity_matrix(coll, ["a.jpg", "id:12", "a red apple"])`` embeds each item in the
collection's space (a stored item's vector is read, not recomputed; an indexed file that is
unchanged since indexing reuses its stored vector too) and returns every pairwise cosine
similarity. With a model instead of a collection, images and texts are embedded directly.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Sequence, Union

import numpy as np

from ..errors import InvalidArgument
from ..images.discover import HEIF_EXTENSIONS, IMAGE_EXTENSIONS
from ..query import Query, QueryOptions, Term
from ..store.collection import Collection

if TYPE_CHECKING:
    from ..models.base import EmbeddingModel

__all__ = ["MATRIX_LIMIT", "MatrixItem", "SimilarityMatrix", "similarity_matrix"]

#: The most items a matrix takes by default: 64 x 64 cells is the most a heat map can label.
MATRIX_LIMIT = 64

MatrixItem = Union[str, int, os.PathLike]
Kind = Literal["image", "item", "text"]

_ID = re.compile(r"^id:(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class SimilarityMatrix:
    """Pairwise cosine similarities of ``n`` items.

    Attributes:
        names: a short name per item: the file name, ``"id:N name"`` or the text.
        kinds: ``"image"`` (a file), ``"item"`` (a stored item, by id) or ``"text"``.
        ids: the item id (stored items, and indexed files whose stored vector was used), else None.
        paths: the file (images and stored items), else None.
        matrix: ``(n, n)`` float32, symmetric, 1.0 on the diagonal.
    """

    names: list[str]
    kinds: list[str]
    ids: list[int | None]
    paths: list[str | None]
    matrix: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: the item lists and the matrix as rows of floats (6 decimals)."""
        return {"names": list(self.names), "kinds": list(self.kinds), "ids": list(self.ids),
                "paths": list(self.paths),
                "matrix": [[round(float(v), 6) for v in row] for row in np.asarray(self.matrix)]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def to_csv(self, dest: str | os.PathLike[str] | IO[str]) -> None:
        """Write the matrix as CSV: a header of names (after an empty corner cell), then one
        row per item, its name first. ``dest`` is a path or an open text stream."""
        if isinstance(dest, (str, os.PathLike)):
            with open(dest, "w", encoding="utf-8", newline="") as f:
                self.to_csv(f)
            return
        writer = csv.writer(dest, lineterminator="\n")
        writer.writerow(["", *self.names])
        for name, row in zip(self.names, np.asarray(self.matrix)):
            writer.writerow([name, *(f"{float(v):.6f}" for v in row)])


@dataclass
class _Entry:
    kind: Kind
    value: Any  # the id, the file path or the text
    name: str = ""
    id: int | None = None
    path: str | None = None


def similarity_matrix(model_or_coll: "Collection | EmbeddingModel | str", items: Sequence[MatrixItem], *,
                      limit: int = MATRIX_LIMIT) -> SimilarityMatrix:
    """The cosine similarity of every pair of ``items``.

    Each item is a stored item (``"id:12"`` or an int; needs a collection), an image file
    (a ``Path``, or a string naming an existing file), or any other string, embedded as
    text. ``model_or_coll`` is a :class:`Collection`, a loaded model, or a model name.

    Raises:
        InvalidArgument: no items, more than ``limit``, an id without a collection, a path
            that looks like an image file but does not exist.
        ItemNotFound: an id the collection does not hold.
        UnsupportedModality: a text item with an image-only model.
        UnreadableImage: an image that cannot be decoded.
    """
    if not items:
        raise InvalidArgument("a similarity matrix needs at least one item (a path, id:N or text)")
    if len(items) > limit:
        raise InvalidArgument(f"a similarity matrix takes at most {limit} items, not {len(items)}; "
                              f"give fewer (the limit is {limit})")
    entries = [_classify(item) for item in items]
    if isinstance(model_or_coll, Collection):
        vectors = _collection_vectors(model_or_coll, entries)
    else:
        model = _model(model_or_coll)
        if any(e.kind == "item" for e in entries):
            given = next(e.value for e in entries if e.kind == "item")
            raise InvalidArgument(f"id:{given} names a stored item: give a collection, not a model")
        vectors = _model_vectors(model, entries)
    return SimilarityMatrix(names=[e.name for e in entries], kinds=[e.kind for e in entries],
                            ids=[e.id for e in entries], paths=[e.path for e in entries],
                            matrix=_cosine(vectors))


def _cosine(vectors: np.ndarray) -> np.ndarray:
    """Symmetric, clipped to [-1, 1], exactly 1 on the diagonal (float rounding aside, it is)."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = v / np.where(norms == 0, 1.0, norms)
    m = v @ v.T
    m = np.clip((m + m.T) / 2, -1.0, 1.0)
    np.fill_diagonal(m, 1.0)
    return m.astype(np.float32)


def _looks_like_file(text: str) -> bool:
    ext = os.path.splitext(text)[1].lower()
    return text.startswith(("/", "./", "../", "~")) or ext in IMAGE_EXTENSIONS | HEIF_EXTENSIONS


def _classify(item: MatrixItem) -> _Entry:
    """What one item is, by the rules of :func:`similarity_matrix`."""
    if isinstance(item, (bool, np.bool_)):
        raise InvalidArgument(f"a matrix item is a path, an id or a text, not {item!r}")
    if isinstance(item, (int, np.integer)):
        return _Entry("item", int(item))
    if isinstance(item, os.PathLike):
        path = Path(item).expanduser()
        if not path.is_file():
            raise InvalidArgument(f"no such image file: {item}")
        return _Entry("image", str(path.resolve()), name=path.name, path=str(path.resolve()))
    if not isinstance(item, str):
        raise InvalidArgument(f"a matrix item is a path, an id or a text, not a {type(item).__name__}")
    text = item.strip()
    if not text:
        raise InvalidArgument("an empty matrix item; give a path, id:N or some text")
    m = _ID.match(text)
    if m:
        return _Entry("item", int(m.group(1)))
    path = Path(os.path.expanduser(text))
    if path.is_file():
        return _Entry("image", str(path.resolve()), name=path.name, path=str(path.resolve()))
    if _looks_like_file(text):
        raise InvalidArgument(f"no such image file: {text} (for the words, drop the extension or the slashes)")
    return _Entry("text", text, name=text)


def _model(given: "EmbeddingModel | str") -> "EmbeddingModel":
    if isinstance(given, str):
        from ..models.registry import load_model

        return load_model(given)
    if not hasattr(given, "encode_images"):
        raise InvalidArgument(f"similarity_matrix takes a Collection, a model or a model name, "
                              f"not a {type(given).__name__}")
    return given


def _model_vectors(model: "EmbeddingModel", entries: list[_Entry]) -> np.ndarray:
    """Texts first: an image-only model refuses before any image is decoded."""
    texts = [e.value for e in entries if e.kind == "text"]
    images = [e.value for e in entries if e.kind == "image"]
    text_vecs = iter(model.encode_text(texts)) if texts else iter(())
    image_vecs = iter(model.encode_images(images)) if images else iter(())
    return np.stack([next(text_vecs) if e.kind == "text" else next(image_vecs) for e in entries])


def _collection_vectors(coll: Collection, entries: list[_Entry]) -> np.ndarray:
    """Stored vectors for ids and unchanged indexed files; the model for texts and other files."""
    for e in entries:
        if e.kind == "image":
            e.id = _indexed_unchanged(coll, e.value)
    stored_ids = sorted({e.value if e.kind == "item" else e.id for e in entries
                         if e.kind == "item" or e.id is not None})
    stored = dict(zip(stored_ids, coll.get_vectors(stored_ids))) if stored_ids else {}
    for item in coll.items([e.value for e in entries if e.kind == "item"]):
        for e in entries:
            if e.kind == "item" and e.value == item.id:
                e.id, e.path, e.name = item.id, item.path, f"id:{item.id} {Path(item.path).name}"
    # Texts as Query objects, so that "dog - grass" is embedded as the words, not parsed.
    fresh = [Query((Term(1.0, "text", e.value),)) if e.kind == "text" else Path(e.value)
             for e in entries if e.kind != "item" and e.id is None]
    computed = iter(coll.query_vectors(fresh, options=QueryOptions(allow_files=True)) if fresh else ())
    return np.stack([stored[e.value] if e.kind == "item" else stored[e.id] if e.id is not None else next(computed)
                     for e in entries])


def _indexed_unchanged(coll: Collection, path: str) -> int | None:
    """The id of the item at ``path`` when its stored vector is that of the file as it is now."""
    item = coll.item_at(path)
    if item is None or item.status != "ok":
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return item.id if (st.st_size, st.st_mtime_ns) == (item.size, item.mtime_ns) else None
