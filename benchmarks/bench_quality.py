"""Retrieval quality of ``lite`` on real labelled clip art, against baselines from the same run.

Data: Debian's public-domain ``openclipart-png``, one label per category folder (see
``tools/samples.py`` for the categories kept). Fetched and cached on first run.

Reports, leave-one-out over the labelled set:

* image -> image kNN@1, recall@k and mAP for ``lite`` with its letterbox preprocessing,
  ``lite`` with a 0.875 centre crop instead, a colour histogram and raw 16x16 pixels;
* text -> image mAP for ``lite`` text queries naming each category, against chance
  (the mean share of relevant images).

    python benchmarks/bench_quality.py [--per-class 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

# The repository root, for tools/ (helper modules that are not part of the installed package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools import samples  # noqa: E402

import lookalike  # noqa: E402
from lookalike.apps.evaluate import (  # noqa: E402
    colour_histogram,
    image_retrieval,
    raw_pixels,
    text_retrieval_map,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = samples.clipart_labelled(per_class=args.per_class, min_class_size=args.per_class, seed=args.seed)
    paths = [p for ps in data.values() for p in ps]
    labels = [lab for lab, ps in data.items() for _ in ps]
    print(f"{len(paths)} clip-art images in {len(data)} categories (openclipart-png)\n")

    model = lookalike.load_model("lite", device="cpu")
    t0 = time.perf_counter()
    lite = model.encode_images(paths)
    t_lite = time.perf_counter() - t0
    letterbox_cfg = model.preprocess
    model.preprocess = replace(letterbox_cfg, resize_mode="crop", crop_pct=0.875)
    model._transform = None
    crop = model.encode_images(paths)
    model.preprocess = letterbox_cfg
    model._transform = None

    rows = [
        ("lite (letterbox, default)", image_retrieval(lite, labels)),
        ("lite (0.875 centre crop)", image_retrieval(crop, labels)),
        ("colour histogram 8x8x8", image_retrieval(colour_histogram(paths), labels)),
        ("raw 16x16 pixels", image_retrieval(raw_pixels(paths), labels)),
    ]
    print("image -> image, leave-one-out")
    print(f"| {'method':<28} | kNN@1 | R@5   | R@10  | mAP   |")
    print(f"|{'-' * 30}|-------|-------|-------|-------|")
    for name, s in rows:
        print(f"| {name:<28} | {s.knn1:.3f} | {s.recall_at[5]:.3f} | {s.recall_at[10]:.3f} | {s.map:.3f} |")
    base = rows[2][1]
    print(f"\nlite / colour histogram: kNN@1 x{rows[0][1].knn1 / base.knn1:.2f}, mAP x{rows[0][1].map / base.map:.2f}")

    queries = sorted(data)
    text = model.encode_text([samples.category_query(q) for q in queries])
    text_map = text_retrieval_map(text, queries, lite, labels)
    chance = float(np.mean([len(data[q]) / len(paths) for q in queries]))
    print("\ntext -> image (query = category name, e.g. 'birds', 'meats and eggs')")
    print(f"lite text mAP {text_map:.3f}; chance {chance:.3f}; ratio x{text_map / chance:.1f}")
    print(f"\nlite embedding throughput on this run: {len(paths) / t_lite:.1f} images/s")


if __name__ == "__main__":
    main()
