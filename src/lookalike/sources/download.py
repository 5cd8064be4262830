"""Fetching images by URL into an on-disk cache, for indexing collections of URLs.

One :class:`Downloader` per run, shared by the indexer's decode threads. Each URL is fetched
once per cache, with bounded concurrency (one ``httpx.Client`` and a semaphore), a timeout per
read plus a deadline on the whole body, retries with exponential backoff and jitter (timeouts,
connection errors, 429, 5xx; ``Retry-After`` honoured), a size cap enforced while streaming,
a content-type check before the body is read, and a decode check that never substitutes
another image. Images over ``max_side`` are resized before caching (JPEG, or PNG when they
have transparency); smaller ones are kept byte for byte.

The cache, keyed by the sha256 of the URL: ``<cache_dir>/<sha[:2]>/<sha>.<ext>`` is the image
as stored, and ``<sha>.json`` beside it its sidecar (url, file, etag, original size, served
content type, stored format, resize setting). Both are written atomically, the sidecar last,
so an entry exists only once complete. A failed fetch is never cached: the caller records it.
httpx is optional (``pip install 'lookalike[download]'``), imported when a Downloader is made.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import InvalidArgument, MissingExtra, UnreadableImage
from ..fsutil import atomic_writer, user_path
from ..version import __version__
from .resize import EXTENSIONS, PreparedImage, prepare_download

__all__ = ["DownloadSettings", "Fetched", "Downloader", "cache_key", "DEFAULT_USER_AGENT"]

DEFAULT_USER_AGENT = f"lookalike/{__version__} (+https://github.com/lookalike/lookalike)"

#: A server asking for a longer pause than this is waited on for this long only: a run over
#: millions of URLs must not stall on one host's Retry-After of an hour.
_MAX_RETRY_AFTER_S = 30.0
_NOT_RETRIED_5XX = (501, 505)  # "not implemented" and "version not supported" will not change
_NOT_IMAGE_MAIN = ("text", "audio", "video", "font", "multipart", "model")
_NOT_IMAGE_APP = ("json", "xml", "javascript", "pdf", "xhtml+xml", "zip", "gzip", "x-gzip")


@dataclass(frozen=True)
class DownloadSettings:
    """How URLs are fetched and cached.

    Attributes:
        cache_dir: where fetched images are kept, keyed by the sha256 of the URL.
        max_side: images whose longest side is larger are resized to it before caching
            (``None`` keeps every image as served).
        max_bytes: the largest response body; a longer one is abandoned while streaming.
        timeout_s: the limit on connecting and on each read, and on the whole body of one try.
        retries: further tries after a timeout, a connection error, HTTP 408/429 or a 5xx.
        backoff_s: the pause before the first retry; doubled for each next one, with jitter.
        concurrency: the most requests in flight in the whole process.
        user_agent: sent with every request, so that site owners can see who fetches.
        max_redirects: redirects followed before giving up with "redirect loop".
    """

    cache_dir: Path
    max_side: int | None = 1024
    max_bytes: int = 32 * 1024**2
    timeout_s: float = 20.0
    retries: int = 2
    backoff_s: float = 0.5
    concurrency: int = 16
    user_agent: str = DEFAULT_USER_AGENT
    max_redirects: int = 10

    def __post_init__(self) -> None:
        # The stored form of a user's folder: "~/imgcache" and relative paths work as given.
        object.__setattr__(self, "cache_dir", Path(user_path(self.cache_dir)))
        checks = (
            (self.max_side is None or self.max_side >= 1, "max_side", "an integer >= 1, or None"),
            (self.max_bytes >= 1, "max_bytes", "an integer >= 1"),
            (self.timeout_s > 0, "timeout_s", "a number of seconds > 0"),
            (self.retries >= 0, "retries", "an integer >= 0"),
            (self.backoff_s >= 0, "backoff_s", "a number of seconds >= 0"),
            (self.concurrency >= 1, "concurrency", "an integer >= 1"),
            (self.max_redirects >= 0, "max_redirects", "an integer >= 0"),
        )
        for ok, name, allowed in checks:
            if not ok:
                raise InvalidArgument(f"download setting {name}={getattr(self, name)!r}: it must be {allowed}")


@dataclass(frozen=True)
class Fetched:
    """One fetched image: ``data`` is the image as cached (resized if it was over
    ``max_side``); ``width`` and ``height`` are the original size, after EXIF rotation."""

    url: str
    data: bytes
    etag: str | None
    from_cache: bool
    width: int
    height: int


def cache_key(url: str) -> str:
    """The cache's key for ``url``: the hex sha256 of the URL exactly as given."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


class _Failure(Exception):
    """One try failed: ``reason`` for the user, and whether another try may succeed."""

    def __init__(self, reason: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


class Downloader:
    """Fetches images by URL through an on-disk cache; safe to share between threads.

    Use it as a context manager, or call :meth:`close`, to release its connections.

    Raises:
        MissingExtra: httpx is not installed.
    """

    def __init__(self, settings: DownloadSettings) -> None:
        try:
            import httpx
        except ImportError:
            raise MissingExtra("httpx", "download", "Fetching images by URL") from None
        self.settings = settings
        self._httpx = httpx
        self._slots = threading.BoundedSemaphore(settings.concurrency)
        self._guard = threading.Lock()
        self._busy: dict[str, list[Any]] = {}  # url -> [its lock, threads using it]
        self._timeout_reason = f"timed out after {settings.timeout_s:g} s"
        self._client = httpx.Client(
            follow_redirects=True,
            max_redirects=settings.max_redirects,
            timeout=httpx.Timeout(settings.timeout_s),
            limits=httpx.Limits(max_connections=settings.concurrency,
                                max_keepalive_connections=settings.concurrency),
            headers={"User-Agent": settings.user_agent, "Accept": "image/*,*/*;q=0.8"},
        )

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool; the cache stays as it is."""
        self._client.close()

    def fetch(self, url: str) -> Fetched:
        """The image at ``url``, from the cache if it is there, otherwise downloaded,
        checked, resized to ``max_side`` and cached.

        Raises:
            UnreadableImage: ``(url, reason)`` with a short reason once retries are spent,
                e.g. "HTTP 404 Not Found", "timed out after 20 s (3 tries)", "body over 32 MiB",
                "served text/html, not an image", or the decoder's reason.
        """
        if not url.startswith(("http://", "https://")):
            raise UnreadableImage(url, "only http:// and https:// URLs can be fetched")
        hit = self._read_cache(url)
        if hit is not None:
            return hit
        with self._only_thread_for(url):
            hit = self._read_cache(url)  # another thread may have fetched it while this one waited
            if hit is not None:
                return hit
            body, etag, content_type = self._download(url)
            prepared = prepare_download(url, body, self.settings.max_side)
            self._write_cache(url, prepared, etag, content_type)
        return Fetched(url, prepared.data, etag, False, prepared.width, prepared.height)

    def cached_path(self, url: str) -> Path | None:
        """The cached image file for ``url`` under the current settings, or None."""
        if not url.startswith(("http://", "https://")):
            return None
        entry = self._entry(url)
        return None if entry is None else entry[0]

    @contextmanager
    def _only_thread_for(self, url: str) -> Iterator[None]:
        """Serialise fetches of one URL: lists of URLs often repeat one, and the threads
        that ask for it while it downloads should get the cached copy, not download it again."""
        with self._guard:
            entry = self._busy.setdefault(url, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._busy[url]

    # ----------------------------------------------------------------------- cache
    def _sidecar(self, url: str) -> Path:
        key = cache_key(url)
        return self.settings.cache_dir / key[:2] / f"{key}.json"

    def _entry(self, url: str) -> tuple[Path, dict[str, Any]] | None:
        """The cached file and its sidecar, if complete and made under matching settings."""
        sidecar = self._sidecar(url)
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            path = sidecar.with_name(meta["file"])
            complete = meta["url"] == url and path.stat().st_size == meta["bytes"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent, or damaged: fetched again and overwritten
        if not complete or not self._matches(meta):
            return None
        return path, meta

    def _matches(self, meta: dict[str, Any]) -> bool:
        """Whether an entry is what fetching now would store (``max_side`` may have changed)."""
        max_side = self.settings.max_side
        if max_side is None or max(meta["width"], meta["height"]) <= max_side:
            return not meta["resized"]  # the original, byte for byte
        return bool(meta["resized"]) and meta["max_side"] == max_side

    def _read_cache(self, url: str) -> Fetched | None:
        entry = self._entry(url)
        try:
            data = entry[0].read_bytes() if entry else None
        except OSError:
            data = None
        if entry is None or data is None:
            return None
        meta = entry[1]
        return Fetched(url, data, meta.get("etag"), True, int(meta["width"]), int(meta["height"]))

    def _write_cache(self, url: str, prepared: PreparedImage, etag: str | None, content_type: str) -> None:
        sidecar = self._sidecar(url)
        old = self._entry(url) or (None, None)
        image_path = sidecar.with_name(f"{sidecar.stem}.{EXTENSIONS.get(prepared.fmt, 'img')}")
        meta = {
            "url": url, "file": image_path.name, "bytes": len(prepared.data), "etag": etag,
            "width": prepared.width, "height": prepared.height, "content_type": content_type,
            "format": prepared.fmt, "resized": prepared.resized, "max_side": self.settings.max_side,
        }
        # durable=False: a cache may lose entries in a power cut, but never shows half a file.
        with atomic_writer(image_path, durable=False) as f:
            f.write(prepared.data)
        with atomic_writer(sidecar, durable=False) as f:
            f.write(json.dumps(meta, indent=1).encode("utf-8"))
        if old[0] is not None and old[0] != image_path:
            old[0].unlink(missing_ok=True)  # an entry made under other settings, in another format

    # ----------------------------------------------------------------------- network
    def _download(self, url: str) -> tuple[bytes, str | None, str]:
        """``(body, etag, content type)``, retrying what may succeed on another try."""
        tries = self.settings.retries + 1
        for attempt in range(tries):
            try:
                with self._slots:  # held only while the request is in flight, not while backing off
                    return self._attempt(url)
            except _Failure as failure:
                if not failure.retryable or attempt == tries - 1:
                    suffix = f" ({attempt + 1} tries)" if attempt else ""
                    raise UnreadableImage(url, failure.reason + suffix) from None
                time.sleep(self._delay(attempt, failure.retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (so that many threads do not retry in step)."""
        delay = self.settings.backoff_s * 2**attempt * random.uniform(0.5, 1.5)
        if retry_after is not None:
            delay = max(delay, min(retry_after, _MAX_RETRY_AFTER_S))
        return delay

    def _attempt(self, url: str) -> tuple[bytes, str | None, str]:
        """One GET, streamed: the headers are checked before any of the body is read."""
        httpx = self._httpx
        max_bytes = self.settings.max_bytes
        # httpx's timeout bounds each read, so a server trickling bytes could hold a try for
        # ever; this deadline bounds the whole body.
        deadline = time.monotonic() + self.settings.timeout_s
        try:
            with self._client.stream("GET", url) as resp:
                content_type = _check_headers(resp, max_bytes)
                chunks, total = [], 0
                # Decoded bytes (gzip bombs count in full), as they arrive: no chunk size, which
                # would buffer and check the deadline only once per chunk.
                for chunk in resp.iter_bytes():
                    total += len(chunk)
                    if total > max_bytes:
                        raise _Failure(f"body over {_human_bytes(max_bytes)}", retryable=False)
                    if time.monotonic() > deadline:
                        raise _Failure(self._timeout_reason, retryable=True)
                    chunks.append(chunk)
                return b"".join(chunks), resp.headers.get("etag"), content_type
        except httpx.TimeoutException:
            raise _Failure(self._timeout_reason, retryable=True) from None
        except httpx.TooManyRedirects:
            raise _Failure(f"redirect loop (over {self.settings.max_redirects} redirects)", retryable=False) from None
        except httpx.UnsupportedProtocol:
            raise _Failure("redirected to a URL that is not http:// or https://", retryable=False) from None
        except httpx.TransportError as exc:  # connection refused or reset, DNS, protocol errors
            raise _Failure(f"connection failed: {exc or type(exc).__name__}", retryable=True) from None
        except httpx.HTTPError as exc:  # e.g. a body whose Content-Encoding does not decode
            raise _Failure(f"bad response: {exc or type(exc).__name__}", retryable=False) from None
        except (httpx.InvalidURL, httpx.CookieConflict, ValueError) as exc:  # a bracket, a bad port, a NUL
            raise _Failure(f"not a valid URL: {exc or type(exc).__name__}; fix it in the source",
                           retryable=False) from None


def _check_headers(resp: Any, max_bytes: int) -> str:
    """The response's content type, once its status, type and declared length pass."""
    status = resp.status_code
    if status >= 400:
        reason = f"HTTP {status} {resp.reason_phrase}".strip()
        retryable = status in (408, 425, 429) or (status >= 500 and status not in _NOT_RETRIED_5XX)
        raise _Failure(reason, retryable, _retry_after(resp.headers.get("retry-after")))
    if status < 200 or status >= 300 or status in (204, 205, 206):  # no whole image to read
        raise _Failure(f"HTTP {status} {resp.reason_phrase}".strip(), retryable=False)
    content_type = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if _not_an_image(content_type):
        raise _Failure(f"served {content_type}, not an image", retryable=False)
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _Failure(f"body over {_human_bytes(max_bytes)}", retryable=False)
    return content_type


def _not_an_image(content_type: str) -> bool:
    """True for types that are surely not a raster image (an HTML error page, a JSON API
    reply, an SVG). Missing and generic types (application/octet-stream) pass: many servers
    send those for images, and the decoder decides."""
    main, _, sub = content_type.partition("/")
    if content_type == "image/svg+xml" or main in _NOT_IMAGE_MAIN:
        return True
    return main == "application" and (sub in _NOT_IMAGE_APP or sub.endswith(("+json", "+xml")))


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"
