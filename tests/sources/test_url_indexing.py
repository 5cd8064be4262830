"""URLs end to end through ``Collection.add(source)``, served by the ``image_server`` fixture:
a table of URLs and a file list of them are fetched once, cached, stored with their metadata
and original size; failures are recorded per URL with the server's reason, never fetched
again on a rerun, and fetched again with ``retry_failed``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image

import lookalike
from support import make_image
from lookalike.sources import CAPTION, FileListSource, TableSource
from lookalike.store.collection import Collection

pytest.importorskip("httpx")
pytest.importorskip("pyarrow")

from lookalike.sources.download import Downloader, DownloadSettings  # noqa: E402 - after the skip for httpx


@pytest.fixture(scope="module")
def model(tiny_timm_dir: Path) -> Any:
    return lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu")


@pytest.fixture
def coll(tmp_path: Path, model: Any) -> Iterator[Collection]:
    c = Collection.create(tmp_path / "c.lkl", model=model)
    yield c
    c.close()


@pytest.fixture
def settings(tmp_path: Path) -> DownloadSettings:
    return DownloadSettings(cache_dir=tmp_path / "downloads", max_side=64, retries=0, timeout_s=5.0)


def image(tmp_path: Path, seed: int, size: tuple[int, int] = (96, 80), fmt: str = "PNG") -> bytes:
    return make_image(tmp_path / "src" / f"{seed}.{fmt.lower()}", seed=seed, size=size, fmt=fmt).read_bytes()


def rows(coll: Collection) -> dict[str, Any]:
    return {row.path: row for row in coll._storage.db.iter_rows()}


def meta_of(coll: Collection, path: str) -> dict[str, Any]:
    row = coll._storage.db.get_by_path(path)
    assert row is not None, f"{path} is not in the collection"
    return coll._storage.db.meta.get([row.id]).get(row.id, {})


def test_a_table_of_urls(coll: Collection, tmp_path: Path, image_server: Any, settings: DownloadSettings) -> None:
    big = image(tmp_path, 1, size=(300, 200), fmt="JPEG")
    a = image_server.serve("/a.jpg", big, "image/jpeg")
    b = image_server.serve("/b.png?x=1", image(tmp_path, 2))
    gone = image_server.url("/gone.png")  # no route: 404
    page = image_server.serve("/page.png", b"<html>hi</html>", "text/html")
    local = make_image(tmp_path / "local.png", seed=3)
    table = tmp_path / "t.csv"
    table.write_text(f'url,caption,license,stars\n{a},"a kite\nat dusk",cc-by,5\n{b},herons,cc0,2\n'
                     f"{gone},a gone one,cc0,1\n{page},,x,0\nlocal.png,local,cc-by,4\n{a},again,x,0\n")

    report = coll.add(TableSource(str(table), caption_column="caption"), download=settings)
    assert (report.added, report.embedded) == (3, 3)
    assert dict(report.failed) == {gone: "HTTP 404 Not Found", page: "served text/html, not an image"}
    assert report.skipped == [(f"{table} row 6", f"{a}: named by an earlier row; indexed once, "
                                                 "with the first row's columns")]
    stored = rows(coll)
    assert set(stored) == {a, b, gone, page, str(local)}
    assert (stored[a].width, stored[a].height) == (300, 200)  # as published, not the cached resize
    assert (stored[gone].status, stored[gone].error) == ("failed", "HTTP 404 Not Found")
    assert meta_of(coll, a) == {CAPTION: "a kite\nat dusk", "license": "cc-by", "stars": 5}
    assert meta_of(coll, gone) == {CAPTION: "a gone one", "license": "cc0", "stars": 1}  # kept with the failure
    assert meta_of(coll, str(local)) == {CAPTION: "local", "license": "cc-by", "stars": 4}
    assert [image_server.count(p) for p in ("/a.jpg", "/b.png?x=1", "/gone.png", "/page.png")] == [1, 1, 1, 1]
    with Downloader(settings) as downloader:
        cached = downloader.cached_path(a)
        assert cached is not None and downloader.cached_path(gone) is None
    with Image.open(cached) as img:
        assert max(img.size) == 64  # what was embedded: the cached resize

    asked = len(image_server.requests)
    again = coll.add(TableSource(str(table), caption_column="caption"), download=settings)
    assert (again.added, again.unchanged, again.embedded, again.failed) == (0, 5, 0, [])
    assert len(image_server.requests) == asked  # a URL in the collection is not fetched again

    image_server.serve("/gone.png", image(tmp_path, 4))  # it is back
    assert coll.add(TableSource(str(table), caption_column="caption"), download=settings).failed == []
    assert len(image_server.requests) == asked  # still not asked: failures wait for retry_failed
    retried = coll.add(TableSource(str(table), caption_column="caption"), download=settings, retry_failed=True)
    assert image_server.count("/gone.png") == 2 and image_server.count("/page.png") == 2
    assert image_server.count("/a.jpg") == 1
    assert (retried.updated, retried.embedded) == (1, 1)
    assert dict(retried.failed) == {page: "served text/html, not an image"}
    assert rows(coll)[gone].status == "ok" and len(coll) == 4


def test_a_file_list_of_urls_in_the_default_download_folder(coll: Collection, tmp_path: Path,
                                                            image_server: Any) -> None:
    data = image(tmp_path, 7)
    first = image_server.serve("/one.png", data)
    copy = image_server.serve("/copy.png", data)  # the same bytes at another URL
    other = image_server.serve("/two.png", image(tmp_path, 8))
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{first}\n\n{copy}\n{first}\n{other}\n")

    report = coll.add(FileListSource(str(listing)))
    assert (report.added, report.copied, report.embedded) == (2, 1, 2)
    assert report.skipped == [(first, "listed more than once; indexed once")]
    stored = rows(coll)
    assert stored[first].vec_row == stored[copy].vec_row  # one vector for one image
    assert stored[first].mtime_ns == 0 and stored[first].size > 0
    assert any(p.is_file() for p in (Path(coll.path) / "downloads").rglob("*"))
    assert image_server.count("/one.png") == 1  # listed twice, fetched once

    asked = len(image_server.requests)
    again = coll.add(FileListSource(str(listing)))
    assert (again.unchanged, again.embedded, len(image_server.requests)) == (3, 0, asked)


def test_a_malformed_url_fails_alone(coll: Collection, tmp_path: Path, image_server: Any,
                                     settings: DownloadSettings) -> None:
    good = image_server.serve("/ok.png", image(tmp_path, 1))
    bad = "http://[::1/a.png"
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{bad}\n{good}\n")
    report = coll.add(FileListSource(str(listing)), download=settings)
    assert report.added == 1 and [path for path, _ in report.failed] == [bad]
