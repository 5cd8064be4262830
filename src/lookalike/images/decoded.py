"""What every decoder returns, and the pieces both decoders share.

:mod:`.decode` (the entry point and the Pillow path) and :mod:`.vips_decode` (the libvips
path) both build a :class:`DecodedImage` from these helpers, so the two cannot drift apart on
EXIF facts, orientation or the wording of a refusal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Union

from PIL import Image

__all__ = ["DecodedImage", "ImageSource", "DEFAULT_MAX_PIXELS", "describe", "exif_facts", "cap_reason",
           "upright", "ORIENTATION"]

#: Images with more pixels than this are refused before decoding, wherever the decoder has to
#: hold the whole canvas (after JPEG draft or libvips shrink-on-load; formats libvips streams are
#: bounded by their rows instead, see :mod:`.vips_decode`). Real clip art reaches 170 MP
#: (openclipart has 10561x16000 PNGs); bombs are made of gigapixels. 200 MP bounds one decode
#: to ~800 MB of RGBA.
DEFAULT_MAX_PIXELS = 200_000_000

ImageSource = Union[str, os.PathLike, bytes, Image.Image]

ORIENTATION = 0x0112  # EXIF tags
_DATE_TIME = 0x0132
_EXIF_IFD = 0x8769
_DATE_TIME_ORIGINAL = 0x9003
_SUBSEC_TIME_ORIGINAL = 0x9291
#: EXIF orientation -> the transpose that shows the stored pixels upright (as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass
class DecodedImage:
    """An 8-bit RGB image plus what the file says about itself.

    ``width`` and ``height`` are the original size (after EXIF rotation), whatever size the
    decoder shrank ``image`` to; ``taken`` is the EXIF capture time as POSIX seconds
    (``DateTimeOriginal`` with its sub-seconds, read as UTC since EXIF carries no zone), and
    ``exif_tags`` counts the EXIF tags present.
    """

    image: Image.Image
    width: int
    height: int
    taken: float | None = None
    exif_tags: int = 0


def describe(source: ImageSource) -> str:
    """How an error names ``source`` when the caller gave no name."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return f"<PIL.Image {getattr(source, 'mode', '?')} {getattr(source, 'size', '?')}>"


def cap_reason(width: int, height: int, max_pixels: int) -> str:
    """The refusal of a canvas over the pixel cap (one wording for both decoders)."""
    return (
        f"{width}x{height} = {width * height:,} pixels exceeds the cap of {max_pixels:,} "
        "(possible decompression bomb; raise max_pixels if the image is genuine)"
    )


def exif_facts(exif: Image.Exif) -> tuple[float | None, int]:
    """``(capture time, tag count)`` from EXIF; a malformed date is simply no date."""
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # noqa: BLE001 - a broken sub-IFD only means fewer facts
        sub = {}
    count = len(exif) + len(sub)
    raw = sub.get(_DATE_TIME_ORIGINAL) or exif.get(_DATE_TIME)
    if not isinstance(raw, str):
        return None, count
    try:
        when = datetime.strptime(raw.strip().rstrip("\x00"), "%Y:%m:%d %H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None, count
    fraction = str(sub.get(_SUBSEC_TIME_ORIGINAL) or "").strip().rstrip("\x00")
    seconds = when.timestamp()
    if fraction.isdigit():
        seconds += int(fraction) / 10 ** len(fraction)
    return seconds, count


def upright(img: Image.Image, orientation: int) -> Image.Image:
    """``img`` turned as EXIF ``orientation`` says (the same image when it needs no turn)."""
    method = _TRANSPOSE.get(orientation)
    return img if method is None else img.transpose(method)
