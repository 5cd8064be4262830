"""``lookalike report --html DIR``: one static site about a collection that opens offline.

The folder holds ``index.html`` (the collection's summary, its clusters as contact sheets,
and an interactive map: pan, zoom, hover for a thumbnail, colour by cluster, label or
folder), ``data.js`` (the map's points) and ``thumbs/`` (JPEG thumbnails). It works from
``file://``: the page loads ``data.js`` with a plain ``<script>`` tag (browsers refuse
``fetch`` of local files), and the coordinates and colours travel inside it as base64
little-endian typed arrays rather than JSON numbers. Nothing is fetched from a network.

Thumbnails are made for every point up to :data:`THUMBNAIL_LIMIT` items (beyond it, for the
clusters' central images and a random sample); hovering any other point shows its cluster.
A re-run into the same folder reuses thumbnails whose image has not changed.
"""

from __future__ import annotations

import base64
import html
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from ...errors import InvalidArgument, UnreadableImage
from ...fsutil import atomic_writer
from ...images.thumbnails import make_thumbnail
from ...progress import ProgressCallback
from ...store.explore_types import NO_CLUSTER, NOISE
from ...store.item_access import item_reader
from ..html import human_bytes, save_page, thumbnails
from .sheets import SHEET_STYLE, Shown, cluster_members_shown, cluster_sections
from .site_assets import MAP_SCRIPT, SITE_STYLE

if TYPE_CHECKING:
    from ...store.collection import Collection, CollectionInfo
    from ...store.explore_types import Clustering, MapPoints
    from ...store.items import Item
    from ...store.item_bytes import ItemReader

__all__ = ["THUMBNAIL_LIMIT", "THUMBNAIL_SIZE", "encode_array", "read_data", "write_report"]

#: Collections up to this size get a thumbnail for every point of the map.
THUMBNAIL_LIMIT = 5_000
#: Longest side of the site's thumbnails (one of :data:`lookalike.images.thumbnails.THUMBNAIL_SIZES`).
THUMBNAIL_SIZE = 128
_THUMBS = "thumbs"
_OWN_FILES = {"index.html", "data.js", _THUMBS}


def encode_array(values: np.ndarray, dtype: str) -> str:
    """``values`` as base64 of little-endian ``dtype`` (``"<f4"``, ``"<i4"``), for a typed array."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=np.dtype(dtype)).tobytes()).decode("ascii")


def _prepare(out_dir: str | os.PathLike[str]) -> Path:
    """The report folder, made if needed: a new one, an empty one, or an earlier report's."""
    out = Path(out_dir).expanduser()
    if not out.parent.is_dir():
        raise InvalidArgument(f"cannot write the report to {out}: no such folder {out.parent}")
    if out.exists() and not out.is_dir():
        raise InvalidArgument(f"cannot write the report to {out}: it is a file; name a folder")
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        if names and not {"index.html", "data.js"} <= names:
            raise InvalidArgument(f"{out} is not empty and holds no earlier report; name a new or empty folder")
    try:
        (out / _THUMBS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgument(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return out


def _thumbnail_ids(points: "MapPoints", shown: Iterable[Shown], limit: int, seed: int = 0) -> list[int]:
    """Every point's id up to ``limit``; beyond, the shown images and a random sample."""
    ids = [int(i) for i in points.ids]
    central = [s.id for s in shown]
    if len(ids) <= limit:
        return list(dict.fromkeys(central + ids))
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(ids), max(0, limit - len(central)), replace=False)
    return list(dict.fromkeys(central + [ids[i] for i in np.sort(sample)]))


def _make_thumbs(items: Sequence["Item"], folder: Path, progress: ProgressCallback | None,
                 reader: "ItemReader") -> dict[int, str]:
    """``{id: file name}`` of each item's thumbnail in ``folder`` (made unless there already);
    files left there from an earlier run that no item uses now are removed. Tar members and
    downloaded URLs are read through ``reader``, files from their path."""

    def make(item: "Item", side: int) -> str:
        dest = folder / f"{item.id}-{(item.hash or 'nohash')[:16]}.jpg"
        if dest.exists():  # made by an earlier run: no need to read a member or a download again
            return dest.name
        try:
            return make_thumbnail(reader.source(item.path), dest, side, name=item.path).name
        except UnreadableImage:
            raise
        except (OSError, ValueError) as exc:  # a decoder failing on a damaged file
            raise UnreadableImage(item.path, str(exc)) from exc

    names = {item.id: name for item, name in zip(items, thumbnails(items, THUMBNAIL_SIZE, progress=progress,
                                                                   make=make)) if name}
    keep = set(names.values())
    for old in folder.glob("*.jpg"):
        if old.name not in keep:
            old.unlink(missing_ok=True)
    return names


def _categories(points: "MapPoints", clustering: "Clustering | None") -> dict[str, Any]:
    """The three ways to colour the map: per point codes (base64 int32) and category names."""
    names = {c.id: c.name for c in clustering.clusters} if clustering else {}
    clusters = np.asarray(points.clusters, dtype=np.int64)
    found = sorted(set(np.unique(clusters).tolist()) - {NOISE, NO_CLUSTER},
                   key=lambda c: -int((clusters == c).sum()))
    cluster_cats = [{"code": int(c), "name": names.get(int(c), f"cluster {c}")} for c in found]
    cluster_cats += [{"code": c, "name": n, "grey": True} for c, n in ((NOISE, "noise"), (NO_CLUSTER, "none"))
                     if (clusters == c).any()]
    return {
        "cluster": {"codes": encode_array(clusters, "<i4"), "categories": cluster_cats},
        "label": {"codes": encode_array(points.labels, "<i4"),
                  "categories": [{"code": i, "name": n} for i, n in enumerate(points.label_names)]
                  + [{"code": -1, "name": "none", "grey": True}]},
        "folder": {"codes": encode_array(points.folders, "<i4"),
                   "categories": [{"code": i, "name": n} for i, n in enumerate(points.folder_names)]},
    }


def _data(points: "MapPoints", clustering: "Clustering | None", items: Sequence["Item"],
          thumbs: dict[int, str]) -> dict[str, Any]:
    """What ``data.js`` holds: the points, their colours, and the details of thumbnailed items."""
    position = {int(i): n for n, i in enumerate(points.ids)}
    detail = np.full(len(points), -1, dtype=np.int32)
    details = []
    for item in items:
        if item.id in position:
            detail[position[item.id]] = len(details)
            details.append({"id": item.id, "path": item.path, "thumb": f"{_THUMBS}/{thumbs[item.id]}"
                            if item.id in thumbs else None})
    return {"method": points.method, "count": len(points), "sampled": points.sampled,
            "fitted_on": points.fitted_on, "xy": encode_array(points.xy, "<f4"),
            "color": _categories(points, clustering), "detail": encode_array(detail, "<i4"), "details": details}


def _write_data(out: Path, data: dict[str, Any]) -> None:
    text = "window.LOOKALIKE_REPORT = " + json.dumps(data, ensure_ascii=True, separators=(",", ":")) + ";\n"
    with atomic_writer(out / "data.js", durable=False) as f:
        f.write(text.encode("ascii"))
    os.chmod(out / "data.js", 0o644)


def _summary(info: "CollectionInfo", clustering: "Clustering | None", points: "MapPoints") -> str:
    index = info.index.label if info.index else "exact search"
    facts = [("collection", info.path), ("model", info.model_id), ("dimensions", str(info.dim)),
             ("images", f"{info.items:,}"), ("failed", f"{info.failed:,}"),
             ("size on disk", human_bytes(info.bytes_on_disk)), ("index", index),
             ("created", datetime.fromtimestamp(info.created, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))]
    if clustering is not None:
        facts.append(("clusters", f"{clustering.k:,} ({clustering.method}, k chosen by {clustering.k_chosen_by})"
                      + (f", {clustering.noise:,} noise" if clustering.noise else "")))
    layout = f"{points.method}, {len(points):,} points"
    if points.sampled:
        layout += f"; fitted on a sample of {points.fitted_on:,}, the other {len(points) - points.fitted_on:,} " \
                  "placed with transform"
    facts.append(("map", layout))
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    return f'<table class="summary">{rows}</table>'


def _page(title: str, summary: str, clusters: str, written: str) -> str:
    esc = html.escape
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
            f'<style>{SHEET_STYLE}{SITE_STYLE}</style></head><body>'
            f'<header><h1>{esc(title)}</h1><nav class="tabs"><a href="#summary">summary</a> '
            f'<a href="#map">map</a> <a href="#clusters">clusters</a></nav></header><main>'
            f'<section id="summary"><h2>Summary</h2>{summary}<p class="dim">written {esc(written)}</p></section>'
            '<section id="map"><h2>Map</h2><div class="controls"><label>colour by <select id="colorby">'
            '<option value="cluster">cluster</option><option value="label">label</option>'
            '<option value="folder">folder</option></select></label> <button id="reset">fit</button> '
            '<span class="dim">drag to pan, wheel to zoom, hover for a picture</span></div>'
            '<div class="mapbox"><canvas id="canvas"></canvas><div id="tip" hidden></div>'
            '<ol id="legend"></ol></div><noscript>The map needs JavaScript.</noscript></section>'
            f'<section id="clusters"><h2>Clusters</h2>{clusters}</section></main>'
            f'<script src="data.js"></script><script>{MAP_SCRIPT}</script></body></html>\n')


def write_report(coll: "Collection", out_dir: str | os.PathLike[str], *, progress: ProgressCallback | None = None,
                 per_cluster: int = 12, thumbnail_limit: int = THUMBNAIL_LIMIT,
                 title: str | None = None) -> Path:
    """Write the report site into ``out_dir`` and return its ``index.html``.

    The stored clustering and map are used; either is computed first when the collection
    has none (:meth:`Collection.cluster`, :meth:`Collection.map` with their defaults), which
    ``progress`` follows, along with the thumbnails (``"embed"`` events).

    Raises:
        InvalidArgument: ``out_dir``'s parent is missing, it is a file, or it is a folder
            holding other things than an earlier report.
    """
    out = _prepare(out_dir)
    info = coll.info(max_errors=0)
    clustering = coll.clustering() or coll.cluster(progress=progress)
    points = coll.map_points() or coll.map(progress=progress)
    shown = {c.id: cluster_members_shown(coll, c, per_cluster) for c in clustering.clusters}
    ids = _thumbnail_ids(points, (s for group in shown.values() for s in group), thumbnail_limit)
    items = list(coll.items(ids))
    thumbs = _make_thumbs(items, out / _THUMBS, progress, item_reader(coll))
    _write_data(out, _data(points, clustering, items, thumbs))
    clusters = cluster_sections(clustering, shown, lambda s: f"{_THUMBS}/{thumbs[s.id]}" if s.id in thumbs else None)
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = _page(title or f"lookalike: {Path(info.path).name}", _summary(info, clustering, points), clusters,
                 written)
    return save_page(out / "index.html", lambda stream: stream.write(page), example="index.html")


def read_data(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``data.js`` of a report as a dict, its arrays decoded to numpy (for tests and tools)."""
    text = Path(path).read_text(encoding="ascii").strip()
    prefix = "window.LOOKALIKE_REPORT = "
    if not text.startswith(prefix) or not text.endswith(";"):
        raise InvalidArgument(f"{path} is not a lookalike report's data.js")
    data = json.loads(text[len(prefix):-1])

    def arr(b64: str, dtype: str) -> np.ndarray:
        return np.frombuffer(base64.b64decode(b64), dtype=np.dtype(dtype)).copy()

    data["xy"] = arr(data["xy"], "<f4").reshape(-1, 2)
    data["detail"] = arr(data["detail"], "<i4")
    for entry in data["color"].values():
        entry["codes"] = arr(entry["codes"], "<i4")
    return data
