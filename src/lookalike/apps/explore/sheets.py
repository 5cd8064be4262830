"""Contact sheets of a clustering: one self-contained HTML page with each cluster's name, size
and most central images.

Like the duplicates report, the page opens offline and travels as one file: thumbnails are
base64 JPEG ``data:`` URIs and the style is inline. The same sections make the clusters part
of the ``lookalike report`` site, there with thumbnails as files beside the page.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, Mapping, Sequence

from ...errors import InvalidArgument
from ...progress import ProgressCallback
from ...store.item_access import item_reader
from ..html import THUMBNAIL_SIDE, item_thumbnail_maker, save_page, thumbnails

if TYPE_CHECKING:
    from ...store.collection import Collection
    from ...store.explore_types import Cluster, Clustering

__all__ = ["SHEET_STYLE", "Shown", "cluster_members_shown", "cluster_sections", "clusters_html", "write_clusters"]


@dataclass(frozen=True)
class Shown:
    """One image shown for a cluster: its item id and file."""

    id: int
    path: str


def cluster_members_shown(coll: "Collection", cluster: "Cluster", per_cluster: int) -> list[Shown]:
    """The ``per_cluster`` most central members of ``cluster``, the medoid first: its stored
    ``central`` items, or, when more are asked for than it keeps, the members ranked by
    closeness to the centre (:meth:`Collection.cluster_members`)."""
    if per_cluster <= len(cluster.central) or len(cluster.central) >= cluster.size:
        return [Shown(i.id, i.path) for i in cluster.central[:per_cluster]]
    return [Shown(h.id, h.path) for h in coll.cluster_members(cluster.id, limit=per_cluster)]


def _header_facts(clustering: "Clustering", meta: Mapping[str, str]) -> dict[str, str]:
    chosen = {"given": "given", "silhouette": "best silhouette", "density": "density (HDBSCAN)"}
    facts = {"clusters": f"{clustering.k:,}", "method": clustering.method,
             "k chosen by": chosen.get(clustering.k_chosen_by, clustering.k_chosen_by),
             "items": f"{sum(c.size for c in clustering.clusters) + clustering.noise:,}"}
    if clustering.noise:
        facts["noise"] = f"{clustering.noise:,} items in no cluster"
    if clustering.unassigned:
        facts["unassigned"] = f"{clustering.unassigned:,} items added since, not yet assigned"
    return {**facts, **meta}


def cluster_sections(clustering: "Clustering", shown: Mapping[int, Sequence[Shown]],
                     src: Callable[[Shown], str | None]) -> str:
    """The clusters as HTML: a table of contents, then a section per cluster (name, size,
    its images). ``src`` gives each image's ``src`` (a data URI, a relative file; None: shown
    as unreadable). Every text is escaped."""
    esc = html.escape
    if not clustering.clusters:
        return '<p class="empty">No clusters: the collection has no items to cluster.</p>'
    toc = "".join(f'<a href="#c{c.id}">{esc(c.name)} <span class="dim">{c.size:,}</span></a>'
                  for c in clustering.clusters)
    parts = [f'<nav class="toc">{toc}</nav>']
    for c in clustering.clusters:
        figures = []
        for s in shown.get(c.id, ()):
            uri = src(s)
            name = esc(Path(s.path).name)
            img = (f'<img src="{esc(uri)}" alt="{name}" loading="lazy">' if uri
                   else '<span class="nothumb">cannot read</span>')
            figures.append(f'<figure title="{esc(s.path)}">{img}<figcaption>{name}</figcaption></figure>')
        parts.append(f'<section class="cluster" id="c{c.id}"><h2>{esc(c.name)} <span class="dim">'
                     f'{c.size:,} item{"s" if c.size != 1 else ""} \u00b7 cluster {c.id}</span></h2>'
                     f'<div class="sheet">{"".join(figures)}</div></section>')
    return "\n".join(parts)


def write_clusters(coll: "Collection", clustering: "Clustering", stream: IO[str], *, per_cluster: int = 12,
                   title: str = "lookalike: clusters", meta: Mapping[str, str] | None = None,
                   thumbnail_side: int = THUMBNAIL_SIDE, progress: ProgressCallback | None = None) -> None:
    """Write the self-contained contact sheets page to ``stream`` (see :func:`clusters_html`)."""
    if per_cluster < 1:
        raise InvalidArgument(f"per_cluster must be at least 1, not {per_cluster}")
    shown = {c.id: cluster_members_shown(coll, c, per_cluster) for c in clustering.clusters}
    flat = [s for c in clustering.clusters for s in shown[c.id]]
    # Tar members and downloaded URLs are read through the collection, like files.
    uris = dict(zip(((s.id, s.path) for s in flat),
                    thumbnails([s.path for s in flat], thumbnail_side, progress=progress,
                               make=item_thumbnail_maker(item_reader(coll)))))
    esc = html.escape
    facts = {**_header_facts(clustering, meta or {}),
             "written": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    spans = "".join(f'<span><span class="dim">{esc(k)}:</span> {esc(str(v))}</span>' for k, v in facts.items())
    stream.write(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                 f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                 f'<title>{esc(title)}</title><style>{SHEET_STYLE}</style></head><body>'
                 f'<header><h1>{esc(title)}</h1><p class="facts">{spans}</p></header><main>')
    stream.write(cluster_sections(clustering, shown, lambda s: uris.get((s.id, s.path))))
    stream.write("</main></body></html>\n")


def clusters_html(coll: "Collection", clustering: "Clustering", path: str | os.PathLike[str], *,
                  per_cluster: int = 12, title: str = "lookalike: clusters", meta: Mapping[str, str] | None = None,
                  thumbnail_side: int = THUMBNAIL_SIDE, progress: ProgressCallback | None = None) -> Path:
    """Write one self-contained HTML page of ``clustering`` to ``path`` (atomically); returns it.

    Per cluster: its name, size and ``per_cluster`` most central images (the medoid first),
    as inlined thumbnails with their file names (the full path on hover). ``meta`` adds lines
    to the page's summary (the collection, say). ``progress`` gets an ``"embed"`` event per
    thumbnail and a ``"skip"`` event for each image that cannot be read.

    Raises:
        InvalidArgument: ``per_cluster`` below 1, or the file cannot be written there.
    """
    return save_page(path, lambda stream: write_clusters(
        coll, clustering, stream, per_cluster=per_cluster, title=title, meta=meta, thumbnail_side=thumbnail_side,
        progress=progress), example="clusters.html")


# Inline, so the page needs nothing else; system fonts only, and no URL of any kind.
SHEET_STYLE = """
:root{color-scheme:light dark;--line:#8884;--dim:#888}
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em}
header{padding:.5em 0;border-bottom:1px solid var(--line)}
h1{font-size:1.3em;margin:.3em 0}
.facts{display:flex;flex-wrap:wrap;gap:.2em 1.2em;margin:.3em 0}
.toc{display:flex;flex-wrap:wrap;gap:.3em .5em;margin:1em 0}
.toc a{border:1px solid var(--line);border-radius:1em;padding:0 .6em;text-decoration:none;color:inherit}
section.cluster{margin:1.2em 0;border:1px solid var(--line);border-radius:6px;padding:.3em .8em}
section.cluster h2{font-size:1.05em;margin:.4em 0}
.sheet{display:flex;flex-wrap:wrap;gap:.5em}
figure{margin:0;width:164px;text-align:center}
figure img{max-width:160px;max-height:160px;border:1px solid var(--line);background:#fff}
figcaption{font-size:.8em;color:var(--dim);overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.dim,.nothumb{color:var(--dim)}
.empty{font-size:1.2em;margin:2em 0}
@media print{section.cluster{break-inside:avoid}}
"""
