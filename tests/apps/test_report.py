"""Duplicate reports: JSON lines, CSV, and the self-contained HTML page with embedded thumbnails."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from support import make_image
from lookalike.apps.dupes.report import (
    CSV_COLUMNS,
    group_record,
    reclaimable_bytes,
    save_html,
    thumbnail_data_uri,
    write_csv,
    write_html,
    write_json_lines,
)
from lookalike.errors import InvalidArgument
from lookalike.images.traits import ImageTraits
from lookalike.progress import ProgressEvent
from lookalike.store.dupes import DuplicateGroup, Member
from lookalike.store.items import Item

TAKEN = 1_700_000_000.0  # 2023-11-14T22:13:20Z
MTIME_NS = 1_600_000_000 * 10**9  # 2020-09-13T12:26:40Z


def _member(item_id: int, path: Path, *, size: int, wh: tuple[int, int], keep: bool = False,
            reference: bool = False, similarity: float = 1.0, tier: str = "exact",
            taken: float | None = None) -> Member:
    item = Item(id=item_id, path=str(path), size=size, mtime_ns=MTIME_NS, hash=f"h{item_id}", width=wh[0],
                height=wh[1], status="ok")
    traits = ImageTraits(phash=1, dhash=2, phash_mirror=3, sharpness=42.5, taken=taken, exif_tags=4)
    return Member(item=item, traits=traits if taken is not None else None, similarity=similarity, tier=tier,
                  keep=keep, reference=reference)


@pytest.fixture
def groups(tmp_path: Path) -> list[DuplicateGroup]:
    """Two groups: one with a reference copy and a file that no longer exists, one plain pair.
    File names hold HTML and rich-markup characters on purpose."""
    big = make_image(tmp_path / "pics" / "big <b>&'.png", seed=1, size=(400, 300))
    copy = make_image(tmp_path / "ref" / "copy.png", seed=1, size=(400, 300))
    small = make_image(tmp_path / "pics" / "small [red].png", seed=2, size=(120, 90))
    other = make_image(tmp_path / "pics" / "other.png", seed=2, size=(60, 45))
    g1 = DuplicateGroup(id=10, kind="duplicate", tier="semantic", similarity=0.91, members=(
        _member(10, big, size=5000, wh=(400, 300), keep=True, taken=TAKEN),
        _member(11, copy, size=5000, wh=(400, 300), reference=True, similarity=0.99),
        _member(12, tmp_path / "pics" / "gone.jpg", size=700, wh=(40, 30), similarity=0.91, tier="semantic"),
    ))
    g2 = DuplicateGroup(id=20, kind="burst", tier="perceptual", similarity=0.97, members=(
        _member(20, small, size=900, wh=(120, 90), keep=True),
        _member(21, other, size=300, wh=(60, 45), similarity=0.97, tier="perceptual"),
    ))
    return [g1, g2]


# --------------------------------------------------------------------------- JSON lines and CSV
def test_json_lines_one_group_per_line(groups: list[DuplicateGroup]) -> None:
    """Guards --json's shape: one object per group, kept member first and named, sizes and dates
    per member, and the space to free that leaves out the kept file and reference files."""
    buf = io.StringIO()
    write_json_lines(groups, buf)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert (first["id"], first["kind"], first["tier"], first["similarity"], first["size"]) == (
        10, "duplicate", "semantic", 0.91, 3)
    assert first["kept"] == groups[0].members[0].item.path and first["kept_id"] == 10
    assert first["reclaimable_bytes"] == 700  # the reference copy (5000 bytes) is never acted on
    assert [m["id"] for m in first["members"]] == [10, 11, 12]
    assert [(m["keep"], m["reference"]) for m in first["members"]] == [(True, False), (False, True), (False, False)]
    m0 = first["members"][0]
    assert (m0["width"], m0["height"], m0["size"]) == (400, 300, 5000)
    assert m0["taken"] == "2023-11-14T22:13:20+00:00" and m0["modified"] == "2020-09-13T12:26:40+00:00"
    assert m0["sharpness"] == 42.5 and first["members"][1]["taken"] is None
    assert json.loads(lines[1])["kind"] == "burst"


def test_reclaimable_bytes_counts_only_what_an_action_touches(groups: list[DuplicateGroup]) -> None:
    """Guards the 'to free' figure: members not kept, reference files excluded."""
    assert [reclaimable_bytes(g) for g in groups] == [700, 300]
    assert group_record(groups[1])["reclaimable_bytes"] == 300


def test_csv_one_row_per_member(groups: list[DuplicateGroup]) -> None:
    """Guards --csv: the header, one row per member with its group's id, 1/0 kept and reference
    flags, and an empty cell for an unknown EXIF date."""
    buf = io.StringIO()
    write_csv(groups, buf)
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 5
    assert [r["group"] for r in rows] == ["10", "10", "10", "20", "20"]
    assert [r["kept"] for r in rows] == ["1", "0", "0", "1", "0"]
    assert [r["reference"] for r in rows] == ["0", "1", "0", "0", "0"]
    assert rows[0]["path"] == groups[0].members[0].item.path  # commas, quotes and brackets survive
    assert rows[0]["taken"] == "2023-11-14T22:13:20+00:00" and rows[1]["taken"] == ""
    assert (rows[3]["kind"], rows[3]["group_tier"], rows[4]["tier"]) == ("burst", "perceptual", "perceptual")


# --------------------------------------------------------------------------- HTML
def _render(groups: list[DuplicateGroup], **options: object) -> tuple[str, list[ProgressEvent]]:
    events: list[ProgressEvent] = []
    buf = io.StringIO()
    write_html(groups, buf, meta={"collection": "/c.lkl"}, progress=events.append, **options)  # type: ignore[arg-type]
    return buf.getvalue(), events


def test_html_is_self_contained(groups: list[DuplicateGroup]) -> None:
    """Guards offline viewing: no http(s) URL anywhere, every src is a data: URI, every link is
    in-page, and there is no external stylesheet or script."""
    page, _ = _render(groups)
    assert not re.search(r"https?:", page, re.IGNORECASE)
    refs = re.findall(r'\b(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith("data:image/jpeg;base64,") or r.startswith("#") for r in refs), refs
    assert "<link" not in page and "<script src" not in page and "@import" not in page and "url(" not in page


def test_html_embeds_small_jpeg_thumbnails(groups: list[DuplicateGroup]) -> None:
    """Guards the thumbnails: one per readable member, real JPEGs of at most 160 px, the wide
    400x300 image shrunk to 160x120; the missing file gets a placeholder and a skip event."""
    page, events = _render(groups)
    uris = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(uris) == 4  # five members, one of them gone
    sizes = [Image.open(io.BytesIO(base64.b64decode(u))).size for u in uris]
    assert sizes[0] == (160, 120) and all(max(s) <= 160 for s in sizes)
    assert (60, 45) in sizes  # never upscaled
    assert page.count("cannot read") == 1
    skips = [e for e in events if e.kind == "skip"]
    assert len(skips) == 1 and skips[0].path is not None and skips[0].path.endswith("gone.jpg")
    counted = [e for e in events if e.kind == "embed"]
    assert counted[-1].done == counted[-1].total == 5


def test_html_shows_what_review_needs(groups: list[DuplicateGroup]) -> None:
    """Guards the page's content: per group tier, kind and similarity (as sortable data too),
    per member path (escaped), resolution, size, date and role; the summary and meta lines."""
    page, _ = _render(groups)
    g1 = page[page.index('id="g10"'):page.index('id="g20"')]
    assert 'data-tier="semantic"' in g1 and 'data-kind="duplicate"' in g1 and 'data-similarity="0.910000"' in g1
    assert 'data-reclaim="700"' in g1 and 'data-members="3"' in g1
    assert "big &lt;b&gt;&amp;&#x27;.png" in g1 and "<b>&" not in g1
    assert "400\u00d7300" in g1 and "4.9 KB" in g1
    assert "2023-11-14 22:13" in g1 and "taken" in g1  # EXIF time where known...
    assert "2020-09-13 12:26" in g1 and "modified" in g1  # ...else the file's
    assert g1.count('class="badge keep"') == 1 and g1.count('class="badge reference"') == 1
    assert "small [red].png" in page and 'data-kind="burst"' in page
    assert "/c.lkl" in page and ">groups:</span> 2<" in page
    assert page.index('id="g10"') < page.index('id="g20"')  # the given order, before any sorting


def test_html_without_groups_says_so() -> None:
    """Guards an empty report: a valid page that says nothing was found."""
    page, events = _render([])
    assert "No duplicates found" in page and page.rstrip().endswith("</html>") and events == []


def test_thumbnail_data_uri_is_a_jpeg(tmp_path: Path) -> None:
    """Guards the thumbnail helper on its own: a tall PNG becomes a JPEG of 75x160."""
    path = make_image(tmp_path / "tall.png", seed=3, size=(150, 320))
    uri = thumbnail_data_uri(path)
    assert uri.startswith("data:image/jpeg;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert (img.format, img.size) == ("JPEG", (75, 160))


def test_save_html_writes_atomically_and_names_a_missing_folder(groups: list[DuplicateGroup],
                                                                tmp_path: Path) -> None:
    """Guards save_html: the file is written whole and readable by others; a missing folder is an
    InvalidArgument naming it, and nothing is created."""
    saved = os.umask(0o022)
    try:
        dest = save_html(groups, tmp_path / "report.html", thumbnail_side=64)
    finally:
        os.umask(saved)
    assert dest.read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert dest.stat().st_mode & 0o777 == 0o644  # the umask decides, not mkstemp's private 0600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report")] == []
    with pytest.raises(InvalidArgument, match="no such folder"):
        save_html(groups, tmp_path / "nope" / "r.html")
    assert not (tmp_path / "nope").exists()
    with pytest.raises(InvalidArgument, match="thumbnail side"):
        save_html(groups, tmp_path / "r.html", thumbnail_side=4)
