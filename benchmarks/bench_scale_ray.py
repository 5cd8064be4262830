"""The Ray runner (``--ray``) against the local pipeline, on the same images in the same run.

Images: the first ``--photos`` (2,000) camera-sized JPEG photos of ``tools.bench_data.make_photo_folder``
(1600-4000 px crops of Debian's mate/gnome wallpapers, all distinct; built once and cached
under ``samples.cache_dir()/bench/photos-N``, shared with ``bench_index.py``).

In one process, with the same model (``lite`` on the CPU by default), each into a fresh collection:

* local   ``Collection.add(folder)`` (the model loads inside the run, as it does in the actors);
* ray     ``index_with_ray`` on a local cluster started here once (``ray.init(num_cpus=--cpus)``):
          decode tasks on the cluster's CPUs, ``--actors`` embedding actors (default: the
          runner's choice), Parquet shards, merge. The cluster's start is timed apart.

``--rounds 2`` (the default) runs local, ray, ray, local, so that a load that drifts during
the run (a shared machine) weighs on both alike; the ratio is of the mean times. The first
local and ray collections are compared: same ids and paths in the same order, same rows,
vectors within 1e-5. Target: ray <= 1.3x local.

``--device cuda`` (on a machine with a GPU): the local pipeline on the GPU against the Ray
runner with one GPU actor (``ray.init(num_gpus=1)``).

    python benchmarks/bench_scale_ray.py [--photos 2000] [--cpus 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

# The repository root, for tools/ (helper modules that are not part of the installed package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools import bench_data, samples  # noqa: E402

import lookalike  # noqa: E402

TARGET = 1.3
_COLUMNS = "id, path, size, mtime_ns, hash, width, height, status, error, vec_row, phash, dhash, sharpness"


def _rows(coll: lookalike.Collection) -> list[tuple]:
    return coll._storage.db.conn.execute(f"SELECT {_COLUMNS} FROM items ORDER BY id").fetchall()


def compare(local: lookalike.Collection, ray: lookalike.Collection) -> tuple[bool, float]:
    """``(same ids, paths and rows, max |vector difference|)``."""
    same = _rows(local) == _rows(ray)
    a, b = local._storage.vectors(), ray._storage.vectors()
    diff = float(np.abs(a - b).max()) if a.shape == b.shape and len(a) else float("inf")
    return same, diff


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=2000, help="how many photos (default 2000)")
    parser.add_argument("--model", default="lite")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: local GPU pipeline vs one GPU actor")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray cluster")
    parser.add_argument("--actors", type=int, default=None, help="embedding actors (default: the runner's)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=2, help="1: local then ray; 2: local, ray, ray, local")
    parser.add_argument("--data", type=Path, default=samples.cache_dir() / "bench")
    args = parser.parse_args(argv)

    import ray
    import torch

    from lookalike.distributed.runner import index_with_ray

    gpu = args.device != "cpu"
    files = bench_data.make_photo_folder(args.data / f"photos-{args.photos}", n=args.photos)
    folder = Path(os.path.commonpath([str(f) for f in files]))
    mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"images: {len(files)} photos ({mb:.0f} MB) in {folder} | model: {args.model} on {args.device} | "
          f"cores: {os.cpu_count()} | torch threads: {torch.get_num_threads()}", flush=True)
    for f in files:  # both runs read from the page cache, not only the second
        f.read_bytes()
    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-ray-"))
    # ABBA (local, ray, ray, local, ...): a load that drifts during the run weighs on both alike.
    order = [kind for r in range(args.rounds) for kind in (("local", "ray") if r % 2 == 0 else ("ray", "local"))]
    times: dict[str, list[float]] = {"local": [], "ray": []}
    log: list[str] = []
    colls: dict[str, lookalike.Collection] = {}
    try:
        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, num_gpus=1 if gpu else 0, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        t_start = time.perf_counter() - t0
        try:
            for i, kind in enumerate(order):
                # Created, closed and reopened: the model then loads inside the timed run, as in an actor.
                lookalike.Collection.create(work / f"{kind}-{i}.lkl", args.model, device=args.device).close()
                coll = lookalike.Collection.open(work / f"{kind}-{i}.lkl", device=args.device)
                t0 = time.perf_counter()
                if kind == "local":
                    report = coll.add([folder], batch_size=args.batch_size)
                else:
                    report = index_with_ray(coll, [folder], actors=args.actors, gpus_per_actor=1 if gpu else 0,
                                            batch_size=args.batch_size)
                seconds = time.perf_counter() - t0
                times[kind].append(seconds)
                log.append(f"{kind} {seconds:.1f}")
                colls.setdefault(kind, coll)
                print(f"{kind:5}: {seconds:.1f} s, {len(files) / seconds:.1f} img/s ({report.embedded} embedded)",
                      flush=True)
        finally:
            ray.shutdown()

        same, diff = compare(colls["local"], colls["ray"])
        t_local, t_ray = (sum(times[k]) / len(times[k]) for k in ("local", "ray"))
        ratio = t_ray / t_local
        print(f"\nruns in order (s): {', '.join(log)}; the local Ray cluster's start: {t_start:.1f} s (not counted)")
        print("| run | images | mean s | img/s |")
        print("|---|---|---|---|")
        print(f"| local pipeline ({args.device}) | {len(files)} | {t_local:.1f} | {len(files) / t_local:.1f} |")
        print(f"| --ray, local cluster of {args.cpus} CPUs{', 1 GPU actor' if gpu else ''} | {len(files)} | "
              f"{t_ray:.1f} | {len(files) / t_ray:.1f} |")
        print(f"\nray / local: {ratio:.2f}x (target <= {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'}); "
              f"with the cluster's start: {(t_ray + t_start) / t_local:.2f}x")
        print(f"same ids, paths and rows: {same}; max |vector difference|: {diff:.2e} "
              f"({'within' if diff <= 1e-5 else 'OVER'} 1e-5)")
        return 0 if same and diff <= 1e-5 else 1
    finally:
        for coll in colls.values():
            coll.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
