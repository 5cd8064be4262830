"""Duplicate groups rendered for people and programs: JSON lines, CSV, and an HTML report.

The HTML report is one self-contained file that opens offline: thumbnails are embedded as
base64 JPEG ``data:`` URIs, and the style and the small sort/filter script are inline, so the
page can be mailed or archived and needs no server, no network and no collection to show.
Nothing here changes a file; the only files read are the images, for their thumbnails.
"""

from __future__ import annotations

import csv
import html
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Mapping, Sequence

from ...errors import InvalidArgument
from ...progress import ProgressCallback
from .. import html as pages
from ...store.item_access import item_reader
from ...store.item_bytes import ItemReader
from ..html import THUMBNAIL_SIDE, human_bytes, item_thumbnail_maker, save_page, thumbnail_data_uri, thumbnails

if TYPE_CHECKING:
    from ...store.collection import Collection
    from ...store.dupes import DuplicateGroup, Member

__all__ = [
    "CSV_COLUMNS",
    "THUMBNAIL_SIDE",
    "group_record",
    "html_destination",
    "member_record",
    "reclaimable_bytes",
    "thumbnail_data_uri",
    "write_csv",
    "write_html",
    "write_json_lines",
    "save_html",
]

#: One CSV row per member; a group's fields repeat on each of its rows so that a spreadsheet
#: can filter and sort without joins.
CSV_COLUMNS = ("group", "kind", "group_tier", "group_similarity", "id", "kept", "reference", "tier",
               "similarity", "path", "width", "height", "size", "modified", "taken")


# --------------------------------------------------------------------------- records
def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="seconds")


def member_record(member: "Member") -> dict[str, Any]:
    """A member as a JSON-safe dict: the item's id, path, size and resolution, its dates
    (``modified`` from the file, ``taken`` from EXIF or None), and why it is in the group."""
    item, traits = member.item, member.traits
    return {
        "id": item.id,
        "path": item.path,
        "keep": member.keep,
        "reference": member.reference,
        "tier": member.tier,
        "similarity": round(float(member.similarity), 6),
        "width": item.width,
        "height": item.height,
        "size": item.size,
        "modified": _iso(item.mtime_ns / 1e9),
        "taken": _iso(traits.taken if traits is not None else None),
        "sharpness": round(float(traits.sharpness), 3) if traits is not None else None,
        "hash": item.hash,
    }


def reclaimable_bytes(group: "DuplicateGroup") -> int:
    """Bytes that resolving the group would free: the members not kept, less reference files
    (those are never acted on)."""
    return sum(m.item.size for m in group.others if not m.reference)


def group_record(group: "DuplicateGroup") -> dict[str, Any]:
    """A group as a JSON-safe dict: its id, kind, tier and lowest similarity, the kept path,
    the bytes it would free, and its members (the kept one first)."""
    return {
        "id": group.id,
        "kind": group.kind,
        "tier": group.tier,
        "similarity": round(float(group.similarity), 6),
        "size": len(group.members),
        "kept": group.kept.item.path,
        "kept_id": group.kept.item.id,
        "reclaimable_bytes": reclaimable_bytes(group),
        "members": [member_record(m) for m in group.members],
    }


# --------------------------------------------------------------------------- JSON lines and CSV
def write_json_lines(groups: Sequence["DuplicateGroup"], stream: IO[str]) -> None:
    """One JSON object per group and per line (:func:`group_record`), in the given order."""
    for group in groups:
        stream.write(json.dumps(group_record(group), ensure_ascii=False) + "\n")


def write_csv(groups: Sequence["DuplicateGroup"], stream: IO[str]) -> None:
    """A header, then one row per member (:data:`CSV_COLUMNS`); ``kept`` and ``reference`` are
    1 or 0, dates are ISO 8601 in UTC, an unknown value is an empty cell."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for group in groups:
        for member in group.members:
            rec = member_record(member)
            writer.writerow([
                group.id, group.kind, group.tier, round(float(group.similarity), 6), rec["id"],
                int(member.keep), int(member.reference), rec["tier"], rec["similarity"], rec["path"],
                _cell(rec["width"]), _cell(rec["height"]), rec["size"], rec["modified"], _cell(rec["taken"]),
            ])


def _cell(value: object) -> object:
    return "" if value is None else value


# --------------------------------------------------------------------------- HTML
def _date_cell(member: "Member") -> str:
    taken = member.traits.taken if member.traits is not None else None
    when, label = (taken, "taken") if taken is not None else (member.item.mtime_ns / 1e9, "modified")
    text = datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
    return f'{text} <span class="dim">{label}</span>'


def _member_row(member: "Member", uri: str | None) -> str:
    item = member.item
    esc = html.escape
    img = (f'<img src="{uri}" alt="" loading="lazy">' if uri
           else '<span class="nothumb">cannot read</span>')
    role = "keep" if member.keep else "other"
    badges = f'<span class="badge {role}">{role}</span>'
    if member.reference:
        badges += ' <span class="badge reference">reference</span>'
    res = f"{item.width}\u00d7{item.height}" if item.width and item.height else "?"
    return (f'<tr class="{role}"><td class="thumb">{img}</td><td>{badges}</td>'
            f'<td class="path">{esc(item.path)}</td><td class="num">{res}</td>'
            f'<td class="num" title="{item.size:,} bytes">{human_bytes(item.size)}</td>'
            f'<td>{_date_cell(member)}</td><td class="num">{member.similarity:.4f}</td>'
            f'<td><span class="tier {esc(member.tier)}">{esc(member.tier)}</span></td></tr>')


def _group_open(group: "DuplicateGroup", order: int) -> str:
    free = reclaimable_bytes(group)
    esc = html.escape
    return (f'<section class="group" id="g{group.id}" data-order="{order}" data-id="{group.id}" '
            f'data-similarity="{group.similarity:.6f}" '
            f'data-members="{len(group.members)}" data-reclaim="{free}" data-tier="{esc(group.tier)}" '
            f'data-kind="{esc(group.kind)}">'
            f'<h2><a href="#g{group.id}">group {group.id}</a> <span class="tier {esc(group.tier)}">{esc(group.tier)}'
            f'</span> <span class="kind">{esc(group.kind)}</span> <span class="dim">similarity '
            f'{group.similarity:.4f} \u00b7 {len(group.members)} files \u00b7 {human_bytes(free)} to free</span></h2>'
            '<table><thead><tr><th>image</th><th>role</th><th>path</th><th>resolution</th><th>size</th>'
            '<th>date (UTC)</th><th>similarity</th><th>tier</th></tr></thead><tbody>')


def _header(groups: Sequence["DuplicateGroup"], title: str, meta: Mapping[str, str]) -> str:
    esc = html.escape
    files = sum(len(g.members) for g in groups)
    free = sum(reclaimable_bytes(g) for g in groups)
    facts = {"groups": f"{len(groups):,}", "files in groups": f"{files:,}",
             "duplicates": f"{files - len(groups):,}", "space to free": human_bytes(free),
             **meta, "written": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    spans = "".join(f'<span><span class="dim">{esc(k)}:</span> {esc(str(v))}</span>' for k, v in facts.items())
    options = "".join(f'<option value="{v}">{label}</option>' for v, label in (
        ("order:asc", "as found"), ("similarity:asc", "similarity, lowest first"),
        ("similarity:desc", "similarity, highest first"),
        ("reclaim:desc", "space to free"), ("members:desc", "most files"), ("id:asc", "group id")))

    def choice(name: str, values: tuple[str, ...]) -> str:
        opts = "".join(f'<option value="{v}">{v}</option>' for v in values)
        return f'<label>{name} <select id="{name}"><option value="">all</option>{opts}</select></label>'

    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{esc(title)}</title><style>{PAGE_STYLE}</style></head><body>'
            f'<header><h1>{esc(title)}</h1><p class="facts">{spans}</p>'
            f'<div class="controls"><label>sort <select id="sort">{options}</select></label> '
            f'{choice("tier", ("exact", "perceptual", "semantic"))} {choice("kind", ("duplicate", "burst"))} '
            '<label>path <input id="filter" type="search" placeholder="contains..."></label> '
            '<span id="shown" class="dim"></span></div></header><main id="groups">')


def write_html(groups: Sequence["DuplicateGroup"], stream: IO[str], *, title: str = "lookalike: duplicates",
               meta: Mapping[str, str] | None = None, thumbnail_side: int = THUMBNAIL_SIDE,
               workers: int | None = None, progress: ProgressCallback | None = None,
               collection: "Collection | None" = None) -> None:
    """Write a self-contained HTML page of the groups to ``stream``.

    Per group: its tier, kind, lowest similarity, file count and the space resolving it would
    free; per member: a thumbnail, the path, resolution, file size, date (EXIF time when
    known, else the file's modification time) and whether it is kept or a reference. The page
    sorts and filters the groups in the browser (inline script; without it, all groups show
    in the given order). ``meta`` adds lines to the page's summary (collection, threshold...).

    ``progress`` receives an ``"embed"`` event per thumbnail (``done`` of ``total``) and a
    ``"skip"`` event for each image that cannot be read; the page shows those without one.
    ``collection`` (the one the groups come from) is where URL items' downloaded copies are
    read; without it, files and tar members still get thumbnails, URL items none.
    """
    if thumbnail_side < 16 or thumbnail_side > 1024:
        raise InvalidArgument(f"thumbnail side must be 16 to 1024 pixels, not {thumbnail_side}")
    stream.write(_header(groups, title, meta or {}))
    reader = item_reader(collection) if collection is not None else ItemReader()
    uris = thumbnails([m.item.path for g in groups for m in g.members], thumbnail_side, workers=workers,
                      progress=progress, make=item_thumbnail_maker(reader))
    for order, group in enumerate(groups):
        stream.write(_group_open(group, order))
        for member in group.members:
            stream.write(_member_row(member, next(uris)))
        stream.write("</tbody></table></section>\n")
    if not groups:
        stream.write('<p class="empty">No duplicates found.</p>')
    stream.write(f"</main><script>{PAGE_SCRIPT}</script></body></html>\n")


def html_destination(path: str | os.PathLike[str]) -> Path:
    """``path`` as a place the report can be written to, checked before any work is done.

    Raises:
        InvalidArgument: its folder is missing, or it is a folder itself.
    """
    return pages.html_destination(path, "dupes.html")


def save_html(groups: Sequence["DuplicateGroup"], path: str | os.PathLike[str], **options: Any) -> Path:
    """:func:`write_html` to a file, atomically (a half-written report never replaces a good
    one); ``options`` are those of :func:`write_html`. Returns the path written.

    Raises:
        InvalidArgument: the file cannot be written there (its folder is missing or read-only).
    """
    return save_page(path, lambda stream: write_html(groups, stream, **options), example="dupes.html")


# --------------------------------------------------------------------------- the page's style and script
# Inline, so the page needs nothing else; system fonts only, and no URL of any kind.
PAGE_STYLE = """
:root{color-scheme:light dark;--line:#8884;--dim:#888;--keep:#2a7d2a;--dup:#b5542c;--ref:#2c5fb5}
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em}
header{position:sticky;top:0;background:Canvas;padding:.5em 0;border-bottom:1px solid var(--line);z-index:1}
h1{font-size:1.3em;margin:.3em 0}
.facts{display:flex;flex-wrap:wrap;gap:.2em 1.2em;margin:.3em 0}
.controls{display:flex;flex-wrap:wrap;gap:.5em 1em;align-items:center}
section.group{margin:1.2em 0;border:1px solid var(--line);border-radius:6px;padding:.3em .8em}
section.group h2{font-size:1em;margin:.4em 0}
table{border-collapse:collapse;width:100%}
th{text-align:left;font-weight:600;color:var(--dim);border-bottom:1px solid var(--line)}
td,th{padding:.25em .5em;vertical-align:middle}
td.thumb{width:164px;height:164px;text-align:center}
td.thumb img{max-width:160px;max-height:160px;display:block;margin:auto}
td.thumb img{border:1px solid var(--line);background:#fff}
td.path{word-break:break-all;font-family:ui-monospace,monospace;font-size:.92em}
td.num{text-align:right;white-space:nowrap}
tr.keep{background:#2a7d2a14}
.badge,.tier,.kind{display:inline-block;padding:0 .45em;border-radius:1em;font-size:.85em;border:1px solid}
.badge.keep{color:var(--keep)}.badge.other{color:var(--dup)}.badge.reference{color:var(--ref)}
.tier.exact{color:var(--keep)}.tier.perceptual{color:var(--ref)}.tier.semantic{color:var(--dup)}
.dim,.nothumb{color:var(--dim)}
.empty{font-size:1.2em;margin:2em 0}
@media print{header{position:static}section.group{break-inside:avoid}}
"""

PAGE_SCRIPT = """
(function(){
var main=document.getElementById("groups"),all=[].slice.call(main.querySelectorAll("section.group"));
var sort=document.getElementById("sort"),tier=document.getElementById("tier"),kind=document.getElementById("kind");
var filter=document.getElementById("filter"),shown=document.getElementById("shown"),text=new Map();
function num(s,key){return parseFloat(s.dataset[key])}
function apply(){
  var parts=sort.value.split(":"),key=parts[0],sign=parts[1]==="asc"?1:-1,q=filter.value.toLowerCase(),n=0;
  var order=all.slice().sort(function(a,b){return sign*(num(a,key)-num(b,key))||num(a,"id")-num(b,"id")});
  var frag=document.createDocumentFragment();
  order.forEach(function(s){
    if(q&&!text.has(s))text.set(s,s.textContent.toLowerCase());
    var ok=(!tier.value||s.dataset.tier===tier.value)&&(!kind.value||s.dataset.kind===kind.value)
      &&(!q||text.get(s).indexOf(q)>=0);
    s.hidden=!ok;if(ok)n++;frag.appendChild(s);
  });
  main.appendChild(frag);shown.textContent=n+" of "+all.length+" groups shown";
}
[sort,tier,kind].forEach(function(el){el.addEventListener("change",apply)});
filter.addEventListener("input",apply);apply();
})();
"""
