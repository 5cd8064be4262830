"""IVF-PQ on disk, for collections larger than RAM: trained on a sample, encoded in shards,
merged into one memory-mapped file.

The build (:func:`build_ondisk`) holds one chunk of vectors at a time, whatever the
collection's size:

1. *train* (:func:`train_ivfpq`): IVF centroids and PQ codebooks on a bounded sample; the
   trained empty index is serialised (a few MB) to travel to the workers;
2. *encode* (:func:`encode_shard`): each chunk is added to a copy of the trained index and
   written as a shard file. Chunks are independent, so ``map_fn`` may run them in parallel:
   the builtin ``map`` locally, :func:`lookalike.distributed.index_build.ray_map` over Ray
   tasks;
3. *merge* (:func:`merge_shards`): FAISS's ``merge_ondisk`` concatenates the shards'
   inverted lists into one ``.ivfdata`` file; the index file keeps the small part
   (centroids, codebooks, every cell's offset and length).

Search (:func:`load_ondisk`): the ``.ivfdata`` file is memory-mapped read-only, and the OS
pages in the cells a query probes; :class:`~lookalike.index.disk_index.DiskAnnIndex` wraps
it as an AnnIndex. A rebuild writes files under a new name; :func:`remove_disk_files`
deletes the old ones afterwards (a process still mapping one keeps reading it until it
reloads).

Vectors must be L2-normalised: the inner product is then the cosine similarity.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..errors import CollectionCorrupt, InvalidArgument
from .faiss_index import import_faiss
from .spec import IndexSpec, factory_string

__all__ = ["ShardInfo", "OnDiskBuild", "RowChunks", "train_ivfpq", "encode_shard", "merge_shards", "build_ondisk",
           "load_ondisk", "sample_chunks", "remove_disk_files", "trained_index", "CHUNK_BYTES"]

#: Bytes of float32 vectors per encoded chunk (what one worker holds at a time): 128 MiB is
#: 131,072 rows of 256-d, big enough that FAISS's per-call overhead is noise.
CHUNK_BYTES = 128 * 1024**2
#: At most this many chunks are read to draw the training sample: spread over the
#: collection, without a full pass over it before encoding starts.
SAMPLE_CHUNKS = 32
INDEX_SUFFIX, DATA_SUFFIX = ".faissindex", ".ivfdata"

ReadChunk = Callable[[int], "tuple[np.ndarray, np.ndarray]"]
MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]


@dataclass(frozen=True)
class ShardInfo:
    """One encoded shard: its file and how many vectors it holds."""

    path: Path
    count: int


@dataclass(frozen=True)
class OnDiskBuild:
    """What :func:`build_ondisk` wrote: the index file (open it with :func:`load_ondisk`), the
    inverted-list data beside it, the trained empty index, and seconds per phase
    (``sample``, ``train``, ``encode``, ``merge``)."""

    index_path: Path
    ivfdata_path: Path
    ntotal: int
    trained: bytes
    trained_on: int
    seconds: dict[str, float] = field(default_factory=dict)


def _f32(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors, dtype=np.float32)


def trained_index(trained: bytes) -> Any:
    """The trained empty index, from what :func:`train_ivfpq` returned."""
    return import_faiss().deserialize_index(np.frombuffer(trained, dtype=np.uint8))


def train_ivfpq(sample: np.ndarray, *, nlist: int, m: int, nbits: int = 8) -> bytes:
    """Train an empty ``IVF{nlist},PQ{m}x{nbits}`` inner-product index on ``sample``
    (``(n, d)`` float32, L2-normalised) and return it serialised.

    Raises:
        InvalidArgument: fewer sample vectors than cells or PQ centroids, or ``m`` not
            dividing the dimension.
    """
    faiss = import_faiss()
    x = _f32(sample)
    if x.ndim != 2 or len(x) < max(nlist, 1 << nbits):
        raise InvalidArgument(f"training IVF{nlist},PQ{m}x{nbits} needs at least {max(nlist, 1 << nbits)} "
                              f"sample vectors, got {len(x)}")
    spec = IndexSpec("ivfpq-disk", nlist=nlist, pq_m=m, pq_bits=nbits)
    index = faiss.index_factory(x.shape[1], factory_string(spec, x.shape[1]), faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    return faiss.serialize_index(index).tobytes()


def _write_index(index: Any, path: Path) -> None:
    """``faiss.write_index`` to a temporary name, then renamed: a retried or killed task
    never leaves a half-written file under ``path``."""
    faiss = import_faiss()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        faiss.write_index(index, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def encode_shard(trained: bytes, vectors: np.ndarray, ids: np.ndarray, out_path: Path) -> ShardInfo:
    """Add ``vectors`` under ``ids`` to a copy of the trained index and write it to ``out_path``
    (atomically). The ids are what searches return: positions in the final index."""
    x, ids = _f32(vectors), np.ascontiguousarray(ids, dtype=np.int64)
    if x.ndim != 2 or len(ids) != len(x):
        raise InvalidArgument(f"a shard needs one id per vector, got {len(ids)} ids for shape {x.shape}")
    index = trained_index(trained)
    index.add_with_ids(x, ids)
    _write_index(index, Path(out_path))
    return ShardInfo(Path(out_path), len(ids))


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what C code prints to stdout inside the block to stderr instead: FAISS's on-disk
    lists print "resizing ..." lines, which must not mix into a command's stdout output."""
    import ctypes

    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        try:
            yield
        finally:
            libc.fflush(None)  # C's stdout buffer, written while it still points to stderr
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def merge_shards(trained: bytes, shard_paths: Iterable[Path], out_dir: Path, *, stem: str = "index") -> Path:
    """Merge shard files into ``out_dir/{stem}.ivfdata`` (FAISS's ``merge_ondisk``) and write
    the populated index as ``out_dir/{stem}.faissindex``; returns the latter."""
    from faiss.contrib.ondisk import merge_ondisk

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ivfdata, index_path = out_dir / f"{stem}{DATA_SUFFIX}", out_dir / f"{stem}{INDEX_SUFFIX}"
    # A fresh inode: truncating a file another process maps would fault its reads.
    ivfdata.unlink(missing_ok=True)
    index = trained_index(trained)
    with _stdout_to_stderr():
        merge_ondisk(index, [str(p) for p in shard_paths], str(ivfdata))
    with open(ivfdata, "rb+") as f:
        os.fsync(f.fileno())  # the merge wrote through a shared mapping
    _write_index(index, index_path)
    return index_path


def load_ondisk(index_path: Path) -> Any:
    """The FAISS index written by :func:`merge_shards`, its inverted lists memory-mapped
    read-only from the ``.ivfdata`` file in the same folder (wherever the folder moved).

    Raises:
        CollectionCorrupt: the ``.ivfdata`` file is missing or shorter than the index says
            (mapping it would crash the process on the first read past its end).
    """
    faiss = import_faiss()
    index_path = Path(index_path).resolve()
    # Not IO_FLAG_ONDISK_SAME_DIR, which does the same but prints to stdout (where a
    # command's --json output goes): the lists are read unmapped, re-pointed, then mapped.
    index = faiss.read_index(str(index_path), faiss.IO_FLAG_SKIP_IVF_DATA | faiss.IO_FLAG_READ_ONLY)
    invlists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
    data = index_path.parent / Path(invlists.filename).name
    try:
        size = data.stat().st_size
    except OSError as exc:
        raise CollectionCorrupt(f"{index_path}: its inverted lists {data.name} are unreadable ({exc})") from exc
    if size < invlists.totsize:
        raise CollectionCorrupt(f"{index_path}: {data.name} holds {size} bytes of {invlists.totsize}")
    invlists.filename = str(data)
    invlists.do_mmap()
    return index


def sample_chunks(read_chunk: ReadChunk, n_chunks: int, size: int, seed: int = 0) -> np.ndarray:
    """A random training sample of about ``size`` vectors, drawn evenly from up to
    :data:`SAMPLE_CHUNKS` random chunks (memory: one chunk plus the sample)."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(n_chunks, size=min(n_chunks, SAMPLE_CHUNKS), replace=False))
    per = -(-size // len(picked))
    parts = []
    for i in picked:
        x, _ = read_chunk(int(i))
        take = np.sort(rng.choice(len(x), size=min(per, len(x)), replace=False))
        parts.append(_f32(x[take]))
        del x
    return np.concatenate(parts)[:size]


class _EncodeChunk:
    """The per-chunk task: read chunk ``i``, encode it to its shard file (picklable, so it
    can be shipped to Ray workers along with ``read_chunk``)."""

    def __init__(self, read_chunk: ReadChunk, trained: bytes, folder: Path) -> None:
        self.read_chunk, self.trained, self.folder = read_chunk, trained, folder

    def __call__(self, i: int) -> ShardInfo:
        vectors, ids = self.read_chunk(i)
        return encode_shard(self.trained, vectors, ids, self.folder / f"shard-{i:06d}.index")


def build_ondisk(read_chunk: ReadChunk, n_chunks: int, dim: int, out_dir: Path, *, nlist: int, m: int,
                 nbits: int = 8, map_fn: MapFn = map, sample: np.ndarray | None = None,
                 train_size: int = 100_000, seed: int = 0, stem: str = "index",
                 on_shard: Callable[[int, int], None] | None = None) -> OnDiskBuild:
    """Train, encode every chunk through ``map_fn``, merge; see the module docstring.

    ``read_chunk(i)`` returns chunk ``i`` (``0 <= i < n_chunks``) as ``(vectors (n, dim)
    float32 L2-normalised, ids (n,) int64)``; ids must be unique across chunks. ``sample``:
    training vectors, when the caller can draw a better one (default: :func:`sample_chunks`
    of ``train_size``). ``on_shard(done, total)`` is called as shards complete.

    Raises:
        InvalidArgument: no chunks, a sample too small to train on, or a chunk of another
            dimension.
    """
    if n_chunks < 1:
        raise InvalidArgument("an on-disk index needs at least one chunk of vectors")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    if sample is None:
        sample = sample_chunks(read_chunk, n_chunks, train_size, seed)
    if sample.ndim != 2 or sample.shape[1] != dim:
        raise InvalidArgument(f"expected {dim}-d vectors, got a sample shaped {sample.shape}")
    seconds["sample"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    trained_on = len(sample)
    trained = train_ivfpq(sample, nlist=nlist, m=m, nbits=nbits)
    del sample
    seconds["train"] = time.perf_counter() - t0
    out_dir = Path(out_dir).resolve()
    shards_dir = out_dir / f".{stem}.shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        shards = []
        for info in map_fn(_EncodeChunk(read_chunk, trained, shards_dir), range(n_chunks)):
            shards.append(info)
            if on_shard is not None:
                on_shard(len(shards), n_chunks)
        seconds["encode"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        index_path = merge_shards(trained, [s.path for s in shards], out_dir, stem=stem)
        seconds["merge"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(shards_dir, ignore_errors=True)
    return OnDiskBuild(index_path, out_dir / f"{stem}{DATA_SUFFIX}", sum(s.count for s in shards), trained,
                       trained_on, seconds)


class RowChunks:
    """A ``read_chunk`` over chosen rows of an ``(N, d)`` matrix: chunk ``i`` is
    ``rows[i * chunk : (i + 1) * chunk]``, with their positions in ``rows`` as ids.

    Picklable for remote workers: a memory map travels as its file name and is mapped again
    there, never copied."""

    def __init__(self, vectors: np.ndarray, rows: np.ndarray, chunk: int) -> None:
        self.vectors, self.rows, self.chunk = vectors, np.asarray(rows, dtype=np.int64), max(1, int(chunk))

    def __len__(self) -> int:
        return -(-len(self.rows) // self.chunk)

    def __call__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        start = i * self.chunk
        sel = self.rows[start : start + self.chunk]
        return _f32(self.vectors[sel]), np.arange(start, start + len(sel), dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        v = self.vectors
        if isinstance(v, np.memmap) and v.filename and v.flags.c_contiguous:
            state["vectors"] = ("memmap", v.filename, int(v.offset), v.shape, v.dtype.str)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        v = state["vectors"]
        if isinstance(v, tuple) and v[0] == "memmap":
            _, name, offset, shape, dtype = v
            state["vectors"] = np.memmap(name, dtype=np.dtype(dtype), mode="r", offset=offset, shape=tuple(shape))
        self.__dict__.update(state)


def remove_disk_files(folder: Path, prefix: str, keep: Iterable[str] = ()) -> list[Path]:
    """Delete on-disk index files (and leftover shard folders) named ``prefix*`` in ``folder``,
    except those named in ``keep``; returns what was deleted."""
    kept, removed = set(keep), []
    for p in _disk_files(Path(folder), prefix):
        if p.name in kept:
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _disk_files(folder: Path, prefix: str) -> Iterator[Path]:
    for p in folder.glob(f"{prefix}*"):
        if p.name.endswith((INDEX_SUFFIX, DATA_SUFFIX)):
            yield p
    yield from folder.glob(f".{prefix}*.shards")
