"""The public records of a collection's contents: an :class:`Item`, a search :class:`Hit`, and
a :class:`StoredItem` (an item's row as it was, to put it back)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from ..images.traits import ImageTraits

__all__ = ["Item", "Hit", "StoredItem"]


@dataclass(frozen=True)
class Item:
    """One file of a collection, as stored.

    Attributes:
        id: stable: kept across edits and renames of the file, never reused.
        path: absolute path of the file.
        size, mtime_ns: the file's size and modification time when last indexed.
        hash: blake2b-128 of the file's bytes (None if it could not be read).
        width, height: the image's size in pixels (None if it failed to decode).
        status: ``"ok"`` (embedded and searchable) or ``"failed"`` (``error`` says why).
    """

    id: int
    path: str
    size: int
    mtime_ns: int
    hash: str | None
    width: int | None
    height: int | None
    status: Literal["ok", "failed"]
    error: str | None = None

    @property
    def modified(self) -> datetime:
        """The file's modification time, in UTC."""
        return datetime.fromtimestamp(self.mtime_ns / 1e9, tz=timezone.utc)


@dataclass(frozen=True)
class Hit:
    """One search result: the item's stable id, its path, and the cosine similarity."""

    id: int
    path: str
    score: float


@dataclass(frozen=True)
class StoredItem:
    """An item's row as it was, so that :meth:`Collection.restore` can put it back."""

    item: Item
    traits: ImageTraits | None
    vec_row: int | None
    vector_file: str

    def to_dict(self) -> dict[str, Any]:
        return {"item": dict(vars(self.item)), "traits": self.traits.to_dict() if self.traits else None,
                "vec_row": self.vec_row, "vector_file": self.vector_file}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StoredItem":
        return cls(Item(**data["item"]), ImageTraits.from_dict(data.get("traits")), data.get("vec_row"),
                   str(data["vector_file"]))
