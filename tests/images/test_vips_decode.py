"""The libvips decoder: the choice of decoder, the Pillow fallback, shrink on load, the memory
bound, agreement with Pillow on real images, HEIF/AVIF, threads.

The hostile-file suite (test_decode.py, test_hostile_folder.py) already runs against both
decoders; this file covers what only the libvips path has.
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import lookalike.images.vips_decode as vips_mod
from lookalike.errors import InvalidArgument, MissingExtra, UnreadableImage
from lookalike.images.decode import check_decoder, decode_image, default_decoder
from lookalike.images.traits import hamming, image_traits
from tools import samples

pyvips = pytest.importorskip("pyvips")
if not vips_mod.vips_available():
    pytest.skip("pyvips imports but its libvips does not load", allow_module_level=True)

BOTH = ("pillow", "vips")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def grey_png(width: int, height: int, seed: int = 0) -> bytes:
    """An 8-bit grey PNG of soft random bands: compresses well, yet far from bomb-like."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(rng.integers(0, 256, size=(height // 16 + 1, 1), dtype=np.uint8), 16, axis=0)[:height]
    cols = rng.integers(0, 8, size=(1, width), dtype=np.uint8)
    arr = rows + cols
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


# ----------------------------------------------------------------- choosing the decoder


def test_default_is_vips_unless_the_environment_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOKALIKE_DECODER", raising=False)
    assert default_decoder() == "vips"
    monkeypatch.setenv("LOOKALIKE_DECODER", "Pillow")
    assert default_decoder() == "pillow"
    monkeypatch.setenv("LOOKALIKE_DECODER", "imagemagick")
    with pytest.raises(InvalidArgument, match="LOOKALIKE_DECODER.*vips, pillow"):
        default_decoder()
    with pytest.raises(InvalidArgument, match="decoder must be one of"):
        check_decoder("magick")


def test_falls_back_to_pillow_when_pyvips_is_absent(monkeypatch: pytest.MonkeyPatch, hostile: Any) -> None:
    """Without pyvips (the import fails), Pillow decodes everything; asking for libvips by name
    says what to install."""
    monkeypatch.setitem(sys.modules, "pyvips", None)  # `import pyvips` now raises ImportError
    monkeypatch.setattr(vips_mod, "_state", None)
    monkeypatch.setattr(vips_mod, "_pyvips", None)
    monkeypatch.delenv("LOOKALIKE_DECODER", raising=False)
    assert default_decoder() == "pillow"
    data = hostile.encode(hostile.blocks(1, (1200, 900)), "PNG")
    decoded = decode_image(data, min_side=100)
    assert decoded.image.size == (1200, 900)  # Pillow: no shrink for PNG
    with pytest.raises(MissingExtra, match="pyvips"):
        decode_image(data, decoder="vips")
    monkeypatch.setenv("LOOKALIKE_DECODER", "vips")
    with pytest.raises(MissingExtra, match="pyvips"):
        decode_image(data)


def test_operation_cache_is_off() -> None:
    """Every file is opened once: a cache would only hold memory and files in a long run."""
    assert vips_mod.vips_available()
    assert pyvips.cache_get_max() == 0 and pyvips.cache_get_max_files() == 0


def test_pil_images_and_other_formats_go_to_pillow(hostile: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """PIL images are never handed to libvips; formats it does not read (BMP here), whose look
    it would change (CMYK), or that it would not decode better (WebP) go to Pillow, unchanged."""
    img = hostile.blocks(5, (900, 600))
    bmp = hostile.encode(img, "BMP")
    assert np.array_equal(np.asarray(decode_image(bmp, decoder="vips").image), np.asarray(img))
    computed: list[str] = []
    original = pyvips.Image.write_to_memory
    monkeypatch.setattr(pyvips.Image, "write_to_memory", lambda self: computed.append("vips") or original(self))
    for data in (hostile.cmyk_jpeg(), hostile.encode(img, "WEBP", quality=90), hostile.encode(img.convert("CMYK"), "TIFF")):
        decoded = [np.asarray(decode_image(data, min_side=20, decoder=d).image) for d in BOTH]
        assert np.array_equal(*decoded)
    assert computed == []


# ----------------------------------------------------------------- shrink on load


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "RGBA"), ("PNG", "P"), ("PNG", "LA"), ("JPEG", "RGB"),
                                           ("TIFF", "RGB"), ("GIF", "P")])
def test_shrunk_image_looks_like_pillows(hostile: Any, fmt: str, mode: str) -> None:
    """Shrunk on load, alpha and palettes included, libvips gives Pillow's picture (compared
    after Pillow's full-size decode is box-filtered to the same size); a JPEG is shrunk as
    Pillow's draft shrinks it, to the same size and pixels."""
    base = hostile.blocks(8, (800, 600)).convert("RGBA")
    alpha = np.zeros((600, 800), dtype=np.uint8)
    alpha[:, 400:] = 255  # left half transparent: it must come out white, not black
    base.putalpha(Image.fromarray(alpha))
    img = base.convert(mode) if mode != "P" else base.convert("RGB").quantize(16)
    data = hostile.encode(img, fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    vips = decode_image(data, min_side=50, decoder="vips")
    pil = decode_image(data, min_side=50, decoder="pillow")
    size = (100, 75) if fmt == "JPEG" else (268, 201)  # JPEG at 1/8; others at >= 4x min_side, 4:3 kept
    assert vips.image.size == size and (vips.width, vips.height) == (800, 600)
    ref = np.asarray(pil.image.resize(size, Image.Resampling.BOX), dtype=np.float32)
    diff = np.abs(np.asarray(vips.image, dtype=np.float32) - ref)
    # Block edges resample slightly differently; the colours (and the white) are the same.
    assert np.median(diff) <= 1 and diff.mean() < 4, (np.median(diff), diff.mean())
    if mode in ("RGBA", "LA"):
        assert np.asarray(vips.image)[size[1] // 2, 20].tolist() == [255, 255, 255]


def test_16bit_png_shrinks_and_scales(hostile: Any) -> None:
    decoded = decode_image(hostile.rgb16_png(640, 480, (65535, 32768, 0)), min_side=20, decoder="vips")
    assert decoded.image.size == (108, 81)
    assert decoded.image.getpixel((40, 30)) == (255, 128, 0)


def test_exif_rotation_and_facts_match_pillow(hostile: Any) -> None:
    """Orientation, capture time and tag count are read as the Pillow path reads them."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x0110] = "Camera"
    exif.get_ifd(0x8769).update({0x9003: "2021:06:05 14:30:00", 0x9291: "25"})
    data = hostile.encode(hostile.quadrants((1600, 1200), ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255))),
                          "JPEG", quality=95, exif=exif)
    vips, pil = (decode_image(data, min_side=200, decoder=d) for d in ("vips", "pillow"))
    assert (vips.width, vips.height) == (pil.width, pil.height) == (1200, 1600)
    assert (vips.taken, vips.exif_tags) == (pil.taken, pil.exif_tags) and vips.taken is not None
    assert vips.image.size == pil.image.size == (300, 400)  # 1/4, as Pillow's draft, then turned
    assert vips.image.getpixel((290, 10)) == pytest.approx((255, 0, 0), abs=12)  # top-right: red


def test_odd_file_names_are_not_read_as_libvips_options(tmp_path: Path, hostile: Any) -> None:
    """libvips reads "file.png[shrink=2]" as options; the decoder opens the file itself."""
    path = tmp_path / "scan [shrink=2] ☃.png"
    path.write_bytes(hostile.encode(hostile.blocks(3, (300, 200)), "PNG"))
    assert decode_image(path, decoder="vips").image.size == (300, 200)


# ----------------------------------------------------------------- memory bound and bombs


def test_streamed_png_over_the_pixel_cap_is_decoded_not_refused() -> None:
    """A genuine PNG over max_pixels streams through libvips in rows (Pillow must refuse it)."""
    data = grey_png(4000, 3000)  # 12 MP, ~70 KB: about 170 pixels per byte
    decoded = decode_image(data, min_side=200, max_pixels=5_000_000, decoder="vips")
    assert decoded.image.size == (1068, 801) and (decoded.width, decoded.height) == (4000, 3000)
    with pytest.raises(UnreadableImage, match="exceeds the cap of 5,000,000"):
        decode_image(data, min_side=200, max_pixels=5_000_000, decoder="pillow")
    with pytest.raises(UnreadableImage, match="exceeds the cap"):  # no shrink: the result is over the cap
        decode_image(data, max_pixels=5_000_000, decoder="vips")


def test_rows_too_wide_for_the_memory_bound_are_refused() -> None:
    """Streaming holds rows, so a canvas whose rows alone exceed the bound is refused; and a
    streamed canvas may exceed max_pixels only so far (time is its cost)."""
    data = grey_png(4000, 3000)
    with pytest.raises(UnreadableImage, match=r"exceeds 16 x max_pixels = 8,000,000, the most that is streamed"):
        decode_image(data, min_side=100, max_pixels=500_000, decoder="vips")
    with pytest.raises(UnreadableImage, match=r"rows alone need about 9 MB, over the per-image bound of 4 MB"):
        decode_image(data, min_side=100, max_pixels=1_000_000, decoder="vips")


def test_canvases_decoded_whole_keep_the_pixel_cap(hostile: Any) -> None:
    """Interlaced PNGs, progressive JPEGs, WebP, GIF, TIFF (and HEIF) are held whole: the cap stays."""
    img = pyvips.Image.new_from_buffer(grey_png(400, 300), "")
    interlaced = img.pngsave_buffer(interlace=True)
    with pytest.raises(UnreadableImage, match="400x300 = 120,000 pixels exceeds the cap of 100,000"):
        decode_image(interlaced, min_side=50, max_pixels=100_000, decoder="vips")
    assert decode_image(interlaced, min_side=25, decoder="vips").image.size == (136, 102)
    for fmt, params in (("WEBP", {}), ("GIF", {}), ("TIFF", {})):
        data = hostile.encode(hostile.blocks(1, (400, 300)), fmt, **params)
        with pytest.raises(UnreadableImage, match="400x300 = 120,000 pixels exceeds the cap of 100,000"):
            decode_image(data, min_side=25, max_pixels=100_000, decoder="vips")
    # A JPEG that Pillow's draft brings under the cap goes to Pillow, progressive or not (libvips
    # would hold every coefficient of a progressive one); over the cap even after the draft, it stays refused.
    progressive = hostile.encode(hostile.blocks(1, (400, 300)), "JPEG", progressive=True)
    assert decode_image(progressive, min_side=25, max_pixels=100_000, decoder="vips").image.size == (50, 38)
    with pytest.raises(UnreadableImage, match="exceeds the cap of 10,000"):
        decode_image(progressive, min_side=150, max_pixels=10_000, decoder="vips")


@pytest.mark.slow
def test_huge_real_png_is_refused_by_pillow_and_indexed_by_vips(peak_rss: Any) -> None:
    """The real 10562x16000 openclipart PNG (169 MP): about 2 s. (The default suite streams a
    synthetic PNG over the cap instead, above.)"""
    try:
        path = samples.clipart_root() / "food/meats_and_eggs/salami_mateya_01.png"
    except samples.SamplesUnavailable as exc:
        pytest.skip(f"real sample images unavailable: {exc}")
    if not path.exists():
        pytest.skip("openclipart sample missing")
    with peak_rss() as mem:
        decoded = decode_image(path, min_side=256, decoder="vips")
    assert (decoded.width, decoded.height) == (10562, 16000)
    assert 4 * 256 <= min(decoded.image.size) < 8 * 256
    assert mem.growth < 250 * 2**20, f"grew {mem.growth / 2**20:.0f} MB"
    with pytest.raises(UnreadableImage, match="exceeds the cap"):
        decode_image(path, min_side=256, max_pixels=100_000_000, decoder="pillow")


@pytest.mark.slow
def test_623_megapixel_png_is_indexed_in_bounded_memory(peak_rss: Any) -> None:
    """Issue 12: the real 20990x29700 PNG was refused as a possible bomb; now it decodes
    (about 4 s) while resident memory grows by far less than its 2.5 GB of RGBA."""
    try:
        path = samples.clipart_root() / "transportation/roadsigns/stop_sign_right_font_mig_.png"
    except samples.SamplesUnavailable as exc:
        pytest.skip(f"real sample images unavailable: {exc}")
    with peak_rss() as mem:
        decoded = decode_image(path, min_side=256, decoder="vips")
    assert (decoded.width, decoded.height) == (20990, 29700)
    assert 4 * 256 <= min(decoded.image.size) < 8 * 256
    assert mem.growth < 350 * 2**20, f"grew {mem.growth / 2**20:.0f} MB"


# ----------------------------------------------------------------- HEIF and AVIF


def test_avif_is_decoded_by_libvips(hostile: Any) -> None:
    img = pyvips.Image.new_from_buffer(hostile.encode(hostile.blocks(2, (320, 240)), "PNG"), "")
    try:
        data = img.heifsave_buffer(compression="av1", Q=90)
    except pyvips.Error as exc:
        pytest.skip(f"this libvips cannot write AVIF: {exc}")
    decoded = decode_image(data, min_side=20, decoder="vips")
    assert decoded.image.size == (108, 81) and (decoded.width, decoded.height) == (320, 240)


def test_avif_files_are_discovered_without_pillow_heif(
    tmp_path: Path, hostile: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folder indexing lists .avif files when libvips reads them, pillow-heif or not; with the
    Pillow decoder and no pillow-heif they are not listed (nothing could read them)."""
    import lookalike.images.discover as discover_mod

    if not vips_mod.avif_available():
        pytest.skip("this libvips cannot read AVIF")
    img = pyvips.Image.new_from_buffer(hostile.encode(hostile.blocks(3, (64, 48)), "PNG"), "")
    (tmp_path / "a.avif").write_bytes(img.heifsave_buffer(compression="av1"))
    (tmp_path / "b.heic").write_bytes(b"not read: HEIC needs pillow-heif")
    monkeypatch.setattr(discover_mod, "heif_available", lambda: False)
    monkeypatch.delenv("LOOKALIKE_DECODER", raising=False)
    found = [Path(f.path).name for f in discover_mod.discover([tmp_path])]
    assert found == ["a.avif"]
    assert decode_image(tmp_path / "a.avif").image.size == (64, 48)
    monkeypatch.setenv("LOOKALIKE_DECODER", "pillow")
    assert [f.path for f in discover_mod.discover([tmp_path])] == []


def test_heic_libvips_cannot_decode_goes_to_pillow_heif() -> None:
    """pyvips-binary has no HEVC decoder: HEIC falls back to pillow-heif, when installed."""
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    try:
        pillow_heif.from_pillow(Image.new("RGB", (64, 48), (200, 30, 30))).save(buf, quality=90)
    except Exception as exc:  # noqa: BLE001 - a libheif build without an encoder
        pytest.skip(f"this pillow-heif cannot encode HEIC: {exc}")
    decoded = decode_image(buf.getvalue(), decoder="vips")
    assert (decoded.width, decoded.height) == (64, 48)
    assert decoded.image.getpixel((32, 24))[0] > 150


# ----------------------------------------------------------------- threads, real images, traits


def test_parallel_decoding_gives_the_sequential_results(hostile: Any) -> None:
    sources = [hostile.encode(hostile.blocks(i, (640 + 8 * i, 480)), ("PNG", "JPEG", "WEBP")[i % 3]) for i in range(24)]
    sources.append(hostile.truncated_png())
    def run(src: bytes) -> Any:
        try:
            return np.asarray(decode_image(src, min_side=120, decoder="vips").image)
        except UnreadableImage as err:
            return err.reason

    sequential = [run(s) for s in sources]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(run, sources * 2))
    for a, b in zip(sequential * 2, parallel):
        assert (a == b) if isinstance(a, str) else np.array_equal(a, b)
    assert "truncated" in sequential[-1]


def _real_images(photo_sources: list[Path], clipart_labelled: dict[str, list[Path]], tmp_path: Path) -> list[Path]:
    """Photos of each format and mode present, clip art with alpha, and a rotated phone-style JPEG."""
    seen: dict[tuple[str, str], Path] = {}
    for p in photo_sources:
        with Image.open(p) as im:
            seen.setdefault((im.format, im.mode), p)
    clip = [paths[0] for _, paths in sorted(clipart_labelled.items())[:8]]
    photo = next(p for p in photo_sources if p.suffix.lower() == ".jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = tmp_path / "rotated.jpg"
    with Image.open(photo) as im:
        im.save(rotated, "JPEG", quality=90, exif=exif)
    return [*seen.values(), *clip, rotated]


def test_vectors_agree_with_pillows_on_real_images(
    lite_model: Any, photo_sources: list[Path], clipart_labelled: dict[str, list[Path]], tmp_path: Path
) -> None:
    """Issue 12: on real photos (JPEG, PNG with alpha, grey+alpha, WebP), real clip art with
    alpha and a rotated photo, the lite model's vectors from either decoder agree within
    cosine 0.995, and the traits computed from the (differently shrunk) images agree: hashes
    within a few bits, sharpness within 20%."""
    images = _real_images(photo_sources, clipart_labelled, tmp_path)
    with Image.open(images[-9]) as im:
        assert im.mode in ("RGBA", "LA", "P"), "the clip art sample should carry alpha"
    side, transform = lite_model.preprocess.min_decode_side, lite_model.image_transform
    decoded = {d: [decode_image(p, min_side=side, decoder=d) for p in images] for d in BOTH}
    vectors = {d: lite_model.embed_pixels(np.stack([transform(x.image) for x in decoded[d]])) for d in BOTH}
    cosine = (vectors["vips"] * vectors["pillow"]).sum(axis=1)
    assert cosine.min() >= 0.995, dict(zip([p.name for p in images], cosine.round(4)))
    for v, p in zip(decoded["vips"], decoded["pillow"]):
        assert (v.width, v.height, v.exif_tags) == (p.width, p.height, p.exif_tags)
        tv, tp = image_traits(v), image_traits(p)
        assert hamming(tv.phash, tp.phash) <= 10 and hamming(tv.dhash, tp.dhash) <= 10
        assert tv.sharpness == pytest.approx(tp.sharpness, rel=0.2, abs=1.0)
