"""Explore (issue 10): cluster quality and zero-shot labels on real clip art, map scale, the map UI.

Every figure comes with a baseline measured in the same run. Subcommands:

``quality`` (real images, model ``lite``)
    Two labelled sets of Debian's public-domain clip art (``tools/samples.py``), each indexed
    once into a cached ``lite`` collection under ``.cache/bench_explore/``:

    * **fine**: every image of the 81 fine-grained categories of :func:`samples._clipart_classes`
      (the categories bench_quality.py samples from: icon themes, bare shapes and the other
      near-identical sets are left out; flags, mammals and birds are one class each), 2,477
      images. Smaller than the issue's 3,000: there are no more fine-grained labelled images.
    * **coarse**: every usable clip-art file (:func:`samples.clipart_files`) labelled by its
      top-level folder (``animals``, ``computer``, ``shapes`` ...), leaving out ``unsorted``
      (no label) and ``special`` (backgrounds and layout examples): 6,626 images in 20
      categories, very unequal (``computer`` and ``shapes`` hold half of them).

    Per set: ``Collection.cluster()`` (k chosen automatically) with the chosen k and the
    silhouette scores printed next to the true number of categories; ``Collection.cluster(k=
    true k)``; ``Collection.cluster(method="hdbscan")``. Scores: NMI (arithmetic mean
    normalisation) and ARI (scikit-learn) against the true categories. For HDBSCAN the noise
    is one more group (so noise counts against it), and its share is printed. Baseline, same
    run, same algorithms on the same images: a colour-histogram embedding
    (``lookalike.apps.evaluate.colour_histogram``, 8x8x8 joint RGB, Hellinger, unit length)
    through ``explore.choose_k`` + ``explore.spherical_kmeans``, ``spherical_kmeans`` at the
    true k, and ``explore.hdbscan_clusters``. k-means depends on its seed, so the spread
    over 5 seeds of ``spherical_kmeans`` at the true k is printed for both embeddings too.

``zeroshot`` (real images, ``lite``)
    ``Collection.label(names)`` with every category's name (``samples.category_query``:
    ``food/meats_and_eggs`` -> "meats and eggs") and the library's default templates, on the
    fine set (78 distinct names for its 81 categories: ``games``, ``astronomy`` and ``toys``
    each name two folders, and predicting the word counts for either) and on the coarse set.
    Top-1 accuracy and the mean per-class accuracy against chance: 1 / categories (uniform
    guess; the per-class mean's chance) and the majority-class rate (always the largest
    category). Diagnostic row: the bare name as the only template.

``map`` (synthetic, this machine)
    Vectors: ``--sizes`` (100,000 and 1,000,000) x 512 float32, unit length, written once into
    a memory map under ``.cache/bench_explore/``. Recipe (:func:`structured_vectors`, seed 0):
    30 "topic" directions uniform on the sphere; 300 cluster centres, each its topic plus
    gaussian noise of norm 0.8, renormalised (so clusters of one topic are near each other);
    cluster weights proportional to 1 / (rank + 10) (the largest ~1.4 %, the smallest ~0.1 %
    of the rows); each row its centre plus noise of norm s_c (per cluster, log-uniform in
    [0.3, 1.0]) drawn with a decaying spectrum (standard deviation of component j
    proportional to (j + 1) ** -0.5, then one random rotation), renormalised. So: clusters of
    different sizes and spreads, grouped in topics, in a space of low effective dimension.

    Each method runs in a fresh process (``map-worker``), so that its peak memory is its own:
    reported are the process's peak resident memory (``VmHWM``: includes the input's pages
    read from the memory map, and Python, numpy, numba; not ``ru_maxrss``, which Linux
    carries over from the parent process) and the peak anonymous memory (``RssAnon`` sampled
    every 50 ms: the heap and arrays, not the memory-mapped input). Numba compiles UMAP's
    and pynndescent's code on first use in a process (~20-30 s): a warm-up (6,000 random
    rows, 5,000 of them fitted) runs first and its time is printed apart; the *seconds*
    column excludes it, and the targets are checked against seconds + warm-up (what a fresh
    ``lookalike map`` pays, and a little more: the warm-up's own small fit).

    Methods, all through ``lookalike.explore.fit_layout``: the library's default for
    ``"umap"`` and ``"tsne"`` (a full fit up to ``FULL_FIT_LIMIT`` rows; above it a fit on a
    seeded sample of that size, the rest *placed* by the reducer's ``transform``: the
    weighted mean position of its 10 nearest fitted rows; see explore/layout.py for why not
    ``UMAP.transform``); a full UMAP fit where the default samples (only at sizes <=
    ``--full-max``, 100,000); a fit on a quarter + placement where the default fits in
    full; PCA, the baseline. And ``Collection.map()`` end to end in a fresh process (open,
    read the vectors, fit, place, store the coordinates; JIT included, no warm-up) on a
    synthetic collection of the same vectors (``tools/synthetic_collection.py``; its
    manifest names a local random ResNet-18, 512-d: nothing is embedded).

    Trustworthiness (``sklearn.manifold.trustworthiness``, n_neighbors=10, euclidean on the
    unit vectors, i.e. cosine order) of each layout on the same random 5,000 rows: the input
    rows and their 2-D coordinates. 10 neighbours among 5,000 sampled rows are roughly the
    2,000 nearest of 1M, so this scores how well the map keeps neighbourhoods at the scale of
    clusters, not of single nearest neighbours.

``ui``
    ``run_ui_benchmark(points)`` from ``benchmarks/bench_explore_ui.py`` (headless Chromium,
    1,000,000 synthetic points), printed as it returns.

``all``: quality, zeroshot, ui and map at 100,000.

    python benchmarks/bench_explore.py quality [--sets fine,coarse] [--seed 0]
    python benchmarks/bench_explore.py zeroshot [--sets fine,coarse]
    python benchmarks/bench_explore.py map [--sizes 100000,1000000] [--full-max 100000] [--quick]
        [--methods umap,umap-full,umap-part,tsne,pca,collection]
    python benchmarks/bench_explore.py ui [--points 1000000]
    python benchmarks/bench_explore.py all
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_dupes import PeakMemory

CACHE = REPO / ".cache" / "bench_explore"
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


def command_line() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])


def load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


# ============================================================================ labelled sets
@dataclass
class LabelledSet:
    """Clip-art files with their true category."""

    name: str
    description: str
    paths: list[Path]
    labels: list[str]

    @property
    def categories(self) -> list[str]:
        return sorted(set(self.labels))


def fine_set() -> LabelledSet:
    """Every image of the fine-grained labelled categories (samples._clipart_classes)."""
    from tools import samples

    classes = samples._clipart_classes()
    paths = [p for ps in classes.values() for p in ps]
    labels = [label for label, ps in classes.items() for _ in ps]
    return LabelledSet("fine", f"every image of the {len(classes)} fine-grained labelled clip-art categories",
                       paths, labels)


COARSE_LEFT_OUT = ("unsorted", "special")


def coarse_set() -> LabelledSet:
    """Every usable clip-art file, labelled by its top-level folder (but unsorted and special)."""
    from tools import samples

    root = samples.clipart_root()
    paths, labels = [], []
    for p in samples.clipart_files():
        parts = p.relative_to(root).parts
        if len(parts) < 2 or parts[0] in COARSE_LEFT_OUT:
            continue
        paths.append(p)
        labels.append(parts[0])
    return LabelledSet("coarse", f"every usable clip-art file labelled by its top-level folder ({len(set(labels))} "
                       f"folders; {' and '.join(COARSE_LEFT_OUT)} left out)", paths, labels)


SETS: dict[str, Callable[[], LabelledSet]] = {"fine": fine_set, "coarse": coarse_set}


def indexed(ls: LabelledSet):
    """The set's lite collection (created once; later runs find every file unchanged)."""
    import lookalike

    CACHE.mkdir(parents=True, exist_ok=True)
    coll = lookalike.Collection.create(CACHE / f"{ls.name}.lkl", model="lite", exist_ok=True)
    t0 = time.perf_counter()
    report = coll.add([str(p) for p in ls.paths])
    log(f"{ls.name}: indexed in {time.perf_counter() - t0:.0f}s: {report}")
    return coll


@dataclass
class Aligned:
    """A set's searchable items in vector-row order: ids, lite vectors, true labels, paths."""

    ids: np.ndarray
    vectors: np.ndarray
    labels: np.ndarray  # str
    paths: list[str]
    failed: int


def aligned(coll, ls: LabelledSet) -> Aligned:
    label_of = {str(p): lab for p, lab in zip(ls.paths, ls.labels)}
    ids, vectors = coll.embeddings()
    path_of = {it.id: it.path for it in coll.items()}
    paths = [path_of[int(i)] for i in ids]
    missing = [p for p in paths if p not in label_of]
    if missing:
        raise SystemExit(f"{coll.path} holds items outside the {ls.name} set, e.g. {missing[0]}")
    return Aligned(ids, vectors, np.array([label_of[p] for p in paths]), paths, len(ls.paths) - len(ids))


def histograms(paths: Sequence[str]) -> np.ndarray:
    """colour_histogram of each path, cached per path in .cache/bench_explore/histograms.npz."""
    from lookalike.apps.evaluate import colour_histogram

    cache = CACHE / "histograms.npz"
    known: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache) as z:
            known = dict(zip(z["paths"].tolist(), z["hist"]))
    todo = [p for p in paths if p not in known]
    if todo:
        t0 = time.perf_counter()
        for start in range(0, len(todo), 500):
            chunk = todo[start:start + 500]
            known.update(zip(chunk, colour_histogram(chunk)))
            log(f"colour histograms: {start + len(chunk)}/{len(todo)}")
        log(f"colour histograms of {len(todo)} images in {time.perf_counter() - t0:.0f}s")
        CACHE.mkdir(parents=True, exist_ok=True)
        all_paths = sorted(known)
        np.savez(cache, paths=np.array(all_paths), hist=np.stack([known[p] for p in all_paths]))
    return np.stack([known[p] for p in paths]).astype(np.float32)


def run_prepare(args: argparse.Namespace) -> None:
    """Index the sets and compute their colour histograms (quality and zeroshot do it too)."""
    for name in args.sets.split(","):
        ls = SETS[name]()
        log(f"{name}: {len(ls.paths)} images in {len(ls.categories)} categories")
        coll = indexed(ls)
        al = aligned(coll, ls)
        histograms(al.paths)
        coll.close()


# ============================================================================ quality
def nmi_ari(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return float(normalized_mutual_info_score(truth, pred)), float(adjusted_rand_score(truth, pred))


def coll_assignment(coll, clustering, ids: np.ndarray) -> np.ndarray:
    """Each item's cluster id from ``cluster_members`` (-1: in no cluster, i.e. noise)."""
    pos = {int(i): k for k, i in enumerate(ids)}
    out = np.full(len(ids), -1, dtype=np.int64)
    for c in clustering.clusters:
        offset = 0
        while True:
            hits = coll.cluster_members(c.id, offset=offset, limit=1000)
            for h in hits:
                out[pos[h.id]] = c.id
            offset += len(hits)
            if len(hits) < 1000:
                break
    return out


def fmt_scores(scores: dict[int, float]) -> str:
    return ", ".join(f"{k}: {v:.3f}" for k, v in sorted(scores.items())) or "(none)"


@dataclass
class Row:
    embedding: str
    method: str
    k: int
    nmi: float
    ari: float
    seconds: float
    note: str = ""


def quality_rows(coll, al: Aligned, hist: np.ndarray, true_k: int, seed: int) -> tuple[list[tuple[Row, Row]], list[str]]:
    """(lite row, baseline row) per method, and lines of detail."""
    from lookalike.explore import choose_k, hdbscan_clusters, spherical_kmeans

    truth = al.labels
    pairs, notes = [], []

    t0 = time.perf_counter()
    auto = coll.cluster(refresh=True)
    t_auto = time.perf_counter() - t0
    lite = Row("lite", f"Collection.cluster() (k by {auto.k_chosen_by})", auto.k,
               *nmi_ari(truth, coll_assignment(coll, auto, al.ids)), t_auto)
    t0 = time.perf_counter()
    choice = choose_k(hist, seed=seed)
    base_auto = spherical_kmeans(hist, choice.k, seed=seed)
    base = Row("colour histogram", f"choose_k + spherical_kmeans (k by {choice.criterion})", choice.k,
               *nmi_ari(truth, base_auto.assignment), time.perf_counter() - t0)
    pairs.append((lite, base))
    notes.append(f"k chosen: lite {auto.k}, colour histogram {choice.k}; true number of categories {true_k}")
    notes.append(f"lite silhouette per k: {fmt_scores(auto.k_scores)}")
    notes.append(f"colour histogram silhouette per k (sample {choice.sample}): {fmt_scores(choice.scores)}")

    t0 = time.perf_counter()
    given = coll.cluster(k=true_k, refresh=True)
    lite = Row("lite", "Collection.cluster(k=true k)", given.k, *nmi_ari(truth, coll_assignment(coll, given, al.ids)),
               time.perf_counter() - t0)
    t0 = time.perf_counter()
    base_k = spherical_kmeans(hist, true_k, seed=seed)
    base = Row("colour histogram", "spherical_kmeans(k=true k)", true_k, *nmi_ari(truth, base_k.assignment),
               time.perf_counter() - t0)
    pairs.append((lite, base))

    t0 = time.perf_counter()
    dens = coll.cluster(method="hdbscan", refresh=True)
    t_dens = time.perf_counter() - t0
    a = coll_assignment(coll, dens, al.ids)
    lite = Row("lite", 'Collection.cluster(method="hdbscan")', dens.k, *nmi_ari(truth, a), t_dens,
               f"noise {np.mean(a < 0):.1%}")
    t0 = time.perf_counter()
    b, _ = hdbscan_clusters(hist, seed=seed)
    t_b = time.perf_counter() - t0
    base = Row("colour histogram", "hdbscan_clusters", len(set(b.tolist()) - {-1}), *nmi_ari(truth, b), t_b,
               f"noise {np.mean(b < 0):.1%}")
    pairs.append((lite, base))
    if (a >= 0).any():
        notes.append("HDBSCAN on its clustered items only (noise left out): lite NMI "
                     f"{nmi_ari(truth[a >= 0], a[a >= 0])[0]:.3f} on {np.mean(a >= 0):.1%} of the items; colour "
                     f"histogram NMI {nmi_ari(truth[b >= 0], b[b >= 0])[0]:.3f} on {np.mean(b >= 0):.1%}")

    for name, x in (("lite", al.vectors), ("colour histogram", hist)):
        runs = np.array([nmi_ari(truth, spherical_kmeans(x, true_k, seed=s).assignment) for s in range(5)])
        notes.append(f"{name}, spherical_kmeans at k={true_k} over seeds 0-4: NMI {runs[:, 0].mean():.3f} +- "
                     f"{runs[:, 0].std():.3f}, ARI {runs[:, 1].mean():.3f} +- {runs[:, 1].std():.3f}")
    return pairs, notes


def ratio(a: float, b: float) -> str:
    return f"x{a / b:.2f}" if b > 0 else "n/a"


def run_quality(args: argparse.Namespace) -> None:
    print(f"\n$ {command_line()}")
    for name in args.sets.split(","):
        ls = SETS[name]()
        load = load_average()
        coll = indexed(ls)
        al = aligned(coll, ls)
        hist = histograms(al.paths)
        true_k = len(ls.categories)
        sizes = Counter(al.labels.tolist())
        pairs, notes = quality_rows(coll, al, hist, true_k, args.seed)
        print(f"\ncluster quality, {name} set: {ls.description}: {len(al.ids)} images ({al.failed} failed to "
              f"embed), {true_k} true categories (sizes {min(sizes.values())}-{max(sizes.values())}, largest "
              f"{max(sizes.values()) / len(al.ids):.1%}) | lite | load average at start {load} | cores {os.cpu_count()}")
        print("| embedding | method | k | NMI | ARI | NMI / baseline | ARI / baseline | seconds | note |")
        print("|---|---|---|---|---|---|---|---|---|")
        for lite, base in pairs:
            for r in (lite, base):
                is_lite = r is lite
                print(f"| {r.embedding}{'' if is_lite else ' (baseline)'} | {r.method} | {r.k} | {r.nmi:.3f} | "
                      f"{r.ari:.3f} | {ratio(lite.nmi, base.nmi) if is_lite else '1'} | "
                      f"{ratio(lite.ari, base.ari) if is_lite else '1'} | {r.seconds:.1f} | {r.note} |")
        for line in notes:
            print(line)
        coll.close()
    print(f"elapsed {time.perf_counter() - T0:.0f}s; load average at the end {load_average()}")


# ============================================================================ zeroshot
def top1(coll, ids: np.ndarray) -> list[str | None]:
    labels = coll.item_labels([int(i) for i in ids])
    return [max(labels[int(i)], key=lambda ls: ls[1])[0] if labels.get(int(i)) else None for i in ids]


def accuracy(pred: Sequence[str | None], truth: Sequence[str]) -> tuple[float, float]:
    """(top-1 accuracy, mean per-class accuracy)."""
    hit = np.array([p == t for p, t in zip(pred, truth)])
    truth_a = np.array(truth)
    per_class = [hit[truth_a == c].mean() for c in sorted(set(truth))]
    return float(hit.mean()), float(np.mean(per_class))


def run_zeroshot(args: argparse.Namespace) -> None:
    from tools import samples

    print(f"\n$ {command_line()}")
    for name in args.sets.split(","):
        ls = SETS[name]()
        load = load_average()
        coll = indexed(ls)
        al = aligned(coll, ls)
        word_of = {lab: samples.category_query(lab) for lab in ls.categories}
        names = sorted(set(word_of.values()))
        truth = [word_of[lab] for lab in al.labels.tolist()]
        t0 = time.perf_counter()
        coll.label(names, templates=["{}"])
        t_bare = time.perf_counter() - t0
        bare = accuracy(top1(coll, al.ids), truth)
        t0 = time.perf_counter()
        labelling = coll.label(names)  # the default templates last: this is the labelling left stored
        t_default = time.perf_counter() - t0
        pred = top1(coll, al.ids)
        acc, per_class = accuracy(pred, truth)
        counts = Counter(truth)
        majority = max(counts.values()) / len(truth)
        uniform = 1 / len(names)
        print(f"\nzero-shot labels, {name} set: {len(al.ids)} images, {len(ls.categories)} categories, {len(names)} "
              f"distinct names | lite | templates {labelling.templates} | load average at start {load}")
        print("| labeller | top-1 accuracy | / uniform chance | / majority rate | mean per-class accuracy "
              "| / uniform chance | seconds |")
        print("|---|---|---|---|---|---|---|")
        print(f"| lite, Collection.label(names) (default templates) | {acc:.3f} | {ratio(acc, uniform)} | "
              f"{ratio(acc, majority)} | {per_class:.3f} | {ratio(per_class, uniform)} | {t_default:.1f} |")
        print(f"| (diagnostic) lite, bare name as the only template | {bare[0]:.3f} | {ratio(bare[0], uniform)} | "
              f"{ratio(bare[0], majority)} | {bare[1]:.3f} | {ratio(bare[1], uniform)} | {t_bare:.1f} |")
        print(f"| chance: uniform guess over the names | {uniform:.3f} | x1 | | {uniform:.3f} | x1 | |")
        top = counts.most_common(1)[0][0]
        print(f"| chance: always the largest category ({top!r}) | {majority:.3f} | {ratio(majority, uniform)} | x1 | "
              f"{1 / len(counts):.3f} | | |")
        given = Counter(p for p in pred if p is not None)
        print("most given labels: " + ", ".join(f"{w} {c}" for w, c in given.most_common(5))
              + f"; {len(given)} of {len(names)} names given at least once; {sum(p is None for p in pred)} unlabelled")
        coll.close()
    print(f"elapsed {time.perf_counter() - T0:.0f}s; load average at the end {load_average()}")


# ============================================================================ map
def structured_vectors(path: Path, n: int, dim: int = 512, seed: int = 0, topics: int = 30, clusters: int = 300,
                       chunk: int = 50_000) -> np.ndarray:
    """The recipe of the module docstring, written into a float32 memory map at ``path`` once."""
    if path.exists():
        return np.load(path, mmap_mode="r")
    rng = np.random.default_rng(seed)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    topic = unit(rng.standard_normal((topics, dim)))
    centres = unit(topic[rng.integers(0, topics, clusters)] + 0.8 * unit(rng.standard_normal((clusters, dim))))
    weights = 1.0 / (np.arange(clusters) + 10.0)
    weights /= weights.sum()
    spread = np.exp(rng.uniform(np.log(0.3), np.log(1.0), clusters))
    spectrum = (np.arange(dim) + 1.0) ** -0.5
    spectrum /= np.linalg.norm(spectrum)  # a standard normal draw times this has norm ~1
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        c = rng.choice(clusters, m, p=weights)
        noise = (rng.standard_normal((m, dim)) * spectrum) @ rotation.T
        out[start:start + m] = unit(centres[c] + spread[c, None] * noise).astype(np.float32)
    out.flush()
    del out
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


def random_model_512() -> str:
    """A local timm ResNet-18 with random weights (512-d): a 512-d collection's manifest needs a model."""
    folder = CACHE / "resnet18-random"
    if not (folder / "model.safetensors").exists():
        import timm
        import torch
        from safetensors.torch import save_file

        torch.manual_seed(0)
        net = timm.create_model("resnet18", pretrained=False, num_classes=0)
        folder.mkdir(parents=True, exist_ok=True)
        cfg = {"input_size": [3, 64, 64], "mean": [0.5] * 3, "std": [0.25] * 3, "crop_pct": 1.0,
               "interpolation": "bilinear", "crop_mode": "center", "num_classes": 0}
        (folder / "config.json").write_text(json.dumps({"architecture": "resnet18", "num_classes": 0,
                                                        "num_features": 512, "pretrained_cfg": cfg}))
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    return f"timm:{folder}"


def worker(cmd: list[str]) -> dict:
    """Run ``bench_explore.py <cmd>`` in a fresh process; its last stdout line is a JSON result
    (``{"error": ...}`` when it failed)."""
    full = [sys.executable, str(Path(__file__).resolve()), *cmd]
    proc = subprocess.run(full, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        log(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def warm_up_umap(seed: int) -> float:
    """Map 6,000 random rows, 5,000 of them fitted: numba compiles UMAP's code and
    pynndescent's (UMAP searches neighbours exactly below 4,096 rows, so a smaller warm-up
    would leave NN-descent to compile inside the timed run)."""
    from lookalike.explore import fit_layout

    x = np.random.default_rng(seed).standard_normal((6000, 512)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t0 = time.perf_counter()
    fit_layout(x, "umap", seed=seed, sample_limit=5000)
    return time.perf_counter() - t0


def run_map_worker(args: argparse.Namespace) -> None:
    """One layout of the vectors at ``--vectors``, timed in this (fresh) process."""
    from lookalike.explore import fit_layout

    x = np.load(args.vectors, mmap_mode="r")
    warm = warm_up_umap(args.seed) if args.method == "umap" else 0.0
    limit = {} if args.sample_limit is None else {"sample_limit": args.sample_limit}
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        xy, _, info = fit_layout(x, args.method, seed=args.seed, **limit)
        took = time.perf_counter() - t0
    np.save(args.out, np.asarray(xy, dtype=np.float32))
    print(json.dumps({"seconds": took, "warm": warm, "anon": mem.peak, "maxrss": maxrss(),
                      "fitted_on": int(info.fitted_on), "sampled": bool(info.sampled)}))


def maxrss() -> int:
    """This process's peak resident memory (VmHWM). Not ``ru_maxrss``: Linux carries that over
    from the parent across fork and exec, so a worker would report the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_map_collection(args: argparse.Namespace) -> None:
    """``Collection.map()`` on the collection at ``--path``, end to end, in this (fresh) process."""
    t0 = time.perf_counter()
    import lookalike

    with PeakMemory() as mem:
        coll = lookalike.Collection.open(args.path)
        points = coll.map(method="umap")
        took = time.perf_counter() - t0
    row_of = {it.id: int(Path(it.path).stem) for it in coll.items()}
    rows = np.array([row_of[int(i)] for i in points.ids], dtype=np.int64)
    xy = np.zeros((len(row_of), 2), dtype=np.float32)
    xy[rows] = points.xy
    np.save(args.out, xy)
    print(json.dumps({"seconds": took, "warm": 0.0, "anon": mem.peak, "maxrss": maxrss(),
                      "fitted_on": int(points.fitted_on), "sampled": bool(points.sampled), "placed": points.placed}))


def trust(x: np.ndarray, xy: np.ndarray, sample: np.ndarray, k: int) -> float:
    from sklearn.manifold import trustworthiness

    return float(trustworthiness(np.asarray(x[sample], dtype=np.float32), xy[sample], n_neighbors=k))


MAP_KEYS = ("umap", "umap-full", "umap-part", "tsne", "pca", "collection")


def map_methods(n: int, full_limit: int, full_max: int) -> list[tuple[str, str, list[str]]]:
    """(key, row name, worker arguments) of each layout at size n."""
    rows: list[tuple[str, str, list[str]]] = []
    if n > full_limit:
        rows.append(("umap", f"UMAP, library default: fit on a sample of {full_limit:,}, the rest placed",
                     ["--method", "umap"]))
        if n <= full_max:
            rows.append(("umap-full", f"UMAP, full fit on all {n:,}", ["--method", "umap", "--sample-limit", str(n)]))
        rows.append(("tsne", f"t-SNE (openTSNE), library default: fit on {full_limit:,}, the rest placed",
                     ["--method", "tsne"]))
        rows.append(("pca", f"PCA (baseline), fitted on {full_limit:,}, the rest projected", ["--method", "pca"]))
    else:
        rows.append(("umap", "UMAP, library default: full fit", ["--method", "umap"]))
        rows.append(("umap-part", f"UMAP, fit on a sample of {n // 4:,}, the rest placed",
                     ["--method", "umap", "--sample-limit", str(n // 4)]))
        rows.append(("tsne", "t-SNE (openTSNE), library default: full fit", ["--method", "tsne"]))
        rows.append(("pca", "PCA (baseline)", ["--method", "pca"]))
    return rows


def run_map(args: argparse.Namespace) -> None:
    from lookalike.explore.layout import FULL_FIT_LIMIT
    from tools.synthetic_collection import write_synthetic_collection

    print(f"\n$ {command_line()}")
    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    keys = set(args.methods.split(","))
    if keys - set(MAP_KEYS):
        raise SystemExit(f"--methods: unknown {sorted(keys - set(MAP_KEYS))}; choose from {', '.join(MAP_KEYS)}")
    model = random_model_512()
    for n in sizes:
        x = structured_vectors(CACHE / f"structured-{n}x512-s{args.seed}.npy", n, seed=args.seed)
        sample = np.sort(np.random.default_rng([args.seed, 1]).choice(n, min(5000, n), replace=False))
        load = load_average()
        results = []
        t_write = None
        with tempfile.TemporaryDirectory(dir=CACHE, prefix="map-") as tmp:
            out = Path(tmp) / "xy.npy"
            for key, name, extra in map_methods(n, FULL_FIT_LIMIT, args.full_max):
                if key not in keys:
                    continue
                log(f"{n}: {name} ...")
                r = worker(["map-worker", "--vectors", str(x.filename), "--out", str(out), "--seed", str(args.seed),
                            *extra])
                if "error" not in r:
                    r["trust"] = trust(x, np.load(out), sample, args.neighbours)
                results.append((name, r))
                log(f"{n}: {name}: {r}")
            if "collection" in keys:
                t0 = time.perf_counter()
                write_synthetic_collection(Path(tmp) / "c.lkl", x, model=model).close()
                t_write = time.perf_counter() - t0
                log(f"{n}: synthetic collection written in {t_write:.0f}s")
                r = worker(["map-collection", "--path", str(Path(tmp) / "c.lkl"), "--out", str(out)])
                if "error" not in r:
                    r["trust"] = trust(x, np.load(out), sample, args.neighbours)
                results.append((("Collection.map() end to end (fresh process: open, read, fit, place, store; JIT "
                                "included)"), r))
                log(f"{n}: Collection.map(): {r}")
        print_map(n, results, load, t_write, args)
    print(f"elapsed {time.perf_counter() - T0:.0f}s; load average at the end {load_average()}")


def print_map(n: int, results: list[tuple[str, dict]], load: str, t_write: float | None,
              args: argparse.Namespace) -> None:
    target = {100_000: 180, 1_000_000: 1200}.get(n)
    pca = next((r for name, r in results if name.startswith("PCA") and "error" not in r), None)
    print(f"\nmap scale: {n:,} x 512 float32 (synthetic, structured: 300 clusters in 30 topics, memory-mapped) | "
          f"trustworthiness n_neighbors={args.neighbours} on the same {min(5000, n):,} random rows | cores "
          f"{os.cpu_count()} | load average at start {load}, at the end {load_average()}")
    print("| method | fitted on | seconds (JIT excluded) | numba warm-up s | peak RSS GiB | peak anon GiB "
          "| trustworthiness | / PCA |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results:
        if "error" in r:
            print(f"| {name} | failed: {r['error']} | | | | | | |")
            continue
        print(f"| {name} | {r['fitted_on']:,}{' (sampled)' if r['sampled'] else ''} | {r['seconds']:.1f} | "
              f"{r['warm']:.1f} | {r['maxrss'] / 2**30:.2f} | {r['anon'] / 2**30:.2f} | {r['trust']:.3f} | "
              f"{ratio(r['trust'], pca['trust']) if pca else 'n/a'} |")
    if t_write is not None:
        print(f"(the synthetic collection was written in {t_write:.0f}s, not counted)")
    for name, r in results:
        if name.startswith("PCA") or target is None or "error" in r:
            continue
        total = r["seconds"] + r["warm"]
        print(f"target <= {target // 60} min at {n:,}, {name}: {'PASS' if total <= target else 'MISSED'} "
              f"({total / 60:.2f} min{' incl. the warm-up' if r['warm'] else ''})")


# ============================================================================ ui
def run_ui(args: argparse.Namespace) -> None:
    print(f"\n$ {command_line()}")
    try:
        import bench_explore_ui as ui
    except ImportError as exc:
        print(f"ui: benchmarks/bench_explore_ui.py is not there or does not import ({exc}); nothing measured")
        return
    load = load_average()
    result = ui.run_ui_benchmark(points=args.points)
    print(f"\nmap UI, {args.points:,} synthetic points, headless Chromium (software rendering: no GPU here) | "
          f"load average at start {load}, at the end {load_average()}")
    for key, value in result.items():
        print(f"{key}: {value}")
    first, pan = result.get("first_render_ms"), result.get("pan_p50_ms")
    if first is not None:
        print(f"target first render <= {ui.TARGET_FIRST_RENDER_MS} ms: "
              f"{'PASS' if first <= ui.TARGET_FIRST_RENDER_MS else 'MISSED'} ({first} ms)")
    if pan is not None:
        print(f"target pan frame time p50 <= {ui.TARGET_PAN_P50_MS} ms: "
              f"{'PASS' if pan <= ui.TARGET_PAN_P50_MS else 'MISSED'} ({pan} ms)")


def run_all(args: argparse.Namespace) -> None:
    run_quality(args)
    run_zeroshot(args)
    run_ui(args)
    args.sizes, args.quick = "100000", False
    run_map(args)


# ============================================================================ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="index the labelled sets and compute their colour histograms")
    p.add_argument("--sets", default="fine,coarse")
    q = sub.add_parser("quality", help="cluster quality on labelled clip art, against colour histograms")
    z = sub.add_parser("zeroshot", help="zero-shot label accuracy on labelled clip art, against chance")
    m = sub.add_parser("map", help="map time, memory and trustworthiness on synthetic 512-d vectors")
    u = sub.add_parser("ui", help="the map page with 1M points in headless Chromium")
    a = sub.add_parser("all", help="quality, zeroshot, ui and map at 100,000")
    for s in (q, z, a):
        s.add_argument("--sets", default="fine,coarse")
        s.add_argument("--seed", type=int, default=0)
    for s in (m, a):
        s.add_argument("--sizes", default="100000,1000000")
        s.add_argument("--full-max", type=int, default=100_000, help="largest size for a full UMAP fit")
        s.add_argument("--quick", action="store_true", help="one size, 20,000 (a smoke run)")
        s.add_argument("--neighbours", type=int, default=10, help="trustworthiness n_neighbors")
        s.add_argument("--methods", default=",".join(MAP_KEYS), help="which rows to run (comma-separated)")
    m.add_argument("--seed", type=int, default=0)
    for s in (u, a):
        s.add_argument("--points", type=int, default=1_000_000)
    w = sub.add_parser("map-worker", help=argparse.SUPPRESS)
    w.add_argument("--vectors", type=Path, required=True)
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--method", required=True)
    w.add_argument("--sample-limit", type=int, default=None)
    w.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("map-collection", help=argparse.SUPPRESS)
    c.add_argument("--path", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    {"prepare": run_prepare, "quality": run_quality, "zeroshot": run_zeroshot, "map": run_map, "ui": run_ui,
     "all": run_all, "map-worker": run_map_worker, "map-collection": run_map_collection}[args.cmd](args)


if __name__ == "__main__":
    main()
