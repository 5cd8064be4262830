"""Indexing throughput: the lookalike pipeline against the naive loop, decode-only and model-only.

Two folders of distinct real images, built and cached on first run by ``tools/bench_data.py``:

* photos: camera-size JPEGs (1600-4000 px) cut from Debian's mate/gnome wallpapers by
  varied crops, sizes, small rotations and JPEG re-encodes;
* clip art: small PNGs from Debian's openclipart-png.

For each folder, in one run and with the same model (``lite`` on the CPU by default):

* pipeline   ``Collection.add`` into a fresh collection: discovery, hashing, parallel
             decoding with bounded prefetch overlapped with batched forward passes, commits;
* naive      the loop tutorials show: open one image, preprocess it, run the model on a
             batch of one, repeat (timed on ``--naive-sample`` files, reported per image);
* decode     the pipeline's input stage alone: read, content hash, decode (JPEG draft),
             preprocess, on the same thread pool;
* model      the pipeline's forward passes alone, on preprocessed pixels already in memory.

Targets: pipeline >= 3x naive on photos; pipeline wall <= 1.3x max(decode, model).
Finally it re-indexes both folders unchanged (>= 5,000 files with the defaults) and reports
that time against the first run's, through the library and through the CLI.

    python benchmarks/bench_index.py [--photos 2000] [--clipart 3000] [--naive-sample 300]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The repository root, for tools/ (helper modules that are not part of the installed package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools import bench_data, samples  # noqa: E402

import lookalike  # noqa: E402
from lookalike.images.decode import decode_image  # noqa: E402
from lookalike.pipeline.loader import default_workers, ordered_map  # noqa: E402


def naive_rate(model: lookalike.EmbeddingModel, files: list[Path]) -> float:
    """Images/s of the one-at-a-time loop: PIL open -> convert -> transform -> forward(batch of 1)."""
    from PIL import Image

    transform = model.image_transform
    t0 = time.perf_counter()
    for f in files:
        with Image.open(f) as img:
            x = transform(img.convert("RGB"))
        model.embed_pixels(x[None])
    return len(files) / (time.perf_counter() - t0)


def decode_only(model: lookalike.EmbeddingModel, files: list[Path], workers: int, batch: int) -> tuple[float, list]:
    """Seconds for the input stage on every file with the pipeline's pool; keeps a sample."""
    transform, min_side = model.image_transform, model.preprocess.min_decode_side

    def prepare(path: Path) -> np.ndarray:
        data = path.read_bytes()
        hashlib.blake2b(data, digest_size=16).digest()
        return transform(decode_image(data, min_side=min_side, name=str(path)).image)

    keep: list[np.ndarray] = []
    t0 = time.perf_counter()
    for i, pixels in enumerate(ordered_map(prepare, files, workers=workers, prefetch=batch * 2)):
        if i < batch * 4:
            keep.append(pixels)
    return time.perf_counter() - t0, keep


def model_only(model: lookalike.EmbeddingModel, pixels: list[np.ndarray], n: int, batch: int) -> float:
    """Seconds for the forward passes of n images, in the pipeline's batch size."""
    batches = [np.stack(pixels[i : i + batch]) for i in range(0, len(pixels), batch)]
    model.embed_pixels(batches[0])  # warm-up, as the pipeline's first batch would be
    t0 = time.perf_counter()
    done = 0
    i = 0
    while done < n:
        b = batches[i % len(batches)][: n - done]
        model.embed_pixels(b)
        done += len(b)
        i += 1
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--clipart", type=int, default=3000)
    parser.add_argument("--naive-sample", type=int, default=300)
    parser.add_argument("--model", default="lite")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--data", type=Path, default=samples.cache_dir() / "bench")
    args = parser.parse_args()

    import torch

    print(f"cores: {os.cpu_count()} | torch threads: {torch.get_num_threads()} | decode threads: {args.workers} "
          f"| batch: {args.batch_size} | model: {args.model} on {args.device}", flush=True)
    folders = {
        "photos": bench_data.make_photo_folder(args.data / f"photos-{args.photos}", n=args.photos),
        "clip art": bench_data.make_clipart_folder(args.data / f"clipart-{args.clipart}", n=args.clipart),
    }
    model = lookalike.load_model(args.model, device=args.device)
    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    coll = lookalike.Collection.create(work / "bench.lkl", model=model)
    rows = []
    first_run = 0.0
    roots = []
    for name, files in folders.items():
        root = Path(os.path.commonpath([str(f) for f in files]))
        roots.append(root)
        files = sorted(files)
        n = len(files)
        mb = sum(f.stat().st_size for f in files) / 1e6
        rng = np.random.default_rng(0)
        sample = [files[i] for i in rng.choice(n, size=min(args.naive_sample, n), replace=False)]
        naive = naive_rate(model, sample)
        t_decode, pixels = decode_only(model, files, args.workers, args.batch_size)
        t_model = model_only(model, pixels, n, args.batch_size)
        t0 = time.perf_counter()
        report = coll.add([root], batch_size=args.batch_size, workers=args.workers)
        t_pipe = time.perf_counter() - t0
        first_run += t_pipe
        assert report.embedded + report.copied == n - len(report.failed), report
        rows.append((name, n, mb, naive, n / t_pipe, t_pipe, t_decode, t_model))

    print()
    print("| folder | files | MB | naive img/s | pipeline img/s | pipeline / naive | pipeline s | decode-only s "
          "| model-only s | pipeline / max(decode, model) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, n, mb, naive, rate, t_pipe, t_dec, t_mod in rows:
        print(f"| {name} | {n} | {mb:.0f} | {naive:.1f} | {rate:.1f} | {rate / naive:.2f}x | {t_pipe:.1f} | "
              f"{t_dec:.1f} | {t_mod:.1f} | {t_pipe / max(t_dec, t_mod):.2f} |")

    total = sum(r[1] for r in rows)
    t0 = time.perf_counter()
    again = coll.add(roots)
    t_again = time.perf_counter() - t0
    coll.close()
    assert again.unchanged == total and again.embedded == 0, again
    cli = shutil.which("lookalike", path=str(Path(sys.executable).parent)) or "lookalike"
    t0 = time.perf_counter()
    subprocess.run([cli, "index", *map(str, roots), "--collection", str(work / "bench.lkl"), "--quiet"], check=True)
    t_cli = time.perf_counter() - t0
    print(f"\nunchanged re-index of {total} files: library {t_again:.2f}s = {100 * t_again / first_run:.2f}% "
          f"of the first run ({first_run:.1f}s); CLI incl. start-up {t_cli:.2f}s = {100 * t_cli / first_run:.2f}%")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
