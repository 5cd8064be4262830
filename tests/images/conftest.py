"""Builders for hostile and awkward image files, a peak-memory probe, and the decoder switch.

Everything is generated in memory in milliseconds: no sample downloads. The builders live
on the ``hostile`` fixture (a namespace) so test modules can share them without importing
a conftest. The ``decoder`` fixture runs a test once per decoder (libvips and Pillow) by
making it the default through ``$LOOKALIKE_DECODER``, so indexing threads use it too.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

#: Colours used for frames and quadrants, far apart so lossy codecs cannot confuse them.
RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


class Hostile:
    """Byte-level builders for the files a real photo folder throws at the decoder."""

    @staticmethod
    def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
        buf = io.BytesIO()
        img.save(buf, fmt, **params)
        return buf.getvalue()

    @staticmethod
    def blocks(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
        """A distinct RGB image of random colour blocks (each seed gives different pixels)."""
        rng = np.random.default_rng(seed)
        arr = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        return Image.fromarray(arr).resize(size, Image.Resampling.NEAREST)

    @staticmethod
    def quadrants(size: tuple[int, int], colours: tuple[tuple[int, int, int], ...]) -> Image.Image:
        """Four solid quadrants: top-left, top-right, bottom-left, bottom-right."""
        w, h = size
        img = Image.new("RGB", size)
        tl, tr, bl, br = colours
        img.paste(tl, (0, 0, w // 2, h // 2))
        img.paste(tr, (w // 2, 0, w, h // 2))
        img.paste(bl, (0, h // 2, w // 2, h))
        img.paste(br, (w // 2, h // 2, w, h))
        return img

    @classmethod
    def truncated_jpeg(cls, seed: int = 1) -> bytes:
        data = cls.encode(cls.blocks(seed), "JPEG", quality=90)
        return data[: len(data) * 6 // 10]

    @classmethod
    def truncated_png(cls, seed: int = 2) -> bytes:
        data = cls.encode(cls.blocks(seed), "PNG")
        return data[: len(data) * 6 // 10]

    @classmethod
    def png_cut_in_header(cls, seed: int = 3) -> bytes:
        """A PNG cut just after its IHDR chunk: the signature is valid, nothing else is."""
        return cls.encode(cls.blocks(seed), "PNG")[:40]

    @staticmethod
    def text() -> bytes:
        return b"This is a shopping list, not a picture.\nmilk\neggs\n" * 8

    @staticmethod
    def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
        """A valid 1-bit PNG of ``width x height`` black pixels: ~110 KB on disk, 900 MP decoded.

        Every row is present, so a decoder that ignored the header would really allocate and
        fill the whole image (and the memory check would see it).
        """
        ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
        row = b"\x00" * ((width + 7) // 8 + 1)  # filter byte + packed pixels
        rows_per_block = 1000
        comp = zlib.compressobj(1)
        parts = [comp.compress(row * rows_per_block) for _ in range(height // rows_per_block)]
        parts += [comp.compress(row * (height % rows_per_block)), comp.flush()]
        idat = b"".join(parts)
        return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")

    @staticmethod
    def rgb16_png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
        """A 16-bit-per-channel RGB PNG, written by hand (Pillow cannot write one)."""
        ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
        row = b"\x00" + struct.pack(">HHH", *colour) * width
        return (
            b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(row * height))
            + _chunk(b"IEND", b"")
        )

    @classmethod
    def grey16_png(cls, value: int, size: tuple[int, int] = (40, 30)) -> bytes:
        arr = np.full((size[1], size[0]), value, dtype=np.uint16)
        img = Image.fromarray(arr)
        assert img.mode == "I;16"
        return cls.encode(img, "PNG")

    @classmethod
    def cmyk_jpeg(cls) -> bytes:
        """Quadrants of pure cyan, magenta, yellow and black ink."""
        img = Image.new("CMYK", (64, 64))
        img.paste((255, 0, 0, 0), (0, 0, 32, 32))
        img.paste((0, 255, 0, 0), (32, 0, 64, 32))
        img.paste((0, 0, 255, 0), (0, 32, 32, 64))
        img.paste((0, 0, 0, 255), (32, 32, 64, 64))
        return cls.encode(img, "JPEG", quality=95)

    @classmethod
    def palette_transparent_png(cls) -> bytes:
        """Palette PNG: left half index 0 (transparent), right half index 1 (red)."""
        img = Image.new("P", (40, 20), 0)
        img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
        img.paste(1, (20, 0, 40, 20))
        return cls.encode(img, "PNG", transparency=0)

    @classmethod
    def rgba_png(cls) -> bytes:
        """Left half fully transparent black, right half opaque blue."""
        img = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
        img.paste((0, 0, 255, 255), (20, 0, 40, 20))
        return cls.encode(img, "PNG")

    @classmethod
    def la_png(cls) -> bytes:
        """Greyscale + alpha: left half transparent, right half opaque grey 50."""
        img = Image.new("LA", (40, 20), (0, 0))
        img.paste((50, 255), (20, 0, 40, 20))
        return cls.encode(img, "PNG")

    @classmethod
    def float_tiff(cls) -> bytes:
        """A mode 'F' TIFF with values in [0, 1]: left half 0.0, right half 0.5."""
        arr = np.zeros((20, 40), dtype=np.float32)
        arr[:, 20:] = 0.5
        img = Image.fromarray(arr)
        assert img.mode == "F"
        return cls.encode(img, "TIFF")

    @classmethod
    def animated(cls, fmt: str) -> bytes:
        """Three solid frames, red then green then blue."""
        frames = [Image.new("RGB", (30, 30), c) for c in (RED, GREEN, BLUE)]
        extra: dict[str, Any] = {"lossless": True} if fmt == "WEBP" else {}
        data = cls.encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **extra)
        with Image.open(io.BytesIO(data)) as check:
            assert check.n_frames == 3, f"{fmt} writer did not make an animation"
        return data

    @classmethod
    def exif_rotated_jpeg(cls, orientation: int) -> bytes:
        """A 40x20 stored image with coloured quadrants and the given EXIF orientation."""
        exif = Image.Exif()
        exif[0x0112] = orientation
        img = cls.quadrants((40, 20), (RED, GREEN, BLUE, WHITE))
        return cls.encode(img, "JPEG", quality=95, exif=exif)

    @staticmethod
    def uniform_grey_jpeg(width: int, height: int) -> bytes:
        """A baseline greyscale JPEG of any size, every pixel 128, made in milliseconds.

        A uniform mid-grey 8x8 block codes as DC difference 0 ("00") then end-of-block
        ("1010") with the standard Huffman tables; four blocks are exactly three bytes, so
        the scan is that pattern repeated. The headers come from a tiny Pillow-made JPEG.
        """
        assert width % 32 == 0 and height % 8 == 0
        buf = io.BytesIO()
        Image.new("L", (8, 8), 128).save(buf, "JPEG", quality=90)
        src = buf.getvalue()
        sof = src.index(b"\xff\xc0")
        sos = src.index(b"\xff\xda")
        scan_start = sos + 2 + struct.unpack(">H", src[sos + 2 : sos + 4])[0]
        head = bytearray(src[:scan_start])
        head[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
        blocks = (width // 8) * (height // 8)
        return bytes(head) + b"\x28\xa2\x8a" * (blocks // 4) + b"\xff\xd9"


@pytest.fixture(scope="session")
def hostile() -> type[Hostile]:
    """The :class:`Hostile` builders."""
    return Hostile


@pytest.fixture(scope="session")
def png_bomb_bytes() -> bytes:
    """A 30000x30000 PNG bomb, built once per session (about 0.3 s)."""
    return Hostile.png_bomb()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples this process's resident memory in a thread; ``growth`` is peak minus start.

    ``ru_maxrss`` is a high-water mark for the whole process lifetime, so it cannot show a
    spike below an earlier peak; sampling ``/proc/self/statm`` every few milliseconds can.
    """

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.start = self.peak = _rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.start


@pytest.fixture
def peak_rss() -> Iterator[type[PeakRSS]]:
    """The :class:`PeakRSS` probe (skips where ``/proc/self/statm`` does not exist)."""
    if not Path("/proc/self/statm").exists():
        pytest.skip("needs /proc/self/statm to sample memory")
    yield PeakRSS



#: Both decoders; a test that holds for one only overrides the fixture with
#: ``@pytest.mark.parametrize("decoder", ["pillow"], indirect=True)``.
DECODER_NAMES = ("pillow", "vips")


@pytest.fixture(params=DECODER_NAMES)
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The decoder this run of the test uses, made the default for the whole process."""
    if request.param == "vips":
        pytest.importorskip("pyvips")
        from lookalike.images.vips_decode import vips_available

        if not vips_available():
            pytest.skip("pyvips imports but its libvips does not load")
    monkeypatch.setenv("LOOKALIKE_DECODER", request.param)
    return request.param
