"""An item's image bytes, whatever the item is: a local file, a member of a tar shard, or a
URL fetched into the collection's download cache when it was indexed.

Everything that shows an item's pixels after indexing (thumbnails, the server's original
image, contact sheets, reports) reads them here. Nothing here fetches from the network: a
URL item is read from the download cache the indexer filled, and an item whose copy is gone
raises :class:`ImageUnavailable` saying what to do (re-index, or restore the cache).
"""

from __future__ import annotations

import os
import re
import sqlite3
import tarfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import LookalikeError, UnreadableImage
from ..sources.base import is_url

if TYPE_CHECKING:
    from ..sources.download import Downloader
    from .items import Item
    from .storage import Storage

__all__ = ["ImageUnavailable", "ItemKind", "ItemReader", "item_kind", "read_item_bytes", "DOWNLOAD_DIR_STATE",
           "DOWNLOAD_MAX_SIDE_STATE", "DEFAULT_DOWNLOAD_FOLDER"]

ItemKind = Literal["file", "url", "member"]

#: State keys the indexer records: where URL items were cached, and the resize they were cached with.
DOWNLOAD_DIR_STATE = "download_dir"
DOWNLOAD_MAX_SIDE_STATE = "download_max_side"
#: The cache folder inside a collection when none was recorded (``store.indexer.default_download``).
DEFAULT_DOWNLOAD_FOLDER = "downloads"
_DATABASE = "items.sqlite"  # store.storage.DATABASE, named here so a bare folder can be read
# A member identity is "<shard>#<member>"; the shard is recognised by its suffix, so a file
# whose name merely contains "#" stays a file.
_MEMBER = re.compile(r"\.(?:tar|tar\.gz|tgz)#", re.IGNORECASE)


class ImageUnavailable(UnreadableImage):
    """An item's image cannot be read now: its file or shard is gone, or a URL item's
    downloaded copy is not in the download cache. ``path`` is the item's identity."""


def item_kind(path: str) -> ItemKind:
    """``"url"`` (http/https), ``"member"`` (``<shard.tar>#<member>``) or ``"file"``."""
    if is_url(path):
        return "url"
    if _MEMBER.search(path) and not os.path.isfile(path):
        return "member"
    return "file"


class ItemReader:
    """Reads items' image bytes for one collection; safe to share between threads.

    ``storage`` is an open collection's storage; ``collection_dir`` alone also works (the
    recorded download folder is read from its database when there is one). With neither,
    files and tar members are read, and URL items are unavailable (no cache to look in).
    Call :meth:`close` (or use it as a context manager) to release the download cache's client.
    """

    def __init__(self, storage: "Storage | None" = None, *, collection_dir: str | os.PathLike[str] | None = None
                 ) -> None:
        self._storage = storage
        self._dir = Path(collection_dir) if collection_dir is not None else storage.path if storage else None
        self._lock = threading.Lock()
        self._downloaders: dict[tuple[Path, int | None], "Downloader"] = {}

    def __enter__(self) -> "ItemReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the download cache's clients (nothing is fetched; they only find files)."""
        with self._lock:
            downloaders, self._downloaders = list(self._downloaders.values()), {}
        for d in downloaders:
            d.close()

    # ------------------------------------------------------------------ reading
    def source(self, path: str) -> str | bytes:
        """What a decoder should read for the item at ``path``: the path itself for a local
        file (decoders then read only what they need), the bytes otherwise.

        Raises:
            ImageUnavailable: a member's shard or a URL's cached copy is gone.
        """
        kind = item_kind(path)
        if kind == "file":
            return path
        if kind == "member":
            return self._member(path)
        try:
            return self.cached_copy(path).read_bytes()
        except OSError as exc:  # removed between finding and reading it
            raise ImageUnavailable(path, f"its downloaded copy cannot be read ({exc.strerror or exc}): "
                                         "re-index the collection to fetch it again") from None

    def read(self, path: str) -> bytes:
        """The image bytes of the item at ``path`` (its identity, as stored in ``items.path``).

        Raises:
            ImageUnavailable: the file, the shard or member, or the URL's cached copy is gone.
        """
        src = self.source(path)
        if isinstance(src, bytes):
            return src
        try:
            return Path(src).read_bytes()
        except OSError as exc:
            raise ImageUnavailable(path, f"cannot read the file ({exc.strerror or exc}); "
                                         "it was moved or deleted: re-index the collection") from None

    def cached_file(self, url: str) -> Path | None:
        """The download cache's copy of ``url``, or None when it is not there."""
        for cache_dir, max_side in self._settings():
            found = self._downloader(cache_dir, max_side).cached_path(url)
            if found is not None:
                return found
        return None

    # ------------------------------------------------------------------ the kinds
    def _member(self, identity: str) -> bytes:
        from ..sources.webdataset import read_member

        try:
            return read_member(identity)
        except OSError as exc:  # FileNotFoundError: the shard or the member is gone
            reason = exc.strerror or str(exc)
        except (tarfile.TarError, EOFError, ValueError) as exc:  # a damaged or truncated shard
            reason = f"the shard cannot be read ({exc})"
        raise ImageUnavailable(identity, f"{reason}; the shard was moved, changed or removed: re-index it")

    def cached_copy(self, url: str) -> Path:
        """The download cache's copy of ``url`` (what was indexed; it may be resized).

        Raises:
            ImageUnavailable: it is not in the cache.
        """
        try:
            found = self.cached_file(url)
        except LookalikeError as exc:  # MissingExtra: httpx, which the cache's reader needs
            raise ImageUnavailable(url, f"cannot look in the download cache: {exc}") from None
        if found is None:
            where = ", ".join(dict.fromkeys(str(d) for d, _ in self._settings()))
            if not where:
                raise ImageUnavailable(url, "a URL item is read from its collection's download cache, and no "
                                            "collection was given")
            raise ImageUnavailable(url, f"its downloaded copy is not in the download cache ({where}); the cache "
                                        "was removed or moved: re-index the collection to fetch it again")
        return found

    def _settings(self) -> list[tuple[Path, int | None]]:
        """Where and how URL items were cached: the recorded folder and resize, else the
        default folder under each resize a run may have used (the default 1024, or none)."""
        if self._dir is None:
            return []
        folder, side = self._state(DOWNLOAD_DIR_STATE), self._state(DOWNLOAD_MAX_SIDE_STATE)
        cache_dir = Path(folder) if folder else self._dir / DEFAULT_DOWNLOAD_FOLDER
        if side is not None:
            return [(cache_dir, int(side) if side.strip().isdigit() else None)]
        from ..sources.download import DownloadSettings

        return [(cache_dir, DownloadSettings.max_side), (cache_dir, None)]

    def _state(self, key: str) -> str | None:
        if self._storage is not None:
            return self._storage.db.get_state(key)
        db = (self._dir or Path()) / _DATABASE
        if not db.is_file():
            return None
        try:
            conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            return None
        return row[0] if row else None

    def _downloader(self, cache_dir: Path, max_side: int | None) -> "Downloader":
        from ..sources.download import Downloader, DownloadSettings

        with self._lock:
            key = (cache_dir, max_side)
            if key not in self._downloaders:
                self._downloaders[key] = Downloader(DownloadSettings(cache_dir=cache_dir, max_side=max_side))
            return self._downloaders[key]


def read_item_bytes(where: "Storage | str | os.PathLike[str]", item: "Item | str") -> bytes:
    """The image bytes of ``item`` (an :class:`~lookalike.store.items.Item` or its path) of
    the collection ``where`` (its storage or its folder), whatever the item's kind.

    Raises:
        ImageUnavailable: the file, shard or member is gone, or a URL item's downloaded copy
            is not in the download cache (nothing is fetched: re-index to fetch it again).
    """
    path = item if isinstance(item, str) else item.path
    if isinstance(where, (str, os.PathLike)):
        reader = ItemReader(collection_dir=where)
    else:
        reader = ItemReader(where)
    with reader:
        return reader.read(path)
