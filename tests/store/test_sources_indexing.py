"""Every local source kind end to end through ``Collection.add(source)``: what the first run
stores (items, metadata, failures, skips), and what reruns read again (nothing that did not
change: a file by size and mtime, a tar shard by its own size and mtime, unread).

URLs are in ``tests/sources/test_url_indexing.py``, next to the HTTP server fixture.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any, Iterator

import pytest

import lookalike
from support import make_image
from lookalike.sources import CAPTION, FileListSource, FolderSource, TableSource, WebDatasetSource
from lookalike.errors import InvalidArgument
from lookalike.sources import folder as folder_mod
from lookalike.sources import webdataset as wds
from lookalike.store import plan
from lookalike.store.collection import Collection
from lookalike.store.item_meta import ItemMeta

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("braceexpand")


@pytest.fixture(scope="module")
def model(tiny_timm_dir: Path) -> Any:
    return lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu")


@pytest.fixture
def coll(tmp_path: Path, model: Any) -> Iterator[Collection]:
    c = Collection.create(tmp_path / "c.lkl", model=model)
    yield c
    c.close()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the planner reads (and hashes), in the order it reads them."""
    seen: list[str] = []
    original = plan.Planner._read

    def counting(self: plan.Planner, job: plan.Job) -> Any:
        seen.append(job.file.path)
        return original(self, job)

    monkeypatch.setattr(plan.Planner, "_read", counting)
    return seen


@pytest.fixture
def shard_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tar shards opened and read, in order."""
    seen: list[str] = []
    original = wds.ShardPart.read

    def counting(self: wds.ShardPart, on_skip: Any) -> Any:
        seen.append(self.path)
        return original(self, on_skip)

    monkeypatch.setattr(wds.ShardPart, "read", counting)
    return seen


def rows(coll: Collection) -> dict[str, Any]:
    return {row.path: row for row in coll._storage.db.iter_rows()}


def meta_of(coll: Collection, path: str | Path) -> dict[str, Any]:
    row = coll._storage.db.get_by_path(str(path))
    assert row is not None, f"{path} is not in the collection"
    return coll._storage.db.meta.get([row.id]).get(row.id, {})


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return path


def image_bytes(tmp_path: Path, seed: int) -> bytes:
    return make_image(tmp_path / "src" / f"{seed}.png", seed=seed).read_bytes()


def later(path: Path, seconds: int = 10) -> None:
    """Move a file's mtime forward (a touch the mtime's resolution cannot miss)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


# --------------------------------------------------------------------------- folders
def test_a_folder_source(coll: Collection, image_folder: Any, reads: list[str]) -> None:
    folder = image_folder(5)
    first = coll.add(FolderSource([str(folder)]))
    assert (first.added, first.embedded) == (5, 5)
    reads.clear()
    again = coll.add(FolderSource([str(folder)]))
    assert (again.added, again.unchanged, again.embedded, reads) == (0, 5, 0, [])
    gone = sorted(folder.rglob("*.png"))[0]
    gone.unlink()
    swept = coll.add(FolderSource([str(folder)]))
    assert swept.removed == 1 and str(gone) not in rows(coll) and len(coll) == 4


def test_a_file_name_that_is_not_utf8(coll: Collection, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    make_image(folder / "ok.png", seed=1)
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.png"), "wb") as fh:
        fh.write(image_bytes(tmp_path, 2))
    report = coll.add(FolderSource([str(folder)]))
    assert report.added == 1 and str(folder / "ok.png") in rows(coll)


@pytest.mark.parametrize("bare", [str, Path])
def test_a_single_folder_not_in_a_list(coll: Collection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       bare: type) -> None:
    folder = tmp_path / "imgs"
    make_image(folder / "a.png", seed=1)
    walked: list[list[str]] = []

    def fake_discover(roots: Any, **kwargs: Any) -> Iterator[Any]:
        walked.append(list(roots))  # recorded, never walked: the bug would walk "/"
        return iter(())

    monkeypatch.setattr(folder_mod, "discover", fake_discover)
    try:
        coll.add(bare(folder))
    except InvalidArgument:
        return  # refusing a bare path, asking for a list, is as good as taking it
    assert walked == [[str(folder)]]


# --------------------------------------------------------------------------- file lists
def test_a_file_list_with_blank_lines_repeats_and_missing_paths(coll: Collection, tmp_path: Path,
                                                                reads: list[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    imgs = [make_image(tmp_path / "imgs" / f"i{i}.png", seed=i) for i in range(3)]
    missing = tmp_path / "imgs" / "gone.png"
    listing = tmp_path / "list.txt"
    listing.write_text(f"\n{imgs[0]}\n\n  imgs/i1.png\n{imgs[0]}\n{missing}\n\n{imgs[2]}\n{imgs[1]}\n")
    monkeypatch.chdir(tmp_path)

    first = coll.add(FileListSource(str(listing)))
    assert (first.added, first.embedded, first.failed) == (3, 3, [])
    assert sorted(first.skipped) == sorted([(str(imgs[0]), "listed more than once; indexed once"),
                                            (str(missing), "no such file"),
                                            (str(imgs[1]), "listed more than once; indexed once")])
    assert set(rows(coll)) == {str(p) for p in imgs}
    assert all(r.status == "ok" and (r.width, r.height) == (96, 80) for r in rows(coll).values())

    reads.clear()
    again = coll.add(FileListSource(str(listing)))
    assert (again.added, again.updated, again.unchanged, again.embedded) == (0, 0, 3, 0)
    assert reads == []  # size and mtime matched: nothing was opened
    assert (str(missing), "no such file") in again.skipped  # still reported: it is still missing


def test_a_touched_file_is_read_again_and_a_changed_one_embedded(coll: Collection, tmp_path: Path,
                                                                 reads: list[str]) -> None:
    imgs = [make_image(tmp_path / "imgs" / f"i{i}.png", seed=i) for i in range(3)]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(map(str, imgs)))
    coll.add(FileListSource(str(listing)))
    before = rows(coll)

    later(imgs[0])  # same bytes, new mtime
    reads.clear()
    touched = coll.add(FileListSource(str(listing)))
    assert reads == [str(imgs[0])]
    assert (touched.added, touched.updated, touched.unchanged, touched.embedded) == (0, 0, 3, 0)
    after = rows(coll)
    assert after[str(imgs[0])].mtime_ns == imgs[0].stat().st_mtime_ns != before[str(imgs[0])].mtime_ns
    assert after[str(imgs[0])].id == before[str(imgs[0])].id

    make_image(imgs[1], seed=99)  # new content at the same path
    reads.clear()
    changed = coll.add(FileListSource(str(listing)))
    assert reads == [str(imgs[1])]
    assert (changed.updated, changed.embedded, changed.unchanged) == (1, 1, 2)
    assert rows(coll)[str(imgs[1])].hash != before[str(imgs[1])].hash


def test_failures_are_recorded_per_item_and_retried_on_request(coll: Collection, tmp_path: Path,
                                                              reads: list[str]) -> None:
    good = make_image(tmp_path / "imgs" / "good.png", seed=1)
    bad = tmp_path / "imgs" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 20)
    shard = write_tar(tmp_path / "s.tar", [("0.png", image_bytes(tmp_path, 2)), ("1.jpg", b"\xff\xd8 no jpeg")])
    listing = tmp_path / "list.txt"
    listing.write_text(f"{good}\n{bad}\n")

    first = coll.add(FileListSource(str(listing)))
    members = coll.add(WebDatasetSource([str(shard)]))
    assert [path for path, _ in first.failed] == [str(bad)]
    assert [path for path, _ in members.failed] == [f"{shard}#1.jpg"]
    stored = rows(coll)
    for path, reason in first.failed + members.failed:
        assert reason  # a reason a person can act on, stored with the item
        assert (stored[path].status, stored[path].error, stored[path].vec_row) == ("failed", reason, None)
    assert len(coll) == 2

    reads.clear()
    again = coll.add(FileListSource(str(listing)))
    again_members = coll.add(WebDatasetSource([str(shard)]))
    assert (again.failed, again_members.failed, reads) == ([], [], [])  # not retried until asked or changed
    assert (again.unchanged, again_members.unchanged) == (2, 2)

    retried = coll.add(FileListSource(str(listing)), retry_failed=True)
    retried_members = coll.add(WebDatasetSource([str(shard)]), retry_failed=True)
    assert reads == [str(bad), f"{shard}#1.jpg"]  # only the failed items are read again
    assert [p for p, _ in retried.failed] == [str(bad)]
    assert [p for p, _ in retried_members.failed] == [f"{shard}#1.jpg"]

    make_image(bad, seed=5)  # repaired: a changed file is read again without asking
    fixed = coll.add(FileListSource(str(listing)))
    assert (fixed.updated, fixed.failed) == (1, [])
    assert rows(coll)[str(bad)].status == "ok" and rows(coll)[str(bad)].error is None
    assert len(coll) == 3


# --------------------------------------------------------------------------- tables
def test_a_csv_table_stores_captions_and_columns_and_follows_their_changes(coll: Collection, tmp_path: Path,
                                                                          reads: list[str],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    imgs = [make_image(tmp_path / "imgs" / f"i{i}.png", seed=i) for i in range(3)]
    table = tmp_path / "t.csv"

    def write(rows_: list[str]) -> None:
        table.write_bytes(b"\xef\xbb\xbf" + ("path,caption,license,score,id\r\n" + "".join(rows_)).encode())

    write(['imgs/i0.png,"a red kite,\nover the dunes",cc-by,9,00123\r\n',
           "imgs/i1.png,two herons,cc0,10,7\r\n",
           "imgs/i9.png,no such file,cc0,1,1\r\n",
           "imgs/i2.png,,cc-by,100,\r\n",
           "./imgs/i1.png,again,x,0,0\r\n"])
    first = coll.add(TableSource(str(table), caption_column="caption"))
    assert (first.added, first.embedded) == (3, 3)
    assert sorted(first.skipped) == sorted([
        (str(tmp_path / "imgs" / "i9.png"), f"no such file (row 3 of {table})"),
        (f"{table} row 5", f"{imgs[1]}: named by an earlier row; indexed once, with the first row's columns")])
    assert meta_of(coll, imgs[0]) == {CAPTION: "a red kite,\nover the dunes", "license": "cc-by", "score": 9,
                                      "id": "00123"}
    assert meta_of(coll, imgs[1]) == {CAPTION: "two herons", "license": "cc0", "score": 10, "id": 7}
    assert meta_of(coll, imgs[2]) == {"license": "cc-by", "score": 100}
    assert isinstance(meta_of(coll, imgs[1])["score"], int)  # stored as a number, compared as one

    reads.clear()
    written: list[str] = []
    real_set = ItemMeta.set
    monkeypatch.setattr(ItemMeta, "set", lambda self, rows_: real_set(self, [written.append(r[0]) or r for r in rows_]))
    again = coll.add(TableSource(str(table), caption_column="caption"))
    assert (again.added, again.unchanged, again.embedded, reads) == (0, 3, 0, [])
    assert written == []  # an unchanged table rewrites no metadata

    write(["imgs/i0.png,a kite,cc-by-sa,9,00123\r\n",  # caption and license changed, image not
           "imgs/i1.png,two herons,cc0,10,\r\n",  # a value gone
           "imgs/i2.png,now captioned,cc-by,100,\r\n"])
    changed = coll.add(TableSource(str(table), caption_column="caption"))
    assert (changed.added, changed.updated, changed.embedded, reads) == (0, 0, 0, [])
    assert meta_of(coll, imgs[0]) == {CAPTION: "a kite", "license": "cc-by-sa", "score": 9, "id": "00123"}
    assert meta_of(coll, imgs[1]) == {CAPTION: "two herons", "license": "cc0", "score": 10}
    assert meta_of(coll, imgs[2]) == {CAPTION: "now captioned", "license": "cc-by", "score": 100}
    assert coll._storage.db.meta.keys() == [CAPTION, "id", "license", "score"]


def test_metadata_follows_the_table_when_the_file_was_touched_too(coll: Collection, tmp_path: Path) -> None:
    img = make_image(tmp_path / "imgs" / "i0.png", seed=0)
    table = tmp_path / "t.csv"
    table.write_text("path,license\nimgs/i0.png,cc0\n")
    coll.add(TableSource(str(table)))
    table.write_text("path,license\nimgs/i0.png,cc-by\n")
    later(img)
    report = coll.add(TableSource(str(table)))
    assert report.embedded == 0
    assert meta_of(coll, img) == {"license": "cc-by"}


def test_a_parquet_table_with_nulls_and_wrong_types(coll: Collection, tmp_path: Path) -> None:
    imgs = [make_image(tmp_path / "imgs" / f"i{i}.png", seed=i) for i in range(2)]
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({
        "url": ["imgs/i0.png", None, "", "imgs/i1.png"],
        "hash": pa.array([2**64 - 1, 1, 2, 3], pa.uint64()),  # beyond SQLite's INTEGER
        "nsfw": [False, None, True, None],
        "similarity": [0.31, None, float("nan"), 0.25],
    }), table)
    report = coll.add(TableSource(str(table)))
    assert (report.added, report.failed) == (2, [])
    assert report.skipped == [(f"{table} row 2", "no image in column 'url'"),
                              (f"{table} row 3", "no image in column 'url'")]
    assert meta_of(coll, imgs[0]) == {"hash": str(2**64 - 1), "nsfw": 0, "similarity": 0.31}
    assert meta_of(coll, imgs[1]) == {"hash": 3, "similarity": 0.25}

    wrong = tmp_path / "w.parquet"
    pq.write_table(pa.table({"url": pa.array([12, None], pa.int64())}), wrong)
    nothing = coll.add(TableSource(str(wrong)))
    assert nothing.added == 0
    assert nothing.skipped == [(f"{wrong} row 1", "column 'url' holds int 12, not a URL or path"),
                               (f"{wrong} row 2", "no image in column 'url'")]


# --------------------------------------------------------------------------- WebDataset shards
def test_shards_are_skipped_unread_until_they_change(coll: Collection, tmp_path: Path,
                                                     shard_reads: list[str], reads: list[str]) -> None:
    a = write_tar(tmp_path / "shards" / "s-000.tar", [
        ("000.png", image_bytes(tmp_path, 0)), ("000.txt", b"a kite"),
        ("001.png", image_bytes(tmp_path, 1)),
        # NaN (Python's json writes it) is no value; an int beyond SQLite's range is kept as text.
        ("001.json", b'{"license": "cc0", "w": 3, "sim": NaN, "hash": 18446744073709551616}')])
    b = write_tar(tmp_path / "shards" / "s-001.tar", [("002.png", image_bytes(tmp_path, 2)), ("002.cls", b"4")])
    pattern = str(tmp_path / "shards" / "s-{000..001}.tar")

    first = coll.add(WebDatasetSource([pattern]))
    assert (first.added, first.embedded, first.skipped) == (3, 3, [])
    assert shard_reads == [str(a), str(b)]
    assert set(rows(coll)) == {f"{a}#000.png", f"{a}#001.png", f"{b}#002.png"}
    assert meta_of(coll, f"{a}#000.png") == {CAPTION: "a kite"}
    assert meta_of(coll, f"{a}#001.png") == {"license": "cc0", "w": 3, "hash": "18446744073709551616"}
    assert meta_of(coll, f"{b}#002.png") == {"cls": 4}

    shard_reads.clear()
    reads.clear()
    again = coll.add(WebDatasetSource([pattern]))
    assert (again.added, again.unchanged, again.embedded) == (0, 3, 0)
    assert (shard_reads, reads) == ([], [])  # neither shard was opened

    write_tar(b, [("002.png", image_bytes(tmp_path, 2)), ("002.cls", b"5"), ("003.png", image_bytes(tmp_path, 3))])
    later(b)
    changed = coll.add(WebDatasetSource([pattern]))
    assert shard_reads == [str(b)]  # the unchanged shard still unread
    assert (changed.added, changed.embedded, changed.unchanged) == (1, 1, 3)
    assert meta_of(coll, f"{b}#002.png") == {"cls": 5}  # its sample's metadata follows the shard
    assert len(coll) == 4

    shard_reads.clear()
    assert coll.add(WebDatasetSource([pattern])).unchanged == 4 and shard_reads == []

    write_tar(a, [("000.png", image_bytes(tmp_path, 0)), ("000.txt", b"a kite")])  # 001 taken out
    later(a, 20)
    shrunk = coll.add(WebDatasetSource([pattern]))
    assert (shrunk.removed, shrunk.embedded) == (1, 0)
    assert set(rows(coll)) == {f"{a}#000.png", f"{b}#002.png", f"{b}#003.png"}


def test_a_hostile_shard(coll: Collection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         shard_reads: list[str]) -> None:
    good, evil = image_bytes(tmp_path, 1), image_bytes(tmp_path, 2)
    shard = tmp_path / "a" / "b" / "s.tar"
    shard.parent.mkdir(parents=True)
    with tarfile.open(shard, "w") as tar:
        for name, data in [("000.png", good), ("../../x.jpg", evil)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("001.png")
        link.type, link.linkname = tarfile.SYMTYPE, "../../x.jpg"
        tar.addfile(link)
        info = tarfile.TarInfo("002.png")
        info.size = len(evil)
        tar.addfile(info, io.BytesIO(evil))
    with tarfile.open(shard, "a", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        info = tarfile.TarInfo("caf\xe9.png")  # a name that is not UTF-8 (SQLite refuses its surrogates)
        info.size = len(good)
        tar.addfile(info, io.BytesIO(good))
        info = tarfile.TarInfo("003.png")
        info.size = len(evil)
        tar.addfile(info, io.BytesIO(evil))
    whole = shard.read_bytes()
    shard.write_bytes(whole[:whole.rfind(evil) + 30])  # the last member cut short
    monkeypatch.chdir(shard.parent)  # "../../x.jpg", were it written, would land in tmp_path

    report = coll.add(WebDatasetSource([str(shard)]))
    assert (report.added, report.failed) == (2, [])
    assert set(rows(coll)) == {f"{shard}#000.png", f"{shard}#002.png"}
    skipped = dict(report.skipped)
    assert skipped[f"{shard}#../../x.jpg"] == "member name leaves the shard's folder (path traversal); not read"
    assert skipped[f"{shard}#001.png"] == "not a regular file (a link or device member); not read"
    assert skipped[f"{shard}#caf\\udce9.png"] == "member name is not UTF-8; not read"
    assert "003.png is cut short" in skipped[str(shard)]
    assert list(tmp_path.rglob("x.jpg")) == []
    assert not any(p.read_bytes() == evil for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".jpg")

    # A shard cut short is not recorded as done: the next run reads it again, reports the
    # damage again, and embeds nothing it has already.
    shard_reads.clear()
    again = coll.add(WebDatasetSource([str(shard)]))
    assert (again.unchanged, again.embedded, shard_reads) == (2, 0, [str(shard)])
    assert "003.png is cut short" in dict(again.skipped)[str(shard)]


def test_metadata_set_by_id_stores_what_set_stores(coll: Collection, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(str(make_image(tmp_path / "a.png", seed=1)))
    coll.add(FileListSource(str(listing)))
    item_id = rows(coll)[str(tmp_path / "a.png")].id
    db = coll._storage.db
    with db.transaction():  # as an import or a restore writes it
        db.meta.set_by_id([(item_id, {"sim": float("nan"), "hash": 2**64, "ok": True, "gone": None, "n": 1.5})])
    assert db.meta.get([item_id]) == {item_id: {"hash": str(2**64), "ok": 1, "n": 1.5}}
