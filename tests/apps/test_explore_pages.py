"""The clusters contact sheets (apps.explore.sheets) and the report site (apps.explore.site)
over a stand-in collection: self-contained, escaped, every cluster named, data.js decodes,
re-runs reuse the folder, and the map works in a real browser from file://.

The stand-in answers the few Collection methods the pages call; the same pages over a real
collection are exercised end to end in tests/cli/test_explore_cli.py.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pytest

from lookalike.apps.explore.sheets import clusters_html
from lookalike.apps.explore.site import read_data, write_report
from lookalike.errors import InvalidArgument
from lookalike.store.ann import IndexSettings
from lookalike.store.explore_types import NOISE, Cluster, Clustering, MapPoints
from lookalike.store.info import CollectionInfo
from lookalike.store.items import Hit, Item
from support import make_image

NAMES = ["apples & pears", "<script>alert(1)</script>", "boats"]


class StandIn:
    """What the pages read of a Collection: info, the clustering, the map, items, members."""

    def __init__(self, root: Path, n: int = 30, *, stored: bool = True) -> None:
        self.path = root / "c.lkl"
        self.files = [make_image(root / "pics" / f"f{i % 3}" / f"img{i:02d}.png", seed=i) for i in range(n)]
        self.by_id = {i + 1: Item(i + 1, str(p), p.stat().st_size, p.stat().st_mtime_ns, f"{i:032x}", 96, 80, "ok")
                      for i, p in enumerate(self.files)}
        ids = sorted(self.by_id)
        members = {c: [i for i in ids if i % 3 == c] for c in range(3)}
        members[0] = members[0][:-2]  # two noise items
        self.members = members
        self._clustering = Clustering(
            method="kmeans", k=3, k_chosen_by="silhouette", k_scores={2: 0.1, 3: 0.2, 4: 0.15},
            clusters=[Cluster(c, NAMES[c], len(members[c]), np.zeros(4, np.float32),
                              [self.by_id[i] for i in members[c][:4]]) for c in range(3)], noise=2)
        cl = np.array([next((c for c, m in members.items() if i in m), NOISE) for i in ids], dtype=np.int32)
        xy = (np.random.default_rng(0).normal(size=(n, 2)) + cl[:, None] * 5).astype(np.float32)
        folders = [str(p) for p in sorted({f.parent for f in self.files})]
        self._points = MapPoints("umap", np.array(ids, np.int64), xy, cl, np.zeros(n, np.int32), ["thing"],
                                 np.array([i % 3 for i in range(n)], np.int32), folders)
        self.stored = stored
        self.computed: list[str] = []

    def info(self, max_errors: int = 20) -> CollectionInfo:
        return CollectionInfo(path=str(self.path), model_id="lite", fingerprint="f", dim=4, items=len(self.by_id),
                              failed=0, vector_rows=len(self.by_id), bytes_on_disk=12345, created=time.time(),
                              errors=[], index_settings=IndexSettings(), index=None)

    def clustering(self) -> Clustering | None:
        return self._clustering if self.stored else None

    def cluster(self, k: int | None = None, **kw: Any) -> Clustering:
        self.computed.append("cluster")
        return self._clustering

    def map_points(self) -> MapPoints | None:
        return self._points if self.stored else None

    def map(self, **kw: Any) -> MapPoints:
        self.computed.append("map")
        return self._points

    def items(self, ids: Sequence[int] | None = None) -> Iterator[Item]:
        yield from (self.by_id[i] for i in (ids if ids is not None else sorted(self.by_id)) if i in self.by_id)

    def cluster_members(self, cluster_id: int, *, offset: int = 0, limit: int = 100) -> list[Hit]:
        return [Hit(i, self.by_id[i].path, 0.9) for i in self.members[cluster_id][offset:offset + limit]]


def _no_urls(text: str) -> None:
    """Nothing fetched from anywhere: no http(s) or protocol-relative src/href, no @import, no url()."""
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I), "an external reference"
    assert "@import" not in text and "url(" not in text


# --------------------------------------------------------------------------- contact sheets
def test_clusters_html_is_self_contained_and_names_every_cluster(tmp_path: Path) -> None:
    coll = StandIn(tmp_path)
    os.remove(coll.files[0])  # id 1, a central image of cluster 1: shown as unreadable
    events: list[Any] = []
    dest = clusters_html(coll, coll.clustering(), tmp_path / "clusters.html", per_cluster=3, progress=events.append)
    text = dest.read_text(encoding="utf-8")
    _no_urls(text)
    assert "apples &amp; pears" in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "boats" in text
    assert "<script>alert" not in text and "<script" not in text
    assert text.count('<section class="cluster"') == 3
    assert text.count('src="data:image/jpeg;base64,') == 8 and "cannot read" in text  # 3 + 3 + 3, one unreadable
    assert "2 items in no cluster" in text and "best silhouette" in text
    assert any(e.kind == "skip" for e in events) and [e.done for e in events if e.kind == "embed"][-1] == 9


def test_clusters_html_takes_more_members_than_stored_central_ones(tmp_path: Path) -> None:
    coll = StandIn(tmp_path)
    text = clusters_html(coll, coll.clustering(), tmp_path / "c.html", per_cluster=8).read_text(encoding="utf-8")
    sizes = [c.size for c in coll.clustering().clusters]
    assert text.count("data:image/jpeg;base64,") == sum(min(8, s) for s in sizes)


def test_clusters_html_of_an_empty_clustering_and_bad_destinations(tmp_path: Path) -> None:
    coll = StandIn(tmp_path, n=3)
    empty = Clustering("kmeans", 0, "given", {}, [])
    assert "No clusters" in clusters_html(coll, empty, tmp_path / "e.html").read_text(encoding="utf-8")
    with pytest.raises(InvalidArgument, match="no such folder"):
        clusters_html(coll, empty, tmp_path / "nope" / "e.html")
    with pytest.raises(InvalidArgument, match="clusters.html"):
        clusters_html(coll, empty, tmp_path)
    with pytest.raises(InvalidArgument, match="per_cluster"):
        clusters_html(coll, empty, tmp_path / "x.html", per_cluster=0)


# --------------------------------------------------------------------------- the report site
def test_report_site_files_and_data(tmp_path: Path) -> None:
    coll = StandIn(tmp_path)
    index = write_report(coll, tmp_path / "site")
    site = tmp_path / "site"
    assert index == site / "index.html" and (site / "data.js").is_file()
    thumbs = sorted((site / "thumbs").glob("*.jpg"))
    assert len(thumbs) == 30
    text = index.read_text(encoding="utf-8")
    _no_urls(text)
    assert '<script src="data.js"></script>' in text and "<canvas" in text
    assert all(name in text for name in ("apples &amp; pears", "&lt;script&gt;alert(1)&lt;/script&gt;", "boats"))
    assert 'src="thumbs/' in text and "data:image" not in text  # thumbnails as files, not inlined twice
    data = read_data(site / "data.js")
    assert data["count"] == 30 and np.array_equal(data["xy"], coll.map_points().xy)
    assert np.array_equal(data["color"]["cluster"]["codes"], coll.map_points().clusters)
    names = {c["name"] for c in data["color"]["cluster"]["categories"]}
    assert set(NAMES) | {"noise"} == names
    details = data["details"]
    assert len(details) == 30 and all((site / d["thumb"]).is_file() for d in details)
    assert all(details[data["detail"][i]]["id"] == int(coll.map_points().ids[i]) for i in range(30))
    assert coll.computed == []


def test_report_computes_what_is_missing_and_reruns_in_place(tmp_path: Path) -> None:
    coll = StandIn(tmp_path, stored=False)
    write_report(coll, tmp_path / "site")
    assert coll.computed == ["cluster", "map"]
    stale = tmp_path / "site" / "thumbs" / "999-old.jpg"
    stale.write_bytes(b"old")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "site" / "thumbs").glob("*.jpg") if p != stale}
    write_report(coll, tmp_path / "site")  # an earlier report's folder: written again
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "site" / "thumbs").glob("*.jpg")}
    assert after == before  # the same thumbnails, not remade; the stale one gone


def test_report_thumbnail_limit(tmp_path: Path) -> None:
    coll = StandIn(tmp_path)
    write_report(coll, tmp_path / "site", thumbnail_limit=10, per_cluster=2)
    data = read_data(tmp_path / "site" / "data.js")
    shown = {i.id for c in coll.clustering().clusters for i in c.central[:2]}
    with_thumb = {d["id"] for d in data["details"] if d["thumb"]}
    assert shown <= with_thumb and len(with_thumb) == 10
    assert (data["detail"] == -1).sum() == 20


def test_report_refuses_other_folders(tmp_path: Path) -> None:
    coll = StandIn(tmp_path, n=3)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.docx").write_text("mine")
    with pytest.raises(InvalidArgument, match="not empty"):
        write_report(coll, tmp_path / "busy")
    with pytest.raises(InvalidArgument, match="no such folder"):
        write_report(coll, tmp_path / "a" / "b")
    with pytest.raises(InvalidArgument, match="is a file"):
        write_report(coll, tmp_path / "busy" / "thesis.docx")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["thesis.docx"]


@pytest.mark.browser
def test_report_map_draws_and_hovers_offline(tmp_path: Path) -> None:
    """Headless Chromium opens the site from file:// with the network cut off: the map draws,
    hovering a point shows its thumbnail, the colouring switches, and nothing errs."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed")
        pytest.skip("Debian's chromium is not installed")
    coll = StandIn(tmp_path)
    index = write_report(coll, tmp_path / "site")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.route(re.compile(r"^https?://"), lambda route: (errors.append(route.request.url), route.abort()))
            page.goto(index.as_uri())
            page.wait_for_function("document.querySelectorAll('#legend li').length > 0")
            assert page.locator("#legend li").count() == 4  # three clusters and noise
            drawn = page.evaluate("""() => { const c = document.getElementById('canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
                for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""")
            assert drawn > 30
            # Hover the first point: where it is on screen is the page's own transform.
            x, y = page.evaluate("""() => { const c = document.getElementById('canvas'), r = c.getBoundingClientRect();
                const D = window.LOOKALIKE_REPORT, b = atob(D.xy), u = new Uint8Array(b.length);
                for (let i = 0; i < b.length; i++) u[i] = b.charCodeAt(i);
                const xy = new Float32Array(u.buffer); let x0=1e9,x1=-1e9,y0=1e9,y1=-1e9;
                for (let i = 0; i < xy.length; i += 2) { x0=Math.min(x0,xy[i]); x1=Math.max(x1,xy[i]);
                  y0=Math.min(y0,xy[i+1]); y1=Math.max(y1,xy[i+1]); }
                const s = 0.92 * Math.min(c.width / (x1 - x0), c.height / (y1 - y0));
                const dpr = window.devicePixelRatio || 1;
                return [r.left + ((xy[0] - (x0 + x1) / 2) * s + c.width / 2) / dpr,
                        r.top + (c.height / 2 - (xy[1] - (y0 + y1) / 2) * s) / dpr]; }""")
            page.mouse.move(x, y)
            page.wait_for_selector("#tip:not([hidden]) img")
            page.wait_for_function("document.querySelector('#tip img').naturalWidth > 0")
            page.select_option("#colorby", "folder")
            assert page.locator("#legend li").count() == 3
            page.mouse.wheel(0, -300)
            assert errors == []
        finally:
            browser.close()
