"""``bench_index.py runtimes`` and ``int8-quality``: the model alone on each runtime and precision.

* runtimes: model-only throughput (preprocessed real pixels already in memory, batch 32)
  of every variant, against torch fp32 (channels_last, today's path) in the same run, in
  interleaved rounds (forwards, backwards, ...) so drifting load hits every variant alike;
  plus each variant's cosine to torch fp32 on the same pixels.
* int8-quality: kNN@1, recall@k and mAP (``lookalike.apps.evaluate.image_retrieval``, the
  helper ``bench_quality.py`` uses) on the labelled clip art for every variant; int8 against
  fp32 on the same runtime and against torch fp32.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench_index_common import (
    Loaded,
    Unavailable,
    Variant,
    cosines,
    digest,
    embed_all,
    fmt,
    labelled_clipart,
    load_variant,
    photo_folder,
    prepare_pixels,
    ratio,
    save_json,
    set_threads,
    spread,
    table,
    verdict,
    abba,
)
from lookalike.apps.evaluate import image_retrieval

BASELINE = Variant("torch", "fp32")


def calibration_images(args: Any, labelled: list) -> list:
    """The int8 calibration sample: the labelled clip art's own images (as a collection of them
    would calibrate), or the photo folder's; evenly spread, deterministic."""
    pool = labelled if args.calibration == "labelled" else photo_folder(args)
    return spread(pool, args.calibration_images)


def load_variants(args: Any) -> tuple[dict[Variant, Loaded], dict[Variant, str], list]:
    """Every variant of ``--variants`` loaded (int8 quantized once, then cached by the library).

    Returns (loaded, unavailable reasons, calibration sample)."""
    set_threads(args.threads)
    paths, _ = labelled_clipart(args.per_class)
    calibration = calibration_images(args, paths)
    print(f"int8 calibration: {len(calibration)} images of the {args.calibration} set "
          f"(sample {digest(calibration)}); quantized once, then cached by the library", flush=True)
    variants = [BASELINE] + [v for v in (Variant.parse(t) for t in args.variants.split(",")) if v != BASELINE]
    loaded: dict[Variant, Loaded] = {}
    missing: dict[Variant, str] = {}
    for variant in variants:
        try:
            loaded[variant] = load_variant(args.model, args.device, variant, calibration)
            note = "; ".join(loaded[variant].notes)
            print(f"loaded {variant.label} -> runtime {loaded[variant].runtime} in {loaded[variant].load_s:.1f}s"
                  + (f" ({note})" if note else ""), flush=True)
        except Unavailable as exc:
            missing[variant] = str(exc)
            print(f"UNAVAILABLE {variant.label}: {exc}", flush=True)
    if BASELINE not in loaded:
        raise SystemExit(f"torch fp32 (the baseline) did not load: {missing[BASELINE]}")
    return loaded, missing, calibration


def auto_choice(args: Any) -> str:
    """What ``runtime="auto"`` picks for fp32 on this machine, with what it measured."""
    try:
        auto = load_variant(args.model, args.device, Variant("auto"), None)
    except Unavailable as exc:
        return f"auto: unavailable ({exc})"
    return f"auto -> {auto.runtime}" + (f" ({'; '.join(auto.notes)})" if auto.notes else "")


def _time_variant(model: Any, batches: list[np.ndarray], n: int) -> float:
    """Seconds for the forward passes of ``n`` images, cycling over ``batches``."""
    done, i = 0, 0
    t0 = time.perf_counter()
    while done < n:
        b = batches[i % len(batches)][: n - done]
        model.embed_pixels(b)
        done += len(b)
        i += 1
    return time.perf_counter() - t0


def run_runtimes(args: Any, loaded: dict[Variant, Loaded], missing: dict[Variant, str]) -> dict[str, Any]:
    """Model-only throughput of every loaded variant; prints the table and the targets."""
    paths, _ = labelled_clipart(args.per_class)
    pixels = prepare_pixels(loaded[BASELINE].model, paths[: args.batch_size * 4], args.workers)
    batches = [pixels[i : i + args.batch_size] for i in range(0, len(pixels), args.batch_size)]
    reference = embed_all(loaded[BASELINE].model, pixels, args.batch_size)
    cos = {v: cosines(embed_all(lv.model, pixels, args.batch_size), reference) for v, lv in loaded.items()}
    for lv in loaded.values():
        lv.model.embed_pixels(batches[0])  # warm-up: first-run allocations and kernel choices
    seconds: dict[Variant, list[float]] = {v: [] for v in loaded}
    print(f"\nmodel-only: {args.model_images} images per variant per round, {args.rounds} rounds, "
          f"batch {args.batch_size}, torch threads {args.threads}", flush=True)
    for variant in abba(list(loaded), args.rounds):
        seconds[variant].append(_time_variant(loaded[variant].model, batches, args.model_images))
        print(f"  {variant.label}: {args.model_images / seconds[variant][-1]:.1f} img/s", flush=True)
    rate = {v: args.model_images * len(s) / sum(s) for v, s in seconds.items()}
    base = rate[BASELINE]
    rows, result = [], {}
    for v, lv in loaded.items():
        fp32 = rate.get(Variant(v.runtime, "fp32")) if v.precision == "int8" else None
        rows.append([v.label, lv.runtime, f"{rate[v]:.1f}", f"{rate[v] / base:.2f}x",
                     fmt(ratio(rate[v], fp32), ".2f", "x"),
                     f"{cos[v].mean():.5f} / {cos[v].min():.5f}",
                     " ".join(f"{args.model_images / s:.0f}" for s in seconds[v])])
        result[v.label] = {"runtime": lv.runtime, "img_s": rate[v], "x_torch": rate[v] / base,
                           "x_fp32_same_runtime": ratio(rate[v], fp32), "cos_mean": float(cos[v].mean()),
                           "cos_min": float(cos[v].min()), "rounds_img_s": [args.model_images / s for s in seconds[v]]}
    rows += [[v.label, "unavailable", "", "", "", "", reason[:80]] for v, reason in missing.items()]
    print()
    print(table(["variant", "runs on", "img/s", "/ torch fp32", "int8 / fp32 (same runtime)",
                 "cos to torch fp32 (mean / min)", "img/s per round"], rows))
    onnx = ratio(rate.get(Variant("onnx")), base)
    print(f"\nONNX Runtime fp32 / torch: {fmt(onnx, '.2f', 'x')} (target >= 2.5x: {verdict(onnx, 2.5)})")
    fp32_best = max((r for v, r in rate.items() if v.precision == "fp32"), default=None)
    for v in rate:
        if v.precision == "int8":
            same = ratio(rate[v], rate.get(Variant(v.runtime, "fp32")))
            print(f"{v.label} / {v.runtime} fp32: {fmt(same, '.2f', 'x')} (default only if >= 1.3x: "
                  f"{verdict(same, 1.3)}); "
                  f"/ fastest fp32: {fmt(ratio(rate[v], fp32_best), '.2f', 'x')}")
    result["unavailable"] = {v.label: r for v, r in missing.items()}
    return result


def _top1_flips(vectors: np.ndarray, fp32: np.ndarray, labels: list) -> tuple[int, int]:
    """Queries whose nearest neighbour became right (gained) or wrong (lost) against fp32: the
    paired view of a kNN@1 difference, which on a few hundred queries is within sampling noise."""
    def right(v: np.ndarray) -> np.ndarray:
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        lab = np.asarray(labels)
        return lab[np.argmax(sims, axis=1)] == lab

    a, b = right(vectors), right(fp32)
    return int(np.sum(a & ~b)), int(np.sum(b & ~a))


def run_quality(args: Any, loaded: dict[Variant, Loaded], missing: dict[Variant, str],
                calibration: list) -> dict[str, Any]:
    """kNN@1 / mAP of every variant on the labelled clip art; int8 against fp32."""
    paths, labels = labelled_clipart(args.per_class)
    print(f"\nint8 quality: {len(paths)} labelled clip-art images in {len(set(labels))} categories, "
          f"leave-one-out; calibration: {len(calibration)} images ({args.calibration})", flush=True)
    pixels = prepare_pixels(loaded[BASELINE].model, paths, args.workers)
    vectors = {v: embed_all(lv.model, pixels, args.batch_size) for v, lv in loaded.items()}
    scores = {v: image_retrieval(vec, labels) for v, vec in vectors.items()}
    ref = scores[BASELINE]
    rows, result = [], {}
    for v, s in scores.items():
        fp32 = Variant(v.runtime, "fp32")
        same = scores.get(fp32) if v.precision == "int8" else None
        drop = None if same is None else 100 * (same.knn1 - s.knn1)
        cos_fp32 = cosines(vectors[v], vectors[fp32]) if v.precision == "int8" and fp32 in vectors else None
        cos_torch = cosines(vectors[v], vectors[BASELINE])
        flips = _top1_flips(vectors[v], vectors[fp32], labels) if v.precision == "int8" and fp32 in vectors else None
        rows.append([v.label, f"{s.knn1:.3f}", f"{s.recall_at[5]:.3f}", f"{s.recall_at[10]:.3f}", f"{s.map:.3f}",
                     fmt(drop, "+.1f"), f"{100 * (ref.knn1 - s.knn1):+.1f}",
                     "" if flips is None else f"+{flips[0]} / -{flips[1]}",
                     "" if cos_fp32 is None else f"{cos_fp32.mean():.4f} / {cos_fp32.min():.4f}",
                     f"{cos_torch.mean():.5f} / {cos_torch.min():.5f}"])
        result[v.label] = {"knn1": s.knn1, "recall_at": s.recall_at, "map": s.map, "knn1_drop_points": drop,
                           "knn1_drop_vs_torch_points": 100 * (ref.knn1 - s.knn1),
                           "cos_to_fp32_mean": None if cos_fp32 is None else float(cos_fp32.mean()),
                           "top1_gained_lost_vs_fp32": flips,
                           "cos_to_torch_mean": float(cos_torch.mean()), "cos_to_torch_min": float(cos_torch.min())}
    rows += [[v.label, "unavailable: " + reason[:80]] + [""] * 8 for v, reason in missing.items()]
    print()
    print(table(["variant", "kNN@1", "R@5", "R@10", "mAP", "kNN@1 drop vs same-runtime fp32 (points)",
                 "drop vs torch fp32", "top-1 gained / lost vs fp32", "cos to fp32 (mean / min)",
                 "cos to torch fp32 (mean / min)"], rows))
    for label, r in result.items():
        if r["knn1_drop_points"] is not None:
            gained, lost = r["top1_gained_lost_vs_fp32"] or (0, 0)
            print(f"{label}: kNN@1 drop {r['knn1_drop_points']:+.1f} points (target <= 1: "
                  f"{verdict(r['knn1_drop_points'], 1.0, at_most=True)}); {gained} queries gained, {lost} lost "
                  f"their right nearest neighbour")
    result["unavailable"] = {v.label: r for v, r in missing.items()}
    result["calibration"] = {"set": args.calibration, "images": len(calibration), "sample": digest(calibration)}
    return result


def main_runtimes(args: Any, *, quality: bool, speed: bool) -> None:
    """Entry point of the ``runtimes`` and ``int8-quality`` subcommands (one load serves both)."""
    t0 = time.perf_counter()
    loaded, missing, calibration = load_variants(args)
    print(auto_choice(args), flush=True)
    if speed:
        save_json(args.json, "runtimes", run_runtimes(args, loaded, missing))
    if quality:
        save_json(args.json, "int8_quality", run_quality(args, loaded, missing, calibration))
    print(f"\n(model parts took {time.perf_counter() - t0:.0f}s)", flush=True)
