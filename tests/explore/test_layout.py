"""2-D maps: structure kept, reducers place points where the fit put them, sample path, edges."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from explore_data import planted
from lookalike.errors import InvalidArgument
from lookalike.explore import FULL_FIT_LIMIT, METHODS, fit_layout, load_reducer, save_reducer
from lookalike.explore import layout
from lookalike.progress import ProgressEvent


def _neighbour_purity(xy: np.ndarray, truth: np.ndarray, k: int = 5) -> float:
    """Share of each point's k nearest map neighbours that come from its planted cluster."""
    d = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :k]
    return float((truth[nn] == truth[:, None]).mean())


def _check_coords(xy: np.ndarray, n: int) -> None:
    assert xy.shape == (n, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()


@pytest.fixture(scope="module")
def clusters() -> tuple[np.ndarray, np.ndarray]:
    return planted(400, 5, d=96, seed=11)


@pytest.fixture(scope="module")
def umap_map(clusters: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, layout.Reducer, layout.LayoutInfo]:
    pytest.importorskip("umap")
    return fit_layout(clusters[0], "umap")  # the first UMAP fit in a process JIT-compiles: ~20 s


@pytest.mark.parametrize("method", ["umap", "tsne", "pca"])
def test_maps_keep_clusters_apart(method: str, clusters, umap_map) -> None:
    x, truth = clusters
    if method == "umap":
        xy, reducer, info = umap_map
    else:
        pytest.importorskip("openTSNE") if method == "tsne" else None
        xy, reducer, info = fit_layout(x, method)
    _check_coords(xy, len(x))
    assert (info.method, info.requested, info.n, info.fitted_on, info.sampled) == (method, method, 400, 400, False)
    assert reducer.method == method and info.seconds > 0
    assert _neighbour_purity(xy, truth) > 0.95


@pytest.mark.parametrize("method", ["umap", "tsne", "pca"])
def test_reducer_round_trip_places_points_where_they_were(method: str, clusters, umap_map, tmp_path: Path) -> None:
    x, truth = clusters
    if method == "umap":
        xy, reducer, _ = umap_map
    else:
        pytest.importorskip("openTSNE") if method == "tsne" else None
        xy, reducer, _ = fit_layout(x, method)
    path = tmp_path / "map.reducer"
    save_reducer(reducer, path)
    assert path.stat().st_size < 400 * 60 * 4 + 100_000  # PCA + fitted points in 50-d + coordinates
    loaded = load_reducer(path)
    assert loaded.method == method
    again = loaded.transform(x)
    _check_coords(again, len(x))
    extent = np.ptp(xy, axis=0).max()
    assert np.abs(again - xy).max() < 1e-3 * extent  # a fitted point is placed on itself
    # New points from the same clusters land among their own cluster's points.
    fresh, fresh_truth = planted(400, 5, d=96, seed=11)  # same centres...
    rng = np.random.default_rng(5)
    fresh = fresh + 0.05 * rng.standard_normal(fresh.shape).astype(np.float32)  # ...new points
    placed = loaded.transform(fresh)
    nearest = np.argmin(((placed[:, None, :] - xy[None, :, :]) ** 2).sum(-1), axis=1)
    assert (truth[nearest] == fresh_truth).mean() > 0.95


@pytest.mark.parametrize("method", ["umap", "pca"])
def test_sample_fit_above_the_limit(method: str, monkeypatch: pytest.MonkeyPatch, umap_map) -> None:
    x, truth = planted(900, 4, d=64, seed=12)
    monkeypatch.setattr(layout, "FULL_FIT_LIMIT", 300)
    events: list[ProgressEvent] = []
    xy, reducer, info = fit_layout(x, method, progress=events.append)
    _check_coords(xy, 900)
    assert (info.method, info.n, info.fitted_on, info.sampled) == (method, 900, 300, True)
    assert {e.kind for e in events} == {"map"} and all(e.total == 900 for e in events)
    done = [e.done for e in events]
    assert done[0] == 0 and done == sorted(done) and done[-1] == 900
    assert _neighbour_purity(xy, truth) > 0.95  # placed rows sit with their clusters


def test_sample_limit_argument(umap_map) -> None:
    x, _ = planted(200, 3, d=32, seed=13)
    xy, _, info = fit_layout(x, "pca", sample_limit=50, seed=4)
    assert info.fitted_on == 50 and info.sampled
    xy2, _, _ = fit_layout(x, "pca", sample_limit=50, seed=4)
    np.testing.assert_array_equal(xy, xy2)  # the sample is seeded
    assert FULL_FIT_LIMIT >= 10_000


@pytest.mark.parametrize("method", METHODS)
def test_tiny_inputs(method: str) -> None:
    xy, reducer, info = fit_layout(np.zeros((0, 8), dtype=np.float32), method)
    assert xy.shape == (0, 2) and xy.dtype == np.float32 and info.n == 0
    assert reducer.transform(np.ones((2, 8), dtype=np.float32)).shape == (2, 2)
    x, _ = planted(20, 2, d=8)
    xy, _, _ = fit_layout(x[:1], method)
    assert xy.tolist() == [[0.0, 0.0]]
    for n in (2, 3, 10):
        xy, reducer, info = fit_layout(x[:n], method)
        _check_coords(xy, n)
        assert info.method == "pca" and info.requested == method  # too few for UMAP / t-SNE
        assert len({tuple(p) for p in xy.tolist()}) == n  # distinct points stay distinct


@pytest.mark.parametrize("method", ["umap", "tsne"])
def test_duplicates_fall_back_or_cope(method: str, umap_map) -> None:
    pytest.importorskip("openTSNE") if method == "tsne" else None
    same = np.tile(np.eye(16, dtype=np.float32)[0], (100, 1))
    xy, _, info = fit_layout(same, method)
    _check_coords(xy, 100)
    assert info.method == "pca"
    x, _ = planted(200, 4, d=16, seed=14)
    x[:120] = x[0]  # mostly duplicates, but enough distinct rows for the real method
    xy, _, info = fit_layout(x, method)
    _check_coords(xy, 200)


def test_bad_arguments() -> None:
    x, _ = planted(20, 2, d=8)
    with pytest.raises(InvalidArgument, match="umap, tsne, pca"):
        fit_layout(x, "mds")
    with pytest.raises(InvalidArgument, match="2-D"):
        fit_layout(x[0], "pca")
    x[2, 2] = np.inf
    with pytest.raises(InvalidArgument, match="row 2"):
        fit_layout(x, "pca")
    with pytest.raises(InvalidArgument, match="sample_limit"):
        fit_layout(x, "pca", sample_limit=1)


def test_load_reducer_rejects_other_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(InvalidArgument, match="rebuild"):
        load_reducer(junk)
    other = tmp_path / "other"
    other.write_bytes(pickle.dumps({"method": "umap"}))
    with pytest.raises(InvalidArgument, match="rebuild"):
        load_reducer(other)
    with pytest.raises(FileNotFoundError):
        load_reducer(tmp_path / "missing")


def test_numpy_and_faiss_neighbour_search_agree() -> None:
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    points = rng.standard_normal((500, 12)).astype(np.float32)
    queries = rng.standard_normal((70, 12)).astype(np.float32)
    d_np, i_np = layout._numpy_search(points, queries, 10, block=16)
    index = faiss.IndexFlatL2(12)
    index.add(points)
    d_f, i_f = index.search(queries, 10)
    np.testing.assert_array_equal(i_np, i_f)
    np.testing.assert_allclose(d_np, d_f, rtol=1e-4, atol=1e-4)
    d_all, i_all = layout._numpy_search(points[:5], queries, 5)  # k == number of points
    assert sorted(i_all[0].tolist()) == [0, 1, 2, 3, 4] and (np.diff(d_all, axis=1) >= 0).all()
