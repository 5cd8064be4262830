"""JPEG decoding and preprocessing on the model's device (nvJPEG on CUDA), for when the CPU
cannot decode as fast as a GPU embeds.

Three stages, each feeding the next with bounded prefetch:

1. CPU worker threads read each file and parse its JPEG header (size, components, EXIF
   orientation, whether the data is complete). Anything the device decoder should not take
   (not a JPEG, CMYK, 12-bit, arithmetic or lossless coding, cut short, larger than
   ``max_pixels``, a PIL image) goes down the ordinary CPU path
   (:func:`.embed.prepare_image`) right there, in parallel.
2. One device thread (its own CUDA stream) decodes a batch with one batched
   ``torchvision.io.decode_jpeg(device=...)`` call, applies the EXIF orientation, and
   resizes/letterboxes/crops and normalises to the model's :class:`PreprocessConfig`, images
   of the same size together. If the batched call fails, each image is decoded alone, and
   one that still fails takes the CPU path, which decodes it or reports why it cannot:
   an image is never replaced by another.
3. The calling thread runs the model on the batch already on the device.

How close it is to the CPU path: the same geometry (sizes, rounding, offsets of
:func:`build_transform`), PIL-style antialiased bicubic/bilinear resampling (torch's
``antialias=True`` uses PIL's kernels), pixels rounded to 8 bits before normalising, as PIL
does. It differs in the decoder's IDCT/chroma upsampling and in decoding at full size where
the CPU path shrinks large JPEGs on load (draft mode), and ``lanczos`` is done as bicubic.
tests/pipeline/test_gpu_decode.py states the cosine to the CPU path's vectors.
On a CPU device the same code runs with torchvision's libjpeg decoder (tests, and a check).
"""

from __future__ import annotations

import os
import threading
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..errors import InvalidArgument, UnreadableImage
from ..images.decode import ImageSource
from ..images.transforms import PreprocessConfig
from ..progress import ProgressCallback, ProgressEvent
from .embed import PixelModel, Prepared, prepare_image
from .jpeg_header import JpegHeader, read_jpeg_header
from .loader import ordered_map

__all__ = ["DevicePreprocess", "DeviceDecoder", "gpu_decode_problem", "embed_sources_gpu", "device_batches",
           "GPU_MAX_PIXELS"]

#: JPEGs with more pixels than this decode on the CPU, which shrinks them on load (1/8 scale
#: for a big photo) where the device would decode every pixel: cheaper, and bounded memory.
GPU_MAX_PIXELS = 50_000_000
#: Files larger than this are never read whole just to look at their header.
_MAX_READ = 64 << 20
#: Pixels (decoded, 3 bytes each) one batched decode call may hold on the device.
_BATCH_PIXELS = 400_000_000
_MODES = {"bicubic": "bicubic", "bilinear": "bilinear", "lanczos": "bicubic", "nearest": "nearest-exact"}

# torchvision 0.29 deprecates its image decoders in favour of TorchCodec with a warning on
# every call; the decoder still works, and a library must not spam its callers.
warnings.filterwarnings("ignore", message=r".*TorchCodec.*", category=DeprecationWarning,
                        module=r"torchvision\.io.*")


def gpu_decode_problem(device: torch.device) -> str | None:
    """Why device JPEG decoding cannot work for ``device`` here, or ``None`` when it can."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception as exc:  # noqa: BLE001 - a broken torchvision install has many faces
        return f"torchvision's image decoder is unavailable ({type(exc).__name__}: {exc})"
    if device.type not in ("cuda", "cpu"):
        return f"torchvision decodes JPEGs on CUDA (nvJPEG) or the CPU, not on {device.type!r}"
    probe = torch.frombuffer(bytearray(_tiny_jpeg()), dtype=torch.uint8)
    try:
        out = decode_jpeg([probe], mode=ImageReadMode.RGB, device=device)[0]
    except Exception as exc:  # noqa: BLE001
        return f"torchvision cannot decode JPEGs on {device} ({type(exc).__name__}: {str(exc)[:200]})"
    if tuple(out.shape) != (3, 8, 8):
        return f"torchvision decoded a test JPEG to the wrong shape {tuple(out.shape)}"
    return None


class DevicePreprocess:
    """``PreprocessConfig`` applied to decoded ``(3, H, W)`` uint8 tensors on their device.

    Mirrors :func:`lookalike.images.transforms.build_transform`: same output sizes, offsets,
    fill and normalisation; resampled values are rounded and clipped to 0..255 as PIL's
    8-bit output is.
    """

    def __init__(self, cfg: PreprocessConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.mode = _MODES[cfg.interpolation]
        fill = cfg.fill if cfg.fill is not None else tuple(int(round(m * 255)) for m in cfg.mean)
        self.fill = torch.tensor(fill, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.mean = torch.tensor(cfg.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(cfg.std, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0)

    def _resize(self, x: torch.Tensor, h: int, w: int, scale: float | None = None) -> torch.Tensor:
        """Resample float ``(n, 3, H, W)`` to ``(h, w)``; with ``scale``, map pixels at exactly that
        scale (the output is then ``floor(side * scale)``), as PIL does inside a crop box.

        Like PIL: horizontal pass, rounded to 8 bits, then vertical pass, rounded again. The
        intermediate rounding is what brings the result from within 1 level to nearly exact.
        """
        if scale is None and (h, w) == tuple(x.shape[-2:]):
            return x
        interpolate = torch.nn.functional.interpolate
        if self.mode == "nearest-exact":  # no filter, so no intermediate rounding to mimic
            if scale is None:
                return interpolate(x, size=(h, w), mode=self.mode)
            return interpolate(x, scale_factor=(scale, scale), mode=self.mode, recompute_scale_factor=False)
        kw: dict[str, Any] = {"mode": self.mode, "antialias": True, "align_corners": False}
        if scale is None:
            if w != x.shape[-1]:
                x = interpolate(x, size=(x.shape[-2], w), **kw).round_().clamp_(0, 255)
            if h != x.shape[-2]:
                x = interpolate(x, size=(h, w), **kw).round_().clamp_(0, 255)
            return x
        x = interpolate(x, scale_factor=(1.0, scale), recompute_scale_factor=False, **kw).round_().clamp_(0, 255)
        return interpolate(x, scale_factor=(scale, 1.0), recompute_scale_factor=False, **kw).round_().clamp_(0, 255)

    def group(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` uint8 images of one size -> ``(n, 3, size, size)`` float32, normalised."""
        size, cfg = self.cfg.size, self.cfg
        h, w = x.shape[-2:]
        x = x.float()
        if cfg.resize_mode == "squash":
            out = self._resize(x, size, size)
        elif cfg.resize_mode == "letterbox":
            scale = size / max(w, h)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            out = self.fill.expand(x.shape[0], 3, size, size).clone()
            top, left = (size - nh) // 2, (size - nw) // 2
            out[:, :, top : top + nh, left : left + nw] = self._resize(x, nh, nw)
        else:
            # The CPU path resizes the crop box straight to size x size at this scale; resizing
            # the whole image at exactly that scale and cutting the box out samples the same
            # source positions (src = (dst + 0.5) / scale), with one kernel per group.
            scale = size / cfg.crop_pct / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            left, top = (nw - size) // 2, (nh - size) // 2
            out = self._resize(x, nh, nw, scale)[:, :, top : top + size, left : left + size]
        return (out - self.mean) * self.inv_std

    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decoded ``(3, H, W)`` uint8 images (any sizes) -> ``(n, 3, size, size)`` float32, in order."""
        size = self.cfg.size
        out = torch.empty((len(images), 3, size, size), dtype=torch.float32, device=self.device)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(tuple(img.shape[-2:]), []).append(i)
        for idx in groups.values():
            batch = torch.stack([images[i] for i in idx]) if len(idx) > 1 else images[idx[0]][None]
            rows = self.group(batch)
            if len(idx) == 1:
                out[idx[0]] = rows[0]
            else:
                out.index_copy_(0, torch.tensor(idx, device=self.device), rows)
        return out


def orient(img: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1-8) to a ``(C, H, W)`` tensor, as PIL's ``exif_transpose``."""
    if orientation == 2:
        return img.flip(2)
    if orientation == 3:
        return img.flip(1, 2)
    if orientation == 4:
        return img.flip(1)
    if orientation == 5:
        return img.transpose(1, 2)
    if orientation == 6:
        return img.rot90(-1, (1, 2))
    if orientation == 7:
        return img.transpose(1, 2).flip(1, 2)
    if orientation == 8:
        return img.rot90(1, (1, 2))
    return img


@dataclass
class Staged:
    """One input after the CPU worker: JPEG bytes for the device, or the CPU path's result."""

    source: ImageSource
    data: torch.Tensor | None = None
    header: JpegHeader | None = None
    prepared: Prepared[ImageSource] | None = None


class DeviceDecoder:
    """The two decoding stages of :func:`embed_sources_gpu` for one model's preprocessing.

    Args:
        cfg: the model's preprocessing.
        device: where to decode (the model's device).
        transform, min_side: the CPU path's transform and shrink-on-load side, for fallbacks.
        max_pixels: larger JPEGs take the CPU path (see :data:`GPU_MAX_PIXELS`).
    """

    def __init__(self, cfg: PreprocessConfig, device: torch.device, transform: Callable[[Any], np.ndarray],
                 min_side: int, *, max_pixels: int = GPU_MAX_PIXELS) -> None:
        self.device = torch.device(device)
        self.pre = DevicePreprocess(cfg, self.device)
        self.transform, self.min_side, self.max_pixels = transform, min_side, max_pixels
        self._local = threading.local()  # one CUDA stream per device thread
        self.on_device = 0  # images the device decoded; the rest took the CPU path
        self._count = threading.Lock()

    # ------------------------------------------------------------ stage 1: CPU workers
    def stage(self, source: ImageSource) -> Staged:
        """Read ``source`` and route it: to the device when it is a plain JPEG, else decode it on the CPU."""
        data, name = _read(source)
        if data is not None:
            header = read_jpeg_header(memoryview(data.numpy()))
            if header is not None and header.device_ok and header.width * header.height <= self.max_pixels:
                return Staged(source, data, header)
        cpu_input = bytes(data.numpy()) if data is not None else source
        return Staged(source, prepared=self._cpu(source, cpu_input, name))

    def _cpu(self, source: ImageSource, data: Any, name: str | None) -> Prepared[ImageSource]:
        return prepare_image(source, data, self.transform, min_side=self.min_side, name=name)

    # ------------------------------------------------------------ stage 2: the device thread
    def decode_batch(self, batch: list[Staged]) -> tuple[list[UnreadableImage | None], torch.Tensor | None]:
        """``(errors, pixels)``: one error slot per item (in order) and the ``(n_ok, 3, S, S)``
        float32 pixels on the device of the items without error, in order."""
        stream = self._thread_stream()
        ctx = torch.cuda.stream(stream) if stream is not None else nullcontext()
        with torch.inference_mode(), ctx:
            decoded = self._decode([s for s in batch if s.data is not None])
            rows: list[torch.Tensor | np.ndarray | None] = []
            for s in batch:
                if s.data is not None:
                    img = decoded.pop(0)
                    if img is not None:
                        rows.append(orient(img, s.header.orientation if s.header else 1))
                        continue
                    s.prepared = self._cpu(s.source, bytes(s.data.numpy()), _name(s.source))
                rows.append(s.prepared.pixels if s.prepared is not None else None)
            errors = [s.prepared.error if s.prepared is not None else None for s in batch]
            pixels = self._assemble([r for r in rows if r is not None])
            if stream is not None:
                stream.synchronize()  # the model's stream may use the pixels right away
                if pixels is not None:
                    pixels.record_stream(torch.cuda.default_stream(self.device))
        return errors, pixels

    def _thread_stream(self) -> "torch.cuda.Stream | None":
        if self.device.type != "cuda":
            return None
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = torch.cuda.Stream(self.device)
        return stream

    def _decode(self, items: list[Staged]) -> list[torch.Tensor | None]:
        """Batched device decode in chunks bounded by pixels; one image alone where a batch fails."""
        from torchvision.io import ImageReadMode, decode_jpeg

        out: list[torch.Tensor | None] = []
        for chunk in _chunks(items, _BATCH_PIXELS):
            try:
                out.extend(decode_jpeg([s.data for s in chunk], mode=ImageReadMode.RGB, device=self.device))
                continue
            except Exception:  # noqa: BLE001 - "does not return partial results in case of an error"
                pass
            for s in chunk:
                try:
                    out.append(decode_jpeg([s.data], mode=ImageReadMode.RGB, device=self.device)[0])
                except Exception:  # noqa: BLE001 - the CPU path decodes it or says why not
                    out.append(None)
        for i, (s, img) in enumerate(zip(items, out)):
            if img is not None and (img.shape[0] != 3 or s.header is None
                                    or tuple(img.shape[1:]) != (s.header.height, s.header.width)):
                out[i] = None  # not what the header promised: let the CPU path judge
        with self._count:
            self.on_device += sum(img is not None for img in out)
        return out

    def _assemble(self, rows: list[torch.Tensor | np.ndarray]) -> torch.Tensor | None:
        if not rows:
            return None
        on_device = [i for i, r in enumerate(rows) if isinstance(r, torch.Tensor)]
        if len(on_device) == len(rows):
            return self.pre(rows)  # type: ignore[arg-type]
        size = self.pre.cfg.size
        out = torch.empty((len(rows), 3, size, size), dtype=torch.float32, device=self.device)
        if on_device:
            out[torch.tensor(on_device, device=self.device)] = self.pre([rows[i] for i in on_device])  # type: ignore
        on_cpu = [i for i in range(len(rows)) if i not in set(on_device)]
        host = torch.from_numpy(np.stack([rows[i] for i in on_cpu]))  # type: ignore[misc]
        out[torch.tensor(on_cpu, device=self.device)] = host.to(self.device)
        return out


def embed_sources_gpu(
    model: PixelModel,
    images: Sequence[ImageSource],
    *,
    batch_size: int = 32,
    normalize: bool = True,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    device: torch.device | None = None,
    device_threads: int = 2,
) -> np.ndarray:
    """:func:`.embed.embed_sources` with JPEGs decoded and preprocessed on ``device``
    (default: the model's). All or nothing: the first unreadable image raises.

    ``device_threads`` threads (each with its own CUDA stream) decode and preprocess batches
    while the calling thread runs the model: one preprocesses while another decodes.

    Raises:
        InvalidArgument: the device cannot decode JPEGs here (the reason and fix are given).
        UnreadableImage: an image neither the device nor the CPU path could decode.
    """
    device = torch.device(device if device is not None else getattr(model, "device", "cpu"))
    out = np.empty((len(images), model.dim), dtype=np.float32)
    ready = device_batches(model.preprocess, model.image_transform, images, device, batch_size=batch_size,
                           workers=workers, device_threads=device_threads)
    done = 0
    for errors, pixels in ready:
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        if pixels is not None:
            out[done : done + len(errors)] = model.embed_pixels(pixels, normalize=normalize)
        done += len(errors)
        if progress is not None:
            progress(ProgressEvent("embed", done=done, total=len(images)))
    return out


def device_batches(cfg: PreprocessConfig, transform: Callable[[Any], np.ndarray], images: Iterable[ImageSource],
                   device: torch.device, *, batch_size: int = 32, workers: int | None = None,
                   device_threads: int = 2, decoder: DeviceDecoder | None = None,
                   ) -> Iterator[tuple[list[UnreadableImage | None], torch.Tensor | None]]:
    """Stages 1 and 2 alone: ``(errors, pixels)`` per batch of ``batch_size`` inputs, in order
    (see :meth:`DeviceDecoder.decode_batch`). What the model's forward passes consume; the
    benchmark times it alone as the device's decode-only rate.

    Raises:
        InvalidArgument: the device cannot decode JPEGs here (the reason and fix are given).
    """
    problem = gpu_decode_problem(device)
    if problem is not None:
        raise InvalidArgument(f"cannot decode on the device: {problem}; run without gpu_decode")
    decoder = decoder or DeviceDecoder(cfg, device, transform, cfg.min_decode_side)
    staged = ordered_map(decoder.stage, images, workers=workers, prefetch=batch_size * 2)
    threads = max(1, device_threads)
    return ordered_map(decoder.decode_batch, _chunked(staged, batch_size), workers=threads, prefetch=threads + 1)


# ------------------------------------------------------------------------------ helpers
def _name(source: ImageSource) -> str | None:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else None


def _read(source: ImageSource) -> tuple[torch.Tensor | None, str | None]:
    """The encoded bytes as a uint8 tensor (read straight into it), or ``None`` where the CPU
    path should have the source itself (a PIL image, a huge or unreadable file)."""
    name = _name(source)
    if isinstance(source, bytes):
        return (torch.frombuffer(bytearray(source), dtype=torch.uint8) if source else None), name
    if name is None:
        return None, None
    try:
        with open(name, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0 or size > _MAX_READ:
                return None, name
            buf = torch.empty(size, dtype=torch.uint8)
            if f.readinto(memoryview(buf.numpy())) != size:
                return None, name  # changed under us: the CPU path reads it again and judges
            return buf, name
    except OSError:
        return None, name  # the CPU path reports it with the usual wording


def _chunks(items: list[Staged], budget: int) -> Iterator[list[Staged]]:
    chunk: list[Staged] = []
    pixels = 0
    for s in items:
        n = s.header.width * s.header.height if s.header else 0
        if chunk and pixels + n > budget:
            yield chunk
            chunk, pixels = [], 0
        chunk.append(s)
        pixels += n
    if chunk:
        yield chunk


def _chunked(items: Iterable[Staged], size: int) -> Iterator[list[Staged]]:
    chunk: list[Staged] = []
    for s in items:
        chunk.append(s)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _tiny_jpeg() -> bytes:
    """An 8x8 baseline JPEG, to probe that the device decoder works before a run relies on it."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 100, 50)).save(buf, format="JPEG")
    return buf.getvalue()
