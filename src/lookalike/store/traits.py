"""Backfilling image traits (perceptual hashes, sharpness, EXIF facts) for items indexed
before the collection stored them.

New items get their traits at index time, from the pixels the indexer decodes anyway. Rows
written by an older lookalike (schema 1) have none; they are computed here, lazily, the
first time duplicates are looked for, and never again. A file that cannot be decoded any
more (gone, changed, unreadable) keeps no traits: its item then only takes part in the
exact and semantic tiers until the file changes and is indexed again.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import UnreadableImage
from ..images.decode import decode_image
from ..images.traits import ImageTraits, image_traits
from ..pipeline.loader import ordered_map
from ..progress import ProgressCallback, ProgressEvent
from .metadata import ItemRow

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["backfill_traits", "BACKFILLED"]

#: State key set once every row written before traits existed was tried. Files that could
#: not be decoded then keep no traits until they change (indexing computes them).
BACKFILLED = "traits_backfilled"
#: Rows read from the database at a time, so that memory stays bounded.
MISSING_PAGE = 100_000

#: Decoding only needs the hashes' input (<= 512 px), so large JPEGs shrink on load.
_DECODE_SIDE = 512
_COMMIT_EVERY = 256


def _traits_of(row: ItemRow) -> tuple[ItemRow, ImageTraits | None]:
    try:
        # The file must still be the one that was indexed: never hash a different image.
        st = os.stat(row.path)
        if st.st_size != row.size or st.st_mtime_ns != row.mtime_ns:
            return row, None
        return row, image_traits(decode_image(row.path, min_side=_DECODE_SIDE))
    except (OSError, UnreadableImage):
        return row, None


def _store(storage: "Storage", pending: list[tuple[ImageTraits, str]]) -> int:
    with storage.db.transaction():
        storage.db.set_traits(pending)
        storage.db.copy_traits_by_hash()
        storage.db.bump_generation()
    return len(pending)


def backfill_traits(storage: "Storage", *, workers: int | None = None,
                    progress: ProgressCallback | None = None) -> int:
    """Compute and store the traits of every embedded item that lacks them; returns how many
    were filled. The caller holds the writer lock. Runs once per collection: rows still
    without traits afterwards are files that could not be read then."""
    if storage.db.get_state(BACKFILLED) == "1":
        return 0
    with storage.db.transaction():
        storage.db.copy_traits_by_hash()  # copies of a file that has traits need no decoding
    total = storage.db.count_missing_traits()
    done = filled = last = 0
    while True:
        page = storage.db.missing_traits(last, MISSING_PAGE)
        pending: list[tuple[ImageTraits, str]] = []
        for row, traits in ordered_map(_traits_of, page, workers=workers):
            done += 1
            if traits is not None:
                pending.append((traits, row.path))
            if len(pending) >= _COMMIT_EVERY:
                filled += _store(storage, pending)
                pending = []
            if progress is not None:
                progress(ProgressEvent("traits", done=done, total=total, path=row.path))
        filled += _store(storage, pending)
        if len(page) < MISSING_PAGE:
            break
        last = page[-1].id
    storage.db.set_state(BACKFILLED, "1")
    return filled
