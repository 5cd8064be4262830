"""Queries: parsing, turning them into one vector, and ranking a collection against it.

A query is a weighted sum of terms. Each term is text, an image (path or http(s) URL),
or a stored item (``id:N``)::

    a red apple                     one text term (adjacent words join)
    ./query.jpg                     an image
    "2:dog" + ./a.jpg - grass       2*dog + a.jpg - grass
    id:42 + 0.5:sunset              item 42 nudged towards "sunset"

Each term's vector is L2-normalised before weighting, and the sum is normalised again,
so weights are relative.
"""

from __future__ import annotations

import os
import re
import shlex
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence, Union

import numpy as np

from .errors import QueryError, UnreadableImage
from .images.decode import decode_image
from .images.discover import HEIF_EXTENSIONS, IMAGE_EXTENSIONS

if TYPE_CHECKING:
    from PIL import Image

    from .store.collection import Collection
    from .store.filters import Filter

__all__ = [
    "Hit",
    "Term",
    "Query",
    "QueryLike",
    "parse_query",
    "query_vector",
    "query_vectors",
    "rank",
    "search_collection",
    "search_many",
    "fetch_url",
    "url_host",
]

#: Limits on images fetched from URLs given as queries.
URL_TIMEOUT_S = 10.0
URL_MAX_BYTES = 32 * 1024 * 1024

TermKind = Literal["text", "image", "url", "id", "vector"]
_WEIGHT = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)):(.+)$", re.DOTALL)
_ID = re.compile(r"^id:(.*)$")


@dataclass(frozen=True)
class Hit:
    """One search result: the item's stable id, its path, and the cosine similarity."""

    id: int
    path: str
    score: float


@dataclass(frozen=True)
class Term:
    """One weighted part of a query."""

    weight: float
    kind: TermKind
    value: Any


@dataclass(frozen=True)
class Query:
    """A weighted sum of terms; build it with :func:`parse_query` or directly."""

    terms: tuple[Term, ...]

    @classmethod
    def parse(cls, text: str, *, allow_files: bool = True) -> "Query":
        """Parse a query written as one string (shell-style quoting is honoured).

        ``allow_files=False`` never touches the file system: for queries that come from
        someone else (a web client), where a path must not reach a local file.
        """
        if allow_files and os.path.isfile(os.path.expanduser(text)):
            return cls((Term(1.0, "image", os.path.expanduser(text)),))
        try:
            tokens = shlex.split(text)
        except ValueError:  # an apostrophe in plain text: "a child's toy"
            tokens = text.split()
        return parse_query(tokens, allow_files=allow_files)


QueryLike = Union[str, Query, np.ndarray, "Image.Image", Path]


def _classify(token: str, allow_files: bool = True) -> tuple[TermKind, Any]:
    m = _ID.match(token)
    if m:
        try:
            return "id", int(m.group(1))
        except ValueError:
            raise QueryError(f"'{token}': an item id must be a whole number, as in id:42") from None
    if token.startswith(("http://", "https://")):
        return "url", token
    ext = os.path.splitext(token)[1].lower()
    looks_like_file = token.startswith(("/", "./", "../", "~")) or ext in IMAGE_EXTENSIONS | HEIF_EXTENSIONS
    if not allow_files:
        if looks_like_file:
            raise QueryError(f"'{token}': file paths are not accepted here; upload the image instead, or quote "
                             "the words with a space to search for them as text")
        return "text", token
    path = os.path.expanduser(token)
    if os.path.isfile(path):
        return "image", path
    if looks_like_file:
        raise QueryError(f"no such image file: {token} (to search for the words, quote them with a space or "
                         "drop the extension)")
    return "text", token


def parse_query(tokens: Sequence[str], *, allow_files: bool = True) -> Query:
    """Parse command-line style tokens: terms separated by ``+`` / ``-``, each optionally ``W:``-weighted.

    ``allow_files=False``: a token that names a file is an error, and the file system is
    never looked at (see :meth:`Query.parse`).

    Raises:
        QueryError: the tokens do not form a query, with what to change.
    """
    terms: list[Term] = []
    sign = 1.0
    expect_term = True
    after_operator = False
    for token in tokens:
        if token in ("+", "-"):
            # Also at the start: "- - dog" is as much a typo as "cat - - dog".
            if after_operator:
                raise QueryError(f"two operators in a row near '{token}'; put a term between them")
            sign = 1.0 if token == "+" else -1.0
            expect_term = after_operator = True
            continue
        if not token.strip():
            continue
        weight = 1.0
        body = token
        m = _WEIGHT.match(token)
        if m:
            weight, body = float(m.group(1)), m.group(2)
        kind, value = _classify(body, allow_files)
        if not expect_term:
            last = terms[-1]
            # Unquoted words are one text term: `lookalike search red apple` means "red apple".
            if kind == "text" and last.kind == "text" and not m:
                terms[-1] = Term(last.weight, "text", f"{last.value} {value}")
                continue
            raise QueryError(f"put + or - between the terms '{last.value}' and '{token}'")
        terms.append(Term(sign * weight, kind, value))
        sign, expect_term, after_operator = 1.0, False, False
    if not terms:
        raise QueryError("empty query: give text, an image path or URL, or id:N")
    if expect_term:
        raise QueryError("the query ends with an operator; add a term after it")
    return Query(tuple(terms))


def url_host(url: str) -> str:
    """The lower-case host name of an http(s) URL ('' if it has none)."""
    return (urllib.parse.urlsplit(url).hostname or "").lower()


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to an http(s) URL whose host ``allow_host`` accepts."""

    def __init__(self, allow_host: Callable[[str], bool]) -> None:
        self.allow_host = allow_host

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if not newurl.startswith(("http://", "https://")) or not self.allow_host(url_host(newurl)):
            raise UnreadableImage(req.full_url, f"redirects to {newurl}, whose host is not allowed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_url(url: str, *, timeout: float | None = None, max_bytes: int | None = None,
              allow_host: Callable[[str], bool] | None = None) -> bytes:
    """Download an image for a query, with a timeout and a size cap.

    ``timeout`` and ``max_bytes`` default to :data:`URL_TIMEOUT_S` and :data:`URL_MAX_BYTES`,
    read at call time so that changing those module settings takes effect. ``allow_host``,
    if given, must accept the URL's host and that of every redirect (an allow-list for
    servers that fetch URLs on behalf of clients).

    Raises:
        UnreadableImage: a host not allowed, network error, HTTP error, timeout, or larger
            than ``max_bytes``.
    """
    timeout = URL_TIMEOUT_S if timeout is None else timeout
    max_bytes = URL_MAX_BYTES if max_bytes is None else max_bytes
    if not url.startswith(("http://", "https://")):
        raise UnreadableImage(url, "only http:// and https:// URLs can be fetched")
    if allow_host is not None and not allow_host(url_host(url)):
        raise UnreadableImage(url, f"the host '{url_host(url)}' is not on the allow-list")
    request = urllib.request.Request(url, headers={"User-Agent": "lookalike"})
    opener = urllib.request.build_opener(_CheckedRedirects(allow_host)) if allow_host else None
    try:
        with (opener.open(request, timeout=timeout) if opener  # noqa: S310 - scheme checked above
              else urllib.request.urlopen(request, timeout=timeout)) as resp:  # noqa: S310
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise UnreadableImage(url, f"{int(declared):,} bytes is over the {max_bytes:,}-byte limit")
            data = resp.read(max_bytes + 1)
    except UnreadableImage:
        raise
    except urllib.error.HTTPError as exc:
        raise UnreadableImage(url, f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UnreadableImage(url, f"cannot fetch: {reason}") from None
    if len(data) > max_bytes:
        raise UnreadableImage(url, f"more than the {max_bytes:,}-byte limit")
    return data


def _as_query(query: QueryLike) -> Query:
    if isinstance(query, Query):
        return query
    if isinstance(query, str):
        return Query.parse(query)
    if isinstance(query, Path):
        return Query((Term(1.0, "image", str(query)),))
    if isinstance(query, np.ndarray):
        return Query((Term(1.0, "vector", query),))
    if hasattr(query, "mode") and hasattr(query, "size"):  # a PIL image
        return Query((Term(1.0, "image", query),))
    raise QueryError(f"cannot search by a {type(query).__name__}; give text, a path, an image, a Query or a vector")


def query_vector(coll: "Collection", query: QueryLike) -> np.ndarray:
    """Turn a query into one normalised float32 vector in the collection's space."""
    return query_vectors(coll, [query])[0]


def query_vectors(coll: "Collection", queries: Sequence[QueryLike]) -> np.ndarray:
    """Turn queries into normalised float32 vectors ``(Q, d)``; all their texts are embedded in one batch."""
    parsed = [_as_query(q) for q in queries]
    texts = sorted({t.value for q in parsed for t in q.terms if t.kind == "text"})
    text_vecs = dict(zip(texts, coll.model.encode_text(texts))) if texts else {}
    return np.stack([_combine(coll, q, text_vecs) for q in parsed])


def _combine(coll: "Collection", q: Query, text_vecs: dict[str, np.ndarray]) -> np.ndarray:
    dim = coll.manifest.dim
    total = np.zeros(dim, dtype=np.float64)
    for t in q.terms:
        if t.kind == "text":
            total += t.weight * text_vecs[t.value]
            continue
        if t.kind == "id":
            v = coll.get_vectors([t.value])[0]
        elif t.kind == "vector":
            v = np.asarray(t.value, dtype=np.float32).reshape(-1)
            if v.shape[0] != dim:
                raise QueryError(f"query vector has {v.shape[0]} dimensions; the collection's have {dim}")
        else:
            source = t.value
            if t.kind == "url":
                # Decode here so an error names the URL rather than "<N bytes>".
                source = decode_image(fetch_url(t.value), name=t.value).image
            v = coll.model.encode_images([source])[0]
        norm = float(np.linalg.norm(v))
        if norm == 0.0 or not np.isfinite(norm):
            raise QueryError(f"query term {t.kind} {t.value if t.kind != 'vector' else ''} has no direction")
        total += t.weight * (v / norm)
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise QueryError("the query's terms cancel out; change their weights")
    return (total / norm).astype(np.float32)


#: Below this many candidate rows, exact search over them beats asking the ANN index.
EXACT_BELOW = 20_000


def rank(coll: "Collection", vectors: np.ndarray, k: int, *, under: Sequence[str] = (),
         where: "Filter | None" = None) -> list[list[Hit]]:
    """The best ``k`` items for each query vector ``(Q, d)``: exact or through the ANN index."""
    from .index.exact import exact_topk

    vectors = np.atleast_2d(vectors)
    if k < 1:
        raise QueryError(f"k must be at least 1, not {k}")
    ids, rows, matrix = coll.search_arrays(under, where)
    filtered = bool(under) or (where is not None and not where.is_empty())
    # A forced index kind is always used; "auto" skips it for small candidate sets, where
    # exact search is both faster and exact.
    ann = coll.ann_index() if len(ids) >= EXACT_BELOW or coll.index_settings.mode != "auto" else None
    results: list[list[tuple[int, float]]] = []
    if ann is None:
        scores, positions = exact_topk(matrix, vectors, k, rows=rows)
        for s_row, p_row in zip(scores, positions):
            results.append([(int(ids[p]), float(sc)) for p, sc in zip(p_row, s_row)])
    else:
        live = np.unique(rows)
        # Every live row is in the index (load_index appends missing ones); when the index also
        # holds deleted rows, or a filter applies, only the allowed rows may come back.
        allowed = live if filtered or ann.ntotal != len(live) else None
        scores, found = ann.search(matrix, vectors, k, allowed)
        # The index must return k rows whenever k are allowed; where it came up short (a very
        # selective filter), that query is answered exactly over the allowed rows instead.
        short = np.flatnonzero((found >= 0).sum(axis=1) < min(k, len(live)))
        if len(short):
            ex_scores, ex_pos = exact_topk(matrix, vectors[short], k, rows=live)
            pad = k - ex_scores.shape[1]
            scores[short] = np.pad(ex_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            found[short] = np.pad(live[ex_pos], ((0, 0), (0, pad)), constant_values=-1)
        for s_row, f_row in zip(scores, found):
            hits: list[tuple[int, float]] = []
            for r, sc in zip(f_row, s_row):
                if r < 0:
                    continue
                lo, hi = np.searchsorted(rows, r, "left"), np.searchsorted(rows, r, "right")
                hits.extend((int(i), float(sc)) for i in ids[lo:hi])  # copies share a vector row
            results.append(hits[:k])
    wanted = {i for hits in results for i, _ in hits}
    items = coll.db.get_many(sorted(wanted))
    return [[Hit(i, items[i].path, sc) for i, sc in hits if i in items] for hits in results]


def search_collection(
    coll: "Collection",
    query: QueryLike,
    *,
    k: int = 10,
    min_score: float | None = None,
    under: Sequence[str] = (),
    where: "Filter | None" = None,
) -> list[Hit]:
    """Implementation of :meth:`Collection.search`."""
    return search_many(coll, [query], k=k, min_score=min_score, under=under, where=where)[0]


def search_many(
    coll: "Collection",
    queries: Sequence[QueryLike],
    *,
    k: int = 10,
    min_score: float | None = None,
    under: Sequence[str] = (),
    where: "Filter | None" = None,
) -> list[list[Hit]]:
    """Implementation of :meth:`Collection.search_batch`: texts embedded together, one ranking pass."""
    if not queries:
        return []
    vectors = query_vectors(coll, queries)
    out = rank(coll, vectors, k, under=under, where=where)
    if min_score is not None:
        out = [[h for h in hits if h.score >= min_score] for hits in out]
    return out
