"""Plain ASGI middleware: token check, body-size cap, deadline, metrics.

Plain ASGI (not Starlette's ``BaseHTTPMiddleware``) so that a refusal is sent before the
body is read, and streaming responses pass through untouched. Every refusal is the same
JSON error shape as the API's own errors.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from http.cookies import SimpleCookie
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl, urlencode

from starlette.routing import Match

__all__ = ["TokenAuth", "BodyLimit", "Deadline", "Metrics", "send_error", "TOKEN_COOKIE"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_COOKIE = "lookalike_token"


async def send_error(send: Send, status: int, code: str, message: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class _HTTPMiddleware:
    """Passes anything but HTTP (lifespan, websockets) straight through; subclasses handle
    HTTP requests in :meth:`http`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class TokenAuth(_HTTPMiddleware):
    """Every request must carry the token: ``Authorization: Bearer TOKEN``, the cookie, or
    ``?token=TOKEN``. A page opened with ``?token=`` gets the cookie (HttpOnly, SameSite=Strict)
    and is redirected to the same URL without it, so the token leaves the address bar and
    the browser's history. Tokens are compared in constant time."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        super().__init__(app)
        self.token = token.encode()

    def _ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        auth = _header(scope, b"authorization") or ""
        if auth[:7].lower() == "bearer " and self._ok(auth[7:].strip()):
            await self.app(scope, receive, send)
            return
        cookie = SimpleCookie()
        try:
            cookie.load(_header(scope, b"cookie") or "")
        except Exception:  # a malformed Cookie header is no token  # noqa: BLE001
            cookie = SimpleCookie()
        if TOKEN_COOKIE in cookie and self._ok(cookie[TOKEN_COOKIE].value):
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given and self._ok(given[-1]):
            if scope["method"] == "GET":
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
                await send({"type": "http.response.start", "status": 303, "headers": [
                    (b"location", location.encode()),
                    (b"set-cookie", f"{TOKEN_COOKIE}={given[-1]}; HttpOnly; SameSite=Strict; Path=/".encode()),
                    (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
            await self.app(scope, receive, send)
            return
        await send_error(send, 401, "unauthorized",
                         "this server needs its token: send 'Authorization: Bearer TOKEN', or open the page once "
                         "with ?token=TOKEN", [(b"www-authenticate", b"Bearer")])


class BodyLimit(_HTTPMiddleware):
    """Refuses request bodies over ``max_bytes`` with 413: by Content-Length before reading,
    and by counting for bodies sent without one (the app then sees the client disconnect,
    and whatever it answers is dropped: the 413 has gone out)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = (f"the request body is over the {self.max_bytes:,}-byte limit; send a smaller image "
                   "(the server's --max-upload-mb sets the limit)")
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await send_error(send, 413, "too_large", message)
            return
        seen = 0
        started = refused = False

        async def counted() -> dict[str, Any]:
            nonlocal seen, started, refused
            if refused:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    if not started:
                        started = True
                        await send_error(send, 413, "too_large", message)
                    return {"type": "http.disconnect"}
            return msg

        async def tracked(msg: dict[str, Any]) -> None:
            nonlocal started
            if refused:
                return
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            if not refused:
                raise


class Deadline(_HTTPMiddleware):
    """Answers 503 to a request still running after ``seconds``, at once. The handler is
    cancelled; one running in a worker thread cannot be stopped (Python threads cannot), so
    it finishes in the background and its late answer is dropped."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        super().__init__(app)
        self.seconds = seconds

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = timed_out = False

        async def tracked(msg: dict[str, Any]) -> None:
            nonlocal started
            if timed_out:
                return
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        task = asyncio.ensure_future(self.app(scope, receive, tracked))
        done, _ = await asyncio.wait({task}, timeout=self.seconds)
        if task in done:
            task.result()  # re-raise what the app raised
            return
        timed_out = True
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieve, so nothing is logged
        if not started:
            await send_error(send, 503, "timeout",
                             f"the request took longer than {self.seconds:g} s; try a smaller k or a simpler query")


class Metrics(_HTTPMiddleware):
    """Counts requests and times them per route template (``/api/items/{item_id}``), not per
    raw path, so the label set stays bounded whatever clients send."""

    def __init__(self, app: ASGIApp, routes: Callable[[], list[Any]], requests: Any, duration: Any) -> None:
        super().__init__(app)
        self.routes = routes
        self.requests = requests
        self.duration = duration

    def _route(self, scope: Scope) -> str:
        matched = scope.get("route")  # set by Starlette's router on the shared scope
        if matched is not None:
            return getattr(matched, "path", "other")
        for route in self.routes():
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return getattr(route, "path", "other")
        return "unmatched"

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 500
        t0 = time.perf_counter()

        async def tracked(msg: dict[str, Any]) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, tracked)
        finally:
            route = self._route(scope)
            self.requests.labels(scope["method"], route, str(status)).inc()
            self.duration.labels(route).observe(time.perf_counter() - t0)
