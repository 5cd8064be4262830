"""decode_image on every hostile or awkward input a real photo folder contains.

Each test pins the precise outcome: either the exact pixels/size that come back, or an
UnreadableImage whose reason says what went wrong. Nothing may crash, hang, exhaust memory
or quietly substitute other pixels.

Every test runs against both decoders (the ``decoder`` fixture, libvips and Pillow), except
the few that test Pillow's own machinery (``pillow_only``); those have a libvips counterpart
here or in test_vips_decode.py. Where the decoders legitimately differ (libvips shrinks
every format to exactly ``min_side``, Pillow drafts JPEGs by powers of two) the test says so.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import (
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

import lookalike.images.decode as decode_mod
from lookalike.errors import LookalikeError, UnreadableImage
from lookalike.images.decode import DEFAULT_MAX_PIXELS, DecodedImage, decode_image
from lookalike.images.discover import discover

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)

pytestmark = pytest.mark.usefixtures("decoder")
#: For tests of Pillow's own machinery (its plugins, globals and lazy loading).
pillow_only = pytest.mark.parametrize("decoder", ["pillow"], indirect=True)


def pixel(decoded: DecodedImage, x: int, y: int) -> tuple[int, ...]:
    return tuple(decoded.image.getpixel((x, y)))  # type: ignore[arg-type]


def assert_close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = 12) -> None:
    assert all(abs(a - e) <= tol for a, e in zip(actual, expected)), f"{actual} != {expected} (+-{tol})"


def refused(source: Any, **kwargs: Any) -> UnreadableImage:
    """Decode ``source`` expecting UnreadableImage; return it."""
    with pytest.raises(UnreadableImage) as info:
        decode_image(source, **kwargs)
    return info.value


# ----------------------------------------------------------------- broken files


def test_truncated_jpeg_is_refused_as_truncated(tmp_path: Path, hostile: Any) -> None:
    """A JPEG cut short mid-scan fails with a 'truncated' reason naming the file."""
    path = tmp_path / "cut.jpg"
    path.write_bytes(hostile.truncated_jpeg())
    err = refused(path)
    assert "truncated" in err.reason
    assert err.path == str(path)
    assert str(path) in str(err)
    assert isinstance(err, LookalikeError)


def test_truncated_png_is_refused_as_truncated(tmp_path: Path, hostile: Any) -> None:
    """A PNG cut short mid-IDAT fails with a 'truncated' reason."""
    path = tmp_path / "cut.png"
    path.write_bytes(hostile.truncated_png())
    assert "truncated" in refused(path).reason


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [4, 8, 12, 16, 20, 26, 33, 40, 60])
def test_file_cut_inside_its_header_is_truncated_not_not_an_image(hostile: Any, fmt: str, keep: int) -> None:
    """Regression: a PNG/JPEG cut within its first bytes was reported as 'not an image' or
    'cannot open: Truncated File Read'; it must read as truncated/corrupt."""
    data = hostile.encode(hostile.blocks(7), fmt)[:keep]
    reason = refused(data, name=f"x.{fmt.lower()}").reason
    assert "truncat" in reason.lower() or "corrupt" in reason.lower(), reason
    assert "not an image" not in reason


def test_zero_byte_file_is_an_empty_file(tmp_path: Path) -> None:
    """A 0-byte file (a failed copy, a placeholder) says so, from a path or from bytes."""
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert refused(path).reason == "empty file (0 bytes)"
    assert refused(b"", name="empty.jpg").reason == "empty file (0 bytes)"


def test_text_file_named_jpg_is_not_an_image(tmp_path: Path, hostile: Any) -> None:
    """Text with an image extension is 'not an image', not a crash or a truncation."""
    path = tmp_path / "notes.jpg"
    path.write_bytes(hostile.text())
    assert refused(path).reason.startswith("not an image")


def test_png_named_jpg_decodes_exactly(tmp_path: Path, hostile: Any) -> None:
    """The extension is irrelevant: a PNG saved as .jpg decodes to its exact pixels."""
    original = hostile.blocks(11)
    path = tmp_path / "really_a_png.jpg"
    path.write_bytes(hostile.encode(original, "PNG"))
    decoded = decode_image(path)
    assert (decoded.width, decoded.height) == original.size
    assert np.array_equal(np.asarray(decoded.image), np.asarray(original))


def test_missing_file_and_directory_are_reported(tmp_path: Path) -> None:
    """Paths that are not files fail with a plain reason instead of an OSError."""
    assert refused(tmp_path / "nope.png").reason == "file not found"
    assert refused(tmp_path).reason == "is a directory, not an image"


def test_heic_without_pillow_heif_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .heic that Pillow cannot identify points at the optional extra that reads it."""
    monkeypatch.setattr(decode_mod, "heif_available", lambda: False)
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)
    assert "pillow-heif" in refused(path).reason


# ----------------------------------------------------------------- decompression bombs


def test_png_bomb_refused_before_decoding(tmp_path: Path, png_bomb_bytes: bytes, peak_rss: Any) -> None:
    """A small file declaring 30000x30000 pixels is refused from its header: fast, no big allocation."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb_bytes)
    assert path.stat().st_size < 1_000_000
    t0 = time.perf_counter()
    with peak_rss() as mem:
        err = refused(path)
    elapsed = time.perf_counter() - t0
    assert "30000x30000" in err.reason and "decompression bomb" in err.reason, err.reason
    assert elapsed < 2.0
    assert mem.growth < 200 * 2**20, f"grew {mem.growth / 2**20:.0f} MB"


def test_png_bomb_refused_when_the_decoder_may_shrink(png_bomb_bytes: bytes, peak_rss: Any) -> None:
    """Indexing asks for a small image (min_side), which lets libvips stream a PNG instead of
    holding it; a tiny file claiming 900 MP is still refused from its header, at once."""
    t0 = time.perf_counter()
    with peak_rss() as mem:
        err = refused(png_bomb_bytes, min_side=224, name="bomb.png")
    assert "30000x30000" in err.reason and "decompression bomb" in err.reason, err.reason
    assert time.perf_counter() - t0 < 2.0
    assert mem.growth < 200 * 2**20, f"grew {mem.growth / 2**20:.0f} MB"


_FORMATS = pytest.mark.parametrize(
    ("fmt", "params"),
    [("PNG", {}), ("JPEG", {}), ("TIFF", {}), ("GIF", {"save_all": True}), ("WEBP", {"save_all": True}),
     ("PNG", {"save_all": True})],
    ids=["png", "jpeg", "tiff", "animated-gif", "animated-webp", "apng"],
)


def _encoded_pair(hostile: Any, fmt: str, params: dict[str, Any]) -> bytes:
    frames = [hostile.blocks(3, (100, 100)), hostile.blocks(4, (100, 100))]
    extra = {"append_images": frames[1:]} if params else {}
    return hostile.encode(frames[0], fmt, **params, **extra)


@pillow_only
@_FORMATS
def test_cap_is_checked_before_any_pixel_is_loaded(
    hostile: Any, monkeypatch: pytest.MonkeyPatch, fmt: str, params: dict[str, Any]
) -> None:
    """Regression: PNG's getexif() decodes the whole image, and it ran before the pixel cap,
    so a PNG over ``max_pixels`` was fully decoded before being refused. No format may load
    pixels before the cap is checked."""
    loads: list[str] = []
    for cls in (ImageFile.ImageFile, PngImagePlugin.PngImageFile, GifImagePlugin.GifImageFile,
                WebPImagePlugin.WebPImageFile, JpegImagePlugin.JpegImageFile, TiffImagePlugin.TiffImageFile):
        original = cls.load

        def spy(self: Image.Image, _original: Any = original) -> Any:
            loads.append(type(self).__name__)
            return _original(self)

        monkeypatch.setattr(cls, "load", spy)
    data = _encoded_pair(hostile, fmt, params)
    err = refused(data, max_pixels=5000)
    assert "100x100 = 10,000 pixels exceeds the cap of 5,000" in err.reason
    assert loads == []
    decode_image(data)  # under the cap the same file decodes (and the spy sees it)
    assert loads


@_FORMATS
@pytest.mark.parametrize("decoder", ["vips"], indirect=True)
def test_vips_checks_the_cap_before_any_pixel_is_decoded(
    hostile: Any, monkeypatch: pytest.MonkeyPatch, fmt: str, params: dict[str, Any]
) -> None:
    """The libvips counterpart: over the cap, neither libvips nor Pillow computes a pixel."""
    import pyvips

    computed: list[str] = []
    for cls, method in ((pyvips.Image, "write_to_memory"), (ImageFile.ImageFile, "load"),
                        (PngImagePlugin.PngImageFile, "load"), (GifImagePlugin.GifImageFile, "load"),
                        (WebPImagePlugin.WebPImageFile, "load"), (TiffImagePlugin.TiffImageFile, "load")):
        original = getattr(cls, method)

        def spy(self: Any, *args: Any, _original: Any = original, _name: str = method, **kwargs: Any) -> Any:
            computed.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, spy)
    data = _encoded_pair(hostile, fmt, params)
    err = refused(data, max_pixels=5000)
    assert "100x100 = 10,000 pixels exceeds the cap of 5,000" in err.reason
    assert computed == []
    decode_image(data)
    # libvips, not Pillow, decoded it; WebP, and JPEGs that fit the cap, go to Pillow (see
    # vips_decode's docstring).
    if fmt in ("WEBP", "JPEG"):
        assert computed and "write_to_memory" not in computed
    else:
        assert computed == ["write_to_memory"]


@pillow_only
def test_pillow_global_limit_does_not_override_max_pixels(hostile: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: Pillow's own open-time limit (2 x MAX_IMAGE_PIXELS, ~179 MP) refused images
    that ``max_pixels`` allows, so raising max_pixels (as the error advises) did nothing."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = hostile.encode(hostile.blocks(4, (100, 100)), "PNG")  # 10,000 px > 2 x 1000
    decoded = decode_image(data)
    assert decoded.image.size == (100, 100)
    assert Image.MAX_IMAGE_PIXELS == 1000  # lifted for one call only, then restored
    err = refused(data, max_pixels=9_999)
    assert "100x100" in err.reason and "cap of 9,999" in err.reason


def test_huge_jpeg_is_drafted_below_the_cap_instead_of_refused(hostile: Any) -> None:
    """Regression: a 13504x13504 (182 MP) JPEG was refused by Pillow's limit even when draft
    mode would decode it at 1/8 scale; the cap applies to what is actually decoded."""
    data = hostile.uniform_grey_jpeg(13504, 13504)
    assert len(data) < 3_000_000
    decoded = decode_image(data, min_side=224, max_pixels=100_000_000)
    assert decoded.image.size == (1688, 1688)  # libvips shrinks on load exactly as Pillow's draft
    assert (decoded.width, decoded.height) == (13504, 13504)
    assert pixel(decoded, 800, 800) == (128, 128, 128)
    err = refused(data, max_pixels=100_000_000)  # no draft: the full size counts
    assert "13504x13504 = 182,358,016 pixels exceeds the cap of 100,000,000" in err.reason


def test_default_cap_allows_large_real_images() -> None:
    """The default cap leaves room for genuine huge clip art (170 MP) and refuses gigapixels."""
    assert 170_000_000 < DEFAULT_MAX_PIXELS < 900_000_000


# ----------------------------------------------------------------- colour modes


def test_cmyk_jpeg_becomes_rgb_with_sensible_colours(hostile: Any) -> None:
    """CMYK (print) JPEGs become RGB: cyan, magenta, yellow and black ink look like themselves."""
    decoded = decode_image(hostile.cmyk_jpeg())
    assert decoded.image.mode == "RGB"
    assert_close(pixel(decoded, 8, 8), (0, 255, 255), tol=20)  # cyan
    assert_close(pixel(decoded, 56, 8), (255, 0, 255), tol=20)  # magenta
    assert_close(pixel(decoded, 8, 56), (255, 255, 0), tol=20)  # yellow
    assert_close(pixel(decoded, 56, 56), (0, 0, 0), tol=20)  # black


@pytest.mark.parametrize(("value16", "expected8"), [(0, 0), (32768, 128), (65535, 255), (16384, 64)])
def test_16bit_greyscale_png_is_scaled_not_clipped(hostile: Any, value16: int, expected8: int) -> None:
    """16-bit greyscale is scaled by 255/65535: mid-grey 32768 is ~128, not clipped to 255."""
    decoded = decode_image(hostile.grey16_png(value16))
    assert decoded.image.mode == "RGB"
    assert_close(pixel(decoded, 5, 5), (expected8,) * 3, tol=1)


def test_dark_16bit_png_stays_dark(hostile: Any) -> None:
    """Regression: the 16-bit scale was guessed from the content, so a dark 16-bit image
    (all values <= 255 of 65535) was treated as 8-bit and came out 255x too bright."""
    decoded = decode_image(hostile.grey16_png(200))
    assert_close(pixel(decoded, 5, 5), (1, 1, 1), tol=1)


def test_16bit_grey_tiff_is_scaled(hostile: Any) -> None:
    """The same scaling applies to 16-bit TIFFs."""
    img = Image.fromarray(np.full((10, 10), 32768, dtype=np.uint16))
    decoded = decode_image(hostile.encode(img, "TIFF"))
    assert_close(pixel(decoded, 3, 3), (128, 128, 128), tol=1)


def test_16bit_rgb_png_keeps_its_colour(hostile: Any) -> None:
    """16 bits per channel RGB becomes 8-bit RGB with each channel scaled."""
    decoded = decode_image(hostile.rgb16_png(12, 10, (65535, 32768, 0)))
    assert decoded.image.size == (12, 10)
    assert_close(pixel(decoded, 4, 4), (255, 128, 0), tol=1)


def test_float_tiff_in_unit_range_is_scaled(hostile: Any) -> None:
    """A mode 'F' TIFF holding [0, 1] values maps 0.0 to 0 and 0.5 to 128."""
    decoded = decode_image(hostile.float_tiff())
    assert pixel(decoded, 5, 10) == (0, 0, 0)
    assert_close(pixel(decoded, 30, 10), (128, 128, 128), tol=1)


def test_palette_png_with_transparency_is_composited_on_white(hostile: Any) -> None:
    """Transparent palette entries become white (what viewers show), opaque ones keep their colour."""
    decoded = decode_image(hostile.palette_transparent_png())
    assert pixel(decoded, 5, 10) == WHITE
    assert pixel(decoded, 30, 10) == RED


def test_rgba_is_composited_on_white(hostile: Any) -> None:
    """Fully transparent RGBA pixels are white, not the black stored under them."""
    decoded = decode_image(hostile.rgba_png())
    assert pixel(decoded, 5, 10) == WHITE
    assert pixel(decoded, 30, 10) == BLUE


def test_half_transparent_black_is_mid_grey() -> None:
    """Alpha is blended, not thresholded: 50% black over white is mid-grey."""
    decoded = decode_image(Image.new("RGBA", (4, 4), (0, 0, 0, 128)))
    assert_close(pixel(decoded, 1, 1), (127, 127, 127), tol=1)


def test_la_is_composited_on_white(hostile: Any) -> None:
    """Greyscale + alpha: transparent half white, opaque half keeps its grey."""
    decoded = decode_image(hostile.la_png())
    assert pixel(decoded, 5, 10) == WHITE
    assert pixel(decoded, 30, 10) == (50, 50, 50)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_colour_key_transparency_is_composited_on_white(hostile: Any, mode: str) -> None:
    """Regression: a greyscale or RGB PNG with a tRNS colour key kept the keyed (transparent)
    pixels black instead of compositing them onto white like every other kind of alpha."""
    key = 0 if mode == "L" else (0, 0, 0)
    img = Image.new(mode, (40, 20), key)
    img.paste(90 if mode == "L" else (90, 90, 90), (20, 0, 40, 20))
    decoded = decode_image(hostile.encode(img, "PNG", transparency=key))
    assert pixel(decoded, 5, 10) == WHITE
    assert pixel(decoded, 30, 10) == (90, 90, 90)


@pytest.mark.parametrize("mode", ["1", "L", "P", "I", "HSV", "YCbCr"])
def test_other_modes_become_8bit_rgb(mode: str) -> None:
    """Whatever the mode, the result is an 8-bit RGB image of the same size."""
    decoded = decode_image(Image.new(mode, (7, 5)))
    assert decoded.image.mode == "RGB" and decoded.image.size == (7, 5)
    assert (decoded.width, decoded.height) == (7, 5)


# ----------------------------------------------------------------- animation, EXIF, names


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_image_uses_its_first_frame(tmp_path: Path, hostile: Any, fmt: str) -> None:
    """Animated GIF, WEBP and APNG decode to the first frame (red), whole and in RGB."""
    path = tmp_path / f"anim.{fmt.lower()}"
    path.write_bytes(hostile.animated(fmt))
    decoded = decode_image(path)
    assert decoded.image.size == (30, 30)
    assert_close(pixel(decoded, 15, 15), RED, tol=2)
    assert_close(pixel(decoded, 0, 29), RED, tol=2)


@pytest.mark.parametrize(
    ("orientation", "corners"),
    [
        # Stored 40x20 quadrants: TL red, TR green, BL blue, BR white.
        (6, (BLUE, RED, WHITE, GREEN)),  # display = stored rotated 90 degrees clockwise
        (8, (GREEN, WHITE, RED, BLUE)),  # display = stored rotated 90 degrees counter-clockwise
        (3, (WHITE, BLUE, GREEN, RED)),  # display = stored rotated 180 degrees
        (1, (RED, GREEN, BLUE, WHITE)),  # as stored
    ],
)
def test_exif_orientation_is_applied(
    tmp_path: Path, hostile: Any, orientation: int, corners: tuple[tuple[int, int, int], ...]
) -> None:
    """A rotated phone photo decodes upright, and width/height are reported as displayed."""
    path = tmp_path / f"rot{orientation}.jpg"
    path.write_bytes(hostile.exif_rotated_jpeg(orientation))
    decoded = decode_image(path)
    expected_size = (20, 40) if orientation in (6, 8) else (40, 20)
    assert decoded.image.size == expected_size
    assert (decoded.width, decoded.height) == expected_size
    w, h = expected_size
    tl, tr, bl, br = corners
    assert_close(pixel(decoded, 2, 2), tl, tol=30)
    assert_close(pixel(decoded, w - 3, 2), tr, tol=30)
    assert_close(pixel(decoded, 2, h - 3), bl, tol=30)
    assert_close(pixel(decoded, w - 3, h - 3), br, tol=30)


def test_exif_rotated_and_drafted_jpeg_reports_full_rotated_size(hostile: Any) -> None:
    """width/height are the file's displayed size even when draft mode decodes it smaller."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = hostile.encode(hostile.blocks(5, (1600, 1200)), "JPEG", exif=exif)
    decoded = decode_image(data, min_side=100)
    assert (decoded.width, decoded.height) == (1200, 1600)
    assert decoded.image.size == (150, 200)  # 1/8 scale, then rotated


def test_corrupt_exif_does_not_reject_good_pixels(hostile: Any) -> None:
    """A JPEG whose EXIF block is garbage still decodes (orientation treated as unknown)."""
    data = hostile.encode(Image.new("RGB", (20, 20), (10, 200, 30)), "JPEG", exif=b"Exif\x00\x00garbage-garbage")
    assert_close(pixel(decode_image(data), 10, 10), (10, 200, 30), tol=6)


def test_unicode_file_name_decodes_and_is_discovered(tmp_path: Path, hostile: Any) -> None:
    """Non-ASCII names (accents, CJK, emoji) decode and are found by discover."""
    folder = tmp_path / "フォト"
    folder.mkdir()
    path = folder / "café_猫_🐱.png"
    path.write_bytes(hostile.encode(hostile.blocks(9), "PNG"))
    assert decode_image(path).image.size == (160, 120)
    assert [f.path for f in discover([tmp_path])] == [str(path)]


# ----------------------------------------------------------------- JPEG draft


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """A real 4000x3000 camera-sized JPEG (a smooth gradient)."""
    small = np.zeros((3, 4, 3), dtype=np.uint8)
    small[..., 0] = np.arange(4) * 60
    small[..., 1] = np.arange(3)[:, None] * 100
    img = Image.fromarray(small).resize((4000, 3000), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.mark.parametrize("min_side", [224, 256, 700, 1600])
def test_jpeg_draft_keeps_short_side_at_least_min_side(big_jpeg: bytes, min_side: int) -> None:
    """Draft mode shrinks by the largest power of two that keeps the short side >= min_side."""
    decoded = decode_image(big_jpeg, min_side=min_side)
    w, h = decoded.image.size
    assert min_side <= min(w, h) < 2 * min_side
    assert abs(w / h - 4 / 3) < 0.01
    assert (decoded.width, decoded.height) == (4000, 3000)


def test_jpeg_draft_for_model_input_is_much_smaller(big_jpeg: bytes) -> None:
    """For a 224 model input a 12 MP photo is decoded at 1/8 scale (500x375)."""
    assert decode_image(big_jpeg, min_side=224).image.size == (500, 375)


def test_scaled_jpeg_size_is_rounded_up_by_both_decoders(hostile: Any) -> None:
    """Regression (libvips): libjpeg's scaled size rounds up (Pillow's draft keeps the partial
    edge block) while libvips rounded down, which moved a letterboxed picture by a pixel and
    the lite model's vector by 0.006 in cosine."""
    data = hostile.encode(hostile.blocks(4, (1600, 1203)), "JPEG", quality=90)
    decoded = decode_image(data, min_side=224)
    assert decoded.image.size == (400, 301)
    assert_close(pixel(decoded, 200, 300), pixel(decoded, 200, 299), tol=40)


def test_jpeg_without_min_side_is_full_size(big_jpeg: bytes) -> None:
    """min_side=0 (the default) never drafts."""
    assert decode_image(big_jpeg).image.size == (4000, 3000)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "GIF"])
def test_other_formats_shrink_with_libvips_only(hostile: Any, decoder: str, fmt: str) -> None:
    """Pillow's draft is JPEG-only, so other formats come back at full size; libvips shrinks
    every format it reads, keeping 4x min_side (the model's resize does the rest, as on
    Pillow's image) and the exact aspect ratio; the reported size stays the original."""
    data = hostile.encode(hostile.blocks(2, (1200, 900)), fmt)
    decoded = decode_image(data, min_side=50)
    assert decoded.image.size == ((1200, 900) if decoder == "pillow" else (268, 201))
    assert (decoded.width, decoded.height) == (1200, 900)
    assert decode_image(data, min_side=150).image.size == (1200, 900)  # under 8x: not worth it


def test_callers_image_is_not_modified(big_jpeg: bytes, hostile: Any) -> None:
    """Regression: decoding a PIL image the caller opened applied JPEG draft to it in place
    (shrinking the caller's image) and rewound the caller's animation to frame 0."""
    theirs = Image.open(io.BytesIO(big_jpeg))
    decoded = decode_image(theirs, min_side=224)
    assert theirs.size == (4000, 3000)
    assert decoded.image.size == (4000, 3000)

    anim = Image.open(io.BytesIO(hostile.animated("GIF")))
    anim.seek(2)
    decoded = decode_image(anim)
    assert anim.tell() == 2
    assert_close(pixel(decoded, 15, 15), BLUE, tol=2)  # the frame the caller chose


# ----------------------------------------------------------------- LOAD_TRUNCATED_IMAGES


def test_truncated_file_refused_even_if_load_truncated_images_is_set(
    hostile: Any, monkeypatch: pytest.MonkeyPatch, decoder: str
) -> None:
    """Another library turning on LOAD_TRUNCATED_IMAGES must not make us index grey-padded
    half images: the file is refused, the reason names the flag (Pillow, which decodes JPEGs
    that fit the cap for both decoders) or the truncation (libvips, which never reads the
    flag), and the flag is left alone."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for data, by_pillow in ((hostile.truncated_jpeg(), True), (hostile.truncated_png(), decoder == "pillow")):
        err = refused(data)
        assert ("LOAD_TRUNCATED_IMAGES" if by_pillow else "truncated") in err.reason
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_in_memory_image_decodes_while_load_truncated_images_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """An image with no pixels left to decode (built in memory) has nothing to guess."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert pixel(decode_image(Image.new("RGB", (3, 3), RED)), 1, 1) == RED


def test_decoding_never_turns_load_truncated_images_on(hostile: Any) -> None:
    """After decoding good and truncated files the global is still off."""
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    refused(hostile.truncated_jpeg())
    decode_image(hostile.encode(hostile.blocks(1), "JPEG"))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# ----------------------------------------------------------------- sources


def test_path_bytes_and_pil_sources_agree(tmp_path: Path, hostile: Any) -> None:
    """A path, its bytes and the opened PIL image decode to the same pixels."""
    img = hostile.blocks(6)
    path = tmp_path / "a.png"
    path.write_bytes(hostile.encode(img, "PNG"))
    arrays = [np.asarray(decode_image(s).image) for s in (path, str(path), path.read_bytes(), Image.open(path))]
    for arr in arrays[1:]:
        assert np.array_equal(arr, arrays[0])


def test_bytes_errors_use_the_given_name(hostile: Any) -> None:
    """Errors for in-memory input name what the caller called it, or describe the bytes."""
    assert refused(hostile.text(), name="upload.jpg").path == "upload.jpg"
    assert refused(b"xx").path == "<2 bytes>"


# ----------------------------------------------------------------- robustness


def test_truncated_animated_gif_never_escapes_as_another_exception(hostile: Any, decoder: str) -> None:
    """Regression: an animated GIF cut short after its first frame made Pillow raise a bare
    IndexError (from the is_animated probe), which escaped decode_image and would abort a
    whole indexing run. Every cut must give the first frame or UnreadableImage."""
    data = hostile.animated("GIF")
    reasons = []
    for cut in range(1, len(data)):
        try:
            decoded = decode_image(data[:cut])
        except UnreadableImage as err:
            reasons.append(err.reason)
        else:
            assert_close(pixel(decoded, 15, 15), RED, tol=2)
    if decoder == "pillow":
        assert any(r.startswith("truncated or corrupt file (index out of range") for r in reasons)
    assert sum("truncated" in r for r in reasons) > len(reasons) // 2, reasons


@pillow_only
@pytest.mark.parametrize(("stage", "error"), [("_open", RuntimeError), ("load", KeyError)])
def test_unexpected_plugin_error_becomes_unreadable(
    hostile: Any, monkeypatch: pytest.MonkeyPatch, stage: str, error: type[Exception]
) -> None:
    """Any exception a format plugin raises on malformed data, while opening or decoding,
    becomes UnreadableImage naming the exception type, instead of ending an indexing run."""

    def broken(self: Any) -> None:
        raise error("unexpected tag")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, stage, broken)
    err = refused(hostile.encode(hostile.blocks(1), "PNG"))
    assert error.__name__ in err.reason and "unexpected tag" in err.reason


@pytest.mark.parametrize("decoder", ["vips"], indirect=True)
@pytest.mark.parametrize("stage", ["header", "pixels"])
def test_unexpected_libvips_error_never_escapes(hostile: Any, monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    """The libvips counterpart: an unexpected exception while reading the header hands the
    file to Pillow (which decodes this good one); while decoding pixels it becomes
    UnreadableImage naming the exception type."""
    import pyvips

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("unexpected tag")

    data = hostile.encode(hostile.blocks(1), "PNG")
    if stage == "header":
        monkeypatch.setattr(pyvips.Image, "new_from_source", broken)
        assert decode_image(data).image.size == (160, 120)
    else:
        monkeypatch.setattr(pyvips.Image, "write_to_memory", broken)
        err = refused(data)
        assert "RuntimeError" in err.reason and "unexpected tag" in err.reason


def _open_fds_to(path: Path) -> list[str]:
    fd_dir = Path("/proc/self/fd")
    found = []
    for fd in fd_dir.iterdir():
        try:
            if Path(os.readlink(fd)) == path:
                found.append(fd.name)
        except OSError:
            continue
    return found


@pillow_only
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_failed_decode_releases_file_and_pixels(tmp_path: Path, hostile: Any) -> None:
    """Regression: a failed decode's traceback kept the opened image alive (its open file and
    any pixels already allocated) for as long as the caller held the error, which the indexer
    does for a whole batch of failures."""
    path = tmp_path / "cut.png"
    path.write_bytes(hostile.truncated_png())
    with pytest.raises(UnreadableImage) as info:
        decode_image(path)
    held = info.value  # keep the error (and its traceback) alive, as the indexer does
    assert _open_fds_to(path) == []
    frame_images = [
        value for tb in _walk_tb(held.__traceback__) for value in tb.tb_frame.f_locals.values()
        if isinstance(value, Image.Image)
    ]
    assert frame_images, "expected the opened image among the traceback's locals"
    for img in frame_images:
        with pytest.raises(ValueError, match="closed image"):
            img.getpixel((0, 0))


def _walk_tb(tb: Any) -> list[Any]:
    out = []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


@pytest.mark.parametrize("decoder", ["vips"], indirect=True)
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_vips_releases_the_file_whatever_the_outcome(tmp_path: Path, hostile: Any, png_bomb_bytes: bytes) -> None:
    """The libvips counterpart: the open file is closed after a success, a pixel failure and a
    refusal from the header, even while the caller holds the error and its traceback."""
    good, cut, bomb = tmp_path / "good.png", tmp_path / "cut.png", tmp_path / "bomb.png"
    good.write_bytes(hostile.encode(hostile.blocks(2, (600, 400)), "PNG"))
    cut.write_bytes(hostile.truncated_png())
    bomb.write_bytes(png_bomb_bytes)
    assert decode_image(good, min_side=25).image.size == (150, 100)
    assert _open_fds_to(good) == []
    held = [refused(cut), refused(bomb, min_side=224)]
    assert "truncated" in held[0].reason and "decompression bomb" in held[1].reason
    assert _open_fds_to(cut) == [] and _open_fds_to(bomb) == []


def test_decoded_multi_frame_file_is_closed(tmp_path: Path, hostile: Any) -> None:
    """A multi-frame file (which Pillow keeps open after load) is closed once decoded."""
    path = tmp_path / "anim.webp"
    path.write_bytes(hostile.animated("WEBP"))
    decoded = decode_image(path)
    assert _open_fds_to(path) == []
    assert_close(pixel(decoded, 3, 3), RED, tol=2)


def test_file_vanishing_while_identified_is_still_unreadable(
    tmp_path: Path, hostile: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: when a file disappeared (or its share dropped) between opening and the
    empty-file check, the raw OSError escaped instead of UnreadableImage."""
    path = tmp_path / "flaky.jpg"
    path.write_bytes(hostile.text())

    asked: list[Any] = []

    def gone(name: Any) -> int:
        asked.append(name)
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(decode_mod.os.path, "getsize", gone)
    assert refused(path).reason.startswith("not an image")
    assert asked, "the vanishing file was never looked at: the test proves nothing"


def test_heic_decodes_without_discovery_first(tmp_path: Path) -> None:
    """Regression: a HEIC decoded before any folder scan registered pillow-heif was refused as unreadable."""
    pillow_heif = pytest.importorskip("pillow_heif")
    path = tmp_path / "photo.heic"
    try:
        pillow_heif.from_pillow(Image.new("RGB", (64, 48), (200, 30, 30))).save(path, quality=90)
    except Exception as exc:  # noqa: BLE001 - a libheif build without an encoder
        pytest.skip(f"this pillow-heif cannot encode HEIC: {exc}")
    # A fresh interpreter: the opener must not already be registered by this test session.
    code = (
        "from lookalike.images.decode import decode_image; "
        f"d = decode_image({str(path)!r}); print(d.width, d.height, d.image.getpixel((32, 24)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["64", "48"]
    assert int(out[2].strip("(,")) > 150
