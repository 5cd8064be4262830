"""Parallel decoding with bounded prefetch.

Decoding (Pillow) and preprocessing release the GIL for the heavy parts, so a small thread
pool keeps the model fed without the start-up and pickling cost of worker processes. At
most ``prefetch`` results are in flight, so memory stays bounded however long the input
is, and results come back in input order so callers can zip them with their inputs.

For a CUDA model, :class:`PinnedBatches` assembles batches into page-locked (pinned) host
buffers, so the copy to the device can run asynchronously (``non_blocking``) from a buffer
the driver does not have to stage first.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["ordered_map", "default_workers", "PinnedBatches", "pinned_memory_available"]

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Decoding threads: one per core, at least 2 and at most 8."""
    return max(2, min(8, os.cpu_count() or 2))


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,
    prefetch: int = 64,
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in order, computed by a pool of threads.

    ``items`` is consumed lazily; no more than ``prefetch`` calls are pending at once.
    Exceptions raised by ``fn`` propagate when their result is reached, so ``fn``
    should catch per-item failures itself and return them as values.
    With ``workers=0`` everything runs in the calling thread (useful for debugging).
    """
    if workers == 0:
        for item in items:
            yield fn(item)
        return
    n = workers or default_workers()
    pending: deque[Future[R]] = deque()
    it = iter(items)
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="lookalike-decode") as pool:
        try:
            for item in it:
                pending.append(pool.submit(fn, item))
                if len(pending) >= max(prefetch, n):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            # A consumer that stops early (or an error) must not leave queued work running.
            for fut in pending:
                fut.cancel()


def pinned_memory_available() -> bool:
    """True where page-locked host memory can be allocated: a CUDA build with a device.

    ``pin_memory=True`` raises without CUDA, so every caller asks this first.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False
    return torch.cuda.is_available()


class PinnedBatches:
    """A free list of pinned ``(batch, 3, H, W)`` float32 host buffers.

    :meth:`stack` copies one batch of pixel arrays into a free buffer (allocating one when
    none is free: pinning is slow, so buffers are reused) and returns the filled view; the
    consumer hands the buffer back with :meth:`release` once the device copy from it has
    completed (a synchronous forward pass that returns host results guarantees that). A
    buffer is never written while a copy from it may still be in flight, because only
    released buffers are reused.

    ``pin=False`` allocates ordinary memory: the same mechanics where CUDA is absent (tests).
    """

    def __init__(self, *, pin: bool = True) -> None:
        self.pin = pin
        self._free: queue.SimpleQueue["torch.Tensor"] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.allocated = 0

    def _take(self, shape: tuple[int, ...]) -> "torch.Tensor":
        import torch

        while True:
            try:
                buf = self._free.get_nowait()
            except queue.Empty:
                break
            if buf.shape[1:] == shape[1:] and buf.shape[0] >= shape[0]:
                return buf
            # a buffer for another size (a model change) is dropped
        with self._lock:
            self.allocated += 1
        return torch.empty(shape, dtype=torch.float32, pin_memory=self.pin)

    def stack(self, pixels: Sequence["np.ndarray"], capacity: int) -> "torch.Tensor":
        """``pixels`` (each ``(3, H, W)`` float32) copied into a buffer of ``capacity`` rows;
        returns the filled ``(len(pixels), 3, H, W)`` view (its ``._base`` is the buffer)."""
        import torch

        first = pixels[0]
        buf = self._take((max(capacity, len(pixels)), *first.shape))
        view = buf[: len(pixels)]
        for i, p in enumerate(pixels):
            view[i].copy_(torch.from_numpy(p))
        return view

    def release(self, view: "torch.Tensor") -> None:
        """Return the buffer behind a view from :meth:`stack` for reuse."""
        self._free.put(view._base if view._base is not None else view)
