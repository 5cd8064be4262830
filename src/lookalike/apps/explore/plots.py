"""Static pictures of a collection: the 2-D map as a scatter plot, and a similarity matrix as
a heat map, both PNG files drawn with matplotlib.

matplotlib is optional (the ``explore`` extra) and imported only here, when a picture is
drawn. Its object API is used with the Agg canvas, never ``pyplot``: no global state, no
window, and no change to the backend of a program that imports lookalike.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

import numpy as np

from ...errors import InvalidArgument, MissingExtra
from ...fsutil import atomic_writer
from ...store.explore_types import NO_CLUSTER, NOISE, MapPoints
from ..html import html_destination

if TYPE_CHECKING:
    from PIL import Image

    from ..matrix import SimilarityMatrix

__all__ = ["COLOR_BY", "LEGEND_LIMIT", "map_png", "matrix_png", "spread_subset"]

ColorBy = Literal["cluster", "label", "folder"]
COLOR_BY = ("cluster", "label", "folder")
#: Categories the map's legend names; the smaller ones share one "other" colour.
LEGEND_LIMIT = 15
#: Above this many points the scatter is drawn as one raster layer (vector output would hold
#: a path per point and take seconds to save).
RASTER_FROM = 5_000
_GREY = (0.72, 0.72, 0.72, 1.0)
_OTHER = (0.5, 0.5, 0.5, 1.0)


def _matplotlib() -> tuple[Any, Any]:
    """``(Figure, FigureCanvasAgg)``, or MissingExtra naming the extra to install."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtra("matplotlib", "explore", "Drawing the map or a matrix as a PNG") from None
    return Figure, FigureCanvasAgg


def _save(fig: Any, canvas_cls: Any, dest: Path, dpi: int) -> Path:
    """The figure as a PNG at ``dest``, written atomically (the picture is rendered in memory
    first, so a failed draw leaves an older file as it was)."""
    canvas_cls(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    try:
        with atomic_writer(dest, durable=False) as f:
            f.write(buf.getvalue())
    except OSError as exc:
        raise InvalidArgument(f"cannot write the picture {dest}: {exc.strerror or exc}") from None
    return dest


# --------------------------------------------------------------------------- the map
def _categories(points: MapPoints, color: str,
                cluster_names: Mapping[int, str] | None) -> tuple[np.ndarray, dict[int, str], set[int]]:
    """``(codes, names, greys)``: a category per point, each category's name, and the codes
    drawn grey (noise, none)."""
    if color == "cluster":
        codes = np.asarray(points.clusters, dtype=np.int64)
        names = {int(c): (cluster_names or {}).get(int(c), f"cluster {int(c)}") for c in np.unique(codes)}
        names.update({c: n for c, n in ((NOISE, "noise"), (NO_CLUSTER, "none")) if c in names})
        return codes, names, {NOISE, NO_CLUSTER}
    if color == "label":
        codes = np.asarray(points.labels, dtype=np.int64)
        names = {int(c): points.label_names[int(c)] if 0 <= c < len(points.label_names) else "none"
                 for c in np.unique(codes)}
        return codes, names, {c for c in names if c < 0}
    if color == "folder":
        codes = np.asarray(points.folders, dtype=np.int64)
        names = {int(c): _short_folder(points.folder_names[int(c)]) if 0 <= c < len(points.folder_names) else "none"
                 for c in np.unique(codes)}
        return codes, names, {c for c in names if c < 0}
    raise InvalidArgument(f"colour the map by cluster, label or folder, not {color!r}")


def _short_folder(folder: str) -> str:
    parts = Path(folder).parts
    return os.path.join(*parts[-2:]) if len(parts) >= 2 else folder


def spread_subset(xy: np.ndarray, k: int, *, seed: int = 0, candidates: int = 20_000) -> np.ndarray:
    """Indices of ``k`` points spread over the map (greedy farthest-point sampling, from the
    point nearest the middle), over at most ``candidates`` random points so that a million
    points cost no more than twenty thousand."""
    n = len(xy)
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    pool = np.arange(n)
    if n > candidates:
        pool = np.sort(np.random.default_rng(seed).choice(n, candidates, replace=False))
    pts = np.asarray(xy, dtype=np.float64)[pool]
    first = int(np.argmin(((pts - np.median(pts, axis=0)) ** 2).sum(axis=1)))
    chosen = [first]
    dist = ((pts - pts[first]) ** 2).sum(axis=1)
    for _ in range(min(k, len(pool)) - 1):
        nxt = int(np.argmax(dist))
        if dist[nxt] <= 0:
            break  # every remaining point sits on one already chosen
        chosen.append(nxt)
        dist = np.minimum(dist, ((pts - pts[nxt]) ** 2).sum(axis=1))
    return pool[np.array(chosen)]


def _thumb_array(path: str | os.PathLike[str] | bytes | None, side: int) -> np.ndarray | None:
    """A small RGB array of the image at ``path`` (or of encoded bytes: a tar member, a
    downloaded copy) for a plot, or None when it cannot be read."""
    import io

    from PIL import Image, UnidentifiedImageError

    if path is None:
        return None
    try:
        with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as img:
            img.thumbnail((side, side))
            return np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _point_size(n: int) -> float:
    """Marker area in points²: large for a few dozen items, a speck for a million."""
    return float(np.clip(20_000 / max(n, 1), 0.5, 40))


def _scatter(ax: Any, xy: np.ndarray, codes: np.ndarray, names: dict[int, str], greys: set[int]) -> None:
    """The largest categories in colour (on top, and first in the legend), the rest as "other",
    and noise or none in grey underneath."""
    from matplotlib import colormaps

    n = len(xy)
    counts = Counter(codes.tolist())
    top = [c for c, _ in counts.most_common() if c not in greys][:LEGEND_LIMIT]
    palette = colormaps["tab20"].colors if len(top) > 10 else colormaps["tab10"].colors
    size = _point_size(n)
    raster = n > RASTER_FROM
    for i, c in enumerate(top):
        mask = codes == c
        ax.scatter(xy[mask, 0], xy[mask, 1], s=size, color=palette[i % len(palette)], alpha=0.85, linewidths=0,
                   rasterized=raster, zorder=3, label=f"{names[c][:28]} ({counts[c]:,})")
    rest = ~np.isin(codes, top + sorted(greys))
    if rest.any():
        ax.scatter(xy[rest, 0], xy[rest, 1], s=size, color=_OTHER, alpha=0.6, linewidths=0, rasterized=raster,
                   zorder=2, label=f"other ({int(rest.sum()):,})")
    for c in sorted(greys & set(counts)):
        mask = codes == c
        ax.scatter(xy[mask, 0], xy[mask, 1], s=size, color=_GREY, linewidths=0, rasterized=raster, zorder=1,
                   label=f"{names[c]} ({counts[c]:,})")


def map_png(points: MapPoints, path: str | os.PathLike[str], *, color: str = "cluster", thumbnails: int = 0,
            thumbnail_of: Callable[[int], str | os.PathLike[str] | bytes | None] | None = None,
            cluster_names: Mapping[int, str] | None = None, title: str | None = None,
            size: tuple[int, int] = (1200, 900), dpi: int = 100) -> Path:
    """Draw the map as a PNG of ``size`` pixels; returns the path written.

    Points are coloured by ``color`` (``"cluster"``, ``"label"`` or ``"folder"``) with a
    legend of the largest categories (noise and items with none in grey, the smallest
    categories together as "other"). ``thumbnails`` images (from ``thumbnail_of(item_id)``,
    a path, encoded bytes or None) are drawn at points spread over the map. ``cluster_names`` maps cluster
    ids to names (default "cluster N").

    Raises:
        InvalidArgument: an unknown ``color``, or the file cannot be written there.
        MissingExtra: matplotlib is not installed.
    """
    dest = html_destination(path, "map.png", "picture")
    codes, names, greys = _categories(points, color, cluster_names)
    if thumbnails < 0:
        raise InvalidArgument(f"thumbnails must be 0 or more, not {thumbnails}")
    Figure, Canvas = _matplotlib()
    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    ax = fig.add_axes((0.02, 0.03, 0.70, 0.90))
    xy = np.asarray(points.xy, dtype=np.float32).reshape(-1, 2)
    if len(xy):
        _scatter(ax, xy, codes, names, greys)
        # Legend markers at a readable size whatever the points' size.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title=f"by {color}",
                  markerscale=max(1.0, 6 / np.sqrt(_point_size(len(xy)))))
    else:
        ax.text(0.5, 0.5, "no items on the map", ha="center", va="center", transform=ax.transAxes)
    if thumbnails and thumbnail_of is not None and len(xy):
        _draw_thumbnails(ax, xy, points.ids, thumbnails, thumbnail_of, thumb_side=max(24, min(size) // 14))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    sampled = f"; fitted on {points.fitted_on:,}, the rest placed" if points.sampled else ""
    fig.suptitle(title or f"{points.method} map of {len(xy):,} items, coloured by {color}{sampled}", fontsize=11)
    return _save(fig, Canvas, dest, dpi)


def _draw_thumbnails(ax: Any, xy: np.ndarray, ids: np.ndarray, k: int,
                     thumbnail_of: Callable[[int], str | os.PathLike[str] | bytes | None], thumb_side: int) -> None:
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    for i in spread_subset(xy, k):
        arr = _thumb_array(thumbnail_of(int(ids[i])), thumb_side)
        if arr is None:
            continue
        # zoom 72/dpi: an OffsetImage is sized in points, the array is in pixels.
        box = AnnotationBbox(OffsetImage(arr, zoom=72 / ax.figure.dpi), (float(xy[i, 0]), float(xy[i, 1])),
                             frameon=True, zorder=4, pad=0.15, bboxprops={"edgecolor": "#555", "linewidth": 0.5})
        ax.add_artist(box)


# --------------------------------------------------------------------------- the matrix
def _matrix_size(n: int, with_thumbs: bool) -> tuple[int, int]:
    cell = int(np.clip(720 / max(n, 1), 14, 90))
    margin = 220 + (70 if with_thumbs else 0)
    side = margin + n * cell
    return side + 90, side - 60  # room for the colour bar on the right; rotated names need less below


def matrix_png(m: "SimilarityMatrix", path: str | os.PathLike[str], *,
               thumbnails: "Mapping[int, Image.Image] | None" = None, title: str | None = None,
               size: tuple[int, int] | None = None, dpi: int = 100) -> Path:
    """Draw the matrix as a heat map PNG; returns the path written.

    Items are named on both axes; with ``thumbnails`` (item index -> PIL image) their
    pictures stand beside the names. Each cell shows its value when there are at most 16
    items. ``size`` in pixels defaults to one that grows with the matrix.

    Raises:
        InvalidArgument: the file cannot be written there.
        MissingExtra: matplotlib is not installed.
    """
    dest = html_destination(path, "matrix.png", "picture")
    Figure, Canvas = _matplotlib()
    n = len(m.names)
    thumbs = dict(thumbnails or {})
    width, height = size or _matrix_size(n, bool(thumbs))
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    extra = 70 if thumbs else 0  # the pictures beside the names
    left, bottom = (200 + extra) / width, (140 + extra) / height
    ax = fig.add_axes((left, bottom, max(0.05, 1 - left - 110 / width), max(0.05, 1 - bottom - 50 / height)))
    values = np.asarray(m.matrix, dtype=np.float32).reshape(n, n)
    low = float(min(0.0, values.min())) if n else 0.0
    im = ax.imshow(values, cmap="viridis", vmin=low, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="cosine similarity")
    labels = [name if len(name) <= 28 else name[:27] + "\u2026" for name in m.names]
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                v = float(values[i, j])
                shade = (v - low) / max(1e-6, 1.0 - low)
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if shade > 0.6 else "white")
    if thumbs:
        _axis_thumbnails(ax, thumbs, n, width, height)
    ax.set_title(title or f"cosine similarity of {n} item{'s' if n != 1 else ''}", fontsize=11)
    return _save(fig, Canvas, dest, dpi)


def _axis_thumbnails(ax: Any, thumbs: Mapping[int, "Image.Image"], n: int, width: int, height: int) -> None:
    """Each item's picture beside its name: below the columns and left of the rows."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    cell = min(width, height) * 0.7 / max(n, 1)
    side = int(np.clip(cell * 0.9, 12, 64))
    ax.tick_params(axis="both", pad=side * 72 / ax.figure.dpi + 4)  # the names beyond the pictures (points)
    for index, img in thumbs.items():
        if not 0 <= index < n:
            continue
        small = img.convert("RGB")
        small.thumbnail((side, side))
        arr = np.asarray(small)
        for xy, coords, align in (((index, 0.0), ("data", "axes fraction"), (0.5, 1.0)),
                                  ((0.0, index), ("axes fraction", "data"), (1.0, 0.5))):
            box = AnnotationBbox(OffsetImage(arr, zoom=72 / ax.figure.dpi), xy, xycoords=coords,
                                 box_alignment=align, frameon=False, pad=0.0, annotation_clip=False)
            ax.add_artist(box)
