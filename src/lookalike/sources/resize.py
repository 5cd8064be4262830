"""The image side of a download: prove the body decodes, and shrink it for the cache.

A body whose longest side is within ``max_side`` is kept byte for byte; a larger one is
made upright and shrunk, and stored as JPEG, or as PNG when it really has transparency.
The original size is kept (``width``, ``height``): filters and the UI show the image as
published, not the cached copy.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps

from ..images.decode import decode_image

__all__ = ["PreparedImage", "prepare_download", "EXTENSIONS"]

#: File extensions of the cached formats.
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "TIFF": "tif", "BMP": "bmp"}
_JPEG_QUALITY = 90
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


@dataclass(frozen=True)
class PreparedImage:
    """What goes into the cache: the bytes, their format, the original size."""

    data: bytes
    fmt: str
    width: int
    height: int
    resized: bool


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES or (img.mode in ("P", "L", "RGB") and "transparency" in img.info)


def prepare_download(url: str, body: bytes, max_side: int | None) -> PreparedImage:
    """Check that ``body`` decodes, and resize it when its longest side is over ``max_side``.

    Raises:
        UnreadableImage: the decoder's reason (truncated, not an image, a decompression bomb).
    """
    decoded = decode_image(body, min_side=max_side or 0, name=url)  # JPEG draft: decodes small
    width, height = decoded.width, decoded.height
    try:
        # Only the header: the decode above proved the pixels are there.
        with Image.open(io.BytesIO(body)) as probe:
            fmt, alpha = probe.format or "", _has_alpha(probe)
    except Exception:  # noqa: BLE001 - e.g. Pillow's own bomb check on a huge image the cap allows
        fmt, alpha = "", False
    if max_side is None or max(width, height) <= max_side:
        decoded.image.close()
        return PreparedImage(body, fmt, width, height, resized=False)
    if alpha:
        decoded.image.close()
        img = _rgba(body)
        if img.getchannel("A").getextrema()[0] == 255:  # alpha channel but nothing see-through
            img = img.convert("RGB")
    else:
        img = decoded.image  # already upright RGB
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    fmt = "PNG" if img.mode == "RGBA" else "JPEG"  # PNG's optimize (zlib level 9) costs too much time
    img.save(out, format=fmt, **({"quality": _JPEG_QUALITY, "optimize": True} if fmt == "JPEG" else {}))
    img.close()
    return PreparedImage(out.getvalue(), fmt, width, height, resized=True)


def _rgba(body: bytes) -> Image.Image:
    """The first frame as upright RGBA, transparency kept (``decode_image`` composites it
    onto white, which is right for embedding but not for the image kept in the cache)."""
    with Image.open(io.BytesIO(body)) as img:
        img.seek(0)
        upright = ImageOps.exif_transpose(img) or img
        return upright.convert("RGBA")
