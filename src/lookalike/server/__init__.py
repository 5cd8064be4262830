"""The HTTP API and web UI (the ``server`` extra: FastAPI, uvicorn, prometheus-client).

    from lookalike.server import ServerConfig, create_app
    app = create_app(ServerConfig(collection=Path("pics.lkl")))   # any ASGI server runs it

``lookalike serve`` does the same with uvicorn, bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from ..errors import MissingExtra
from .config import ServerConfig, is_loopback

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..store.collection import Collection

__all__ = ["ServerConfig", "create_app", "run", "require_extra", "is_loopback"]


def require_extra(*, runner: bool = False) -> None:
    """Check that the ``server`` extra is installed: FastAPI, prometheus-client and
    python-multipart, and uvicorn too with ``runner`` (``lookalike serve`` runs the app on it).

    Raises:
        MissingExtra: a package is missing, with the pip command that installs the extra.
    """
    modules = ["fastapi", "prometheus_client", ("python_multipart", "multipart")] + (["uvicorn"] if runner else [])
    names = {"python_multipart": "python-multipart", "prometheus_client": "prometheus-client"}
    for module in modules:
        # python-multipart is imported as python_multipart since 0.0.13, multipart before.
        choices = module if isinstance(module, tuple) else (module,)
        if not any(importlib.util.find_spec(m) is not None for m in choices):
            raise MissingExtra(names.get(choices[0], choices[0]), "server", "the HTTP API and web UI")


def create_app(config: ServerConfig, *, collection: "Collection | None" = None) -> "FastAPI":
    """Build the app; see :func:`lookalike.server.app.create_app`.

    Raises:
        MissingExtra: FastAPI or its companions are not installed.
    """
    require_extra()
    from .app import create_app as _create

    return _create(config, collection=collection)


def run(app: "FastAPI", *, host: str, port: int) -> None:
    """Serve ``app`` with uvicorn until interrupted (``lookalike serve``).

    Raises:
        MissingExtra: uvicorn is not installed.
    """
    require_extra(runner=True)
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=5, server_header=False)
