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
pages in the cells a query probes. :class:`DiskAnnIndex` wraps it as an
:class:`~lookalike.index.faiss_index.AnnIndex` (row map, selectors over positions, exact
re-ranking), so ranking and filtering work unchanged. Vectors added after the build go to
an in-RAM *delta* IVF-PQ sharing the trained quantiser, and searches merge both: the mapped
file is never written once built, so processes searching it are never disturbed. A rebuild
writes files under a new name; :func:`remove_disk_files` deletes the old ones afterwards
(a process still mapping one keeps reading it until it reloads).

Vectors must be L2-normalised: the inner product is then the cosine similarity.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..errors import CollectionCorrupt, InvalidArgument
from ..fsutil import atomic_writer
from .faiss_index import AnnIndex, import_faiss
from .spec import IndexSpec, factory_string

__all__ = ["ShardInfo", "OnDiskBuild", "RowChunks", "DiskAnnIndex", "train_ivfpq", "encode_shard", "merge_shards",
           "build_ondisk", "load_ondisk", "sample_chunks", "build_disk_index", "remove_disk_files", "CHUNK_BYTES"]

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


def _trained_index(trained: bytes) -> Any:
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
    index = _trained_index(trained)
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
    index = _trained_index(trained)
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


class DiskAnnIndex(AnnIndex):
    """An ``ivfpq-disk`` index: the merged IVF-PQ memory-mapped from ``folder``, plus an
    in-RAM delta index holding the vectors added since (see the module docstring).

    Positions ``0 .. n_main - 1`` are the on-disk entries, the delta's continue from there;
    :attr:`rows` maps both, so selectors and the row map work as for any AnnIndex.
    """

    def __init__(self, spec: IndexSpec, dim: int, index: Any, rows: np.ndarray, trained_on: int,
                 added_since_training: int = 0, *, trained: bytes, folder: Path, stem: str,
                 delta: Any = None) -> None:
        super().__init__(spec, dim, index, rows, trained_on, added_since_training)
        self.trained, self.folder, self.stem, self.delta = trained, Path(folder).resolve(), stem, delta

    @classmethod
    def open(cls, spec: IndexSpec, build: OnDiskBuild, rows: np.ndarray, dim: int) -> "DiskAnnIndex":
        """The index :func:`build_ondisk` wrote, ids being positions in ``rows``."""
        index = load_ondisk(build.index_path)
        if index.ntotal != len(rows):
            raise InvalidArgument(f"the on-disk index holds {index.ntotal} vectors for {len(rows)} rows")
        return cls(spec, dim, index, rows, build.trained_on, trained=build.trained, folder=build.index_path.parent,
                   stem=build.index_path.name[: -len(INDEX_SUFFIX)])

    @property
    def files(self) -> tuple[str, str]:
        """The names of its index and inverted-list files, in :attr:`folder`."""
        return self.stem + INDEX_SUFFIX, self.stem + DATA_SUFFIX

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal) + (int(self.delta.ntotal) if self.delta is not None else 0)

    def add(self, vectors: np.ndarray, rows: np.ndarray, chunk: int = 65536) -> None:
        """Append rows to the in-RAM delta (the mapped file is read-only)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.delta is None:
            self.delta = _trained_index(self.trained)
        base = self.ntotal
        for start in range(0, len(rows), chunk):
            sel = rows[start : start + chunk]
            self.delta.add_with_ids(_f32(vectors[sel]), np.arange(base + start, base + start + len(sel)))
        self.rows = np.concatenate([self.rows, rows])
        self.added_since_training += len(rows)
        self._pos_of_row = None

    def _search_positions(self, q: np.ndarray, n: int, params: Any) -> np.ndarray:
        scores, pos = self.index.search(q, n, params=params)
        if self.delta is None or self.delta.ntotal == 0:
            return pos
        extra_scores, extra_pos = self.delta.search(q, n, params=params)
        # Both score with the same quantiser and codebooks: one ranking. FAISS pads with
        # -inf-like scores and -1 positions, which sort last.
        scores, pos = np.hstack([scores, extra_scores]), np.hstack([pos, extra_pos])
        best = np.argsort(-scores, axis=1, kind="stable")[:, :n]
        return np.take_along_axis(pos, best, axis=1)

    def _delta_bytes(self) -> np.ndarray:
        if self.delta is None or self.delta.ntotal == 0:
            return np.empty(0, dtype=np.uint8)
        return import_faiss().serialize_index(self.delta)

    def memory_bytes(self) -> int:
        """RAM: centroids, codebooks and cell offsets (the codes stay in the mapped file), the
        delta and the row map."""
        return int(import_faiss().serialize_index(self.index).nbytes + self._delta_bytes().nbytes + self.rows.nbytes)

    def save(self, path: Path) -> None:
        """Write the row map, delta and metadata next to the on-disk files, atomically.

        Raises:
            InvalidArgument: ``path`` is not in the folder holding the on-disk files.
        """
        if Path(path).resolve().parent != self.folder:
            raise InvalidArgument(f"an on-disk index is saved beside its files in {self.folder}, not at {path}")
        meta = {"spec": self.spec.to_dict(), "dim": self.dim, "trained_on": self.trained_on,
                "added_since_training": self.added_since_training, "ntotal": self.ntotal, "stem": self.stem}
        with atomic_writer(Path(path)) as f:
            np.savez(f, index=np.frombuffer(self.trained, dtype=np.uint8), rows=self.rows, delta=self._delta_bytes(),
                     meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))

    @classmethod
    def from_npz(cls, path: Path, data: Any, meta: dict[str, Any]) -> "DiskAnnIndex":
        """Read what :meth:`save` wrote (``data``: the open npz, ``meta``: its metadata).

        Raises:
            CollectionCorrupt: the on-disk files are missing or disagree with the row map.
        """
        spec = IndexSpec.from_dict(meta["spec"])
        folder, stem = Path(path).resolve().parent, str(meta["stem"])
        if Path(stem).name != stem or not (folder / (stem + DATA_SUFFIX)).exists():
            raise CollectionCorrupt(f"{path}: its inverted lists {stem}{DATA_SUFFIX} are missing")
        index = load_ondisk(folder / (stem + INDEX_SUFFIX))
        delta_bytes = np.asarray(data["delta"], dtype=np.uint8)
        delta = import_faiss().deserialize_index(delta_bytes) if len(delta_bytes) else None
        rows = np.asarray(data["rows"], dtype=np.int64)
        out = cls(spec, int(meta["dim"]), index, rows, int(meta["trained_on"]), int(meta["added_since_training"]),
                  trained=bytes(data["index"]), folder=folder, stem=stem, delta=delta)
        if out.ntotal != len(rows) or out.ntotal != int(meta["ntotal"]):
            raise CollectionCorrupt(f"{path}: index holds {out.ntotal} vectors but maps {len(rows)} rows")
        return out


def build_disk_index(spec: IndexSpec, vectors: np.ndarray, rows: np.ndarray, out_dir: Path, *, stem: str = "index",
                     map_fn: MapFn = map, train_size: int = 100_000, seed: int = 0,
                     chunk_bytes: int = CHUNK_BYTES) -> DiskAnnIndex:
    """Build ``spec`` (kind ``ivfpq-disk``) over ``rows`` of the ``(N, d)`` matrix ``vectors``
    (a memory map: chunks are read from it, by workers too) into ``out_dir``.

    The training sample is drawn uniformly from ``rows``, as :meth:`AnnIndex.build` does.
    """
    rows = np.asarray(rows, dtype=np.int64)
    dim = vectors.shape[1]
    n_train = min(train_size, len(rows))
    sample = _f32(vectors[np.sort(np.random.default_rng(seed).choice(rows, size=n_train, replace=False))])
    chunks = RowChunks(vectors, rows, chunk_bytes // (4 * dim))
    build = build_ondisk(chunks, len(chunks), dim, out_dir, nlist=spec.nlist, m=spec.pq_m, nbits=spec.pq_bits,
                         map_fn=map_fn, sample=sample, seed=seed, stem=stem)
    return DiskAnnIndex.open(spec, build, rows, dim)


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
