"""A 2-D map of the vectors: UMAP, t-SNE or PCA, fitted on at most a sample and extended to the rest.

How a map is made (``fit_layout``):

1. Up to :data:`FULL_FIT_LIMIT` rows (a seeded random sample above that) are the *fitted* rows.
2. A PCA fitted on them projects every vector to at most :data:`PCA_DIMS` (50) dimensions,
   the usual first step for UMAP and t-SNE: neighbour searches get ~10x cheaper and little
   structure is lost. Euclidean distance there tracks the cosine of unit vectors, so both
   methods use the euclidean metric on the projection.
3. UMAP (umap-learn, 15 neighbours, low_memory) or t-SNE (openTSNE, perplexity 30) lays the
   fitted rows out in 2-D. "pca" is just the first two components, for every row.
4. Every other row - and, later, every new item - is *placed* by the reducer: at the mean of the
   map positions of its 10 nearest fitted rows (in the projection), weighted by inverse squared
   distance, so a fitted row placed again lands on itself. The reducer is small plain numpy
   (PCA + fitted points + their coordinates, ~4 MiB at 20,000 x 50), pickles without umap,
   openTSNE or numba, and places thousands of points a second without any JIT warm-up.

Why placement and not ``UMAP.transform`` / ``TSNEEmbedding.transform``, and why 20,000 rows.
Measured with ``tests/explore/measure_layout.py`` on this project's 2-core build machine, which
other jobs shared: "quiet" runs saw a load of ~3, "busy" ones 5-9, and times roughly double
between them. Data: synthetic 512-d unit vectors, half in 20 themes x 10 subjects and half along
40 smooth curves. ``trust`` is ``sklearn.manifold.trustworthiness`` (10 neighbours, cosine) on
5,000 random rows; ``knn`` the overlap of 2,000 rows' 10 nearest neighbours among *all* rows
before and after mapping. Total is the whole ``fit_layout`` call in a fresh process.

=============================================  ==========================  =====  =====
100,000 rows                                   total (s)                   trust  knn
=============================================  ==========================  =====  =====
UMAP, all fitted (``--limit 100000``)          246 busy                    0.875  0.437
UMAP, 50k fitted + placement                   192 busy                    0.932  0.419
UMAP, 20k fitted + placement (default)         67 quiet, 184 busy          0.985  0.392
UMAP, 10k fitted + placement                   166 busy                    0.988  0.368
UMAP, 20k fitted + ``UMAP.transform``          202 busy (transform: 47)    0.965  0.245
UMAP, 20k, metric cosine (not euclidean)       184 busy                    0.980  0.392
UMAP, 20k, init pca (not spectral)             392 busy                    0.970  0.367
t-SNE, 20k fitted + placement (default)        101 quiet, 185 busy         0.992  0.437
=============================================  ==========================  =====  =====

1,000,000 rows, defaults: UMAP 120 s quiet (fit 55, placement 65), 183 s busy, trust 0.983
(knn 0.18: ten neighbours among a million are a finer scale than a map shows); t-SNE 232 s busy
(fit 97, placement 136); PCA 4 s. Peak memory of the 1M runs, data included: 6.3 GB.

A larger fit keeps slightly finer neighbourhoods (knn) but tears the overall picture apart
(trust falls as UMAP's 15 neighbours become a smaller share of the data), and costs more.
``UMAP.transform`` (~2,000-8,000 rows/s here) would fit the budget, but scored below
placement on both measures and would make the reducer a pickled UMAP (tens of MiB, numba JIT
on every load). openTSNE's ``transform`` is too slow (5,000 rows in 3-7 s, so ~15 min for
900,000) and its fitted embedding pickles at ~84 MB for 20,000 rows; t-SNE uses placement too.

The first UMAP fit in a process also pays numba's JIT compilation, ~20-30 s;
``import umap`` itself takes ~2.5 s. UMAP runs multi-threaded (``random_state=None``, since a
fixed random_state makes umap-learn single-threaded), so UMAP maps vary slightly between
runs; the sample and PCA are seeded, t-SNE and PCA maps repeat exactly.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import InvalidArgument, MissingExtra
from ..fsutil import atomic_writer
from ..progress import ProgressCallback, ProgressEvent
from ._arrays import CHUNK, as_matrix, chunks, sample_rows

__all__ = [
    "METHODS", "FULL_FIT_LIMIT", "PCA_DIMS", "MIN_POINTS", "LayoutInfo", "Reducer", "PcaReducer",
    "NeighbourReducer", "Projection", "fit_layout", "save_reducer", "load_reducer",
]

log = logging.getLogger("lookalike")

METHODS: tuple[str, ...] = ("umap", "tsne", "pca")

#: Rows fitted at most; above it a seeded random sample of this size is fitted and the rest placed
#: (module doc). Measured totals with it, 512-d, 2 cores, fresh process (JIT included): UMAP
#: 100,000 rows 67 s, 1,000,000 rows 120 s; t-SNE 100,000 rows 101 s (1M: 232 s on a busy machine).
FULL_FIT_LIMIT = 20_000

#: Dimensions of the PCA projection that UMAP, t-SNE and the placement work in.
PCA_DIMS = 50

#: UMAP and t-SNE need a neighbourhood to work with; with fewer (distinct) fitted rows the map is PCA.
MIN_POINTS = 32

#: Fitted neighbours a placed row is averaged over.
PLACE_NEIGHBOURS = 10

# Settings of the UMAP fit (module-level so the measuring script can compare alternatives).
UMAP_METRIC = "euclidean"
UMAP_INIT = "spectral"


@dataclass(frozen=True)
class LayoutInfo:
    """How a map was made: ``method`` actually used (``"pca"`` when UMAP/t-SNE had too few
    distinct rows), rows ``n``, rows ``fitted_on``, whether that was a ``sampled`` subset,
    wall ``seconds``, and the method ``requested``."""

    method: str
    n: int
    fitted_on: int
    sampled: bool
    seconds: float
    requested: str = ""


class Reducer(Protocol):
    """Places vectors on a fitted map: ``transform((m, d)) -> (m, 2) float32``."""

    method: str

    def transform(self, vectors: np.ndarray) -> np.ndarray: ...


@dataclass
class Projection:
    """A linear projection ``(x - mean) @ components.T``; mean (d,), components (k, d) float32."""

    mean: np.ndarray
    components: np.ndarray

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Project (m, d) vectors to (m, k) float32, a chunk at a time."""
        x = as_matrix(vectors)
        if len(x) and x.shape[1] != self.mean.shape[0]:
            raise InvalidArgument(f"vectors have {x.shape[1]} dimensions but the map was fitted on {self.mean.shape[0]}")
        out = np.empty((len(x), len(self.components)), dtype=np.float32)
        for start, block in chunks(x):
            out[start : start + len(block)] = (block - self.mean) @ self.components.T
        return out


@dataclass
class PcaReducer:
    """The "pca" map: the first two principal components (zero-padded when fewer exist)."""

    projection: Projection
    method: str = "pca"

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """(m, d) vectors -> (m, 2) float32 coordinates."""
        return self.projection.apply(vectors)


@dataclass
class NeighbourReducer:
    """UMAP and t-SNE maps: places vectors among the fitted rows (see the module doc).

    ``points`` (m, p) are the fitted rows in the projection and ``coords`` (m, 2) their map positions.
    """

    method: str
    projection: Projection
    points: np.ndarray
    coords: np.ndarray
    neighbours: int = PLACE_NEIGHBOURS

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """(m, d) vectors -> (m, 2) float32: inverse-squared-distance weighted mean position of
        their nearest fitted rows."""
        q = self.projection.apply(vectors)
        out = np.empty((len(q), 2), dtype=np.float32)
        if len(q) == 0:
            return out
        k = min(self.neighbours, len(self.points))
        search = _searcher(self.points)
        for start, block in chunks(q):
            d2, idx = search(np.ascontiguousarray(block), k)
            # 1e-6 keeps an exact match (d2 == 0) finite while letting it dominate its neighbours.
            w = 1.0 / (np.maximum(d2, 0.0) + 1e-6)
            w /= w.sum(axis=1, keepdims=True)
            out[start : start + len(block)] = np.einsum("qk,qkc->qc", w, self.coords[idx])
        return out


def _searcher(points: np.ndarray) -> Any:
    """``search(queries, k) -> (squared distances, indices)`` over ``points``: FAISS when
    installed (much faster for big batches), else numpy in blocks."""
    try:
        import faiss
    except ImportError:
        return lambda queries, k: _numpy_search(points, queries, k)
    index = faiss.IndexFlatL2(points.shape[1])
    index.add(np.ascontiguousarray(points, dtype=np.float32))
    return lambda queries, k: index.search(queries, k)


def _numpy_search(points: np.ndarray, queries: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    sq = np.einsum("ij,ij->i", points, points)
    d2 = np.empty((len(queries), k), dtype=np.float32)
    idx = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        q = queries[start : start + block]
        dist = sq[None, :] - 2.0 * (q @ points.T) + np.einsum("ij,ij->i", q, q)[:, None]
        part = np.argpartition(dist, k - 1, axis=1)[:, :k] if k < len(points) else np.tile(np.arange(len(points)), (len(q), 1))
        pd = np.take_along_axis(dist, part, axis=1)
        order = np.argsort(pd, axis=1, kind="stable")
        d2[start : start + len(q)] = np.take_along_axis(pd, order, axis=1)
        idx[start : start + len(q)] = np.take_along_axis(part, order, axis=1)
    return d2, idx


def _pca(x: np.ndarray, k: int) -> Projection:
    """PCA of ``x`` to ``k`` components (zero rows when fewer exist), via the d x d covariance
    (cheap for embedding widths, and fine on a memmap chunk by chunk)."""
    n, d = x.shape
    mean = x.mean(axis=0, dtype=np.float64) if n else np.zeros(d)
    cov = np.zeros((d, d), dtype=np.float64)
    for _, block in chunks(x):
        c = (block - mean).astype(np.float32)
        cov += c.T @ c
    w, v = np.linalg.eigh(cov)
    keep = np.argsort(w)[::-1][: min(k, d)]
    comps = v[:, keep].T * (w[keep] > 1e-12 * max(w.max(initial=0.0), 1e-30))[:, None]  # drop null directions
    # Fix each component's sign (largest coefficient positive) so maps repeat across BLAS builds.
    signs = np.sign(comps[np.arange(len(comps)), np.argmax(np.abs(comps), axis=1)]) if len(comps) else np.ones(0)
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    out = np.zeros((k, d), dtype=np.float32)
    out[: len(comps)] = comps
    return Projection(mean.astype(np.float32), out)


def fit_layout(
    vectors: np.ndarray,
    method: str = "umap",
    *,
    seed: int = 0,
    sample_limit: int | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, Reducer, LayoutInfo]:
    """Lay ``vectors`` (n, d) out in 2-D: ``(coords float32 (n, 2), reducer, info)``.

    ``method`` is one of :data:`METHODS`. At most ``sample_limit`` rows (default
    :data:`FULL_FIT_LIMIT`, read at call time) are fitted (a seeded random sample above that); the rest are placed with the reducer 65,536 rows at a time,
    each chunk reported as ``ProgressEvent("map", done, total)``. The reducer places new
    vectors later (:func:`save_reducer`). Never fails on degenerate input: no rows give (0, 2),
    one row [[0, 0]], and UMAP/t-SNE with under :data:`MIN_POINTS` distinct fitted rows (or
    failing on them) fall back to PCA, which ``info.method`` reports. Coordinates are finite.
    """
    started = time.perf_counter()
    if method not in METHODS:
        raise InvalidArgument(f"unknown map method {method!r}; choose one of {', '.join(METHODS)}")
    if sample_limit is None:
        sample_limit = FULL_FIT_LIMIT
    if sample_limit < 2:
        raise InvalidArgument(f"sample_limit must be at least 2 rows, got {sample_limit}")
    x = as_matrix(vectors)
    n = len(x)
    idx = sample_rows(n, sample_limit, seed)
    fitted = np.ascontiguousarray(x[idx])
    if progress is not None:
        progress(ProgressEvent("map", done=0, total=n, reason=f"fitting {method} on {len(idx)} points"))
    reducer, fitted_coords = _fit(fitted, method, seed)
    coords = np.empty((n, 2), dtype=np.float32)
    coords[idx] = fitted_coords
    rest = np.setdiff1d(np.arange(n), idx, assume_unique=True)
    done = len(idx)
    if progress is not None:
        progress(ProgressEvent("map", done=done, total=n, reason="placing the rest" if len(rest) else "fitted"))
    for start in range(0, len(rest), CHUNK):
        part = rest[start : start + CHUNK]
        coords[part] = reducer.transform(x[part])
        done += len(part)
        if progress is not None:
            progress(ProgressEvent("map", done=done, total=n, reason="placing the rest"))
    coords[~np.isfinite(coords)] = 0.0  # defensive: a map must never carry NaN to the renderers
    info = LayoutInfo(reducer.method, n, len(idx), n > len(idx), time.perf_counter() - started, method)
    return coords, reducer, info


def _fit(fitted: np.ndarray, method: str, seed: int) -> tuple[Reducer, np.ndarray]:
    """Fit ``method`` on ``fitted`` rows; PCA when the rows are too few or the method fails."""
    if method != "pca":
        projection = _pca(fitted, min(PCA_DIMS, fitted.shape[1]))
        points = projection.apply(fitted)
        if _distinct(points) >= MIN_POINTS:
            try:
                coords = _fit_umap(points) if method == "umap" else _fit_tsne(points, seed)
            except (ValueError, FloatingPointError, ZeroDivisionError) as exc:
                log.warning("%s map failed on %d points (%s); using PCA instead", method, len(points), exc)
            else:
                if np.isfinite(coords).all():
                    return NeighbourReducer(method, projection, points, coords), coords
                log.warning("%s map gave non-finite coordinates; using PCA instead", method)
    reducer = PcaReducer(_pca(fitted, 2))
    return reducer, reducer.transform(fitted)


def _distinct(points: np.ndarray) -> int:
    """Distinct rows (to 1e-6); duplicates give UMAP and t-SNE zero distances, not neighbourhoods."""
    return len(np.unique(np.round(points, 6), axis=0)) if len(points) else 0


def _fit_umap(points: np.ndarray) -> np.ndarray:
    try:
        import umap
    except ImportError as exc:
        raise MissingExtra("umap-learn", "explore", "The 'umap' map") from exc
    # random_state=None keeps umap-learn multi-threaded (a fixed seed forces one thread).
    model = umap.UMAP(
        n_neighbors=min(15, len(points) - 1), n_components=2, metric=UMAP_METRIC,
        low_memory=True, init=UMAP_INIT, n_jobs=-1, random_state=None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap-learn warns about disconnected graphs, n_jobs, numba
        return np.asarray(model.fit_transform(points), dtype=np.float32)


def _fit_tsne(points: np.ndarray, seed: int) -> np.ndarray:
    try:
        import openTSNE
    except ImportError as exc:
        raise MissingExtra("openTSNE", "explore", "The 'tsne' map") from exc
    # openTSNE needs n > 3 * perplexity; 30 is the usual value for anything of size.
    perplexity = float(min(30.0, (len(points) - 1) / 3.0))
    tsne = openTSNE.TSNE(
        n_components=2, perplexity=perplexity, metric="euclidean", initialization="pca",
        n_jobs=os.cpu_count() or 1, random_state=seed, verbose=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(tsne.fit(points), dtype=np.float32)


def save_reducer(reducer: Reducer, path: str | os.PathLike[str]) -> None:
    """Pickle ``reducer`` to ``path`` atomically (a reader never sees a half-written file)."""
    with atomic_writer(Path(path)) as f:
        pickle.dump(reducer, f, protocol=pickle.HIGHEST_PROTOCOL)


def load_reducer(path: str | os.PathLike[str]) -> Reducer:
    """The reducer saved at ``path``. Only load files lookalike wrote: this is a pickle.

    An unreadable file, or one holding something else, raises :class:`InvalidArgument`
    (rebuild the map to replace it); a missing one raises FileNotFoundError.
    """
    with open(path, "rb") as f:
        try:
            reducer = pickle.load(f)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"{path} is not a readable map reducer ({exc}); rebuild the map") from exc
    if not callable(getattr(reducer, "transform", None)) or getattr(reducer, "method", None) not in METHODS:
        raise InvalidArgument(f"{path} does not hold a map reducer; rebuild the map")
    return reducer
