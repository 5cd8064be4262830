"""The HTTP API and web UI over one collection: :func:`create_app` builds a FastAPI app.

No module-level state: everything an app needs lives on the :class:`Service` it creates,
so tests and embedders can run several apps side by side. The routes are thin: they
validate, call the library, and shape the answer. Files are only ever served by item id,
from paths the collection stored; no client-supplied path reaches the file system.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from ..errors import InvalidArgument, ItemNotFound, LookalikeError, QueryError, UnreadableImage, UnsupportedModality
from ..store.collection import Collection
from ..version import __version__
from .config import ServerConfig
from .dupes_routes import dupes_routes
from .explore_routes import explore_routes
from .middleware import BodyLimit, Deadline, Metrics, TokenAuth
from .people_routes import people_routes
from .routes import collection_routes, item_routes, search_routes
from .schemas import ErrorOut
from .service import ApiError, Service

__all__ = ["create_app", "Service"]

log = logging.getLogger("lookalike.server")

STATIC_DIR = Path(__file__).with_name("static")
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the query, image or parameters are not usable"},
    401: {"model": ErrorOut, "description": "the server has a token and the request did not carry it"},
    404: {"model": ErrorOut, "description": "no such item, or its file is gone"},
    413: {"model": ErrorOut, "description": "the body is over the upload limit"},
    422: {"model": ErrorOut, "description": "a parameter has the wrong type or range"},
    503: {"model": ErrorOut, "description": "the request ran past the server's time limit"},
}


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
        if config.warm:
            svc.warm_up()
        yield
        if svc.owns_collection:
            svc.coll.close()

    app = FastAPI(title="lookalike", version=__version__, lifespan=lifespan, responses=_ERRORS,
                  description="Search a lookalike collection by text, image, item or a weighted mix. "
                              "Errors are JSON: {\"error\": {\"code\", \"message\"}}.")
    app.state.service = svc

    _add_error_handlers(app)
    for router in (search_routes(svc), item_routes(svc), collection_routes(svc), dupes_routes(svc),
                   explore_routes(svc), people_routes(svc)):
        app.include_router(router)

    # -------------------------------------------------------------- the web UI
    def page(name: str) -> Callable[[], Response]:
        # A closure, not a default argument: FastAPI would read that as a query parameter.
        def serve() -> Response:
            return FileResponse(STATIC_DIR / name, media_type="text/html",
                                headers={"cache-control": "no-cache", **_PAGE_HEADERS})
        return serve

    for route, name in (("/", "index.html"), ("/dupes", "dupes.html"), ("/map", "map.html"),
                        ("/clusters", "clusters.html"), ("/people", "people.html")):
        app.add_api_route(route, page(name), methods=["GET"], include_in_schema=False)

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


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is JSON ``{"error": {"code", "message"}}``, never a traceback."""

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
        if isinstance(exc, ItemNotFound):  # its own message names the collection's path
            return _error(404, "not_found", f"no item with id {exc.item_id} in this collection")
        if isinstance(exc, UnreadableImage):
            return _error(400, "bad_image", str(exc))
        if isinstance(exc, (QueryError, UnsupportedModality)):
            return _error(400, "bad_query", str(exc))
        if isinstance(exc, InvalidArgument):
            return _error(422, "invalid_request", str(exc))
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return _error(500, "server_error", str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, "server_error", "internal error; the server log has the details")


#: The page's own security headers: no framing, no inline scripts from elsewhere.
_PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
