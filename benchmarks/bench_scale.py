"""Scale-out benchmarks (issue 11). Subcommands:

``local-vs-ray``: the same 2,000 real photos through the local pipeline and through
``--ray`` on a local cluster, in the same run (``bench_scale_ray.py``; its options follow).
Target: Ray overhead <= 1.3x. ``--device cuda`` compares one GPU actor with the local GPU
pipeline where a GPU is lent.

    python benchmarks/bench_scale.py local-vs-ray [--photos 2000] [--cpus 2] [--device cpu|cuda]

``index``: the distributed on-disk index build on N x d synthetic vectors (default 10M x
256): time per phase, peak memory, and recall@10 against exact search on held-out queries.
Target: peak memory <= 4 GB.

    python benchmarks/bench_scale.py index [--n 10000000] [--dim 256] [--queries 500]
        [--cpus 2] [--dtype float32|float16] [--train-size 100000] [--clusters 4000] [--seed 0]

Data: ``bench_search.EmbeddingLike`` (the search benchmark's distribution: clustered, power-law
cluster sizes, anisotropic spectrum, a shared mean; L2-normalised), generated chunk by chunk
into a raw row-major file under ``.cache/bench_scale/`` (kept between runs; reused when
complete). ``--dtype float16`` stores it at half the size for disks that cannot hold
N x d float32 (10M x 256 float32 is 10.2 GB); every reader converts rows to float32, so the
build, the exact ground truth and the re-ranking all see the same float32 values. Queries
are held-out draws of the same distribution (another random stream), never indexed.

Phases, each timed, with the peak memory seen during it:

* ``generate`` (skipped when cached) and ``exact``: the ground truth, exact top-10 of each
  query over all N rows by ``index.exact.exact_topk``, streaming the file in chunks (cached
  too, keyed by the data and the query count);
* ``ray start``: ``ray.init(num_cpus=--cpus, include_dashboard=False)``, a local cluster;
* the build, ``ondisk.build_ondisk`` with ``map_fn=distributed.index_build.ray_map`` and the library's
  parameters for this size (``tune.spec_for("ivfpq-disk", N, d)``: IVF cells, PQ code):
  ``sample`` (a training sample from 32 random chunks, driver), ``train`` (IVF k-means and
  PQ codebooks, driver), ``encode`` (one Ray task per chunk of ``ondisk.CHUNK_BYTES`` of
  float32: each worker reads its own chunk from the file, adds it to the trained index and
  writes a shard), ``merge`` (``faiss.contrib.ondisk.merge_ondisk`` into one ``.ivfdata``,
  driver);
* ``search``: the index loaded memory-mapped (``ondisk.DiskAnnIndex``), swept along
  ``tune.effort_lines`` (the tuner's settings: nprobe 1..256 at each re-rank depth 2..256, a
  depth's line stopped once doubling nprobe gains < 0.002; ``AnnIndex.search``: PQ candidates re-ranked exactly from the
  vector file, one query at a time on one thread, as ``index.measure.measure`` times it).
  Reported: the cheapest setting whose recall@10 reaches 0.95 (else the best), chosen on
  the same queries it is reported on (the sweep is shown in full).

Memory: a thread samples every 0.2 s the resident set (RSS) of the benchmark process and of
all its descendants: Ray's GCS server, raylet and workers (started by ``ray.init`` as the
driver's children). Reported per phase: the peak of the *sum* of RSS over that process tree
(the target's figure; it counts shared pages once per process that maps them, so it
over-states), and the peak RSS of the largest single process. Vector rows are read with
``os.pread`` rather than a memory map, so the file's pages sit in the OS page cache, not in
any process's RSS; the index's ``.ivfdata`` is memory-mapped, and the pages a search touches
do count.

Measured (2 cores, 24 GB RAM; ``index --n 10000000 --dim 256 --dtype float16``, the disk
having too little room for 10.2 GB of float32): IVF2048,PQ64x8 built in 6.0 min (train 68 s,
encode 284 s over 77 Ray tasks, merge 2 s), peak 2.44 GB summed over the process tree (in
the merge: the driver maps every shard and the new ``.ivfdata``, 0.7 GB each), recall@10
0.955 at nprobe 16 / re-rank 128 (p50 14 ms), 0.979 at most. The first run generates the
data (8.5 min) and its exact top-10 (6 min); delete ``.cache/bench_scale/`` to get the
disk space back.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_search import EmbeddingLike  # noqa: E402

from lookalike.index.exact import exact_topk  # noqa: E402
from lookalike.index.faiss_index import faiss_threads  # noqa: E402
from lookalike.index.measure import measure  # noqa: E402
from lookalike.index.disk_index import DiskAnnIndex  # noqa: E402
from lookalike.index.ondisk import CHUNK_BYTES, OnDiskBuild  # noqa: E402
from lookalike.index.tune import effort_lines, spec_for  # noqa: E402

K = 10
RECALL_TARGET = 0.95
MEMORY_TARGET = 4 * 1024**3
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench_scale"
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


def gb(n: float) -> str:
    return f"{n / 1024**3:.2f} GB"


# ---------------------------------------------------------------------------- memory
@dataclass
class PhasePeak:
    tree_rss: int = 0  # peak of the summed RSS over the process tree
    largest: int = 0  # peak RSS of one process
    largest_name: str = ""
    processes: int = 0  # most processes seen at once


@dataclass
class MemorySampler:
    """Samples the RSS of this process and its descendants; peaks are kept per phase."""

    interval: float = 0.2
    phase: str = "start"
    peaks: dict[str, PhasePeak] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "MemorySampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def set_phase(self, name: str) -> None:
        self.sample()
        self.phase = name

    def sample(self) -> None:
        total, largest, name, count = 0, 0, "", 0
        for p in [self._me, *self._me.children(recursive=True)]:
            try:
                rss = p.memory_info().rss
                pname = p.name()
            except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                continue
            total += rss
            count += 1
            if rss > largest:
                largest, name = rss, pname
        peak = self.peaks.setdefault(self.phase, PhasePeak())
        peak.tree_rss = max(peak.tree_rss, total)
        if largest > peak.largest:
            peak.largest, peak.largest_name = largest, name
        peak.processes = max(peak.processes, count)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


# ---------------------------------------------------------------------------- data
class RowFile:
    """An ``(n, dim)`` row-major file of ``dtype``, read with ``os.pread`` into float32.

    Indexing like an array (``[a:b]``, ``[int array]``, ``[int]``) is what ``exact_topk`` and
    ``AnnIndex.search`` need; calling it with a chunk number makes it a ``read_chunk`` for the
    on-disk build (ids: row numbers). Picklable (the file descriptor is opened per process).
    """

    def __init__(self, path: Path, n: int, dim: int, dtype: str, chunk: int) -> None:
        self.path, self.n, self.dim, self.dtype, self.chunk = str(path), n, dim, np.dtype(dtype), chunk
        self._fd: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}

    def _read(self, start: int, stop: int) -> np.ndarray:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        row = self.dim * self.dtype.itemsize
        buf = os.pread(self._fd, (stop - start) * row, start * row)
        return np.frombuffer(buf, dtype=self.dtype).reshape(stop - start, self.dim).astype(np.float32)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.n)
            assert step == 1
            return self._read(start, max(start, stop))
        rows = np.atleast_1d(np.asarray(key, dtype=np.int64))
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        for i, r in enumerate(rows):
            out[i] = self._read(int(r), int(r) + 1)[0]
        return out if np.ndim(key) else out[0]

    def n_chunks(self) -> int:
        return -(-self.n // self.chunk)

    def __call__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        start, stop = i * self.chunk, min(self.n, (i + 1) * self.chunk)
        return self._read(start, stop), np.arange(start, stop, dtype=np.int64)


def dataset(args: argparse.Namespace, sampler: MemorySampler,
            seconds: dict[str, float]) -> tuple[RowFile, np.ndarray, np.ndarray]:
    """The cached vector file (generated if missing), the queries and their exact top-k."""
    CACHE.mkdir(parents=True, exist_ok=True)
    stem = f"x-{args.n}x{args.dim}-c{args.clusters}-s{args.seed}-{args.dtype}"
    path, done = CACHE / f"{stem}.raw", CACHE / f"{stem}.complete"
    dist = EmbeddingLike(args.dim, args.clusters, args.seed)
    chunk_rows = CHUNK_BYTES // (4 * args.dim)
    if not done.exists():
        sampler.set_phase("generate")
        for old in CACHE.glob("x-*.raw"):  # one dataset at a time: they are big
            old.unlink()
            old.with_suffix(".complete").unlink(missing_ok=True)
        t0 = time.perf_counter()
        with open(path, "wb") as f:
            for i, start in enumerate(range(0, args.n, 50_000)):
                m = min(50_000, args.n - start)
                f.write(dist.draw(np.random.default_rng([args.seed, 1, i]), m).astype(args.dtype).tobytes())
        seconds["generate"] = time.perf_counter() - t0
        done.write_text(f"{seconds['generate']:.1f}")
        log(f"generated {args.n} x {args.dim} {args.dtype} in {time.perf_counter() - t0:.0f}s -> {path}")
    rows = RowFile(path, args.n, args.dim, args.dtype, chunk_rows)
    queries = dist.queries(args.queries)
    truth_path = CACHE / f"{stem}-q{args.queries}-truth.npy"
    if truth_path.exists():
        truth = np.load(truth_path)
    else:
        sampler.set_phase("exact")
        t0 = time.perf_counter()
        _, truth = exact_topk(rows, queries, K, chunk=chunk_rows // 4)
        np.save(truth_path, truth)
        seconds["exact"] = time.perf_counter() - t0
        log(f"exact top-{K} of {args.queries} queries over {args.n} rows in {time.perf_counter() - t0:.0f}s")
    return rows, queries, truth


# ---------------------------------------------------------------------------- index
def cmd_index(args: argparse.Namespace) -> None:
    sampler = MemorySampler().start()
    seconds: dict[str, float] = {}
    rows, queries, truth = dataset(args, sampler, seconds)
    spec = spec_for("ivfpq-disk", args.n, args.dim, train_size=args.train_size)
    out_dir = CACHE / f"index-{args.n}x{args.dim}"
    shutil.rmtree(out_dir, ignore_errors=True)

    import ray

    from lookalike.distributed.index_build import ray_map
    from lookalike.index.ondisk import build_ondisk

    sampler.set_phase("ray start")
    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    seconds["ray start"] = time.perf_counter() - t0
    log(f"ray up in {seconds['ray start']:.1f}s; building {spec.label()} over {rows.n_chunks()} chunks")

    def map_fn(fn: Any, items: Any) -> Iterator[Any]:
        sampler.set_phase("encode")  # sampling and training (driver) are over
        return ray_map(fn, items)

    def on_shard(done: int, total: int) -> None:
        if done == total:
            sampler.set_phase("merge")
        elif done == 1 or done % max(1, total // 10) == 0:
            log(f"encoding: {done} / {total} shards")

    sampler.set_phase("sample+train")
    build_started = time.perf_counter()
    build: OnDiskBuild = build_ondisk(rows, rows.n_chunks(), args.dim, out_dir, nlist=spec.nlist, m=spec.pq_m,
                                      nbits=spec.pq_bits, map_fn=map_fn, train_size=args.train_size,
                                      seed=args.seed, on_shard=on_shard)
    seconds["build total"] = time.perf_counter() - build_started
    seconds.update(build.seconds)
    log(f"built in {seconds['build total']:.0f}s: " + ", ".join(f"{k} {v:.0f}s" for k, v in build.seconds.items()))
    ray.shutdown()

    sampler.set_phase("search")
    t0 = time.perf_counter()
    index = DiskAnnIndex.open(spec, build, np.arange(args.n, dtype=np.int64), args.dim)
    seconds["load"] = time.perf_counter() - t0
    sweep = []
    t0 = time.perf_counter()
    for line in effort_lines(spec):  # the tuner's settings: a line of rising nprobe per re-rank depth
        for setting in line:
            m = measure(index.with_search_params(nprobe=setting.nprobe, rerank=setting.rerank), rows, queries,
                        truth, K)
            sweep.append((setting.nprobe, setting.rerank, m))
            log(f"nprobe {setting.nprobe:3d} rerank {setting.rerank:3d}: recall@{K} {m.recall:.4f} "
                f"p50 {m.p50_ms:.2f} ms")
            if m.recall >= 0.995 or (len(sweep) > 1 and sweep[-2][1] == setting.rerank
                                     and m.recall < sweep[-2][2].recall + 0.002):
                break  # this depth is saturated: more cells gain nothing
    seconds["search"] = time.perf_counter() - t0
    sampler.stop()
    sampler.sample()
    report(args, spec, build, index, seconds, sweep, sampler)


def report(args: argparse.Namespace, spec: Any, build: OnDiskBuild, index: DiskAnnIndex, seconds: dict[str, float],
           sweep: list, sampler: MemorySampler) -> None:
    data_bytes = args.n * args.dim * np.dtype(args.dtype).itemsize
    ivfdata = build.ivfdata_path.stat().st_size
    print(f"\non-disk index build: {args.n} x {args.dim} synthetic ({args.clusters} clusters, seed {args.seed}; "
          f"file {gb(data_bytes)} {args.dtype}), {spec.label()}, Ray local cluster of {args.cpus} CPUs")
    print(f"index: {gb(ivfdata)} .ivfdata on disk, {index.memory_bytes() / 1e6:.0f} MB in RAM "
          f"(centroids, codebooks, cell offsets, row map); trained on {build.trained_on} vectors\n")
    print("| phase | seconds | peak RSS, process tree (sum) | largest process | processes |")
    print("|---|---|---|---|---|")
    order = ["generate", "exact", "ray start", "sample+train", "encode", "merge", "search"]
    timed = {**seconds, "sample+train": seconds.get("sample", 0) + seconds.get("train", 0)}
    for phase in order:
        peak = sampler.peaks.get(phase)
        if peak is None:
            continue
        secs = timed.get(phase)
        print(f"| {phase} | {'' if secs is None else f'{secs:.0f}'} | {gb(peak.tree_rss)} | "
              f"{gb(peak.largest)} ({peak.largest_name}) | {peak.processes} |")
    build_phases = ["ray start", "sample+train", "encode", "merge", "search"]
    peak = max((sampler.peaks[p].tree_rss for p in build_phases if p in sampler.peaks), default=0)
    print(f"\nbuild wall time (sample + train + encode + merge): {seconds['build total']:.0f}s "
          f"({seconds['build total'] / 60:.1f} min); index load {seconds['load'] * 1e3:.0f} ms")
    print("\n| nprobe | rerank | recall@10 | +- SE | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for nprobe, rerank, m in sweep:
        print(f"| {nprobe} | {rerank} | {m.recall:.4f} | {m.recall_se:.4f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} |")
    met = [s for s in sweep if s[2].recall >= RECALL_TARGET]
    chosen = min(met, key=lambda s: s[2].p50_ms) if met else max(sweep, key=lambda s: s[2].recall)
    print(f"\nrecall@{K} against exact on {args.queries} held-out queries: {chosen[2].recall:.4f} "
          f"at nprobe={chosen[0]} rerank={chosen[1]}, p50 {chosen[2].p50_ms:.2f} ms "
          f"({'fastest reaching ' + str(RECALL_TARGET) if met else 'best; none reached ' + str(RECALL_TARGET)})")
    print(f"peak memory {gb(peak)} (target <= {gb(MEMORY_TARGET)}): {'met' if peak <= MEMORY_TARGET else 'MISSED'} "
          f"(sum of RSS over the driver, Ray's processes and workers, phases ray start .. search)")
    print(f"elapsed: {time.perf_counter() - T0:.0f}s")


def main() -> None:
    if sys.argv[1:2] == ["local-vs-ray"]:
        # Its own options and its own Ray session: one module per benchmark part.
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_scale_ray import main as local_vs_ray

        raise SystemExit(local_vs_ray(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("local-vs-ray", help="local pipeline vs --ray on the same photos (options: local-vs-ray -h)")
    p = sub.add_parser("index", help="the distributed on-disk index build (time, peak memory, recall)")
    p.add_argument("--n", type=int, default=10_000_000, help="indexed vectors")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--queries", type=int, default=500, help="held-out queries (exact ground truth)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="the vector file's storage")
    p.add_argument("--train-size", type=int, default=100_000, help="training sample (the library's default)")
    p.add_argument("--clusters", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=cmd_index)
    args = parser.parse_args()
    with faiss_threads(args.cpus):
        args.run(args)


if __name__ == "__main__":
    main()
