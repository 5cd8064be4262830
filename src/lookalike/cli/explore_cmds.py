"""``lookalike cluster``, ``label``, ``map`` and ``report``: what a collection holds.

Parsing and rendering only: the work is :meth:`Collection.cluster`, :meth:`~Collection.label`
and :meth:`~Collection.map` (results stored in the collection), and the pictures and pages
are :mod:`lookalike.apps.explore`. Tables and JSON go to stdout; progress, summaries and
errors go to stderr. ``lookalike matrix`` is :mod:`.matrix_cmd`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..errors import InvalidArgument, LookalikeError
from ..store.collection import Collection
from .common import CollectionOpt, DeviceOpt, default_collection, err, fail, out
from .progress import TaskProgress

if TYPE_CHECKING:
    from ..store.explore_types import Clustering, Labelling, MapPoints

__all__ = ["cluster", "label", "map_", "report", "read_list"]

_LABELS = {"cluster": "clustering", "label": "labelling", "map": "mapping", "embed": "thumbnails"}
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")


def read_list(text: Optional[str], file: Optional[Path], option: str) -> Optional[list[str]]:
    """Names given inline (``"cat, dog"``) or in a file (one per line, or comma-separated),
    parsed alike; None when neither is given."""
    from ..explore import parse_labels

    if text is not None and file is not None:
        raise InvalidArgument(f"give {option} or {option}-file, not both")
    if file is not None:
        try:
            text = file.expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidArgument(f"cannot read {option}-file {file}: {exc.strerror or exc}") from None
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return None if text is None else parse_labels(text)


def _progress(quiet: bool) -> TaskProgress:
    return TaskProgress(err, quiet, **_LABELS)


# --------------------------------------------------------------------------- cluster
def cluster(
    collection: Optional[Path] = CollectionOpt,
    k: Optional[int] = typer.Option(None, "--k", "-k", min=1, help="Number of clusters (default: chosen by the "
                                    "best silhouette on a sample)."),
    method: str = typer.Option("kmeans", "--method", help="kmeans (spherical) or hdbscan (density, with noise)."),
    min_cluster_size: Optional[int] = typer.Option(None, "--min-cluster-size", help="hdbscan: smallest cluster."),
    vocabulary: Optional[str] = typer.Option(None, "--vocabulary", help="Names for the clusters, comma-separated "
                                             "(text models; default: a built-in general vocabulary)."),
    vocabulary_file: Optional[Path] = typer.Option(None, "--vocabulary-file", help="Names, one per line."),
    refresh: bool = typer.Option(False, "--refresh", help="Recompute even if a clustering with these settings "
                                 "is stored."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write contact sheets (self-contained HTML)."),
    per_cluster: int = typer.Option(12, "--per-cluster", min=1, help="Images per cluster on the HTML page."),
    examples: int = typer.Option(3, "--examples", min=0, help="Example paths per cluster in the table."),
    as_json: bool = typer.Option(False, "--json", help="The clustering as one JSON object."),
    quiet: bool = QuietOpt,
    device: str = DeviceOpt,
) -> None:
    """Group the collection into clusters (stored; new items join them as they are indexed) and
    name each one: table of cluster, size, name and example paths."""
    from ..apps.explore.sheets import clusters_html
    from ..apps.html import html_destination

    try:
        names = read_list(vocabulary, vocabulary_file, "--vocabulary")
        if html is not None:
            html = html_destination(html, "clusters.html")  # a mistyped folder fails before the work
        with Collection.open(collection or default_collection(), device=device) as coll:
            with _progress(quiet) as progress:
                result = coll.cluster(k, method=method, vocabulary=names, min_cluster_size=min_cluster_size,
                                      refresh=refresh, progress=progress)
            if html is not None:
                with _progress(quiet) as progress:
                    written = clusters_html(coll, result, html, per_cluster=per_cluster,
                                            meta={"collection": str(coll.path)}, progress=progress)
                err.print(Text(f"wrote {written}"), soft_wrap=True)
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(clustering_record(result), ensure_ascii=False) + "\n")
    else:
        _cluster_table(result, examples)
    err.print(Text(_k_summary(result)), soft_wrap=True)


def clustering_record(c: "Clustering") -> dict[str, Any]:
    """The clustering as a JSON-ready dict (``cluster --json``)."""
    return {"method": c.method, "k": c.k, "k_chosen_by": c.k_chosen_by,
            "k_scores": {str(k): round(float(v), 6) for k, v in c.k_scores.items()},
            "noise": c.noise, "unassigned": c.unassigned,
            "clusters": [{"id": x.id, "name": x.name, "size": x.size,
                          "central": [{"id": i.id, "path": i.path} for i in x.central]} for x in c.clusters]}


def _k_summary(c: "Clustering") -> str:
    if not c.clusters:
        return "no clusters: the collection has no items"
    if c.k_chosen_by == "silhouette" and c.k_scores:
        tried = ", ".join(f"{k}: {v:.3f}" for k, v in sorted(c.k_scores.items()))
        text = f"k = {c.k}, chosen by the best silhouette on a sample (tried {tried})"
    elif c.k_chosen_by == "density":
        text = f"{c.k} clusters found by density (HDBSCAN)"
    elif c.k_chosen_by == "silhouette":
        text = f"k = {c.k}: too few items to compare values of k"
    elif c.k_chosen_by == "given":
        text = f"k = {c.k}, as given"
    else:
        text = f"k = {c.k} ({c.k_chosen_by})"
    if c.noise:
        text += f"; {c.noise:,} noise items in no cluster"
    if c.unassigned:
        text += f"; {c.unassigned:,} items not yet assigned"
    return text + f" ({c.method})"


def _cluster_table(c: "Clustering", examples: int) -> None:
    table = Table(box=None, header_style="bold")
    table.add_column("cluster", justify="right")
    table.add_column("size", justify="right")
    table.add_column("name")
    table.add_column("examples", overflow="fold")
    for x in c.clusters:
        table.add_row(str(x.id), f"{x.size:,}", Text(x.name), Text("\n".join(i.path for i in x.central[:examples])))
    if c.noise:
        table.add_row("noise", f"{c.noise:,}", Text("(in no cluster)", style="dim"), "")
    out.print(table)


# --------------------------------------------------------------------------- label
def label(
    collection: Optional[Path] = CollectionOpt,
    labels: Optional[str] = typer.Option(None, "--labels", help="Labels, comma-separated: \"cat, dog, beach\"."),
    labels_file: Optional[Path] = typer.Option(None, "--labels-file", help="Labels, one per line."),
    multi: bool = typer.Option(False, "--multi", help="Keep every label scoring at least --min-score, not only "
                               "the best."),
    min_score: Optional[float] = typer.Option(None, "--min-score", help="An item's label needs this cosine "
                                              "similarity (default: every item gets its best label)."),
    template: List[str] = typer.Option([], "--template", help="Prompt template with {} for the label, e.g. "
                                       "\"a photo of a {}.\"; repeatable (default: a few general ones)."),
    as_json: bool = typer.Option(False, "--json", help="The labelling as one JSON object."),
    quiet: bool = QuietOpt,
    device: str = DeviceOpt,
) -> None:
    """Give every item a zero-shot label (stored; search with --label): table of counts."""
    try:
        names = read_list(labels, labels_file, "--labels")
        if names is None:
            raise InvalidArgument("give the labels: --labels \"cat, dog\" or --labels-file FILE")
        with Collection.open(collection or default_collection(), device=device) as coll:
            with _progress(quiet) as progress:
                result = coll.label(names, templates=template or None, multi=multi, min_score=min_score,
                                    progress=progress)
            total = len(coll)
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(labelling_record(result), ensure_ascii=False) + "\n")
    else:
        _label_table(result, total)
    unlabelled = total - result.labelled
    err.print(Text(f"labelled {result.labelled:,} of {total:,} items"
                   + (f" ({unlabelled:,} below --min-score {result.min_score:g})" if unlabelled and
                      result.min_score is not None else "")), soft_wrap=True)


def labelling_record(lab: "Labelling") -> dict[str, Any]:
    """The labelling as a JSON-ready dict (``label --json``)."""
    return {"labels": lab.labels, "templates": lab.templates, "multi": lab.multi, "min_score": lab.min_score,
            "labelled": lab.labelled, "counts": {c.label: c.count for c in lab.counts}}


def _label_table(lab: "Labelling", total: int) -> None:
    table = Table(box=None, header_style="bold")
    table.add_column("label")
    table.add_column("items", justify="right")
    table.add_column("share", justify="right")
    for c in sorted(lab.counts, key=lambda c: -c.count):
        table.add_row(Text(c.label), f"{c.count:,}", f"{100 * c.count / total:.1f}%" if total else "-")
    out.print(table)


# --------------------------------------------------------------------------- map
def map_(
    collection: Optional[Path] = CollectionOpt,
    method: str = typer.Option("umap", "--method", help="umap, tsne or pca (fast, needs no extra)."),
    refresh: bool = typer.Option(False, "--refresh", help="Fit the map again even if one is stored."),
    png: Optional[Path] = typer.Option(None, "--png", help="Draw the map into this PNG file."),
    color: str = typer.Option("cluster", "--color", help="Colour the PNG by cluster, label or folder."),
    thumbnails: int = typer.Option(0, "--thumbnails", min=0, help="Draw this many thumbnails spread over the PNG."),
    as_json: bool = typer.Option(False, "--json", help="Every point as JSON: id, x, y, cluster, label, folder."),
    quiet: bool = QuietOpt,
    device: str = DeviceOpt,
) -> None:
    """Lay the collection out on a 2-D map (stored; new items are placed as they come), and
    optionally draw it as a PNG."""
    from ..apps.explore.plots import COLOR_BY, map_png
    from ..apps.html import html_destination

    try:
        if color not in COLOR_BY:
            raise InvalidArgument(f"--color must be cluster, label or folder, not {color!r}")
        if png is not None:
            png = html_destination(png, "map.png", "picture")
        with Collection.open(collection or default_collection(), device=device) as coll:
            with _progress(quiet) as progress:
                points = coll.map(method=method, refresh=refresh, progress=progress)
            if png is not None:
                clustering = coll.clustering()
                names = {c.id: c.name for c in clustering.clusters} if clustering else None
                map_png(points, png, color=color, thumbnails=thumbnails, thumbnail_of=_cached_thumbnail(coll),
                        cluster_names=names)
                err.print(Text(f"wrote {png}"), soft_wrap=True)
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        _points_json(points)
    err.print(Text(map_summary(points)), soft_wrap=True)


def map_summary(points: "MapPoints") -> str:
    """How the map was made, naming a sample fit when there was one."""
    text = f"{points.method} map of {len(points):,} items"
    if points.sampled:
        text += (f": fitted on a sample of {points.fitted_on:,}; placed the other "
                 f"{len(points) - points.fitted_on:,} with transform")
    elif points.placed > 0:
        text += f" ({points.placed:,} added since were placed with transform)"
    return text


def _cached_thumbnail(coll: Collection) -> Any:
    """``item id -> thumbnail path`` from the collection's thumbnail cache (None: unreadable)."""
    from ..errors import UnreadableImage
    from ..images.thumbnails import make_thumbnail, thumbnail_path
    from ..store.item_access import item_reader

    def thumb(item_id: int) -> Optional[Path]:
        try:
            item = coll.item(item_id)
            source = item_reader(coll).source(item.path)  # a file, a tar member's or a download's bytes
            return make_thumbnail(source, thumbnail_path(coll.path, item.id, item.hash, 128), 128, name=item.path)
        except (UnreadableImage, LookalikeError):
            return None

    return thumb


def _points_json(points: "MapPoints") -> None:
    """One JSON object, written point by point (a map may hold a million)."""
    head = {"method": points.method, "count": len(points), "sampled": points.sampled, "fitted_on": points.fitted_on,
            "placed": points.placed, "label_names": points.label_names, "folder_names": points.folder_names}
    write = sys.stdout.write
    write(json.dumps(head, ensure_ascii=False)[:-1] + ', "points": [')
    for n, (i, (x, y), c, lb, f) in enumerate(zip(points.ids.tolist(), points.xy.tolist(), points.clusters.tolist(),
                                                   points.labels.tolist(), points.folders.tolist())):
        write(("," if n else "") + json.dumps({"id": i, "x": round(x, 5), "y": round(y, 5), "cluster": c,
                                               "label": lb, "folder": f}))
    write("]}\n")


# --------------------------------------------------------------------------- report
def report(
    collection: Optional[Path] = CollectionOpt,
    html: Path = typer.Option(..., "--html", help="Folder to write the site into (index.html, data.js, thumbs/)."),
    quiet: bool = QuietOpt,
    device: str = DeviceOpt,
) -> None:
    """Write a static site about the collection (summary, clusters, interactive map) that opens
    offline from the file system; clusters and the map are computed first if missing."""
    from ..apps.explore.site import write_report

    try:
        with Collection.open(collection or default_collection(), device=device) as coll:
            with _progress(quiet) as progress:
                index = write_report(coll, html, progress=progress)
    except LookalikeError as exc:
        fail(exc)
    out.print(Text(str(index)), highlight=False)
    err.print(Text(f"open {index} in a browser (works offline)"), soft_wrap=True)
