"""Fixtures for the sources tests: ``image_server``, a local HTTP server that serves images
(and misbehaves on purpose) on 127.0.0.1 for the URL downloader."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

import pytest

#: A route: called with the request handler; writes the whole response itself.
Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class ImageServer:
    """A loopback HTTP server whose routes the test sets; it records what it was asked.

    ``requests`` lists the paths requested (in order), ``max_in_flight`` the most requests
    handled at once, and ``events`` holds a threading.Event per name that routes may set.
    """

    base: str = ""
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    notes: dict[str, object] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base + path

    def route(self, path: str, fn: Route) -> str:
        """Serve ``path`` with ``fn``; returns its URL."""
        self.routes[path] = fn
        return self.url(path)

    def serve(self, path: str, body: bytes, content_type: str = "image/png", status: int = 200,
              headers: dict[str, str] | None = None, delay_s: float = 0.0) -> str:
        """Serve fixed bytes at ``path``; returns its URL."""

        def send(h: BaseHTTPRequestHandler) -> None:
            if delay_s:
                time.sleep(delay_s)
            reply(h, status, body, content_type, headers)

        return self.route(path, send)

    def sequence(self, path: str, responses: list[tuple[int, bytes, str, dict[str, str] | None]]) -> str:
        """Serve each response in turn for successive requests (the last one repeats)."""
        left = list(responses)

        def send(h: BaseHTTPRequestHandler) -> None:
            with self.lock:
                status, body, ctype, headers = left.pop(0) if len(left) > 1 else left[0]
            reply(h, status, body, ctype, headers)

        return self.route(path, send)

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for p in self.requests if p == path)


def reply(h: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str = "image/png",
          headers: dict[str, str] | None = None) -> None:
    """Write a whole response with a Content-Length."""
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    h.end_headers()
    h.wfile.write(body)


def _handler(server: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            with server.lock:
                server.requests.append(self.path)
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                route = server.routes.get(self.path)
                if route is None:
                    reply(self, 404, b"no such route", "text/plain")
                else:
                    route(self)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up, as some tests want
            finally:
                with server.lock:
                    server.in_flight -= 1

        def log_message(self, *args: object) -> None:
            pass  # keep pytest's output clean

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a test's slow route must not hold up the teardown

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up mid-response are expected here


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    """A fresh :class:`ImageServer` on a free loopback port, stopped after the test."""
    state = ImageServer()
    httpd = _Server(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
