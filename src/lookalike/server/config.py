"""What a server is allowed to do: one frozen settings object, safe by default."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgument
from ..query import UrlPolicy

__all__ = ["ServerConfig", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one :func:`~lookalike.server.create_app` app.

    Raises:
        InvalidArgument: a token or limit that is not usable, with what to use instead.

    Attributes:
        collection: the collection directory to serve.
        token: if set, every route needs it (``Authorization: Bearer``, the ``lookalike_token``
            cookie, or ``?token=`` once, which sets the cookie).
        allow_url_hosts: hosts the server may fetch query images from (``example.com`` or
            ``*.example.com``); empty means it never fetches a client-supplied URL.
        cors_origins: origins allowed to call the API from a browser; empty means no CORS.
        max_upload_bytes: the largest request body (uploaded query images included).
        max_pixels: the largest uploaded image, in pixels, before it is decoded.
        request_timeout_s: a request still running after this gets 503.
        max_k: the most results one request may ask for (``k + offset``).
        warm: embed a short text at start-up so the first query does not pay for loading
            the model.
        allow_actions: whether ``POST /api/duplicates/resolve`` may plan and act on files
            (moving duplicates to :attr:`quarantine`); off by default, so a served page is
            read-only unless ``serve --allow-actions`` says otherwise.
        quarantine: where moved duplicates go (relative paths kept below it, with the
            journal); ``<collection>/quarantine`` when None. Fixed here: a client never
            names a destination.
        host: the address the server listens on (``lookalike serve --host``); with no token,
            face crops are served only on loopback (:attr:`crops_allowed`).
    """

    collection: Path
    token: str | None = None
    allow_url_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    request_timeout_s: float = 30.0
    max_k: int = 1000
    warm: bool = True
    allow_actions: bool = False
    quarantine: Path | None = None
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.token is not None:
            hint = "generate one with `python -c 'import secrets; print(secrets.token_urlsafe())'`"
            if len(self.token) < 8:
                raise InvalidArgument(f"the token must be at least 8 characters; {hint}")
            if not all(33 <= ord(c) < 127 and c not in ';,"\\' for c in self.token):
                raise InvalidArgument(f"the token may hold printable ASCII other than ; , \" \\ and spaces; {hint}")
        for name in ("max_upload_bytes", "max_pixels", "max_k"):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"{name} must be positive")
        if self.request_timeout_s <= 0:
            raise InvalidArgument("request_timeout_s must be positive")

    @property
    def quarantine_dir(self) -> Path:
        """Where moved duplicates go: :attr:`quarantine`, or ``quarantine/`` in the collection."""
        return Path(self.quarantine) if self.quarantine is not None else Path(self.collection) / "quarantine"

    @property
    def crops_allowed(self) -> bool:
        """Whether ``GET /api/faces/{id}/crop`` may answer: faces are personal data, so a server
        anyone on the network can reach without a token shows none (issue 14's privacy rule)."""
        return bool(self.token) or is_loopback(self.host)

    def host_allowed(self, host: str) -> bool:
        """Whether ``host`` matches the URL allow-list (exactly, or a ``*.`` suffix rule)."""
        return self.url_policy().allows(host)

    def url_policy(self) -> UrlPolicy:
        """The URL policy for query images: only allow-listed hosts (none by default), capped
        at the upload limits."""
        return UrlPolicy(allow_hosts=self.allow_url_hosts, max_bytes=self.max_upload_bytes, max_pixels=self.max_pixels,
                         refusal="this server does not fetch URLs (start it with --allow-url-host HOST to allow "
                                 "some); upload the image instead")
