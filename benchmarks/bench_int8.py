"""What each step of lookalike's int8 recipe buys, on ``lite``: quality and speed against fp32.

Each variant switches steps of ``lookalike.models.quantize`` off (or changes the quantizer's
types), quantizes ``lite`` on the same calibration images (taken from the labelled clip art,
as a collection calibrates on its own images), and reports, on ONNX Runtime and OpenVINO
through lookalike's own engines:

* cosine of every int8 vector to its fp32 vector (mean, min);
* kNN@1 and mAP, leave-one-out, on the labelled clip art, and their change from fp32;
* model-only throughput (batch 32, preprocessed pixels), each round timing every graph once in
  turn so a shared machine's load hits them alike; the ratio is to fp32 on the same runtime.

Variants (``--variants``, comma-separated; default all):

    naive        QDQ, per-channel int8 weights, uint8 activations from min/max over all images
    float-shape  + the shape arithmetic (TF-SAME pad widths) left in float
    bias         + bias correction of every Conv
    fold         + shape arithmetic folded into constants
    shipped      + each activation range the mean of the per-batch ranges (the recipe lookalike ships)
    last-batches shipped, but with ORT's CalibMaxIntermediateOutputs=8, whose bug keeps only the
                 last few batches' ranges (what recipes 1-4 did by accident)
    u8u8         shipped, but uint8 weights (slower kernels: kept to show why not)
    rr           shipped, but 7-bit weights (reduce_range)

    python benchmarks/bench_int8.py [--calib 300] [--variants naive,shipped] [--rounds 7] [--no-speed]

Timings are only meaningful on a quiet machine (2 threads, as the engines use).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools import samples  # noqa: E402

import lookalike  # noqa: E402
from lookalike.apps.evaluate import image_retrieval  # noqa: E402
from lookalike.images.decode import decode_image  # noqa: E402
from lookalike.models import quantize  # noqa: E402
from lookalike.models.engine import build_image_engine  # noqa: E402
from lookalike.models.export import export_image_onnx  # noqa: E402

VARIANTS = ("naive", "float-shape", "bias", "fold", "shipped", "last-batches", "u8u8", "rr")


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    """Switch recipe steps off by patching the quantize module for the duration."""
    import onnxruntime.quantization as ortq
    from lookalike.models import int8_bias

    saved = (quantize.fold_static_shapes, quantize.shape_only_nodes, int8_bias.correct_conv_biases,
             ortq.quantize_static, dict(quantize._CALIBRATION_OPTIONS))
    if name in ("naive", "float-shape", "bias", "fold"):
        quantize._CALIBRATION_OPTIONS.pop("CalibMovingAverage", None)
    if name == "last-batches":
        quantize._CALIBRATION_OPTIONS["CalibMaxIntermediateOutputs"] = 8
    if name in ("naive", "float-shape", "bias"):
        quantize.fold_static_shapes = lambda graph: (_load(graph), 0)
    if name == "naive":
        quantize.shape_only_nodes = lambda graph: []
    if name in ("naive", "float-shape"):
        int8_bias.correct_conv_biases = lambda *args, **kwargs: 0
    if name in ("u8u8", "rr"):
        original = ortq.quantize_static

        def changed(*args: Any, **kwargs: Any) -> Any:
            if name == "u8u8":
                kwargs["weight_type"] = ortq.QuantType.QUInt8
            else:
                kwargs["reduce_range"] = True
            return original(*args, **kwargs)

        ortq.quantize_static = changed
    try:
        yield
    finally:
        (quantize.fold_static_shapes, quantize.shape_only_nodes, int8_bias.correct_conv_biases,
         ortq.quantize_static, options) = saved
        quantize._CALIBRATION_OPTIONS.clear()
        quantize._CALIBRATION_OPTIONS.update(options)


def _load(graph: Any) -> Any:
    import onnx

    return onnx.load(str(graph)) if isinstance(graph, (str, os.PathLike)) else graph


def make_int8(model: Any, name: str, calib: list[Path], folder: Path) -> Path:
    out = folder / f"{name}.onnx"
    with variant(name), tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        proto = quantize._quantize(export_image_onnx(model), Path(work), model, calib, None)
        print(f"  {name}: quantized in {time.perf_counter() - t0:.1f}s", flush=True)
    out.write_bytes(proto.SerializeToString())
    return out


def run_all(engine: Any, pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    out = np.concatenate([engine.run(pixels[i:i + batch]) for i in range(0, len(pixels), batch)])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def speeds(engines: dict[str, Callable[[np.ndarray], Any]], x: np.ndarray, rounds: int) -> dict[str, float]:
    for run in engines.values():
        run(x), run(x)
    times: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(rounds):
        for k, run in engines.items():
            t0 = time.perf_counter()
            run(x)
            times[k].append(time.perf_counter() - t0)
    return {k: len(x) / float(np.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--calib", type=int, default=300, help="calibration images, drawn from the labelled set")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")

    data = samples.clipart_labelled(per_class=args.per_class, min_class_size=args.per_class, seed=0)
    paths = [p for ps in data.values() for p in ps]
    labels = [lab for lab, ps in data.items() for _ in ps]
    calib = [paths[i] for i in np.sort(np.random.default_rng(0).permutation(len(paths))[:args.calib])]
    print(f"{len(paths)} labelled clip-art images, {len(data)} classes; {len(calib)} calibrate; "
          f"load average {os.getloadavg()[0]:.2f}\n", flush=True)

    model = lookalike.load_model("lite", device="cpu", runtime="torch")
    pixels = np.stack([model.image_transform(decode_image(p, min_side=model.preprocess.min_decode_side).image)
                       for p in paths])
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {"fp32": export_image_onnx(model)}
        graphs.update({n: make_int8(model, n, calib, Path(tmp)) for n in names})
        rows = []
        for runtime in ("onnx", "openvino"):
            engines = {k: build_image_engine(model, runtime, path=g, precision="fp32" if k == "fp32" else "int8")
                       for k, g in graphs.items()}
            vectors = {k: run_all(e, pixels) for k, e in engines.items()}
            rates = {} if args.no_speed else speeds({k: e.run for k, e in engines.items()},
                                                    np.ascontiguousarray(pixels[:32]), args.rounds)
            base = image_retrieval(vectors["fp32"], labels)
            for k, v in vectors.items():
                s = image_retrieval(v, labels)
                cos = np.sum(v * vectors["fp32"], axis=1)
                speed = f"{rates[k]:6.1f} | x{rates[k] / rates['fp32']:.2f}" if rates else "     - |     -"
                rows.append(f"| {runtime:8} | {k:12} | {cos.mean():.4f}   | {cos.min():.3f}   | {s.knn1:.3f} "
                            f"({100 * (s.knn1 - base.knn1):+.1f}) | {s.map:.4f} ({100 * (s.map - base.map):+.2f}) "
                            f"| {speed}   |")
    print("\n| runtime  | graph        | cos mean | cos min | kNN@1 (pts) | mAP (pts) | img/s | vs fp32 |")
    print("|----------|--------------|----------|---------|-------------|-----------|-------|---------|")
    print("\n".join(rows))
    print(f"\nload average at the end {os.getloadavg()[0]:.2f} (timings need a quiet machine)")


if __name__ == "__main__":
    main()
