"""Decoding with libvips (``pyvips``): shrink on load, rows streamed, a memory bound per image.

Why: Pillow decodes a PNG whole, so a real 20990x29700 clip-art poster needs 2.5 GB before it
can be shrunk, and is refused by the pixel cap. libvips reads such a file row by row and
shrinks as it reads: ~4 s and ~150 MB here, whatever the canvas.

What goes through libvips: JPEG, PNG, GIF, TIFF and HEIF/AVIF (when this libvips build has
the file's codec), 8 or 16 bits, grey or RGB, with or without alpha. Everything else gets
``None`` back and :func:`.decode.decode_image` uses Pillow, so those files look and fail
exactly as before: CMYK, Lab, float or 32-bit samples, BMP and the formats this libvips does
not read, a HEIC without an HEVC decoder, a header libvips cannot parse, and WebP. (libwebp
decodes a whole frame for either binding, Pillow's took 25% less time here, and libvips'
WebP shrink-on-load, libwebp's own scaler, moved the lite model's vectors by up to 0.013.)
A JPEG that Pillow's draft brings under the pixel cap goes to Pillow too: its draft decode
was faster (2,000 camera photos, one thread: 164 against 122 img/s) and gives the same
pixels; libvips takes the JPEGs only it can stream.

The look is Pillow's, down to what the model's vectors can tell (cosine >= 0.995 on real
photos and clip art; tests/images/test_vips_decode.py):

* a JPEG (one over the cap after Pillow's draft) is shrunk on load by the same 1/2, 1/4 or
  1/8 as Pillow's draft, to the same size;
* other formats are box-filtered, while decoding, to a short side of 4 to 8 x ``min_side``,
  leaving the final reduction to the model's resize as on Pillow's full-size image (see
  :func:`_shrunk_size` for why not all the way);
* alpha is composited on white before shrinking, 16-bit is scaled by its range, grey becomes
  RGB, an animation gives its first frame, and no ICC transform is made (Pillow makes none);
* EXIF (orientation, capture time, tag count) is read by Pillow from the EXIF libvips found,
  and the orientation is applied with Pillow's table to the small result.

Memory, per image (``max_pixels`` x 4 bytes, the RGBA the pixel cap allows):

* what libvips streams (baseline JPEG, non-interlaced PNG) is charged for the rows it holds
  while shrinking, not for the canvas, so genuine posters of hundreds of megapixels are
  indexed. A canvas over ``max_pixels`` must still come from a file of at least one byte per
  :data:`BOMB_PIXELS_PER_BYTE` pixels: a tiny file claiming a huge canvas is a decompression
  bomb, refused from its header before any pixel is decoded;
* what is decoded whole (interlaced PNG, progressive JPEG, GIF, TIFF, HEIF) keeps the pixel
  cap, as with Pillow;
* what is handed back (the shrunk image) is always under the pixel cap.

The libvips operation cache is off (every file is opened once; a cache would only hold
memory and file handles in a long run), and nothing here has state besides the one-time
import, so decoding from a thread pool is safe. The pool gives the parallelism: libvips runs
one worker per image unless ``$VIPS_CONCURRENCY`` is set.
"""

from __future__ import annotations

import math
import os
import re
import threading
from typing import Any

from PIL import Image

from ..errors import UnreadableImage
from .decoded import ORIENTATION, DecodedImage, cap_reason, exif_facts, upright

__all__ = ["vips_available", "avif_available", "decode_vips", "BOMB_PIXELS_PER_BYTE", "STREAM_ROWS"]

#: A canvas over ``max_pixels`` read from a file with more pixels than this per byte is a bomb.
#: Real posters are far below it (the 623 MP openclipart stop sign: 219 per byte; zlib cannot
#: pack 8-bit RGBA much beyond 260), while a crafted 1-bit PNG bomb reaches 8,000.
BOMB_PIXELS_PER_BYTE = 1000
#: Rows a streamed decode is charged for: measured peaks were ~2,000 rows of the image's width
#: while libvips shrank 10,562- and 20,990-pixel-wide PNGs.
STREAM_ROWS = 2048
#: libvips shrinks a non-JPEG canvas only down to this many times ``min_side`` (see _shrunk_size).
HEADROOM = 4
#: Canvases up to this many pixels are composited and shrunk in float; larger ones in 8 bits.
EXACT_PIXELS = 64_000_000
#: A streamed canvas may exceed ``max_pixels`` by at most this factor (time, not memory, is
#: what such a canvas costs: about 7 ms per megapixel here).
STREAM_FACTOR = 16
#: libvips loaders this module uses (the ``vips-loader`` field without its _file/_source suffix).
_LOADERS = frozenset({"jpegload", "pngload", "gifload", "tiffload", "heifload"})
_INTERPRETATIONS = frozenset({"srgb", "b-w", "rgb16", "grey16"})
_HEIF_NO_CODEC = ("not been built in", "unsupported compression", "no decoding plugin")
_TRUNCATED = ("premature end", "truncat", "read error", "unexpected end", "out of data", "short read",
              "end of file", "not enough data")

_lock = threading.Lock()
_pyvips: Any = None
_state: bool | None = None
_avif: bool | None = None


def vips_available() -> bool:
    """True when ``pyvips`` imports and its libvips loads (checked once, thread-safe).

    The first successful call also turns libvips' operation cache off for this process, and
    runs one libvips worker per image unless ``$VIPS_CONCURRENCY`` says otherwise.
    """
    global _pyvips, _state
    if _state is not None:
        return _state
    with _lock:
        if _state is None:
            try:
                import pyvips  # type: ignore[import-not-found]

                pyvips.version(0)  # raises if the shared library did not load
                pyvips.cache_set_max(0)
                pyvips.cache_set_max_mem(0)
                pyvips.cache_set_max_files(0)
                if not os.environ.get("VIPS_CONCURRENCY"):
                    # Images are decoded in parallel by the caller's thread pool; libvips'
                    # own workers per image only added threads and held more rows (the 10
                    # largest openclipart PNGs, 2 decoding threads: 207 MB and 20.5 s with
                    # one worker each, 286 MB and 23.5 s with one per core).
                    pyvips.concurrency_set(1)
                _pyvips, _state = pyvips, True
            except Exception:  # noqa: BLE001 - ImportError, OSError, a cffi error: all mean "no libvips"
                _state = False
    return _state


def avif_available() -> bool:
    """True when this libvips decodes AVIF (AV1 in HEIF; pyvips-binary's build does, though it
    has no HEVC decoder for HEIC). Probed once by writing and reading back a tiny AVIF."""
    global _avif
    if _avif is None:
        ok = False
        if vips_available():
            try:
                tiny = _pyvips.Image.black(16, 16, bands=3).heifsave_buffer(compression="av1")
                ok = _pyvips.Image.new_from_buffer(tiny, "").avg() == 0.0
            except Exception:  # noqa: BLE001 - no heif module, no AV1 codec: no AVIF here
                ok = False
        _avif = ok
    return _avif


def _field(img: Any, name: str, default: Any = None) -> Any:
    return img.get(name) if img.get_typeof(name) else default


def _loader(img: Any) -> str:
    name = str(_field(img, "vips-loader", ""))
    for suffix in ("_source", "_buffer", "_file"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _reason(exc: Exception) -> str:
    """A short reason from a libvips error (its log lines, the wrapper's noise dropped)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = [line for line in lines if not line.startswith(("unable to ", "source: bad seek", "VipsForeignLoad"))]
    msg = "; ".join(dict.fromkeys(detail or lines))[:200] or type(exc).__name__
    if any(word in msg.lower() for word in _TRUNCATED):
        return f"truncated or corrupt file ({msg})"
    return f"cannot decode: {msg}"


def _streams(loader: str, header: Any) -> bool:
    """Whether libvips decodes this file in rows (True) or holds its whole canvas (False)."""
    if loader == "pngload":
        return not _field(header, "interlaced", 0)  # Adam7 needs every pass before any row
    if loader == "jpegload":
        return not _field(header, "jpeg-multiscan", 0)  # progressive: all coefficients at once
    return False  # libnsgif and libheif decode whole frames, libtiff whole strips


def _check_budget(label: str, loader: str, header: Any, file_bytes: int, out: tuple[int, int],
                  max_pixels: int) -> None:
    """Refuse, from the header alone, what would take more than one image's memory bound."""
    w, h = header.width, header.height
    if out[0] * out[1] > max_pixels:
        raise UnreadableImage(label, cap_reason(out[0], out[1], max_pixels))
    if w * h <= max_pixels:
        return
    if not _streams(loader, header):
        raise UnreadableImage(label, cap_reason(w, h, max_pixels))
    if w * h > file_bytes * BOMB_PIXELS_PER_BYTE:
        raise UnreadableImage(
            label,
            f"decompression bomb refused: {w}x{h} = {w * h:,} pixels from a {file_bytes:,}-byte file "
            f"(over {BOMB_PIXELS_PER_BYTE:,} pixels per byte; raise max_pixels if the image is genuine)",
        )
    if w * h > STREAM_FACTOR * max_pixels:
        raise UnreadableImage(
            label,
            f"{w}x{h} = {w * h:,} pixels exceeds {STREAM_FACTOR} x max_pixels = {STREAM_FACTOR * max_pixels:,}, "
            "the most that is streamed (raise max_pixels if the image is genuine)",
        )
    sample = 2 if header.format == "ushort" else 1
    needed = w * header.bands * sample * min(h, STREAM_ROWS) + out[0] * out[1] * 4
    if needed > max_pixels * 4:
        raise UnreadableImage(
            label,
            f"{w}x{h}: its rows alone need about {needed / 2**20:,.0f} MB, over the per-image bound of "
            f"{max_pixels * 4 / 2**20:,.0f} MB (raise max_pixels if the image is genuine)",
        )


def _jpeg_shrink(w: int, h: int, min_side: int) -> int:
    """The 1, 2, 4 or 8 that Pillow's JPEG draft picks for this size (see decode._apply_draft),
    so that both decoders hand the same pixels on."""
    if min_side <= 0 or min(w, h) / min_side < 2:
        return 1
    scale = min(w, h) / min_side
    want_w, want_h = int(math.ceil(w / scale)), int(math.ceil(h / scale))
    fit = min(w // want_w, h // want_h)
    return next(k for k in (8, 4, 2, 1) if fit >= k)


def _shrunk_size(w: int, h: int, min_side: int) -> tuple[int, int] | None:
    """The size to shrink a non-JPEG canvas to, or None to keep it whole.

    The short side lands in [HEADROOM x min_side, 2 x HEADROOM x min_side), so the model's own
    resize still does the final reduction, as it does on Pillow's full-size image: the lite
    model's vectors moved by up to 0.02 in cosine on dithered wallpapers when libvips reduced
    all the way (or to 2x) itself, and by under 0.005 from 4x. Within that range the size whose
    long side is closest to a whole number is taken, so the aspect ratio, and with it where a
    letterbox puts the picture, stays the original's.
    """
    short, long = min(w, h), max(w, h)
    lo, hi = HEADROOM * min_side, min(2 * HEADROOM * min_side - 1, short // 2)
    if min_side <= 0 or lo > hi:
        return None
    best = min(range(lo, hi + 1), key=lambda side: (abs(long * side / short - round(long * side / short)), side))
    other = max(1, round(long * best / short))
    return (best, other) if w <= h else (other, best)


def _to_rgb8(img: Any, size: tuple[int, int] | None) -> Any:
    """8-bit RGB at ``size``, as the Pillow path draws it: 16-bit scaled by its range, alpha
    composited on white *before* shrinking (so transparent pixels' hidden colours never
    bleed in), grey copied to RGB, rounded once at the end.

    Up to :data:`EXACT_PIXELS` every step is in float: rounding the 8-bit box averages of
    dithered wallpapers moved the lite model's vectors by 0.01 in cosine. Past it (posters of
    hundreds of megapixels, shrunk 10x or more) the full-size steps stay in 8 bits, where
    libvips takes 2.5x less CPU time and 3x less memory; compositing then truncates
    semi-transparent pixels by under one level, and the shrink averages that away.
    """
    alpha = img.bands in (2, 4)
    if img.format == "ushort":
        img = (img.cast("float") * (255.0 / 65535.0) + 0.5).cast("uchar")
    if img.width * img.height <= EXACT_PIXELS and (alpha or size is not None):
        img = img.cast("float")
    if alpha:
        img = img.flatten(background=[255] * (img.bands - 1), max_alpha=255)
    if size is not None:
        whole = min(img.width // size[0], img.height // size[1])
        if whole >= 2:
            img = img.shrink(whole, whole)  # streams rows; drops at most whole - 1 edge pixels
        if (img.width, img.height) != size:
            # A box filter over exact fractional factors: the canvas maps onto the whole result.
            img = img.cast("float").shrink(img.width / size[0], img.height / size[1])
    if img.bands == 1:
        img = img.bandjoin([img, img])
    return img if img.format == "uchar" else (img + 0.5).cast("uchar")


def _exif(header: Any) -> Image.Exif:
    """The file's EXIF, read by Pillow as the Pillow path reads it (an orientation given only in
    XMP included), so both decoders report the same facts and turn the image the same way."""
    exif = Image.Exif()
    blob = _field(header, "exif-data")
    if blob:
        try:
            exif.load(bytes(blob))
        except Exception:  # noqa: BLE001 - corrupt EXIF: no facts, the pixels are still good
            exif = Image.Exif()
    xmp = _field(header, "xmp-data")
    if ORIENTATION not in exif and xmp:
        match = re.search(rb'tiff:Orientation(="|>)([0-9])', bytes(xmp))
        if match:
            exif[ORIENTATION] = int(match[2])
    return exif


def _orientation(loader: str, header: Any, exif: Image.Exif) -> int:
    if loader == "heifload":
        return 1  # libheif has already applied the container's rotation; EXIF's is stale
    value = exif.get(ORIENTATION) if len(exif) else _field(header, "orientation", 1)
    return value if isinstance(value, int) else 1


def _file_size(source: str | bytes) -> int:
    if isinstance(source, bytes):
        return len(source)
    try:
        return os.stat(source).st_size
    except OSError:
        return 0  # vanished since it was opened: treated as tiny, so a huge canvas is refused


def _open(pyvips: Any, source: str | bytes) -> tuple[Any, Any] | None:
    """``(source, header)``, or None where Pillow should take the file (and name its fault)."""
    try:
        src = pyvips.Source.new_from_memory(source) if isinstance(source, bytes) else pyvips.Source.new_from_file(source)
        header = pyvips.Image.new_from_source(src, "", access="sequential", fail_on="error")
    except Exception:  # noqa: BLE001 - pyvips.Error or a binding surprise: Pillow tries, and names the fault
        return None  # missing, a directory, empty, unknown or damaged header
    if (
        _loader(header) not in _LOADERS
        or header.format not in ("uchar", "ushort")
        or header.interpretation not in _INTERPRETATIONS
        or not 1 <= header.bands <= 4
    ):
        return None
    return src, header


def decode_vips(source: str | bytes, label: str, *, min_side: int, max_pixels: int) -> DecodedImage | None:
    """Decode a file or encoded bytes with libvips; ``None`` means "let Pillow do it".

    Call only after :func:`vips_available` returned True.

    Raises:
        UnreadableImage: over the memory bound or a bomb (from the header, before any pixel is
            decoded), or the pixels cannot be decoded (truncated, corrupt).
    """
    opened = _open(_pyvips, source)
    if opened is None:
        return None
    try:
        return _decode_opened(*opened, source, label, min_side=min_side, max_pixels=max_pixels)
    except UnreadableImage as exc:
        error = exc
    # Callers may hold a failure for a while (the indexer collects a batch of them); its
    # traceback would pin the open file and any pixels, so it goes, and so do they.
    del opened
    raise error.with_traceback(None)


def _decode_opened(src: Any, header: Any, source: str | bytes, label: str, *, min_side: int,
                   max_pixels: int) -> DecodedImage | None:
    pyvips = _pyvips
    loader = _loader(header)
    w, h = header.width, header.height
    jpeg_shrink = _jpeg_shrink(w, h, min_side) if loader == "jpegload" else 1
    size = _shrunk_size(w, h, min_side) if loader != "jpegload" else None
    # Pillow's draft rounds a scaled JPEG's size up (libjpeg decodes the partial edge block);
    # libvips rounds down, so its last row or column is repeated to give the same geometry.
    out = size or (-(-w // jpeg_shrink), -(-h // jpeg_shrink))
    if loader == "jpegload" and out[0] * out[1] <= max_pixels:
        # Pillow's draft decodes a JPEG that fits the pixel cap faster (2,000 camera photos:
        # 164 against 122 img/s on one thread, same pixels); libvips keeps the ones only it streams.
        return None
    _check_budget(label, loader, header, _file_size(source), out, max_pixels)
    try:
        img = header
        if jpeg_shrink > 1:
            # The same open file read again, decoded at 1/2, 1/4 or 1/8 by libjpeg.
            img = pyvips.Image.new_from_source(src, "", access="sequential", fail_on="error", shrink=jpeg_shrink)
            if (img.width, img.height) != out:
                img = img.embed(0, 0, out[0], out[1], extend="copy")
        img = _to_rgb8(img, size)
        data = img.write_to_memory()
    except pyvips.Error as exc:
        if loader == "heifload" and any(word in str(exc).lower() for word in _HEIF_NO_CODEC):
            return None  # a HEIC this libvips cannot decode: pillow-heif may
        raise UnreadableImage(label, _reason(exc)) from None
    except Exception as exc:  # noqa: BLE001 - whatever the binding raises must not end a whole run
        raise UnreadableImage(label, f"cannot decode: {type(exc).__name__}: {exc}") from None
    rgb = Image.frombuffer("RGB", (img.width, img.height), data, "raw", "RGB", 0, 1)
    exif = _exif(header)
    orientation = _orientation(loader, header, exif)
    taken, exif_tags = exif_facts(exif)
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return DecodedImage(upright(rgb, orientation), w, h, taken, exif_tags)
