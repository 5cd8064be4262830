"""Thumbnails of a collection's items, made on demand and cached in the collection.

A thumbnail is a JPEG whose longer side is at most ``size`` pixels, decoded the same way as
for embedding (EXIF rotation, alpha on white, first frame) and shrunk with a JPEG draft
first, so a 20 MP photo costs a fraction of a full decode. The cache file name carries
the item's content hash, so an edited file gets a new thumbnail and a stale one is never
served; thumbnails of other versions are removed when a new one is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from ..errors import InvalidArgument, UnreadableImage
from ..fsutil import atomic_writer
from .decode import DEFAULT_MAX_PIXELS, decode_image

__all__ = ["THUMBNAIL_SIZES", "THUMBNAIL_DIR", "thumbnail_path", "make_thumbnail"]

#: Sizes (longest side, pixels) that may be asked for: a fixed set keeps the cache bounded.
THUMBNAIL_SIZES = (128, 256, 512)
#: Folder inside the collection that holds the cache.
THUMBNAIL_DIR = "thumbnails"
_QUALITY = 82


def thumbnail_path(collection_dir: Path, item_id: int, content_hash: str | None, size: int) -> Path:
    """Where the thumbnail of this version of the item lives (it may not exist yet)."""
    tag = (content_hash or "nohash")[:16]
    return collection_dir / THUMBNAIL_DIR / str(size) / f"{item_id}-{tag}.jpg"


def make_thumbnail(source: str | os.PathLike[str] | bytes, dest: Path, size: int,
                   *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None) -> Path:
    """Write the thumbnail of ``source`` (a file, or encoded bytes: a tar member, a downloaded
    copy) to ``dest`` (atomically) unless it exists; return ``dest``. ``name`` names the
    image in errors (default: the path).

    Raises:
        InvalidArgument: ``size`` is not one of :data:`THUMBNAIL_SIZES`.
        UnreadableImage: the source cannot be decoded (gone, damaged, too large).
    """
    if size not in THUMBNAIL_SIZES:
        raise InvalidArgument(f"thumbnail size must be one of {', '.join(map(str, THUMBNAIL_SIZES))}, not {size}")
    if dest.exists():
        return dest
    label = name or (os.fspath(source) if not isinstance(source, bytes) else f"<{len(source)} bytes>")
    decoded = decode_image(source, min_side=size, max_pixels=max_pixels, name=label)
    img = decoded.image
    img.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_writer(dest, durable=False) as f:  # a cache: atomic, not durable
            img.save(f, format="JPEG", quality=_QUALITY, optimize=True, progressive=True)
    except OSError as exc:
        raise UnreadableImage(label, f"cannot write its thumbnail to {dest}: {exc}") from exc
    finally:
        img.close()
    # Older versions of this item (same id, other content hash) are stale now.
    prefix = dest.name.split("-", 1)[0] + "-"
    for old in dest.parent.glob(prefix + "*.jpg"):
        if old != dest:
            old.unlink(missing_ok=True)
    return dest
