"""Measure map making: wall time and quality of ``fit_layout`` on synthetic 512-d embeddings.

Run in a fresh process per setting, so numba's JIT (UMAP) is counted as a user would pay it::

    .venv/bin/python tests/explore/measure_layout.py --n 100000 --method umap
    .venv/bin/python tests/explore/measure_layout.py --n 1000000 --method umap --no-quality
    .venv/bin/python tests/explore/measure_layout.py --n 100000 --placement umap-transform

Prints one line: total seconds (fit_layout call, imports and JIT included), fit and placement
seconds, ``trust`` (sklearn trustworthiness, 10 neighbours, cosine, 5,000 random rows) and
``knn`` (overlap of 2,000 rows' 10 nearest neighbours among all rows, before and after).
Data: ``explore_data.mixed`` (half nested clusters, half smooth curves). Not a test: the figures
depend on the machine; the results are recorded in lookalike/explore/layout.py's docstring.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from explore_data import mixed
from lookalike.progress import ProgressEvent


def knn_overlap(x: np.ndarray, y: np.ndarray, queries: int = 2000, k: int = 10) -> float:
    import faiss

    q = np.random.default_rng(2).choice(len(x), queries, replace=False)
    high = faiss.IndexFlatIP(x.shape[1])
    high.add(x)
    _, a = high.search(x[q], k + 1)
    low = faiss.IndexFlatL2(2)
    low.add(np.ascontiguousarray(y))
    _, b = low.search(np.ascontiguousarray(y[q]), k + 1)
    return float(np.mean([len(set(a[i, 1:]) & set(b[i, 1:])) / k for i in range(queries)]))


def umap_transform_layout(x: np.ndarray, limit: int) -> tuple[np.ndarray, float]:
    """The alternative to neighbour placement: umap-learn's own transform for the rest."""
    import umap

    from lookalike.explore import layout
    from lookalike.explore._arrays import sample_rows

    idx = sample_rows(len(x), limit, 0)
    projection = layout._pca(x[idx], layout.PCA_DIMS)
    model = umap.UMAP(n_neighbors=15, metric=layout.UMAP_METRIC, low_memory=True, init=layout.UMAP_INIT, n_jobs=-1)
    y = np.empty((len(x), 2), dtype=np.float32)
    y[idx] = model.fit_transform(projection.apply(x[idx]))
    fitted = time.perf_counter()
    rest = np.setdiff1d(np.arange(len(x)), idx)
    for start in range(0, len(rest), 65536):
        part = rest[start : start + 65536]
        y[part] = model.transform(projection.apply(x[part]))
    return y, fitted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--method", default="umap")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--placement", default="neighbours", choices=["neighbours", "umap-transform"])
    ap.add_argument("--umap-metric", default=None)
    ap.add_argument("--umap-init", default=None)
    ap.add_argument("--no-quality", action="store_true")
    args = ap.parse_args()
    x = mixed(args.n)
    from lookalike.explore import layout

    layout.UMAP_METRIC = args.umap_metric or layout.UMAP_METRIC
    layout.UMAP_INIT = args.umap_init or layout.UMAP_INIT
    limit = args.limit or layout.FULL_FIT_LIMIT
    marks: dict[str, float] = {}

    def progress(event: ProgressEvent) -> None:
        if "fit" not in marks and event.done > 0:  # the first report after the fit: placing begins
            marks["fit"] = time.perf_counter()

    started = time.perf_counter()
    if args.placement == "umap-transform":
        y, marks["fit"] = umap_transform_layout(x, limit)
    else:
        y, _, info = layout.fit_layout(x, args.method, sample_limit=limit, progress=progress)
    total = time.perf_counter() - started
    fit = marks.get("fit", time.perf_counter()) - started
    line = (f"n={args.n} method={args.method} limit={limit} placement={args.placement} "
            f"metric={layout.UMAP_METRIC} init={layout.UMAP_INIT} total={total:.1f}s fit={fit:.1f}s place={total - fit:.1f}s")
    if not args.no_quality:
        from sklearn.manifold import trustworthiness

        ev = np.random.default_rng(1).choice(args.n, min(5000, args.n), replace=False)
        trust = trustworthiness(x[ev], y[ev], n_neighbors=10, metric="cosine")
        line += f" trust={trust:.4f} knn={knn_overlap(x, y):.4f}"
    sys.stdout.write(line + "\n")


if __name__ == "__main__":
    main()
