"""Turning parsed queries into vectors in a collection's space.

Each term's vector is L2-normalised before weighting, and the sum is normalised again, so
weights are relative. This module takes what it needs as parameters (a model provider,
the vectors of the items named by ``id:N``, and :class:`QueryOptions` with the hooks a
caller may set: a text-embedding cache and a URL policy); it never opens a collection.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, Sequence, Union

import numpy as np

from ..errors import QueryError
from ..images.decode import DEFAULT_MAX_PIXELS, ImageSource, decode_image
from .parse import Query, Term, parse_query
from .url import UrlPolicy

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["QueryLike", "QueryOptions", "QueryEncoder", "TextCache", "as_query", "query_vectors"]

QueryLike = Union[str, Query, np.ndarray, "Image.Image", Path]


class QueryEncoder(Protocol):
    """What composing a query needs of a model (an :class:`~lookalike.EmbeddingModel` is one)."""

    def encode_text(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_images(self, images: Sequence[ImageSource]) -> np.ndarray: ...


class TextCache:
    """A thread-safe LRU of text embeddings, for callers that see the same texts again
    (a search box sends every prefix as the user types). Share one per model."""

    def __init__(self, capacity: int = 2048) -> None:
        self.capacity = capacity
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._vectors)

    def encode(self, texts: Sequence[str], encode: Callable[[Sequence[str]], np.ndarray]) -> dict[str, np.ndarray]:
        """``{text: vector}`` for ``texts``, calling ``encode`` once for those not cached."""
        with self._lock:
            found = {t: self._vectors[t] for t in texts if t in self._vectors}
            for t in found:
                self._vectors.move_to_end(t)
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            fresh = dict(zip(missing, encode(missing)))
            with self._lock:
                self._vectors.update(fresh)
                while len(self._vectors) > self.capacity:
                    self._vectors.popitem(last=False)
            found.update(fresh)
        return found


@dataclass(frozen=True)
class QueryOptions:
    """How queries are read and embedded; the defaults are the command line's.

    Attributes:
        allow_files: a query string may name a local image file. Off for queries that
            come from someone else (a web client).
        urls: which ``http(s)://`` query images are fetched (default: any host).
        text_cache: reuse text embeddings across calls (default: none).
    """

    allow_files: bool = True
    urls: UrlPolicy = field(default_factory=UrlPolicy)
    text_cache: TextCache | None = None


DEFAULT_OPTIONS = QueryOptions()


def as_query(query: QueryLike, *, allow_files: bool = True) -> Query:
    """Any accepted query form as a :class:`Query`.

    Raises:
        QueryError: a string that does not parse, or a type that is not a query.
    """
    if isinstance(query, Query):
        return query
    if isinstance(query, str):
        return parse_query(query, allow_files=allow_files)
    if isinstance(query, Path):
        if not allow_files:
            raise QueryError(f"'{query}': file paths are not accepted here; upload the image instead")
        return Query((Term(1.0, "image", str(query)),))
    if isinstance(query, np.ndarray):
        return Query((Term(1.0, "vector", query),))
    if hasattr(query, "mode") and hasattr(query, "size"):  # a PIL image
        return Query((Term(1.0, "image", query),))
    raise QueryError(f"cannot search by a {type(query).__name__}; give text, a path, an image, a Query or a vector")


def query_vectors(queries: Sequence[Query], *, dim: int, model: Callable[[], QueryEncoder],
                  item_vectors: Mapping[int, np.ndarray], options: QueryOptions = DEFAULT_OPTIONS) -> np.ndarray:
    """One normalised float32 vector per query, ``(Q, dim)``; all texts embedded in one batch.

    Args:
        dim: the collection's dimension (vectors given directly must match it).
        model: returns the model; called only when a text or image term needs it, so
            a search by ``id:N`` never loads one.
        item_vectors: the vector of every item an ``id:N`` term names (see :meth:`Query.ids`).
        options: the text cache and URL policy.

    Raises:
        QueryError: an unknown id, a vector of the wrong size, terms that cancel out.
        UnreadableImage: an image term that cannot be read or fetched.
        UnsupportedModality: a text term on an image-only model.
    """
    texts = sorted({t.value for q in queries for t in q.terms if t.kind == "text"})
    text_vecs: Mapping[str, np.ndarray] = {}
    if texts:
        encode = model().encode_text
        text_vecs = options.text_cache.encode(texts, encode) if options.text_cache else dict(zip(texts, encode(texts)))
    out = np.empty((len(queries), dim), dtype=np.float32)
    for i, q in enumerate(queries):
        if not q.terms and not q.persons:
            raise QueryError("empty query: give text, an image path or URL, id:N, or person:NAME")
        if not q.terms:
            raise QueryError(f"'{q.describe()}' has no terms to embed: a query of person: filters alone is "
                             "ranked by faces (Collection.search), not by a vector; add text or an image")
        total = np.zeros(dim, dtype=np.float64)
        for t in q.terms:
            v = text_vecs[t.value] if t.kind == "text" else _term_vector(t, dim, model, item_vectors, options.urls)
            norm = float(np.linalg.norm(v))
            if norm == 0.0 or not np.isfinite(norm):
                raise QueryError(f"query term {t.kind} {t.value if t.kind != 'vector' else ''} has no direction")
            total += t.weight * (v / norm)
        norm = float(np.linalg.norm(total))
        if norm < 1e-6:
            raise QueryError("the query's terms cancel out; change their weights")
        out[i] = total / norm
    return out


def _term_vector(t: Term, dim: int, model: Callable[[], QueryEncoder], item_vectors: Mapping[int, np.ndarray],
                 urls: UrlPolicy) -> np.ndarray:
    if t.kind == "id":
        if t.value not in item_vectors:
            raise QueryError(f"no vector was given for item {t.value}")
        return item_vectors[t.value]
    if t.kind == "vector":
        v = np.asarray(t.value, dtype=np.float32).reshape(-1)
        if v.shape[0] != dim:
            raise QueryError(f"query vector has {v.shape[0]} dimensions; the collection's have {dim}")
        return v
    source = t.value
    if t.kind == "url":
        # Decode here so an error names the URL rather than "<N bytes>".
        source = decode_image(urls.fetch(t.value), name=t.value,
                              max_pixels=urls.max_pixels or DEFAULT_MAX_PIXELS).image
    return model().encode_images([source])[0]
