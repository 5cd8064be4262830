"""The map and matrix PNGs (lookalike.apps.explore.plots): valid files of the expected size,
every colouring, thumbnails, the empty and one-item cases, and clean errors."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.apps.explore.plots import map_png, matrix_png, spread_subset
from lookalike.apps.matrix import SimilarityMatrix
from lookalike.errors import InvalidArgument, MissingExtra
from lookalike.store.explore_types import NO_CLUSTER, NOISE, MapPoints
from support import make_image

pytest.importorskip("matplotlib")


def points(n: int, seed: int = 0, *, clusters: int = 5) -> MapPoints:
    """``n`` points in ``clusters`` blobs, some noise and some with no cluster; two labels, three folders."""
    rng = np.random.default_rng(seed)
    cl = rng.integers(0, clusters, n).astype(np.int32)
    xy = (rng.normal(size=(n, 2)) + cl[:, None] * 6).astype(np.float32)
    if n >= 10:
        cl[:3], cl[3:5] = NOISE, NO_CLUSTER
    return MapPoints(method="umap", ids=np.arange(1, n + 1, dtype=np.int64), xy=xy, clusters=cl,
                     labels=rng.integers(-1, 2, n).astype(np.int32), label_names=["cat", "dog"],
                     folders=rng.integers(0, 3, n).astype(np.int32),
                     folder_names=["/p/holidays/2020", "/p/work", "/q/misc"])


def matrix(n: int) -> SimilarityMatrix:
    v = np.random.default_rng(n).normal(size=(n, 6))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    m = (v @ v.T).astype(np.float32)
    np.fill_diagonal(m, 1.0)
    return SimilarityMatrix([f"item {i}.png" for i in range(n)], ["image"] * n, [None] * n, [None] * n, m)


def _png(path: Path, size: tuple[int, int]) -> Image.Image:
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == size
        img.load()
        return img.convert("RGB")


@pytest.mark.parametrize("color", ["cluster", "label", "folder"])
def test_map_png_is_a_png_of_the_size_asked_for(tmp_path: Path, color: str) -> None:
    dest = map_png(points(400), tmp_path / "map.png", color=color, cluster_names={0: "apples", 1: "boats"},
                   size=(800, 600))
    assert dest == tmp_path / "map.png"
    img = _png(dest, (800, 600))
    assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) > 20  # colours, a legend, a title


def test_map_png_draws_thumbnails_and_skips_unreadable_ones(tmp_path: Path) -> None:
    pics = [make_image(tmp_path / f"t{i}.png", seed=i, size=(120, 90)) for i in range(3)]
    asked: list[int] = []

    def thumb(item_id: int) -> Path | None:
        asked.append(item_id)
        return None if item_id % 4 == 0 else (pics[item_id % 3] if item_id % 5 else tmp_path / "gone.png")

    plain = _png(map_png(points(300), tmp_path / "plain.png"), (1200, 900))
    with_thumbs = _png(map_png(points(300), tmp_path / "thumbs.png", thumbnails=10, thumbnail_of=thumb), (1200, 900))
    assert len(asked) == 10 and len(set(asked)) == 10
    assert plain.tobytes() != with_thumbs.tobytes()


def test_map_png_of_no_points_and_of_one(tmp_path: Path) -> None:
    _png(map_png(points(0), tmp_path / "empty.png", size=(400, 300)), (400, 300))
    _png(map_png(points(1), tmp_path / "one.png", thumbnails=3, thumbnail_of=lambda i: None, size=(400, 300)),
         (400, 300))


def test_map_png_of_many_points_is_rasterised_and_quick(tmp_path: Path) -> None:
    start = time.perf_counter()
    _png(map_png(points(200_000, clusters=30), tmp_path / "big.png"), (1200, 900))
    assert time.perf_counter() - start < 30


def test_map_png_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="cluster, label or folder"):
        map_png(points(10), tmp_path / "m.png", color="size")
    with pytest.raises(InvalidArgument, match="no such folder"):
        map_png(points(10), tmp_path / "nope" / "m.png")
    with pytest.raises(InvalidArgument, match="it is a folder"):
        map_png(points(10), tmp_path)
    assert not list(tmp_path.iterdir())


def test_spread_subset_covers_every_blob() -> None:
    pts = points(5000, clusters=5)
    chosen = spread_subset(pts.xy, 5)
    assert len(chosen) == len(set(chosen.tolist())) == 5
    # Blobs are 6 apart and ~1 wide: five spread points fall in five different blobs.
    assert len({int(round(float(pts.xy[i, 0]) / 6)) for i in chosen}) >= 4
    assert spread_subset(pts.xy, 0).size == 0 and spread_subset(np.zeros((0, 2)), 3).size == 0
    same = spread_subset(np.zeros((10, 2), dtype=np.float32), 4)
    assert len(same) == 1  # all points coincide: one is enough


@pytest.mark.parametrize("n", [1, 5, 20])
def test_matrix_png_sizes_and_thumbnails(tmp_path: Path, n: int) -> None:
    thumbs = {i: Image.open(make_image(tmp_path / f"p{i}.png", seed=i)) for i in range(0, n, 2)}
    _png(matrix_png(matrix(n), tmp_path / "m.png", size=(700, 600)), (700, 600))
    _png(matrix_png(matrix(n), tmp_path / "t.png", thumbnails=thumbs, size=(700, 600)), (700, 600))
    auto = Image.open(matrix_png(matrix(n), tmp_path / "auto.png", thumbnails=thumbs))
    assert auto.width >= 300 and auto.height >= 300


def test_without_matplotlib_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    with pytest.raises(MissingExtra, match=r"lookalike\[explore\]"):
        map_png(points(5), tmp_path / "m.png")
    with pytest.raises(MissingExtra, match="matplotlib"):
        matrix_png(matrix(2), tmp_path / "m.png")
