"""The API's routes, one router per area; each route validates, calls the library through
the :class:`~lookalike.server.service.Service`, and shapes the answer."""

from __future__ import annotations

import json
import mimetypes
import os
import time
from pathlib import Path
from typing import Annotated, Optional

from fastapi import APIRouter, File, Form, Path as P, Query as Q, Request, UploadFile
from fastapi.responses import FileResponse, Response

from ..errors import UnreadableImage
from ..images.decode import decode_image
from ..images.thumbnails import THUMBNAIL_SIZES, make_thumbnail, thumbnail_path
from ..query import Term
from .schemas import FilterParams, Filters, HealthOut, IndexOut, InfoOut, ItemOut, SearchRequest, SearchResponse, TermIn
from ..store.item_access import metadata_keys_of
from ..store.item_bytes import item_kind
from .service import MAX_ID, ApiError, Page, Service, caption_of, display_name

__all__ = ["search_routes", "item_routes", "collection_routes"]


def search_routes(svc: Service) -> APIRouter:
    """``/api/search``: by text and ids (GET), by any weighted mix (POST), by an uploaded image."""
    router = APIRouter(tags=["search"])
    config = svc.config

    @router.get("/api/search", response_model=SearchResponse, summary="Search by text or id mix")
    def search_get(q: str = Q(..., min_length=1, max_length=1000, description="'red apple', 'id:42 - 0.5:night'"),
                   k: int = Q(24, ge=1, le=1000), offset: int = Q(0, ge=0, le=100_000),
                   min_score: Optional[float] = Q(None, ge=-1, le=1),
                   *, filters: Annotated[FilterParams, Q()]) -> SearchResponse:
        t0 = time.perf_counter()
        return svc.respond(svc.query(q, []), Page(k, offset, min_score, filters.as_filters()), t0, "text")

    @router.post("/api/search", response_model=SearchResponse, summary="Search by a weighted mix")
    def search_post(req: SearchRequest) -> SearchResponse:
        t0 = time.perf_counter()
        query = svc.query(req.q, req.terms, by_person=bool(req.filters.person))
        return svc.respond(query, Page.of(req), t0, "mix")

    @router.post("/api/search/image", response_model=SearchResponse,
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
        query = svc.query(None, more, (Term(weight, "image", image),))
        return svc.respond(query, Page(k, offset, None, flt), t0, "image")

    return router


def item_routes(svc: Service) -> APIRouter:
    """``/api/items/{id}``: metadata, more like this, thumbnail, the original file."""
    router = APIRouter(tags=["items"])
    config = svc.config

    @router.get("/api/items/{item_id}", response_model=ItemOut, summary="An item's metadata")
    def item(item_id: int = P(..., ge=0, le=MAX_ID)) -> ItemOut:
        row = svc.item(item_id)
        meta = svc.metadata(row.id)
        return ItemOut(id=row.id, path=row.path, name=display_name(row.path), folder=os.path.dirname(row.path),
                       kind=item_kind(row.path), size=row.size, modified=row.modified,
                       width=row.width, height=row.height, hash=row.hash, caption=caption_of(meta), metadata=meta,
                       **ItemOut.links(row.id))

    @router.get("/api/items/{item_id}/similar", response_model=SearchResponse,
                summary="Items most like this one (it is left out)")
    def similar(item_id: int = P(..., ge=0, le=MAX_ID), k: int = Q(24, ge=1, le=1000),
                offset: int = Q(0, ge=0, le=100_000),
                *, filters: Annotated[FilterParams, Q()]) -> SearchResponse:
        t0 = time.perf_counter()
        svc.item(item_id)  # a 404 for an unknown or failed item, before anything is embedded
        query = svc.query(None, [TermIn(id=item_id)])
        return svc.respond(query, Page(k, offset, None, filters.as_filters()), t0, "similar", exclude=item_id)

    @router.get("/api/items/{item_id}/thumbnail", summary="A JPEG thumbnail, made once and cached",
                response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
    def thumbnail(request: Request, item_id: int = P(..., ge=0, le=MAX_ID),
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
            if not dest.exists():  # a cached thumbnail needs no read of the tar member or download
                make_thumbnail(svc.image_source(row), dest, size, name=row.path,
                               max_pixels=max(config.max_pixels, 200_000_000))
        except UnreadableImage as exc:
            raise ApiError(404, "image_unavailable", f"item {item_id}: {exc.reason}") from None
        return FileResponse(dest, media_type="image/jpeg",
                            headers={"cache-control": "private, max-age=86400", "etag": etag})

    @router.get("/api/items/{item_id}/image", summary="The original file (a tar member's bytes; a URL "
                "item's downloaded copy)", response_class=Response, responses={200: {"content": {"image/*": {}}}})
    def original(item_id: int = P(..., ge=0, le=MAX_ID)) -> Response:
        # Only an item's own bytes: its stored file, its member of its stored shard, or its
        # copy in the download cache; no part of the request names a path.
        row = svc.item(item_id)
        kind = item_kind(row.path)
        headers = {"cache-control": "private, max-age=3600", "x-content-type-options": "nosniff"}
        if kind == "member":
            name = display_name(row.path)
            data = svc.image_source(row)
            headers["content-disposition"] = _inline(name)
            return Response(data, media_type=_media_type(name), headers=headers)
        if kind == "url":
            path = svc.cached_copy(row)
            return FileResponse(path, media_type=_media_type(path.name), headers=headers,
                                content_disposition_type="inline", filename=Path(display_name(row.path)).stem + path.suffix)
        path = Path(row.path)
        if not path.is_file():
            raise ApiError(404, "image_unavailable", f"item {item_id}: its file is gone; re-index the collection")
        return FileResponse(path, media_type=_media_type(path.name), headers=headers,
                            content_disposition_type="inline", filename=path.name)

    return router


def _media_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _inline(name: str) -> str:
    """A Content-Disposition header naming ``name`` (RFC 5987 for any non-ASCII)."""
    from urllib.parse import quote

    ascii_name = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in name)  # no header injection
    return f'inline; filename="{ascii_name}"; filename*=utf-8\'\'{quote(name)}'


def collection_routes(svc: Service) -> APIRouter:
    """``/api/info``, ``/healthz`` and ``/metrics``."""
    router = APIRouter(tags=["collection"])
    config = svc.config

    @router.get("/api/info", response_model=InfoOut, summary="The collection and server")
    def info() -> InfoOut:
        with svc.lock:
            summary = svc.coll.info(max_errors=0)
            keys = metadata_keys_of(svc.coll)
        state = summary.index
        model_info = svc.coll.manifest.model
        return InfoOut(name=svc.coll.path.name, model=summary.model_id, dim=summary.dim, items=summary.items,
                       failed=summary.failed, text_search="text" in model_info.get("modalities", ()),
                       index=IndexOut(kind=state.label if state else "exact",
                                      recall=state.measured.recall if state else None,
                                      p50_ms=state.measured.p50_ms if state else None),
                       thumbnail_sizes=list(THUMBNAIL_SIZES), max_upload_bytes=config.max_upload_bytes,
                       url_queries=bool(config.allow_url_hosts), actions_allowed=config.allow_actions,
                       metadata_keys=keys)

    @router.get("/healthz", response_model=HealthOut, summary="Liveness and item count")
    def healthz() -> HealthOut:
        return HealthOut(status="ok", items=svc.count())

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response,
                responses={200: {"content": {"text/plain": {}}}})
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(svc.registry), media_type=CONTENT_TYPE_LATEST)

    return router
