"""Image traits: perceptual hashes survive copies and edits, tell mirror images apart, and
EXIF facts are read from the file."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from lookalike.images.decode import decode_image
from lookalike.images.traits import hamming, image_traits


def smooth_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A photo-like image: smooth colour fields (a bicubic blow-up of a few random pixels)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def traits_of(img: Image.Image, fmt: str = "PNG", **save: object):
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return image_traits(decode_image(buf.getvalue()))


def test_copies_and_light_edits_keep_their_hashes_close() -> None:
    img = smooth_image(1)
    base = traits_of(img)
    edits = {
        "jpeg q50": traits_of(img, "JPEG", quality=50),
        "resize 40%": traits_of(img.resize((128, 96), Image.Resampling.LANCZOS)),
        "brightness": traits_of(Image.eval(img, lambda v: min(255, int(v * 1.15)))),
    }
    for name, t in edits.items():
        assert hamming(base.phash, t.phash) <= 6, name
        assert hamming(base.dhash, t.dhash) <= 6, name
    other = traits_of(smooth_image(2))
    assert hamming(base.phash, other.phash) > 12


def test_a_mirror_image_matches_the_mirrored_hash() -> None:
    img = smooth_image(3)
    base, flipped = traits_of(img), traits_of(ImageOps.mirror(img))
    assert hamming(base.phash, flipped.phash) > 12
    assert hamming(base.phash_mirror, flipped.phash) <= 2


def test_blur_lowers_sharpness() -> None:
    img = smooth_image(4).filter(ImageFilter.DETAIL)
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8))
    assert traits_of(noisy).sharpness > traits_of(noisy.filter(ImageFilter.GaussianBlur(3))).sharpness * 10
    assert traits_of(img).sharpness >= traits_of(img.filter(ImageFilter.GaussianBlur(2))).sharpness


def test_exif_capture_time_and_tag_count(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    exif[0x0110] = "Model"
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2024:05:06 07:08:09"
    sub[0x9291] = "25"
    path = tmp_path / "shot.jpg"
    smooth_image(5).save(path, exif=exif)
    t = image_traits(decode_image(path))
    assert t.taken == datetime(2024, 5, 6, 7, 8, 9, 250000, tzinfo=timezone.utc).timestamp()
    assert t.exif_tags >= 4
    plain = traits_of(smooth_image(5), "JPEG")
    assert plain.taken is None and plain.exif_tags == 0


def test_a_malformed_exif_date_is_no_date(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "0000:00:00 00:00:00"
    path = tmp_path / "bad.jpg"
    smooth_image(6).save(path, exif=exif)
    assert image_traits(decode_image(path)).taken is None


def test_hashes_fit_signed_64_bit_and_hamming_is_symmetric() -> None:
    t = traits_of(smooth_image(7))
    for h in (t.phash, t.dhash, t.phash_mirror):
        assert -(1 << 63) <= h < (1 << 63)
    arr = np.array([t.phash, t.dhash])
    assert list(hamming(arr, t.phash)) == [0, hamming(t.dhash, t.phash)]
    assert hamming(-1, 0) == 64
