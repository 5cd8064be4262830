"""The HTTP API and web UI over one collection: :func:`create_app` builds a FastAPI app.

No module-level state: everything an app needs lives on the :class:`Service` it creates,
so tests and embedders can run several apps side by side. The routes are thin: they
validate, call the library, and shape the answer. Files are only ever served by item id,
from paths the collection stored; no client-supplied path reaches the file system.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import threading
import time
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Optional

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Path as P, Query as Q, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from .. import __version__
from ..errors import LookalikeError, QueryError, UnreadableImage, UnsupportedModality
from ..images.decode import decode_image
from ..images.thumbnails import THUMBNAIL_SIZES, make_thumbnail, thumbnail_path
from ..search import Hit, Query, Term, fetch_url
from ..store.collection import Collection
from ..store.filters import Filter
from ..store.metadata import ItemRow
from .config import ServerConfig
from .middleware import BodyLimit, Deadline, Metrics, TokenAuth
from .schemas import (
    ErrorOut,
    Filters,
    HealthOut,
    HitOut,
    IndexOut,
    InfoOut,
    ItemOut,
    SearchRequest,
    SearchResponse,
    TermIn,
)

__all__ = ["create_app", "Service"]

log = logging.getLogger("lookalike.server")

STATIC_DIR = Path(__file__).with_name("static")
_TEXT_CACHE = 2048  # distinct query texts whose embeddings are kept (typing repeats prefixes)
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the query, image or parameters are not usable"},
    401: {"model": ErrorOut, "description": "the server has a token and the request did not carry it"},
    404: {"model": ErrorOut, "description": "no such item, or its file is gone"},
    413: {"model": ErrorOut, "description": "the body is over the upload limit"},
    422: {"model": ErrorOut, "description": "a parameter has the wrong type or range"},
    503: {"model": ErrorOut, "description": "the request ran past the server's time limit"},
}


class ApiError(HTTPException):
    """An HTTP error with a stable code, rendered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, message)
        self.code = code


_MAX_ID = 2**63 - 1  # SQLite's INTEGER; larger ids cannot exist


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
        self._texts: OrderedDict[str, np.ndarray] = OrderedDict()
        self.registry = CollectorRegistry()
        self.requests = Counter("lookalike_http_requests", "HTTP requests by method, route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.duration = Histogram("lookalike_http_request_duration_seconds", "HTTP request time by route", ["route"],
                                  registry=self.registry,
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.searches = Counter("lookalike_searches", "Searches by kind", ["kind"], registry=self.registry)
        self.items_gauge = Gauge("lookalike_collection_items", "Items in the served collection",
                                 registry=self.registry)
        self.items_gauge.set_function(lambda: len(self.coll))

    # ------------------------------------------------------------------ queries
    def text_vector(self, text: str) -> np.ndarray:
        """The embedding of ``text``, from a small LRU cache (as-you-type repeats prefixes)."""
        with self.lock:
            cached = self._texts.get(text)
            if cached is not None:
                self._texts.move_to_end(text)
                return cached
            vec = self.coll.model.encode_text([text])[0]
            self._texts[text] = vec
            if len(self._texts) > _TEXT_CACHE:
                self._texts.popitem(last=False)
            return vec

    def fetch_image(self, url: str) -> Any:
        """A query image from an allowed URL, decoded; never fetched unless the allow-list says so."""
        cfg = self.config
        if not cfg.allow_url_hosts:
            raise QueryError(f"'{url}': this server does not fetch URLs (start it with --allow-url-host HOST to "
                             "allow some); upload the image instead")
        data = fetch_url(url, max_bytes=cfg.max_upload_bytes, allow_host=cfg.host_allowed)
        return decode_image(data, name=url, max_pixels=cfg.max_pixels).image

    def resolve(self, q: str | None, terms_in: list[TermIn], extra: tuple[Term, ...] = ()) -> tuple[Query, str]:
        """A request's terms as one library :class:`Query` (texts become cached vectors, URLs
        fetched images), and a readable description of it."""
        terms: list[Term] = []
        if q and q.strip():
            terms += Query.parse(q, allow_files=False).terms
        for t in terms_in:
            if t.text is not None:
                terms.append(Term(t.weight, "text", t.text))
            elif t.id is not None:
                terms.append(Term(t.weight, "id", t.id))
            else:
                terms.append(Term(t.weight, "url", t.url))
        terms += extra
        out: list[Term] = []
        for t in terms:
            if t.kind == "text":
                if not self.coll.model.supports_text:
                    raise UnsupportedModality(f"{self.coll.manifest.model_id} embeds images only; search by "
                                              "an image or an item id")
                out.append(Term(t.weight, "vector", self.text_vector(t.value)))
            elif t.kind == "url":
                out.append(Term(t.weight, "image", self.fetch_image(t.value)))
            elif t.kind == "id":
                self.item(t.value)  # a clear 404 for an unknown id
                out.append(t)
            elif t.kind in ("vector", "image") and not isinstance(t.value, str):
                out.append(t)  # built by the server (an upload), never a client path
            else:
                raise QueryError(f"{t.kind} terms are not accepted here")
        if not out:
            raise QueryError("empty query: give text, id:N or an image")
        return Query(tuple(out)), describe(terms)

    def item(self, item_id: int) -> ItemRow:
        """The item's row, or a 404 for an unknown, failed or impossible id."""
        with self.lock:
            row = self.coll.db.get(item_id) if 0 <= item_id <= _MAX_ID else None
        if row is None or row.status != "ok":
            raise ApiError(404, "not_found", f"no item with id {item_id} in this collection")
        return row

    def search(self, query: Query, page: Page, *, exclude: int | None = None) -> tuple[list[Hit], bool]:
        """One page of hits (``offset``, ``k``) and whether more exist."""
        want = page.k + page.offset
        if want > self.config.max_k:
            raise ApiError(400, "too_many", f"k + offset may be at most {self.config.max_k}; this asks for {want}")
        want += 1 if exclude is not None else 0  # the item itself, dropped below
        flt = _filter(page.filters)
        with self.lock:
            hits = self.coll.search(query, k=want + 1, min_score=page.min_score, where=flt)
        if exclude is not None:
            hits = [h for h in hits if h.id != exclude]
        return hits[page.offset: page.offset + page.k], len(hits) > page.offset + page.k

    def hit_out(self, hit: Hit, rows: dict[int, ItemRow]) -> HitOut:
        row = rows.get(hit.id)
        return HitOut(id=hit.id, score=round(hit.score, 6), path=hit.path, name=os.path.basename(hit.path),
                      width=row.width if row else None, height=row.height if row else None, **HitOut.links(hit.id))

    def respond(self, resolved: tuple[Query, str], page: Page, t0: float, kind: str,
                exclude: int | None = None) -> SearchResponse:
        query, description = resolved
        hits, more = self.search(query, page, exclude=exclude)
        with self.lock:
            rows = self.coll.db.get_many([h.id for h in hits])
        self.searches.labels(kind).inc()
        return SearchResponse(query=description, k=page.k, offset=page.offset,
                              hits=[self.hit_out(h, rows) for h in hits], has_more=more,
                              took_ms=round((time.perf_counter() - t0) * 1e3, 2))


def describe(terms: list[Term]) -> str:
    """A short readable form of query terms: ``red apple - 0.5*id:4 + [image]``."""
    parts = []
    for t in terms:
        body = f"id:{t.value}" if t.kind == "id" else str(t.value) if t.kind in ("text", "url") else f"[{t.kind}]"
        term = body if abs(t.weight) == 1 else f"{abs(t.weight):g}*{body}"
        sign = "- " if t.weight < 0 else ("+ " if parts else "")
        parts.append(sign + term)
    return " ".join(parts)


def _filter(f: Filters) -> Filter | None:
    if f == Filters():
        return None
    return Filter(under=tuple(f.under), glob=f.glob, modified_after=f.modified_after,
                  modified_before=f.modified_before, min_width=f.min_width, min_height=f.min_height,
                  max_width=f.max_width, max_height=f.max_height)


def _filters_from_query(
    under: list[str] = Q([], description="folders the items must lie below (repeatable)"),
    glob: Optional[str] = Q(None, max_length=500, description="shell pattern over the full path"),
    modified_after: Optional[datetime] = Q(None), modified_before: Optional[datetime] = Q(None),
    min_width: Optional[int] = Q(None, ge=0, le=10**9), min_height: Optional[int] = Q(None, ge=0, le=10**9),
    max_width: Optional[int] = Q(None, ge=0, le=10**9), max_height: Optional[int] = Q(None, ge=0, le=10**9),
) -> Filters:
    return Filters(under=under, glob=glob, modified_after=modified_after, modified_before=modified_before,
                   min_width=min_width, min_height=min_height, max_width=max_width, max_height=max_height)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _validation_message(exc: RequestValidationError | ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def create_app(config: ServerConfig, *, collection: Collection | None = None) -> FastAPI:
    """A FastAPI app serving ``config.collection`` (or ``collection``, already open).

    Raises:
        CollectionNotFound: nothing at ``config.collection``.
        MissingExtra: the ``server`` extra is not installed.
    """
    svc = Service(config, collection)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if config.warm and svc.coll.model.supports_text:
            svc.text_vector("a photo")  # load the model now, not on the first query
        yield
        if svc.owns_collection:
            svc.coll.close()

    app = FastAPI(title="lookalike", version=__version__, lifespan=lifespan, responses=_ERRORS,
                  description="Search a lookalike collection by text, image, item or a weighted mix. "
                              "Errors are JSON: {\"error\": {\"code\", \"message\"}}.")
    app.state.service = svc

    # -------------------------------------------------------------- errors: JSON, never a traceback
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status_code, exc.code, str(exc.detail))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = "no such route; see /docs for the API" if exc.status_code == 404 else str(exc.detail)
        return _error(exc.status_code, code, message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(ValidationError)
    async def _invalid_model(request: Request, exc: ValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(LookalikeError)
    async def _library_error(request: Request, exc: LookalikeError) -> JSONResponse:
        if isinstance(exc, UnreadableImage):
            return _error(400, "bad_image", str(exc))
        if isinstance(exc, (QueryError, UnsupportedModality)):
            return _error(400, "bad_query", str(exc))
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return _error(500, "server_error", str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, "server_error", "internal error; the server log has the details")

    # -------------------------------------------------------------- search
    @app.get("/api/search", response_model=SearchResponse, tags=["search"], summary="Search by text or id mix")
    def search_get(q: str = Q(..., min_length=1, max_length=1000, description="'red apple', 'id:42 - 0.5:night'"),
                   k: int = Q(24, ge=1, le=1000), offset: int = Q(0, ge=0, le=100_000),
                   min_score: Optional[float] = Q(None, ge=-1, le=1),
                   filters: Filters = Depends(_filters_from_query)) -> SearchResponse:
        t0 = time.perf_counter()
        return svc.respond(svc.resolve(q, []), Page(k, offset, min_score, filters), t0, "text")

    @app.post("/api/search", response_model=SearchResponse, tags=["search"], summary="Search by a weighted mix")
    def search_post(req: SearchRequest) -> SearchResponse:
        t0 = time.perf_counter()
        return svc.respond(svc.resolve(req.q, req.terms), Page.of(req), t0, "mix")

    @app.post("/api/search/image", response_model=SearchResponse, tags=["search"],
              summary="Search by an uploaded image, optionally mixed with other terms")
    def search_image(file: UploadFile = File(..., description="the query image (JPEG, PNG, WebP, HEIC...)"),
                     k: int = Form(24, ge=1, le=1000), offset: int = Form(0, ge=0, le=100_000),
                     weight: float = Form(1.0, ge=-100, le=100),
                     terms: Optional[str] = Form(None, max_length=100_000,
                                                 description="JSON list of more terms, as in POST /api/search"),
                     filters: Optional[str] = Form(None, max_length=100_000,
                                                   description="JSON filters, as in POST /api/search")) -> SearchResponse:
        t0 = time.perf_counter()
        data = file.file.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            raise ApiError(413, "too_large", f"the image is over the {config.max_upload_bytes:,}-byte limit")
        if not data:
            raise ApiError(400, "bad_image", "the uploaded file is empty")
        name = os.path.basename(file.filename or "upload")[:200]
        image = decode_image(data, name=f"uploaded file '{name}'", max_pixels=config.max_pixels).image
        try:
            more = [TermIn.model_validate(t) for t in json.loads(terms)] if terms else []
            flt = Filters.model_validate(json.loads(filters)) if filters else Filters()
        except (json.JSONDecodeError, TypeError, RecursionError) as exc:
            raise ApiError(422, "invalid_request", f"terms and filters must be JSON ({exc})") from None
        resolved = svc.resolve(None, more, (Term(weight, "image", image),))
        return svc.respond(resolved, Page(k, offset, None, flt), t0, "image")

    # -------------------------------------------------------------- items
    @app.get("/api/items/{item_id}", response_model=ItemOut, tags=["items"], summary="An item's metadata")
    def item(item_id: int = P(..., ge=0, le=_MAX_ID)) -> ItemOut:
        row = svc.item(item_id)
        return ItemOut(id=row.id, path=row.path, name=os.path.basename(row.path), folder=os.path.dirname(row.path),
                       size=row.size, modified=datetime.fromtimestamp(row.mtime_ns / 1e9, tz=timezone.utc),
                       width=row.width, height=row.height, hash=row.hash, **ItemOut.links(row.id))

    @app.get("/api/items/{item_id}/similar", response_model=SearchResponse, tags=["items"],
             summary="Items most like this one (it is left out)")
    def similar(item_id: int = P(..., ge=0, le=_MAX_ID), k: int = Q(24, ge=1, le=1000),
                offset: int = Q(0, ge=0, le=100_000),
                filters: Filters = Depends(_filters_from_query)) -> SearchResponse:
        t0 = time.perf_counter()
        resolved = svc.resolve(None, [TermIn(id=item_id)])
        return svc.respond(resolved, Page(k, offset, None, filters), t0, "similar", exclude=item_id)

    @app.get("/api/items/{item_id}/thumbnail", tags=["items"], summary="A JPEG thumbnail, made once and cached",
             response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
    def thumbnail(request: Request, item_id: int = P(..., ge=0, le=_MAX_ID),
                  size: int = Q(256, description=f"longest side: one of {', '.join(map(str, THUMBNAIL_SIZES))}")
                  ) -> Response:
        if size not in THUMBNAIL_SIZES:
            raise ApiError(422, "invalid_request", f"size must be one of {', '.join(map(str, THUMBNAIL_SIZES))}")
        row = svc.item(item_id)
        dest = thumbnail_path(svc.coll.path, row.id, row.hash, size)
        etag = f'"{dest.stem}-{size}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"etag": etag})
        try:
            make_thumbnail(row.path, dest, size, max_pixels=max(config.max_pixels, 200_000_000))
        except UnreadableImage as exc:
            raise ApiError(404, "image_unavailable", f"item {item_id}: {exc.reason}") from None
        return FileResponse(dest, media_type="image/jpeg",
                            headers={"cache-control": "private, max-age=86400", "etag": etag})

    @app.get("/api/items/{item_id}/image", tags=["items"], summary="The original file",
             response_class=Response, responses={200: {"content": {"image/*": {}}}})
    def original(item_id: int = P(..., ge=0, le=_MAX_ID)) -> Response:
        row = svc.item(item_id)
        path = Path(row.path)
        if not path.is_file():
            raise ApiError(404, "image_unavailable", f"item {item_id}: its file is gone; re-index the collection")
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"cache-control": "private, max-age=3600",
                                                             "x-content-type-options": "nosniff"},
                            content_disposition_type="inline", filename=path.name)

    # -------------------------------------------------------------- collection, health, metrics
    @app.get("/api/info", response_model=InfoOut, tags=["collection"], summary="The collection and server")
    def info() -> InfoOut:
        with svc.lock:
            counts = svc.coll.db.counts()
            state = (svc.coll.manifest.index or {}).get("state")
        measured = (state or {}).get("measured") or {}
        model_info = svc.coll.manifest.model
        return InfoOut(name=svc.coll.path.name, model=svc.coll.manifest.model_id, dim=svc.coll.manifest.dim,
                       items=counts["ok"], failed=counts["failed"],
                       text_search="text" in model_info.get("modalities", ()),
                       index=IndexOut(kind=state["label"] if state else "exact", recall=measured.get("recall"),
                                      p50_ms=measured.get("p50_ms")),
                       thumbnail_sizes=list(THUMBNAIL_SIZES), max_upload_bytes=config.max_upload_bytes,
                       url_queries=bool(config.allow_url_hosts))

    @app.get("/healthz", response_model=HealthOut, tags=["collection"], summary="Liveness and item count")
    def healthz() -> HealthOut:
        return HealthOut(status="ok", items=len(svc.coll))

    @app.get("/metrics", tags=["collection"], summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(svc.registry), media_type=CONTENT_TYPE_LATEST)

    # -------------------------------------------------------------- the web UI
    @app.get("/", include_in_schema=False)
    def index_page() -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"cache-control": "no-cache", **_PAGE_HEADERS})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # -------------------------------------------------------------- middleware, innermost first
    app.add_middleware(Deadline, seconds=config.request_timeout_s)
    app.add_middleware(BodyLimit, max_bytes=config.max_upload_bytes + 64 * 1024)  # room for form fields
    if config.token:
        app.add_middleware(TokenAuth, token=config.token)
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    app.add_middleware(Metrics, routes=lambda: app.routes, requests=svc.requests, duration=svc.duration)
    return app


#: The page's own security headers: no framing, no inline scripts from elsewhere.
_PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
