"""One served collection: the :class:`Service` holding it, its lock, caches and metrics."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from starlette.exceptions import HTTPException

from ..errors import InvalidArgument, ItemNotFound, QueryError
from ..query import Query, QueryOptions, Term, TextCache, parse_query
from ..sources.table import CAPTION
from ..store.collection import Collection
from ..store.filters import Filter
from ..store.item_access import item_reader, metadata_of
from ..store.item_bytes import ImageUnavailable, ItemKind, item_kind
from ..store.items import Hit, Item
from .config import ServerConfig
from .schemas import Filters, HitOut, SearchRequest, SearchResponse, TermIn

if TYPE_CHECKING:
    from ..store.dupe_finder import DuplicateGroups
    from ..store.dupes import DuplicateSettings, SimilarityHistogram

__all__ = ["Service", "ApiError", "Page", "MAX_ID"]

_TEXT_CACHE = 2048  # distinct query texts whose embeddings are kept (typing repeats prefixes)
MAX_ID = 2**63 - 1  # SQLite's INTEGER; larger ids cannot exist
_GROUPINGS = 4  # duplicate groupings kept (a slider moved back and forth returns to earlier ones)


class ApiError(HTTPException):
    """An HTTP error with a stable code, rendered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, message)
        self.code = code


@dataclass(frozen=True)
class Page:
    """Which slice of the ranking a request wants, and what may be in it."""

    k: int = 24
    offset: int = 0
    min_score: float | None = None
    filters: Filters = field(default_factory=Filters)

    @classmethod
    def of(cls, req: SearchRequest) -> "Page":
        return cls(req.k, req.offset, req.min_score, req.filters)


class Service:
    """One served collection: the collection, its lock, caches and metrics."""

    def __init__(self, config: ServerConfig, collection: Collection | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.config = config
        self.owns_collection = collection is None  # closed at shutdown only if opened here
        self.coll = collection if collection is not None else Collection.open(config.collection)
        # One search at a time per collection: SQLite snapshots on the shared connection
        # and the model's thread pool are not meant for concurrent callers; requests queue.
        self.lock = threading.RLock()
        # Texts typed into the search box repeat (every prefix is a query): keep their vectors.
        self.texts = TextCache(_TEXT_CACHE)
        self.options = QueryOptions(allow_files=False, urls=config.url_policy(), text_cache=self.texts)
        self.registry = CollectorRegistry()
        self.requests = Counter("lookalike_http_requests", "HTTP requests by method, route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.duration = Histogram("lookalike_http_request_duration_seconds", "HTTP request time by route", ["route"],
                                  registry=self.registry,
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.searches = Counter("lookalike_searches", "Searches by kind", ["kind"], registry=self.registry)
        self.items_gauge = Gauge("lookalike_collection_items", "Items in the served collection",
                                 registry=self.registry)
        self.items_gauge.set_function(self.count)
        # The last few groupings and the histogram, keyed by their settings and the collection's
        # state: paging at one threshold is a slice, and going back to a threshold is free.
        self._groups: OrderedDict[Any, "DuplicateGroups"] = OrderedDict()
        self._histogram: tuple[Any, "SimilarityHistogram"] | None = None

    def count(self) -> int:
        """Searchable items (under the lock, like every library call on the collection)."""
        with self.lock:
            return len(self.coll)

    # ------------------------------------------------------------------ duplicates
    def _data_key(self) -> tuple[int, ...]:
        """What changes when the collection's contents do, in this process or another."""
        return (self.coll.generation,)

    def duplicate_groups(self, settings: "DuplicateSettings") -> "DuplicateGroups":
        """Every duplicate group at ``settings`` (the last few answers are cached)."""
        with self.lock:
            key = (settings, self._data_key())
            if key in self._groups:
                self._groups.move_to_end(key)
                return self._groups[key]
            if any(k[1] != key[1] for k in self._groups):
                self._groups.clear()  # the collection changed: every cached grouping is stale
            while len(self._groups) >= _GROUPINGS:
                self._groups.popitem(last=False)
            # Lazy: a page of groups is read when it is shown, not every group of the grouping.
            groups = self._groups[key] = self.coll.duplicates(settings=settings, lazy=True)
            return groups

    def duplicate_histogram(self, bins: int) -> "SimilarityHistogram":
        """The nearest-neighbour similarity histogram (cached like the groups)."""
        with self.lock:
            key = (bins, self._data_key())
            if self._histogram is None or self._histogram[0] != key:
                self._histogram = (key, self.coll.duplicate_histogram(bins))
            return self._histogram[1]

    def forget_duplicates(self) -> None:
        """Drop the cached grouping and histogram (after this server changed the collection)."""
        with self.lock:
            self._groups.clear()
            self._histogram = None

    # ------------------------------------------------------------------ queries
    def warm_up(self) -> None:
        """Load the model now (and cache one text), not on the first query."""
        with self.lock:
            if self.coll.model.supports_text:
                self.texts.encode(["a photo"], self.coll.model.encode_text)

    @staticmethod
    def query(q: str | None, terms_in: list[TermIn], extra: tuple[Term, ...] = (), *,
              by_person: bool = False) -> Query:
        """A request's ``q`` (never read as a file path) and terms as one library :class:`Query`;
        texts, ids and URLs are embedded by the library under :attr:`options`. ``by_person``:
        the filters name people, so a query of no terms is their photos."""
        terms: list[Term] = []
        persons: tuple[str, ...] = ()
        if q and q.strip():
            parsed = parse_query(q, allow_files=False)
            terms += parsed.terms
            persons = parsed.persons  # person:NAME in q: a filter the collection applies
        for t in terms_in:
            if t.text is not None:
                terms.append(Term(t.weight, "text", t.text))
            elif t.id is not None:
                terms.append(Term(t.weight, "id", t.id))
            else:
                terms.append(Term(t.weight, "url", t.url))
        terms += extra
        if not terms and not persons and not by_person:
            raise QueryError("empty query: give text, id:N, person:NAME or an image")
        return Query(tuple(terms), persons)

    def item(self, item_id: int) -> Item:
        """The item, or a 404 for an unknown, failed or impossible id."""
        try:
            with self.lock:
                item = self.coll.item(item_id) if 0 <= item_id <= MAX_ID else None
        except ItemNotFound:
            item = None
        if item is None or item.status != "ok":
            raise ApiError(404, "not_found", f"no item with id {item_id} in this collection")
        return item

    def search(self, query: Query, page: Page, *, exclude: int | None = None) -> tuple[list[Hit], bool]:
        """One page of hits (``offset``, ``k``) and whether more exist."""
        want = page.k + page.offset
        if want > self.config.max_k:
            raise ApiError(400, "too_many", f"k + offset may be at most {self.config.max_k}; this asks for {want}")
        want += 1 if exclude is not None else 0  # the item itself, dropped below
        try:
            flt = Filter(**page.filters.model_dump()) if page.filters != Filters() else None
        except InvalidArgument as exc:  # a condition that does not parse: the client's to fix
            raise ApiError(400, "bad_filter", str(exc)) from None
        with self.lock:
            hits = self.coll.search(query, k=want + 1, min_score=page.min_score, where=flt, options=self.options)
        if exclude is not None:
            hits = [h for h in hits if h.id != exclude]
        return hits[page.offset: page.offset + page.k], len(hits) > page.offset + page.k

    def hits_out(self, hits: list[Hit]) -> list[HitOut]:
        """Hits as the API shows them (with each item's size and caption)."""
        ids = [h.id for h in hits]
        with self.lock:
            items = {item.id: item for item in self.coll.items(ids)}
            meta = metadata_of(self.coll, ids)
        return [_hit_out(h, items.get(h.id), meta.get(h.id, {})) for h in hits]

    # ------------------------------------------------------------------ an item's bytes and metadata
    def metadata(self, item_id: int) -> dict[str, Any]:
        """The item's stored metadata (caption, table columns); ``{}`` when none."""
        with self.lock:
            return metadata_of(self.coll, [item_id]).get(item_id, {})

    def image_source(self, item: Item) -> str | bytes:
        """What to decode for ``item``: its file's path, or the bytes of a tar member or of a
        URL's downloaded copy; a 404 when they are gone (never fetched from the network)."""
        kind = item_kind(item.path)
        with self._unavailable_as_404(item):
            if kind == "url":
                return self.cached_copy(item).read_bytes()
            return item_reader(self.coll).source(item.path)  # no database read: outside the lock

    def cached_copy(self, item: Item) -> Path:
        """A URL item's downloaded copy in the collection's download cache (a 404 when gone)."""
        with self._unavailable_as_404(item), self.lock:  # the reader reads the recorded download folder
            return item_reader(self.coll).cached_copy(item.path)

    @staticmethod
    @contextmanager
    def _unavailable_as_404(item: Item) -> Iterator[None]:
        try:
            yield
        except ImageUnavailable as exc:
            raise ApiError(404, "image_unavailable", f"item {item.id}: {exc.reason}") from None
        except OSError as exc:  # the copy went between finding and reading it
            raise ApiError(404, "image_unavailable", f"item {item.id}: {exc.strerror or exc}") from None

    def respond(self, query: Query, page: Page, t0: float, kind: str, exclude: int | None = None) -> SearchResponse:
        hits, more = self.search(query, page, exclude=exclude)
        self.searches.labels(kind).inc()
        return SearchResponse(query=query.describe(), k=page.k, offset=page.offset,
                              hits=self.hits_out(hits), has_more=more,
                              took_ms=round((time.perf_counter() - t0) * 1e3, 2))


def display_name(path: str) -> str:
    """An item's name for people: the file or member name, or a URL's last segment."""
    kind = item_kind(path)
    if kind == "url":
        tail = path.split("?", 1)[0].split("#", 1)[0].rstrip("/")
        return tail.rsplit("/", 1)[-1] or path
    return os.path.basename(path)


def caption_of(meta: dict[str, Any]) -> str | None:
    value = meta.get(CAPTION)
    return None if value is None else str(value)


def _hit_out(hit: Hit, item: Item | None, meta: dict[str, Any]) -> HitOut:
    kind: ItemKind = item_kind(hit.path)
    return HitOut(id=hit.id, score=round(hit.score, 6), path=hit.path, name=display_name(hit.path), kind=kind,
                  width=item.width if item else None, height=item.height if item else None,
                  caption=caption_of(meta), **HitOut.links(hit.id))


