"""Reading what a JPEG file says about itself from its markers, without decoding it.

:mod:`.gpu_decode` routes each file with this: the device decoder gets plain 8-bit
YCbCr/greyscale JPEGs that are complete; everything else goes the CPU path. Parsing stops at
the first scan, so it costs microseconds even for large files.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["JpegHeader", "read_jpeg_header"]

_ORIENTATION_TAG = 0x0112
#: Start-of-frame markers: baseline and extended Huffman (C0, C1) and progressive (C2).
_SOF_DEVICE = {0xC0, 0xC1, 0xC2}
#: Other SOF markers (lossless, hierarchical, arithmetic coding): decoders vary, the CPU path decides.
_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


@dataclass(frozen=True)
class JpegHeader:
    """What the markers before the first scan say.

    ``complete``: an end-of-image marker follows the first scan (a file cut short has
    none). ``adobe_rgb``: an Adobe APP14 marker says the three components are RGB, not YCbCr.
    """

    width: int
    height: int
    components: int
    precision: int
    sof: int
    orientation: int = 1
    complete: bool = False
    adobe_rgb: bool = False

    @property
    def device_ok(self) -> bool:
        """A plain JPEG every decoder agrees on: 8-bit, Huffman, greyscale or YCbCr, complete."""
        return (self.sof in _SOF_DEVICE and self.precision == 8 and self.components in (1, 3)
                and not self.adobe_rgb and self.complete and self.width > 0 and self.height > 0)


def read_jpeg_header(data: bytes | memoryview) -> JpegHeader | None:
    """The header of JPEG ``data``, or ``None`` when it is not a JPEG or its markers are malformed."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    n = len(data)
    i = 2
    orientation, adobe_rgb, frame = 1, False, None
    try:
        while i + 4 <= n:
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in _STANDALONE:
                i += 2
                continue
            if marker == 0xD9:
                return None  # end of image before any scan
            length = (data[i + 2] << 8) | data[i + 3]
            if length < 2 or i + 2 + length > n:
                return None
            seg = data[i + 4 : i + 2 + length]
            if marker == 0xE1 and bytes(seg[:6]) == b"Exif\x00\x00":
                orientation = _orientation(bytes(seg[6:])) or orientation
            elif marker == 0xEE and bytes(seg[:5]) == b"Adobe" and len(seg) >= 12:
                adobe_rgb = seg[11] == 0
            elif marker in _SOF_DEVICE or marker in _SOF_OTHER:
                if len(seg) < 6:
                    return None
                frame = (marker, seg[0], (seg[1] << 8) | seg[2], (seg[3] << 8) | seg[4], seg[5])
            elif marker == 0xDA:
                if frame is None:
                    return None
                sof, precision, height, width, components = frame
                complete = bytes(data[-2:]) == b"\xff\xd9" or _has_eoi(data, i + 2 + length)
                return JpegHeader(width, height, components, precision, sof, orientation, complete,
                                  adobe_rgb and components == 3)
            i += 2 + length
    except (IndexError, struct.error):
        return None
    return None


def _has_eoi(data: bytes | memoryview, start: int) -> bool:
    """An end-of-image marker after ``start`` (data may trail it: motion photos, padding)."""
    return bytes(data[start:]).find(b"\xff\xd9") != -1


def _orientation(tiff: bytes) -> int | None:
    """The EXIF orientation (1-8) from IFD0 of a TIFF block, or ``None``."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    end = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(end + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack_from(end + "H", tiff, ifd)
    for k in range(min(count, 512)):
        at = ifd + 2 + 12 * k
        if at + 12 > len(tiff):
            return None
        tag, kind = struct.unpack_from(end + "HH", tiff, at)
        if tag == _ORIENTATION_TAG:
            if kind != 3:  # SHORT
                return None
            (value,) = struct.unpack_from(end + "H", tiff, at + 8)
            return value if 1 <= value <= 8 else None
    return None
