"""The pages that show pixels (contact sheets, the report site, the duplicates report) over a
collection of tar members and downloaded URLs: they read the items' bytes, not their paths."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

import lookalike
from lookalike.apps.dupes.report import write_html
from lookalike.apps.explore.sheets import clusters_html
from lookalike.apps.explore.site import write_report
from lookalike.progress import ProgressEvent
from lookalike.store.dupes import DuplicateGroup, Member
from sources_support import SourcesCollection, build_sources_collection

pytest.importorskip("httpx")
pytest.importorskip("pyarrow")

_IMG = re.compile(r'<img src="data:image/jpeg;base64,')


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> SourcesCollection:
    return build_sources_collection(tmp_path_factory.mktemp("pages"), f"openclip:{tiny_clip_dir}")


def test_contact_sheets_show_members_and_downloads(built: SourcesCollection, tmp_path: Path) -> None:
    skipped: list[ProgressEvent] = []
    with lookalike.Collection.open(built.path) as coll:
        clustering = coll.cluster(k=2)
        page = clusters_html(coll, clustering, tmp_path / "sheets.html", per_cluster=12,
                             progress=lambda e: skipped.append(e) if e.kind == "skip" else None)
    text = page.read_text()
    assert len(_IMG.findall(text)) == 5  # 3 members and 2 cached URLs; the 6th has no cached copy
    assert text.count("cannot read") == 1
    assert [e.path for e in skipped] == [built.uncached] and "download cache" in skipped[0].reason


def test_the_report_site_makes_thumbnails_of_members_and_downloads(built: SourcesCollection, tmp_path: Path) -> None:
    with lookalike.Collection.open(built.path) as coll:
        coll.cluster(k=2)
        write_report(coll, tmp_path / "site")
    assert len(list((tmp_path / "site" / "thumbs").glob("*.jpg"))) == 5


def test_the_duplicates_report_reads_members_and_downloads(built: SourcesCollection) -> None:
    with lookalike.Collection.open(built.path) as coll:
        items = list(coll.items())
        members = tuple(Member(item=it, traits=None, similarity=1.0, tier="semantic", keep=n == 0, reference=False)
                        for n, it in enumerate(items))
        group = DuplicateGroup(id=items[0].id, kind="duplicate", tier="semantic", similarity=0.9, members=members)
        with_coll, without = io.StringIO(), io.StringIO()
        write_html([group], with_coll, collection=coll)
        write_html([group], without)  # no collection: files and members only
    assert len(_IMG.findall(with_coll.getvalue())) == 5
    assert len(_IMG.findall(without.getvalue())) == 3
