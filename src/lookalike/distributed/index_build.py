"""The on-disk index build over Ray: chunks are encoded as Ray tasks.

:func:`ray_map` is a ``map`` whose calls run as Ray tasks; passed as ``map_fn`` to
:func:`lookalike.index.ondisk.build_ondisk` (or :func:`~lookalike.store.ann.build_index`),
it spreads the encoding of shards over the cluster. Training and the final merge stay in
the calling process. Workers read their chunk themselves (a memory map travels as its file
name, see :class:`~lookalike.index.ondisk.RowChunks`), so no vectors pass through Ray's
object store; on more than one machine the files must be on storage every node sees.

Ray is imported inside the functions: without it, they raise
:class:`~lookalike.errors.MissingExtra`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np

from ..errors import MissingExtra
from ..index.ondisk import OnDiskBuild, ReadChunk, build_ondisk

__all__ = ["import_ray", "ray_map", "build_ondisk_ray"]

T = TypeVar("T")
R = TypeVar("R")

#: Attempts Ray makes again when a task's worker dies (a crash, the OOM killer): encoding a
#: chunk is idempotent (its shard file is written to a temporary name, then renamed).
MAX_RETRIES = 3


def import_ray(purpose: str = "Building indexes over Ray") -> Any:
    """Import ray, or raise :class:`MissingExtra` naming ``purpose`` and the install command."""
    try:
        import ray
    except ImportError as exc:
        raise MissingExtra("ray", "ray", purpose) from exc
    return ray


def _apply(fn: Callable[[T], R], item: T) -> R:
    return fn(item)


def ray_map(fn: Callable[[T], R], items: Iterable[T], *, num_cpus: float = 1,
            max_retries: int = MAX_RETRIES) -> Iterator[R]:
    """``map(fn, items)`` with every call a Ray task; results come back in order.

    ``fn`` is put in the object store once (not shipped with every task), so it may carry
    a few MB, such as a trained index. Ray is initialised with its defaults if the caller
    has not done so (``ray.init(address=...)`` first to join a cluster). All tasks are
    submitted at once; Ray runs as many at a time as the cluster has CPUs for
    (``num_cpus`` each).
    """
    ray = import_ray()
    if not ray.is_initialized():
        ray.init()
    task = ray.remote(num_cpus=num_cpus, max_retries=max_retries)(_apply)
    fn_ref = ray.put(fn)
    refs = [task.remote(fn_ref, item) for item in items]
    for ref in refs:
        yield ray.get(ref)


def build_ondisk_ray(read_chunk: ReadChunk, n_chunks: int, dim: int, out_dir: Path, *, nlist: int, m: int,
                     nbits: int = 8, sample: np.ndarray | None = None, **kwargs: Any) -> OnDiskBuild:
    """:func:`~lookalike.index.ondisk.build_ondisk` with the chunks encoded as Ray tasks.

    ``read_chunk`` must be picklable (a module-level function or a class such as
    :class:`~lookalike.index.ondisk.RowChunks`), and read from storage the workers see.
    """
    return build_ondisk(read_chunk, n_chunks, dim, out_dir, nlist=nlist, m=m, nbits=nbits, sample=sample,
                        map_fn=ray_map, **kwargs)
