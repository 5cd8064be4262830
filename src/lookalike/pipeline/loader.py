"""Parallel decoding with bounded prefetch.

Decoding (Pillow) and preprocessing release the GIL for the heavy parts, so a small thread
pool keeps the model fed without the start-up and pickling cost of worker processes. At
most ``prefetch`` results are in flight, so memory stays bounded however long the input
is, and results come back in input order so callers can zip them with their inputs.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

__all__ = ["ordered_map", "default_workers"]

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
