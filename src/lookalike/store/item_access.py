"""``Collection``'s per-item reads beyond the row: an item's metadata (caption and table
columns) and its image bytes, whatever kind of item it is (file, tar member, URL).

A mixin, like :mod:`.exploring`, so that :mod:`.collection` stays the facade for adding and
searching. The functions below take the collection, for callers (the server, the apps)
that hold one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ..errors import ItemNotFound
from ..sources.table import CAPTION
from .item_bytes import ItemReader

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["ItemAccess", "CAPTION", "item_reader", "metadata_of", "metadata_keys_of"]

def item_reader(coll: Any) -> ItemReader:
    """The collection's :class:`~lookalike.store.item_bytes.ItemReader` (made once, kept).
    Anything with a ``path`` (the collection's folder) stands in for a collection."""
    reader = coll.__dict__.get("_item_reader")
    if reader is None:
        storage = getattr(coll, "_storage", None)
        reader = ItemReader(storage) if storage is not None else ItemReader(collection_dir=getattr(coll, "path", None))
        coll.__dict__["_item_reader"] = reader
    return reader


def metadata_of(coll: Any, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """``{id: {key: value}}`` of the given items that have metadata (others are left out)."""
    storage: "Storage" = coll._storage
    return storage.db.meta.get([int(i) for i in ids])


def metadata_keys_of(coll: Any) -> list[str]:
    """Every metadata key in use in the collection, sorted."""
    storage: "Storage" = coll._storage
    return storage.db.meta.keys()


class ItemAccess:
    """Per-item metadata and image bytes (mixed into ``Collection``)."""

    _storage: "Storage"

    def metadata(self, item_id: int) -> dict[str, Any]:
        """The item's metadata: its caption (key ``"caption"``) and the extra columns of the
        table it came from, as stored (numbers stay numbers); ``{}`` when it has none.

        Raises:
            ItemNotFound: no such id.
        """
        if self._storage.db.get(int(item_id)) is None:
            raise ItemNotFound(int(item_id), f"no item with id {item_id} in {self._storage.path}")
        return metadata_of(self, [item_id]).get(int(item_id), {})

    def metadata_many(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """``{id: metadata}`` of the given ids that have any (one query per 500 ids)."""
        return metadata_of(self, ids)

    def metadata_keys(self) -> list[str]:
        """Every metadata key in use in the collection, sorted (what ``--where`` can name)."""
        return metadata_keys_of(self)

    def image_bytes(self, item_id: int) -> bytes:
        """The item's image as stored: the file's bytes, the tar member's, or the downloaded
        copy of a URL (from the download cache; nothing is fetched).

        Raises:
            ItemNotFound: no such id.
            ImageUnavailable: the file, shard or cached copy is gone (re-index to fix it).
        """
        row = self._storage.db.get(int(item_id))
        if row is None:
            raise ItemNotFound(int(item_id), f"no item with id {item_id} in {self._storage.path}")
        return item_reader(self).read(row.path)
