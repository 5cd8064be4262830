"""JPEG decoding and preprocessing on the model's device (nvJPEG on CUDA), for when the CPU
cannot decode as fast as a GPU embeds.

Three stages, each feeding the next with bounded prefetch:

1. CPU worker threads read each file and parse its JPEG header (size, components, EXIF
   orientation, whether the data is complete). Anything the device decoder should not take
   (not a JPEG, CMYK, 12-bit, arithmetic or lossless coding, cut short, larger than
   ``max_pixels``, a PIL image) goes down the ordinary CPU path
   (:func:`.embed.prepare_image`) right there, in parallel.
2. Device threads (two by default, each with its own CUDA stream) decode a batch with one
   batched ``torchvision.io.decode_jpeg(device=...)`` call, apply the EXIF orientation, and
   resize/letterbox/crop and normalise to the model's :class:`PreprocessConfig`
   (:mod:`.device_preprocess`), images of the same size together. If the batched call fails, each image is decoded alone, and
   one that still fails takes the CPU path, which decodes it or reports why it cannot:
   an image is never replaced by another.
3. The calling thread runs the model on the batch already on the device.

How close it is to the CPU path: the preprocessing is nearly exact on the same pixels
(:mod:`.device_preprocess`); the vectors differ mostly because the CPU path shrinks large
JPEGs on load (draft mode: 1/2..1/8-scale IDCT) where the device decodes them at full size,
and in the decoders' IDCT/chroma upsampling. tests/pipeline/test_gpu_decode.py states the
cosine to the CPU path's vectors (>= 0.99 each on real photos with ``lite``).
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
from .device_preprocess import DevicePreprocess, orient
from .embed import PixelModel, Prepared, prepare_image
from .jpeg_header import JpegHeader, read_jpeg_header
from .loader import ordered_map

__all__ = ["DevicePreprocess", "orient", "DeviceDecoder", "gpu_decode_problem", "embed_sources_gpu", "device_batches",
           "GPU_MAX_PIXELS"]

#: JPEGs with more pixels than this decode on the CPU, which shrinks them on load (1/8 scale
#: for a big photo) where the device would decode every pixel: cheaper, and bounded memory.
GPU_MAX_PIXELS = 50_000_000
#: Files larger than this are never read whole just to look at their header.
_MAX_READ = 64 << 20
#: Pixels (decoded, 3 bytes each) one batched decode call may hold on the device.
_BATCH_PIXELS = 400_000_000

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
