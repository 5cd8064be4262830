"""Indexing throughput: today's pipeline, the faster runtimes and decoders of issue 12, and the naive loop.

One command measures every figure of issue 12, each against today's pipeline (torch fp32,
channels_last, Pillow decoding) measured in the same run::

    python benchmarks/bench_index.py all [--json figures.json]

or one part at a time:

* ``runtimes``      model-only img/s of ``lite`` (batch 32, 2 threads) for torch fp32 (today),
                    ONNX Runtime and OpenVINO fp32 and int8; / torch and int8 / fp32; cosines.
* ``int8-quality``  kNN@1, recall@k and mAP on the labelled clip art, every variant; int8's drop.
* ``e2e``           ``Collection.add`` of 2,000 photos and 3,000 clip-art PNGs, today
                    (torch/fp32/pillow) against each ``--e2e-configs`` entry, fresh processes.
* ``decode``        peak RSS indexing the 10 largest real openclipart PNGs, pillow vs vips,
                    fresh processes; decode-only img/s on the photos, pillow vs vips.
* ``pipeline``      (the default, the figures before issue 12) the pipeline against the naive
                    loop, decode-only and model-only, and the unchanged re-index.

The parts live in ``bench_index_runtimes.py``, ``bench_index_e2e.py`` (with the child process
``bench_index_child.py``) and ``bench_index_common.py``. Configurations are written
runtime/precision/decoder; ``default`` leaves the library's own choice (``auto``, fp32, vips).

Two folders of distinct real images, built and cached on first run by ``tools/bench_data.py``:

* photos: camera-size JPEGs (1600-4000 px) cut from Debian's mate/gnome wallpapers by
  varied crops, sizes, small rotations and JPEG re-encodes;
* clip art: small PNGs from Debian's openclipart-png.

``pipeline``, for each folder, in one run and with the same model (``lite`` on the CPU):

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

    python benchmarks/bench_index.py [pipeline] [--photos 2000] [--clipart 3000] [--naive-sample 300]
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
    from bench_index_runtimes import _time_variant

    batches = [np.stack(pixels[i : i + batch]) for i in range(0, len(pixels), batch)]
    model.embed_pixels(batches[0])  # warm-up, as the pipeline's first batch would be
    return _time_variant(model, batches, n)


def main_pipeline(args: argparse.Namespace) -> None:
    """The figures before issue 12: pipeline, naive loop, decode-only, model-only, re-index."""
    import torch

    torch.set_num_threads(args.threads)
    for env, value in (("LOOKALIKE_RUNTIME", args.runtime), ("LOOKALIKE_DECODER", args.decoder)):
        if value != "default":
            os.environ[env] = value
    folders = {
        "photos": bench_data.make_photo_folder(args.data / f"photos-{args.photos}", n=args.photos),
        "clip art": bench_data.make_clipart_folder(args.data / f"clipart-{args.clipart}", n=args.clipart),
    }
    model = lookalike.load_model(args.model, device=args.device)
    print(f"runtime {getattr(model, 'runtime', 'torch')}, decoder {os.environ.get('LOOKALIKE_DECODER', 'default')}",
          flush=True)
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


PARTS = ("pipeline", "runtimes", "int8-quality", "e2e", "decode", "all")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", default="pipeline", choices=PARTS,
                        help="what to measure (default: pipeline, the figures before issue 12)")
    data = parser.add_argument_group("data and model (every part)")
    data.add_argument("--photos", type=int, default=2000)
    data.add_argument("--clipart", type=int, default=3000)
    data.add_argument("--model", default="lite")
    data.add_argument("--device", default="cpu")
    data.add_argument("--batch-size", type=int, default=32)
    data.add_argument("--workers", type=int, default=default_workers(), help="decoding threads")
    data.add_argument("--threads", type=int, default=2,
                      help="torch threads (ONNX Runtime and OpenVINO: the library's default, one per core)")
    data.add_argument("--data", type=Path, default=samples.cache_dir() / "bench")
    data.add_argument("--json", type=Path, default=None, help="also merge the figures into this JSON file")
    legacy = parser.add_argument_group("pipeline")
    legacy.add_argument("--naive-sample", type=int, default=300)
    legacy.add_argument("--runtime", default="default", help="runtime of the pipeline part (default: the library's)")
    legacy.add_argument("--decoder", default="default", help="decoder of the pipeline part (default: the library's)")
    model = parser.add_argument_group("runtimes and int8-quality")
    model.add_argument("--variants", default="torch/fp32,onnx/fp32,openvino/fp32,onnx/int8,openvino/int8",
                       help="runtime/precision pairs; torch/fp32 (today) is always measured first")
    model.add_argument("--model-images", type=int, default=320, help="images timed per variant per round")
    model.add_argument("--rounds", type=int, default=2, help="interleaved rounds (runtimes, photo decode-only)")
    model.add_argument("--per-class", type=int, default=20, help="labelled clip art per category (35 categories)")
    model.add_argument("--calibration", choices=("labelled", "photos"), default="labelled",
                       help="int8 calibration images: the labelled clip art's own, or the photos")
    model.add_argument("--calibration-images", type=int, default=300)
    e2e = parser.add_argument_group("e2e and decode")
    e2e.add_argument("--e2e-configs", default="torch/fp32/pillow,auto/fp32/vips",
                     help="runtime/precision/decoder list; the first is today's pipeline, the baseline")
    e2e.add_argument("--e2e-rounds", type=int, default=1, help="interleaved rounds of every configuration")
    e2e.add_argument("--largest", type=int, default=10, help="largest openclipart PNGs for the peak RSS")
    e2e.add_argument("--decode-configs", default="torch/fp32/pillow,torch/fp32/vips,auto/fp32/vips")
    e2e.add_argument("--decode-photos", type=int, default=2000, help="photos for decode-only img/s")
    e2e.add_argument("--child-timeout", type=int, default=1200, help="seconds one indexing process may take")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    import torch

    print(f"cores: {os.cpu_count()} | torch {torch.__version__}, threads {args.threads} | decode threads: "
          f"{args.workers} | batch: {args.batch_size} | model: {args.model} on {args.device} | part: {args.part}",
          flush=True)
    t0 = time.perf_counter()
    if args.part == "pipeline":
        main_pipeline(args)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_index_e2e import main_decode, main_e2e
    from bench_index_runtimes import main_runtimes

    if args.part in ("runtimes", "int8-quality", "all"):
        main_runtimes(args, speed=args.part != "int8-quality", quality=args.part != "runtimes")
    if args.part in ("e2e", "all"):
        main_e2e(args)
    if args.part in ("decode", "all"):
        main_decode(args)
    print(f"\n{args.part} took {time.perf_counter() - t0:.0f}s in all")


if __name__ == "__main__":
    main()
