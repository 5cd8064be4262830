"""Fitting the model to the user's images (issue 13), measured on real labelled clip art.

Data: Debian's public-domain ``openclipart-png``; a label is a category folder (``food/fruit``,
``animals/birds``...; see ``tools/samples.py``). Every category of at least ``--min-class``
images is kept, capped at ``--cap`` images (the flags would otherwise be a quarter of the
set). One fixed, seeded split (``lookalike.apps.splits``) serves every part: heads fit on its
train part, stop early on its validation part, and are judged on images they never saw.

Parts, each printing figures against a baseline measured in the same run:

* ``train``: a projection head on frozen ``lite`` vectors (SupCon, and batch-hard triplet);
  kNN@1 / mAP before -> after on held-out images of seen labels and on held-out labels.
* ``align``: text alignment from file-name captions on a ``lite`` collection of the training
  images; text -> image mAP with category-name queries on the held-out images, against
  ``lite``'s own ImageNet-class bridge.
* ``distill``: ``lite:448`` (448 px letterbox) as the teacher, ``lite`` (224 px) + a head as
  the student; retrieval quality on held-out images of the teacher, the student without
  distillation and the distilled student, and their speed.
* ``evaluate``: ``lookalike.evaluate`` over ``lite``, the colour-histogram baseline and two
  tiny local models on all 3,000 clip-art images (`--on all`), timed from a cold cache; then the re-run with
  one more model.

    python benchmarks/bench_adapt.py [train|align|distill|evaluate|all] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The repository root for tools/, and tests/ for the tiny local models' recipes.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tools import bench_data, samples  # noqa: E402

import lookalike  # noqa: E402
from lookalike.apps.embed_cache import EmbeddingCache  # noqa: E402
from lookalike.apps.evaluate import image_retrieval, text_retrieval_map  # noqa: E402
from lookalike.apps.labelled import LabelledSet, load_labelled  # noqa: E402
from lookalike.apps.splits import Split, SplitSettings, split_labelled  # noqa: E402

PARTS = ("train", "align", "distill", "evaluate")


# ----------------------------------------------------------------------------- data
def labelled_csv(args: argparse.Namespace) -> Path:
    """A CSV (path,label) of the labelled clip art, written once per settings."""
    classes = samples._clipart_classes()
    rows = []
    for label in sorted(classes):
        paths = sorted(classes[label])
        if len(paths) < args.min_class:
            continue
        rng = np.random.default_rng(abs(hash_label(label, args.seed)))
        chosen = sorted(rng.choice(len(paths), size=min(args.cap, len(paths)), replace=False))
        rows += [(str(paths[i]), label) for i in chosen]
    out = args.data / f"labelled-clipart-min{args.min_class}-cap{args.cap}-seed{args.seed}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label"])
            writer.writerows(rows)
    return out


def hash_label(label: str, seed: int) -> int:
    """A stable per-label seed (Python's own hash() is salted per process)."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(f"{seed}/{label}".encode(), digest_size=8).digest(), "little")


def query_text(label: str) -> str:
    """The text query naming a category: its last folder, in words (``food/meats_and_eggs`` -> ``meats and eggs``)."""
    return label.rsplit("/", 1)[-1].replace("_", " ").replace("-", " ")


def part(data: LabelledSet, idx: Sequence[int]) -> tuple[list[Path], list[str]]:
    """Paths and labels of the images at ``idx``."""
    return [data.images[i].path for i in idx], [data.images[i].label for i in idx]


def vectors_of(cache: EmbeddingCache, model: Any, data: LabelledSet, idx: Sequence[int]) -> np.ndarray:
    """The model's vectors of the images at ``idx`` (embedded once, then from the cache)."""
    return cache.embed(model, [(data.images[i].path, data.images[i].hash) for i in idx]).vectors


def scores_row(name: str, vectors: np.ndarray, labels: Sequence[str]) -> tuple[str, float, float, float]:
    s = image_retrieval(vectors, labels)
    return name, s.knn1, s.recall_at[5], s.map


def print_rows(title: str, rows: Sequence[tuple[str, float, float, float]], base: int = 0) -> None:
    print(f"\n{title}")
    print(f"  {'variant':<34} {'kNN@1':>7} {'R@5':>7} {'mAP':>7}   vs {rows[base][0]}")
    for name, knn, r5, m in rows:
        b = rows[base]
        print(f"  {name:<34} {knn:7.3f} {r5:7.3f} {m:7.3f}   kNN@1 {100 * (knn - b[1]):+5.1f} pts, "
              f"mAP {m / b[3]:.2f}x")


# ----------------------------------------------------------------------------- parts
def bench_train(args: argparse.Namespace, data: LabelledSet, split: Split, cache: EmbeddingCache) -> None:
    from lookalike.apps.train_head import train_head

    lite = lookalike.load_model("lite", device="cpu")
    for loss in ("supcon", "triplet"):
        out = args.work / f"head-{loss}"
        t0 = time.perf_counter()
        report = train_head(data, base=lite, out=out, loss=loss, seed=args.seed, split=split.settings, cache=cache)
        seconds = time.perf_counter() - t0
        for name, idx in (("held-out images of seen labels", split.test), ("held-out labels", split.unseen)):
            _, labels = part(data, idx)
            base = vectors_of(cache, lite, data, idx)
            head = _apply(out, base)
            print_rows(f"train --loss {loss} ({seconds:.1f} s, {len(split.train)} train / {len(split.val)} val "
                       f"images): {name}, {len(idx)} images, {len(set(labels))} labels",
                       [scores_row("lite", base, labels), scores_row(f"lite + {loss} head", head, labels)])
        print(f"  best epoch {report.best_epoch} of {report.epochs_run}; {report.in_dim} -> {report.out_dim}, "
              f"{report.arch}; embedded {report.embedded} new images")


def _apply(head_dir: Path, vectors: np.ndarray) -> np.ndarray:
    from lookalike.models.head import apply_head, load_head

    return apply_head(load_head(head_dir), vectors)


def bench_align(args: argparse.Namespace, data: LabelledSet, split: Split, cache: EmbeddingCache) -> None:
    from lookalike.apps.align import align_text

    fit = sorted(split.train + split.val)
    paths, _ = part(data, fit)
    coll_path = args.work / "align.lkl"
    coll = lookalike.Collection.create(coll_path, "lite", device="cpu")
    t0 = time.perf_counter()
    coll.add(paths)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = align_text(coll, from_filenames=True, out=args.work / "align-head", seed=args.seed)
    t_align = time.perf_counter() - t0
    print(f"\nalign --captions-from-filenames: {len(paths)} training images indexed in {t_index:.1f} s, "
          f"aligned in {t_align:.1f} s ({report.pairs} pairs); kept the {report.kept} head")
    for name in ("model", "ridge", "contrastive"):
        print(f"  align's own held-out caption -> image scores, {name}: {getattr(report, name)}")

    held = list(split.held_out)
    _, held_labels = part(data, held)
    lite = coll.model
    vectors = vectors_of(cache, lite, data, held)
    labels = sorted(set(held_labels))
    queries = [query_text(lab) for lab in labels]
    aligned = lookalike.load_model(f"lite+head:{args.work / 'align-head'}", device="cpu")
    bridge = text_retrieval_map(lite.encode_text(queries), labels, vectors, held_labels)
    ours = text_retrieval_map(aligned.encode_text(queries), labels, vectors, held_labels)
    chance = float(np.mean([held_labels.count(lab) / len(held_labels) for lab in labels]))
    print(f"  text -> image mAP, {len(labels)} category-name queries over {len(held)} held-out images:")
    print(f"    chance                      {chance:.3f}")
    print(f"    lite (ImageNet-class bridge) {bridge:.3f}")
    print(f"    lite + aligned text head     {ours:.3f}   {ours / bridge:.2f}x the bridge "
          f"({100 * (ours / bridge - 1):+.0f}%; target >= +50%)")
    coll.close()


def bench_distill(args: argparse.Namespace, data: LabelledSet, split: Split, cache: EmbeddingCache) -> None:
    from lookalike.apps.distill import distill

    fit = sorted(split.train + split.val)
    paths, _ = part(data, fit)
    out = args.work / "student"
    t0 = time.perf_counter()
    report = distill("lite:448", paths, student="lite", out=out, views=args.views, seed=args.seed, cache=cache)
    seconds = time.perf_counter() - t0
    print(f"\ndistill: teacher lite:448, student lite + head, {len(paths)} images, {args.views} augmented "
          f"views, {seconds:.1f} s (embedding {report.embed_seconds:.1f} s)")
    print(f"  kept the {report.arch} head (validation cosine by head: {report.val_cos_by_arch}); cosine to the "
          f"teacher on validation images {report.val_cos_before} -> {report.val_cos_after:.3f}")

    held = list(split.held_out)
    _, labels = part(data, held)
    teacher = lookalike.load_model("lite:448", device="cpu")
    student = lookalike.load_model("lite", device="cpu")
    distilled = lookalike.load_model(f"lite+head:{out}", device="cpu")
    rows = [scores_row("teacher lite:448", vectors_of(cache, teacher, data, held), labels),
            scores_row("student lite, no distillation", vectors_of(cache, student, data, held), labels),
            scores_row("student lite + distilled head", vectors_of(cache, distilled, data, held), labels)]
    print_rows(f"held-out images ({len(held)}, {len(set(labels))} labels)", rows)
    gap = rows[0][1] - rows[1][1]
    if gap > 0:  # only meaningful when the teacher is the better model
        print(f"  the distilled student closes {100 * (rows[2][1] - rows[1][1]) / gap:.0f}% of the kNN@1 gap")
    speed = [throughput(m, [data.images[i].path for i in held[: args.speed_images]]) for m in (teacher, distilled)]
    print(f"  speed over {min(len(held), args.speed_images)} images (runtime {teacher.runtime} / "
          f"{distilled.runtime}): teacher {speed[0]:.1f} img/s, student {speed[1]:.1f} img/s, "
          f"{speed[1] / speed[0]:.2f}x")


def throughput(model: Any, paths: Sequence[Path]) -> float:
    """Images a second, end to end (decode + preprocess + forward), after one warm-up batch."""
    model.encode_images(list(paths[:32]))
    t0 = time.perf_counter()
    model.encode_images(list(paths))
    return len(paths) / (time.perf_counter() - t0)


def bench_evaluate(args: argparse.Namespace) -> None:
    from support import save_tiny_clip, save_tiny_timm

    folder = bench_data.make_clipart_folder(args.data / "clipart-3000", n=3000)
    root = Path(os.path.commonpath([str(p) for p in folder]))
    # Labels are the top-level category folders; one of them ("buttons") holds a single image,
    # which evaluate rightly refuses, so the benchmark lists the others in a CSV.
    by_label: dict[str, list[Path]] = {}
    for p in folder:
        by_label.setdefault(p.relative_to(root).parts[0], []).append(p)
    listing = args.work / "clipart-3000.csv"
    with open(listing, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows((str(p), label) for label, ps in sorted(by_label.items()) if len(ps) > 1 for p in ps)
    dropped = {label: len(ps) for label, ps in by_label.items() if len(ps) < 2}
    tiny = [save_tiny_timm(args.work / "tiny-timm-a", seed=1), save_tiny_clip(args.work / "tiny-clip", seed=2),
            save_tiny_timm(args.work / "tiny-timm-b", seed=3)]
    models = ["lite", "histogram", f"timm:{tiny[0]}", f"openclip:{tiny[1]}"]
    cache = EmbeddingCache(args.work / "evaluate-cache")  # cold: the first run embeds everything
    t0 = time.perf_counter()
    report = lookalike.evaluate(listing, models, seed=args.seed, on="all", cache=cache)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = lookalike.evaluate(listing, [*models, f"timm:{tiny[2]}"], seed=args.seed, on="all", cache=cache)
    second = time.perf_counter() - t0
    print(f"\nevaluate on {root}: {len(folder)} images, labels = top-level folders, leaving out {dropped}")
    print(report)
    print(f"  first run, {len(models)} models, cold cache: {first:.1f} s")
    print(f"  re-run with one more model ({len(models) + 1} models): {second:.1f} s "
          f"({second / first:.2f}x the first run)")
    print(again)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", default="all", choices=[*PARTS, "all"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-class", type=int, default=20, help="smallest category kept")
    parser.add_argument("--cap", type=int, default=100, help="most images taken from one category")
    parser.add_argument("--views", type=int, default=2, help="distill: augmented views per image")
    parser.add_argument("--speed-images", type=int, default=300)
    parser.add_argument("--data", type=Path, default=samples.cache_dir() / "bench",
                        help="where the labelled CSV and the embedding cache are kept between runs")
    args = parser.parse_args()

    parts = PARTS if args.part == "all" else (args.part,)
    with tempfile.TemporaryDirectory(prefix="bench-adapt-") as work:
        args.work = Path(work)
        if set(parts) - {"evaluate"}:
            data = load_labelled(labelled_csv(args))
            split = split_labelled(data, SplitSettings(seed=args.seed))
            cache = EmbeddingCache(args.data / "adapt-embeddings")
            print(f"{len(data.images)} clip-art images in {len(data.labels)} categories; split seed {args.seed}: "
                  f"{len(split.train)} train, {len(split.val)} val, {len(split.test)} test, {len(split.unseen)} in "
                  f"{len(split.held_out_labels)} held-out labels ({', '.join(split.held_out_labels)})")
        for name in parts:
            t0 = time.perf_counter()
            if name == "evaluate":
                bench_evaluate(args)
            else:
                globals()[f"bench_{name}"](args, data, split, cache)
            print(f"[{name}: {time.perf_counter() - t0:.0f} s]")


if __name__ == "__main__":
    main()
