"""Decoding one image into RGB pixels, safely: the entry point, the decoder choice, the Pillow path.

Every failure becomes an :class:`~lookalike.errors.UnreadableImage` with a short reason;
nothing here ever substitutes another image for one that failed.

Two decoders give the same :class:`DecodedImage` (see :func:`default_decoder`):

* ``"vips"`` (:mod:`.vips_decode`, the default where pyvips works): shrinks PNG, GIF, TIFF,
  AVIF and huge JPEGs while decoding and streams huge PNGs and JPEGs in rows, under a
  per-image memory bound. Files it does not take (JPEGs that Pillow's draft brings under the
  cap, which Pillow decodes faster; WebP, CMYK, float, BMP, HEIC...) go to Pillow.
* ``"pillow"``, the fallback, described below.

What the Pillow path handles:

* JPEG draft mode: a camera photo is decoded at 1/2, 1/4 or 1/8 scale when the model
  input is small, which is most of the cost of reading a large JPEG.
* EXIF orientation is applied, so a rotated phone photo embeds upright.
* Alpha (RGBA, LA, palette transparency) is composited onto white, which is what people
  see in viewers; black would turn clip art into silhouettes.
* CMYK, 16-bit and 32-bit greyscale, float and palette images are converted to 8-bit RGB.
* Animated images use their first frame.
* A pixel-count cap, checked from the header before any pixel is decoded, stops
  decompression bombs from exhausting memory. It replaces Pillow's own open-time check
  (``Image.MAX_IMAGE_PIXELS``), which looks at the full size before JPEG draft reduction
  and would otherwise refuse images that ``max_pixels`` allows.
* A PIL image passed in by the caller is never modified (no draft, no seek); it always
  takes this path.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import InvalidArgument, MissingExtra, UnreadableImage
from . import vips_decode
from .decoded import DEFAULT_MAX_PIXELS, ORIENTATION, DecodedImage, ImageSource, cap_reason, describe, exif_facts

__all__ = ["DecodedImage", "ImageSource", "decode_image", "DEFAULT_MAX_PIXELS", "heif_available",
           "avif_via_libvips", "DECODERS", "default_decoder", "check_decoder"]

# Our own cap (below) replaces Pillow's global bomb check, which would otherwise warn or
# raise with a message that names no file.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

#: The decoders :func:`decode_image` can use.
DECODERS = ("vips", "pillow")
_DECODER_ENV = "LOOKALIKE_DECODER"

_heif_state: bool | None = None
_PILLOW_CAP_LOCK = threading.Lock()
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_MODES_16BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def check_decoder(decoder: str | None) -> str:
    """``decoder`` checked (``None``: :func:`default_decoder`).

    Raises:
        InvalidArgument: not one of :data:`DECODERS`.
        MissingExtra: ``"vips"`` asked for where pyvips or its libvips does not load.
    """
    if decoder is None:
        return default_decoder()
    if decoder not in DECODERS:
        raise InvalidArgument(f"decoder must be one of {', '.join(DECODERS)}, not {decoder!r}")
    if decoder == "vips" and not vips_decode.vips_available():
        raise MissingExtra("pyvips-binary", None, "libvips decoding (decoder='vips')")
    return decoder


def default_decoder() -> str:
    """``$LOOKALIKE_DECODER`` ("vips" or "pillow") if set, else "vips" where pyvips imports and
    its libvips loads, else "pillow".

    Raises:
        InvalidArgument: ``$LOOKALIKE_DECODER`` holds something else.
        MissingExtra: it says "vips" and libvips does not load.
    """
    env = os.environ.get(_DECODER_ENV, "").strip().lower()
    if env:
        if env not in DECODERS:
            raise InvalidArgument(f"${_DECODER_ENV} must be one of {', '.join(DECODERS)}, not {env!r} "
                                  f"(unset it to let lookalike choose)")
        return check_decoder(env)
    return "vips" if vips_decode.vips_available() else "pillow"


def heif_available() -> bool:
    """Register the pillow-heif opener (HEIC/AVIF) if installed; True when it is."""
    global _heif_state
    if _heif_state is None:
        try:
            import pillow_heif  # type: ignore[import-not-found]

            pillow_heif.register_heif_opener()
            _heif_state = True
        except ImportError:
            _heif_state = False
    return _heif_state


def avif_via_libvips() -> bool:
    """True when AVIF files decode here without pillow-heif: libvips is the default decoder and
    its build reads AV1 (folder discovery then lists ``.avif`` files)."""
    try:
        return default_decoder() == "vips" and vips_decode.avif_available()
    except (InvalidArgument, MissingExtra):
        return False


def _is_empty(source: bytes | str) -> bool:
    """True for empty bytes or a 0-byte file (a file that vanished since is not 'empty')."""
    if isinstance(source, bytes):
        return not source
    try:
        return os.path.getsize(source) == 0
    except OSError:
        return False


def _sniff(source: bytes | str) -> str | None:
    """The format a file's first bytes announce (PNG, JPEG...), or None."""
    if isinstance(source, bytes):
        head = source[:16]
    else:
        try:
            with open(source, "rb") as f:
                head = f.read(16)
        except OSError:
            return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _SIGNATURES if head.startswith(magic)), None)


def _open_uncapped(fp: str | BinaryIO) -> Image.Image:
    """``Image.open`` without Pillow's global pixel limit; :func:`decode_image` applies its own.

    Pillow checks the full size when the file is opened, before JPEG draft reduction, and
    raises above ``2 * MAX_IMAGE_PIXELS`` (~179 MP) whatever ``max_pixels`` says. The limit is
    lifted only for this one call, under a lock, and only after Pillow refused the file.
    """
    if not isinstance(fp, str):
        fp.seek(0)
    with _PILLOW_CAP_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(fp)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _open(source: ImageSource, name: str) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    heif_available()  # registers the HEIC/AVIF opener once, whoever decodes first
    fp: str | BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
    try:
        try:
            return Image.open(fp)
        except Image.DecompressionBombError:
            return _open_uncapped(fp)
    except FileNotFoundError:
        raise UnreadableImage(name, "file not found") from None
    except IsADirectoryError:
        raise UnreadableImage(name, "is a directory, not an image") from None
    except PermissionError:
        raise UnreadableImage(name, "permission denied") from None
    except UnidentifiedImageError:
        if _is_empty(source if isinstance(source, bytes) else fp):  # type: ignore[arg-type]
            raise UnreadableImage(name, "empty file (0 bytes)") from None
        suffix = Path(name).suffix.lower()
        if suffix in (".heic", ".heif", ".avif") and not heif_available():
            raise UnreadableImage(
                name, "HEIC/AVIF needs pillow-heif: pip install 'lookalike[heif]'"
            ) from None
        # A file cut short inside its header fails to identify; it is still not "not an image".
        fmt = _sniff(source if isinstance(source, bytes) else fp)  # type: ignore[arg-type]
        if fmt is not None:
            raise UnreadableImage(
                name, f"truncated, corrupt or unsupported {fmt} file (its header cannot be parsed)"
            ) from None
        raise UnreadableImage(name, "not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(name, f"decompression bomb refused ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncat" in msg.lower() or isinstance(exc, (EOFError, struct.error)):
            raise UnreadableImage(name, f"truncated or corrupt file ({msg})") from None
        raise UnreadableImage(name, f"cannot open: {msg}") from None
    except Exception as exc:  # a plugin tripping over malformed data must not end a whole run
        raise UnreadableImage(name, f"cannot open: {type(exc).__name__}: {exc}") from None


def _apply_draft(img: Image.Image, min_side: int) -> None:
    """Let the JPEG decoder scale down by 1/2..1/8 while keeping the short side >= min_side."""
    if img.format != "JPEG" or min_side <= 0:
        return
    w, h = img.size
    scale = min(w, h) / min_side
    if scale >= 2:
        img.draft("RGB", (int(np.ceil(w / scale)), int(np.ceil(h / scale))))


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("L", "RGB", "P") and "transparency" in img.info:
        # Palette transparency, or a tRNS colour key in a greyscale or RGB PNG: the keyed
        # pixels are transparent, so they are composited onto white below.
        img = img.convert("RGBA")
        mode = img.mode
    if mode == "RGB":
        return img
    if mode in (*_MODES_16BIT, "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        # Scale by the container's range rather than clipping, which would turn most 16-bit
        # photos white. 'I;16' is 16-bit whatever its content (a dark 16-bit image must stay
        # dark); 'I' and 'F' carry no range, so it is guessed from the values.
        if mode in _MODES_16BIT:
            hi = 65535.0
        elif mode == "F":
            hi = 1.0 if arr.size and float(arr.max()) <= 1.0 else 255.0
        else:
            hi = 65535.0 if arr.size and float(arr.max()) > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(
    source: ImageSource,
    *,
    min_side: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
    decoder: str | None = None,
) -> DecodedImage:
    """Decode ``source`` (a path, encoded bytes, or a PIL image) into 8-bit RGB.

    Args:
        source: what to decode.
        min_side: the decoder may shrink the image while its short side stays >= this
            (0 disables it): libvips for every format it reads, Pillow for JPEG only. A PIL
            image passed in is used as it is, current frame included, and never modified.
        max_pixels: refuse images with more pixels than this, before decoding them; with
            libvips, formats it streams are bounded by their rows instead (see
            :mod:`.vips_decode`), and what comes back always stays under it.
        name: how to refer to the image in errors (defaults to the path).
        decoder: ``"vips"``, ``"pillow"``, or ``None`` for :func:`default_decoder`.

    Raises:
        UnreadableImage: with a reason, whatever went wrong with the image.
        InvalidArgument, MissingExtra: ``decoder`` (or ``$LOOKALIKE_DECODER``) is unusable.
    """
    label = name or describe(source)
    chosen = check_decoder(decoder)
    if chosen == "vips" and isinstance(source, (bytes, str, os.PathLike)):
        path_or_bytes = source if isinstance(source, bytes) else os.fspath(source)
        decoded = vips_decode.decode_vips(path_or_bytes, label, min_side=min_side, max_pixels=max_pixels)
        if decoded is not None:
            return decoded
    owned = not isinstance(source, Image.Image)  # the caller's image is never modified
    img = _open(source, label)
    try:
        decoded = _decode(img, label, owned=owned, min_side=min_side, max_pixels=max_pixels)
    except UnreadableImage:
        # The error (and its traceback, which keeps this frame alive) may be held for a
        # while by callers collecting failures; release the file and any pixels now.
        if owned:
            img.close()
        raise
    if owned and decoded.image is not img:
        img.close()  # multi-frame files keep their file open until closed
    return decoded


def _decode(img: Image.Image, label: str, *, owned: bool, min_side: int, max_pixels: int) -> DecodedImage:
    try:
        if owned and getattr(img, "is_animated", False):
            img.seek(0)
        width, height = img.size
        if owned:
            _apply_draft(img, min_side)
        w, h = img.size
        # Nothing before this check may touch pixels (PNG's getexif() decodes the whole image).
        if w * h > max_pixels:
            raise UnreadableImage(label, cap_reason(w, h, max_pixels))
        # Pillow refuses truncated files unless this global is set; we want the refusal,
        # so make sure nobody turned it on in-process. (An image with nothing left to
        # decode, such as one built in memory, has nothing to guess.)
        if ImageFile.LOAD_TRUNCATED_IMAGES and getattr(img, "tile", None):
            raise UnreadableImage(label, "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; refusing to guess pixels")
        img.load()
        exif = img.getexif()
        orientation = exif.get(ORIENTATION, 1)
        taken, exif_tags = exif_facts(exif)
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        if orientation in (2, 3, 4, 5, 6, 7, 8):
            # Only when needed: exif_transpose copies the whole image even when it does nothing.
            img = ImageOps.exif_transpose(img) or img
        rgb = _to_rgb(img)
        return DecodedImage(rgb, width, height, taken, exif_tags)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(label, f"decompression bomb refused ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, struct.error, IndexError) as exc:
        # IndexError: Pillow's GIF reader indexes past the end of a truncated file.
        msg = str(exc) or type(exc).__name__
        if "truncat" in msg.lower() or isinstance(exc, (EOFError, struct.error, IndexError)):
            raise UnreadableImage(label, f"truncated or corrupt file ({msg})") from None
        raise UnreadableImage(label, f"cannot decode: {msg}") from None
    except Exception as exc:  # a plugin tripping over malformed data must not end a whole run
        raise UnreadableImage(label, f"cannot decode: {type(exc).__name__}: {exc}") from None
