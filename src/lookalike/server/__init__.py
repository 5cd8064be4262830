"""The HTTP API and web UI (the ``server`` extra: FastAPI, uvicorn, prometheus-client).

    from lookalike.server import ServerConfig, create_app
    app = create_app(ServerConfig(collection=Path("pics.lkl")))   # any ASGI server runs it

``lookalike serve`` does the same with uvicorn, bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import MissingExtra
from .config import ServerConfig, is_loopback

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..store.collection import Collection

__all__ = ["ServerConfig", "create_app", "is_loopback"]


def _multipart() -> None:
    """python-multipart (image uploads): ``python_multipart`` since 0.0.13, ``multipart`` before."""
    try:
        import python_multipart  # noqa: F401
    except ImportError:
        import multipart  # noqa: F401


def create_app(config: ServerConfig, *, collection: "Collection | None" = None) -> "FastAPI":
    """Build the app; see :func:`lookalike.server.app.create_app`.

    Raises:
        MissingExtra: FastAPI or its companions are not installed.
    """
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401

        _multipart()
    except ImportError as exc:
        missing = {"python_multipart": "python-multipart", "prometheus_client": "prometheus-client"}.get(
            exc.name or "", exc.name or "fastapi")
        raise MissingExtra(missing, "server", "the HTTP API and web UI") from exc
    from .app import create_app as _create

    return _create(config, collection=collection)
