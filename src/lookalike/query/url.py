"""Query images named by URL: who may be fetched, and fetching with a timeout and size cap.

The library's own default (:data:`OPEN`) fetches any http(s) URL, as the command line does
for its user. A server fetching on behalf of clients passes an allow-list instead, which
every redirect must also satisfy.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import QueryError, UnreadableImage

__all__ = ["UrlPolicy", "fetch_url", "url_host", "URL_TIMEOUT_S", "URL_MAX_BYTES"]

#: Limits on images fetched from URLs given as queries (read at call time).
URL_TIMEOUT_S = 10.0
URL_MAX_BYTES = 32 * 1024 * 1024


def url_host(url: str) -> str:
    """The lower-case host name of an http(s) URL ('' if it has none)."""
    return (urllib.parse.urlsplit(url).hostname or "").lower()


@dataclass(frozen=True)
class UrlPolicy:
    """Which query URLs are fetched, and how much of them.

    Attributes:
        allow_hosts: ``None`` fetches any host; otherwise only hosts on the list
            (``example.com``, or ``*.example.com`` for its subdomains). An empty list
            fetches nothing.
        refusal: what to tell someone whose URL is refused because nothing is allowed.
        max_bytes: the largest download (``None``: :data:`URL_MAX_BYTES`).
        max_pixels: the largest decoded image (``None``: the decoder's default cap).
        timeout_s: per request (``None``: :data:`URL_TIMEOUT_S`).
    """

    allow_hosts: tuple[str, ...] | None = None
    refusal: str = "fetching query images by URL is turned off here; use the image file instead"
    max_bytes: int | None = None
    max_pixels: int | None = None
    timeout_s: float | None = None

    @property
    def enabled(self) -> bool:
        return self.allow_hosts is None or bool(self.allow_hosts)

    def allows(self, host: str) -> bool:
        """Whether ``host`` may be fetched (exactly listed, or under a ``*.`` rule)."""
        if self.allow_hosts is None:
            return True
        host = host.lower().rstrip(".")
        for rule in self.allow_hosts:
            rule = rule.lower().rstrip(".")
            if (rule.startswith("*.") and host.endswith(rule[1:])) or host == rule:
                return True
        return False

    def fetch(self, url: str) -> bytes:
        """The bytes at ``url`` under this policy.

        Raises:
            QueryError: URLs are not fetched at all here (``refusal`` says what to do).
            UnreadableImage: the host is not allowed, or the download fails (see :func:`fetch_url`).
        """
        if not self.enabled:
            raise QueryError(f"'{url}': {self.refusal}")
        allow = None if self.allow_hosts is None else self.allows
        return fetch_url(url, timeout=self.timeout_s, max_bytes=self.max_bytes, allow_host=allow)


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
