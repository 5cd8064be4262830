"""Batching decoded images through a model.

:func:`embed_prepared` is the one loop every caller shares: it takes items that worker
threads have already decoded and preprocessed (see :mod:`.loader`), groups those with
pixels into batches, runs the model, and hands each item back with its vector while the
workers are already decoding the next batches.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, Protocol, Sequence, TypeVar

import numpy as np

from ..errors import UnreadableImage
from ..images.decode import ImageSource, decode_image
from ..images.traits import ImageTraits, image_traits
from ..images.transforms import PreprocessConfig
from ..progress import ProgressCallback, ProgressEvent
from .loader import PinnedBatches, ordered_map, pinned_memory_available

__all__ = ["Prepared", "PixelModel", "prepare_image", "embed_prepared", "embed_sources", "wants_pinned_batches"]

T = TypeVar("T")


@dataclass
class Prepared(Generic[T]):
    """One input after the worker thread is done with it.

    ``item`` is whatever the caller tracks the input by (a path, a typed plan record).
    Exactly one of ``pixels`` (ready for the model) or ``error`` is set, unless the caller
    decided no embedding is needed (both ``None``; its ``item`` says why).
    """

    item: T
    pixels: np.ndarray | None = None
    error: UnreadableImage | None = None
    width: int | None = None
    height: int | None = None
    traits: ImageTraits | None = None

    @classmethod
    def failed(cls, item: T, error: UnreadableImage) -> "Prepared[T]":
        """A failed item. The traceback is dropped: it would pin the worker's frame, and with
        it the file's bytes, for as long as the error waits in the batch buffer."""
        error.__traceback__ = None
        return cls(item, error=error)


class PixelModel(Protocol):
    """What the pipeline needs of a model: its preprocessing and a batched forward pass."""

    dim: int
    preprocess: PreprocessConfig

    @property
    def image_transform(self) -> Callable[[Any], np.ndarray]: ...

    def embed_pixels(self, pixels: np.ndarray, *, normalize: bool = True) -> np.ndarray: ...


def prepare_image(item: T, source: ImageSource, transform: Callable[[Any], np.ndarray], *,
                  min_side: int = 0, name: str | None = None, traits: bool = False) -> Prepared[T]:
    """Decode ``source`` and apply the model's ``transform``: the one decode-and-preprocess
    path of indexing and query embedding alike. Failures are returned, not raised.

    ``min_side`` lets JPEG decoding shrink on load down to that side (the transform's
    input size); ``name`` is what an error calls the image; ``traits`` also computes the
    image's perceptual hashes and sharpness from the same decoded pixels (indexing does).
    """
    try:
        decoded = decode_image(source, min_side=min_side, name=name)
        pixels = transform(decoded.image)
    except UnreadableImage as exc:
        return Prepared.failed(item, exc)
    return Prepared(item, pixels=pixels, width=decoded.width, height=decoded.height,
                    traits=image_traits(decoded) if traits else None)


def _batches(prepared: Iterable[Prepared[T]], batch_size: int) -> Iterator[list[Prepared[T]]]:
    """Group items so each group holds ``batch_size`` items with pixels (the last fewer)."""
    buffer: list[Prepared[T]] = []
    n_pixels = 0
    # Items without pixels (failures, reused vectors) still wait for the batch before them
    # so order is kept; cap the wait so a long run of them does not pile up.
    max_buffer = batch_size * 4
    for p in prepared:
        buffer.append(p)
        n_pixels += p.pixels is not None
        if n_pixels >= batch_size or len(buffer) >= max_buffer:
            yield buffer
            buffer, n_pixels = [], 0
    if buffer:
        yield buffer


def embed_prepared(
    embed: Callable[[Any], np.ndarray],
    prepared: Iterable[Prepared[T]],
    *,
    batch_size: int = 32,
    pin_memory: bool | Callable[[], bool] = False,
) -> Iterator[tuple[Prepared[T], np.ndarray | None]]:
    """Yield ``(prepared, vector)`` in input order; ``vector`` is ``None`` where there were no pixels.

    ``embed`` maps a ``(B, 3, H, W)`` batch to ``(B, dim)`` vectors (e.g. ``model.embed_pixels``);
    it runs in the calling thread while the workers behind ``prepared`` decode ahead.
    With ``pin_memory`` (a CUDA model on torch), a worker thread stacks each batch into a
    pinned buffer (:class:`.loader.PinnedBatches`) while the model runs the one before, and
    ``embed`` gets that pinned tensor; where pinned memory is unavailable it is ignored.
    ``pin_memory`` may be a function, asked when the first pixels are ready: whether the
    model sits on a GPU may only be known by loading it, which a run with nothing to embed
    must not do.
    """
    batches: Iterator[list[Prepared[T]]] = iter(_batches(prepared, batch_size))
    wanted = pin_memory
    if callable(pin_memory):
        for batch in batches:
            if any(p.pixels is not None for p in batch):
                wanted, batches = pin_memory(), itertools.chain([batch], batches)
                break
            yield from ((p, None) for p in batch)
        else:
            return
    pinned = PinnedBatches() if wanted and pinned_memory_available() else None
    yield from _embed_batches(embed, batches, batch_size, pinned)


def _embed_batches(embed: Callable[[Any], np.ndarray], batches: Iterable[list[Prepared[T]]], batch_size: int,
                   pinned: PinnedBatches | None) -> Iterator[tuple[Prepared[T], np.ndarray | None]]:
    """The loop of :func:`embed_prepared`: collate (in a thread when pinning), embed, hand back."""

    def collate(batch: list[Prepared[T]]) -> tuple[list[Prepared[T]], list[bool], Any]:
        has = [p.pixels is not None for p in batch]
        arrays = [p.pixels for p in batch if p.pixels is not None]
        if not arrays:
            return batch, has, None
        pixels = pinned.stack(arrays, batch_size) if pinned is not None else np.stack(arrays)
        for p in batch:
            p.pixels = None  # free each image's pixels as soon as the batch holds them
        return batch, has, pixels

    # One collating thread is enough: a copy into pinned memory runs at memory speed.
    collated = ordered_map(collate, batches, workers=1, prefetch=2) if pinned is not None else map(collate, batches)
    for batch, has, pixels in collated:
        vectors = iter(embed(pixels) if pixels is not None else ())
        if pixels is not None and pinned is not None:
            pinned.release(pixels)  # embed returned host vectors: the copy from it is done
        for p, with_pixels in zip(batch, has):
            yield p, next(vectors) if with_pixels else None


def embed_sources(
    model: PixelModel,
    images: Sequence[ImageSource],
    *,
    batch_size: int = 32,
    normalize: bool = True,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    gpu_decode: bool = False,
) -> np.ndarray:
    """Implementation of :meth:`EmbeddingModel.encode_images`: all or nothing.

    ``gpu_decode`` decodes JPEGs on the model's device (:mod:`.gpu_decode`); other images
    and any the device cannot decode take the CPU path. On a CUDA model running on torch,
    batches reach the device from pinned memory either way.
    """
    if gpu_decode:
        from .gpu_decode import embed_sources_gpu  # torchvision's decoders load only when asked for

        return embed_sources_gpu(model, images, batch_size=batch_size, normalize=normalize, workers=workers,
                                 progress=progress)
    out = np.empty((len(images), model.dim), dtype=np.float32)
    transform, min_side = model.image_transform, model.preprocess.min_decode_side
    prepared = ordered_map(lambda src: prepare_image(src, src, transform, min_side=min_side), images,
                           workers=workers, prefetch=batch_size * 2)

    def embed(pixels: Any) -> np.ndarray:
        return model.embed_pixels(pixels, normalize=normalize)

    pin = wants_pinned_batches(model)
    for i, (p, vec) in enumerate(embed_prepared(embed, prepared, batch_size=batch_size, pin_memory=pin)):
        if p.error is not None:
            raise p.error
        out[i] = vec
        if progress is not None:
            progress(ProgressEvent("embed", done=i + 1, total=len(images)))
    return out


def wants_pinned_batches(model: Any) -> bool:
    """Pinned batches pay where torch copies them to a CUDA device; other runtimes take numpy."""
    device = getattr(model, "device", None)
    return getattr(device, "type", None) == "cuda" and getattr(model, "runtime", "torch") == "torch"
