"""What duplicate finding needs to know about an image beyond its embedding.

Computed once per file at index time, from the image the indexer has already decoded (so
no second decode), and stored with the item:

* **pHash** and **dHash**, 64-bit perceptual hashes (the ``imagehash`` package): a resized,
  re-encoded or lightly edited copy of an image keeps most of their bits. A pair is a
  perceptual match when both are within a few bits (Hamming distance).
* the pHash of the **mirrored** image, so that a horizontal flip can be told apart from a copy
  (whether a flip counts as a duplicate is the user's choice).
* **sharpness**: the variance of the Laplacian of the grey image, to keep the sharpest shot of
  a burst.
* the **EXIF capture time** and the number of **EXIF tags** (the ``DecodedImage`` carries them),
  for burst detection and the ``most-metadata`` keep rule.

Hashes are stored as signed 64-bit integers (SQLite's INTEGER); :func:`hamming` compares them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, overload

import numpy as np
from PIL import Image, ImageOps

from .decode import DecodedImage

__all__ = ["ImageTraits", "image_traits", "hamming", "SHARPNESS_SIDE"]

#: The grey image whose Laplacian is measured is at most this many pixels on its long side,
#: so sharpness is comparable between copies of different sizes and cheap on huge images.
SHARPNESS_SIDE = 512


@dataclass(frozen=True)
class ImageTraits:
    """Perceptual hashes, sharpness and EXIF facts of one image (see the module docstring)."""

    phash: int
    dhash: int
    phash_mirror: int
    sharpness: float
    taken: float | None
    exif_tags: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "ImageTraits | None":
        return None if data is None else cls(**data)


def _signed64(bits: np.ndarray) -> int:
    """A flat array of 64 booleans as a signed 64-bit integer (first bit most significant)."""
    value = int.from_bytes(np.packbits(bits.astype(bool).ravel()).tobytes(), "big")
    return value - (1 << 64) if value >= 1 << 63 else value


def _sharpness(grey: Image.Image) -> float:
    a = np.asarray(grey, dtype=np.float32)
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    lap = a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] - 4.0 * a[1:-1, 1:-1]
    return float(lap.var())


def image_traits(decoded: DecodedImage) -> ImageTraits:
    """The traits of a decoded image (its pixels are only read, never modified)."""
    import imagehash  # a core dependency; imported here so that importing lookalike stays light

    image = decoded.image
    if max(image.size) > SHARPNESS_SIDE:
        # One cheap reduction first: every trait below looks at <= 512 px, and a poster-sized
        # PNG would otherwise be converted to grey at full size.
        scale = SHARPNESS_SIDE / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    grey = image.convert("L")
    return ImageTraits(
        phash=_signed64(imagehash.phash(grey).hash),
        dhash=_signed64(imagehash.dhash(grey).hash),
        phash_mirror=_signed64(imagehash.phash(ImageOps.mirror(grey)).hash),
        sharpness=_sharpness(grey),
        taken=decoded.taken,
        exif_tags=decoded.exif_tags,
    )


@overload
def hamming(a: int, b: int) -> int: ...
@overload
def hamming(a: np.ndarray, b: np.ndarray | int) -> np.ndarray: ...


def hamming(a: Any, b: Any) -> Any:
    """Bits that differ between 64-bit hashes (element-wise for arrays)."""
    if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
        return int(((int(a) ^ int(b)) & ((1 << 64) - 1)).bit_count())
    x = np.bitwise_xor(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))
    return np.bitwise_count(x.view(np.uint64)).astype(np.int64)
