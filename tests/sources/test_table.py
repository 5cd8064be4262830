"""TableSource: CSV and Parquet tables read as parts; hostile tables (a BOM, quoted newlines,
nulls and wrong types in the image column, a column whose type changes late, repeated images)
are read or reported row by row, never guessed at and never fatal."""

from __future__ import annotations

import decimal
from pathlib import Path
from typing import Any

import pytest

from support import make_image
from lookalike.errors import InvalidArgument
from lookalike.sources import CAPTION, SourceItem, TableSource
from lookalike.sources import table as table_mod

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def read_all(source: TableSource) -> tuple[list[SourceItem], list[tuple[str, str]]]:
    """``(items, skips)`` of a whole source, its parts read in order."""
    skips: list[tuple[str, str]] = []
    items: list[SourceItem] = []

    def on_skip(path: str, reason: str) -> None:
        skips.append((path, reason))

    for index, part in enumerate(source.parts(on_skip)):
        assert part.index == index and part.key is None
        items += part.read(on_skip)
    return items, skips


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return [make_image(tmp_path / "imgs" / f"i{i}.png", seed=i) for i in range(4)]


# --------------------------------------------------------------------------- CSV
def test_csv_with_bom_and_quoted_newlines(tmp_path: Path, images: list[Path]) -> None:
    table = tmp_path / "t.csv"
    text = ('path,caption,score\r\n'
            'imgs/i0.png,"a caption\nover two lines, with a comma",3\r\n'
            'imgs/i1.png,"she said ""hi""\r\nand left",4\r\n'
            'imgs/i2.png,plain,5\r\n')
    table.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))

    source = TableSource(str(table), caption_column="caption")
    assert source.columns == ["path", "caption", "score"]  # the BOM is not part of the first name
    assert source.image_column == "path"
    items, skips = read_all(source)
    assert skips == []
    assert [i.path for i in items] == [str(p) for p in images[:3]]
    assert [dict(i.meta or {}) for i in items] == [
        {CAPTION: "a caption\nover two lines, with a comma", "score": 3},
        {CAPTION: 'she said "hi"\r\nand left', "score": 4},
        {CAPTION: "plain", "score": 5},
    ]
    st = images[0].stat()
    assert (items[0].size, items[0].mtime_ns, items[0].kind) == (st.st_size, st.st_mtime_ns, "file")


def test_row_numbers_in_messages_count_rows_not_lines(tmp_path: Path, images: list[Path]) -> None:
    table = tmp_path / "t.csv"
    table.write_text('path,caption\nimgs/i0.png,"one\ntwo\nthree"\nimgs/nope.png,x\n,empty\n')
    items, skips = read_all(TableSource(str(table), caption_column="caption"))
    assert [i.path for i in items] == [str(images[0])]
    assert sorted(skips) == sorted([(str(tmp_path / "imgs" / "nope.png"), f"no such file (row 2 of {table})"),
                                    (f"{table} row 3", "no image in column 'path'")])


def test_csv_cells_are_typed_one_by_one(tmp_path: Path, images: list[Path]) -> None:
    table = tmp_path / "t.csv"
    table.write_text("path,n,ratio,id,flag,note,caption\n"
                     "imgs/i0.png,7,0.5,00123,true,,1984\n"
                     "imgs/i1.png,-2,1e3,123,FALSE,hello,x\n"
                     "imgs/i2.png,text now,inf,+5,maybe,1_000,\n"
                     "imgs/i3.png,0,-.5,00.5,1.,0x10,0\n")
    items, skips = read_all(TableSource(str(table), caption_column="caption"))
    assert skips == []
    assert [dict(i.meta or {}) for i in items] == [
        {"n": 7, "ratio": 0.5, "id": "00123", "flag": True, CAPTION: "1984"},  # empty note: no key
        {"n": -2, "ratio": 1000.0, "id": 123, "flag": False, "note": "hello", CAPTION: "x"},
        {"n": "text now", "ratio": "inf", "id": "+5", "flag": "maybe", "note": "1_000"},
        {"n": 0, "ratio": -0.5, "id": "00.5", "flag": 1.0, "note": "0x10", CAPTION: "0"},
    ]
    assert isinstance(items[0].meta[CAPTION], str)  # a caption stays text even when it reads as a number


def test_a_column_that_turns_to_text_after_the_first_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pyarrow infers a column's type from the first block; a later "abc" used to end the read
    # with "CSV conversion error to int64" after the earlier rows were already indexed.
    monkeypatch.setattr(table_mod, "CSV_BLOCK_BYTES", 512)
    table = tmp_path / "t.csv"
    rows = [f"a{i}.png,{i},{i}\n" for i in range(300)] + ["b.png,abc,7\n"]
    table.write_text("path,n,m\n" + "".join(rows))
    assert table.stat().st_size > 8 * 512
    seen: list[tuple[int, str, Any]] = []
    for part in TableSource(str(table)).parts(lambda p, r: pytest.fail(f"{p}: {r}")):
        seen += part.rows
    assert len(seen) == 301
    assert seen[0] == (1, str(tmp_path / "a0.png"), {"n": 0, "m": 0})
    assert seen[-1] == (301, str(tmp_path / "b.png"), {"n": "abc", "m": 7})


def test_numeric_looking_image_names_are_paths(tmp_path: Path) -> None:
    make_image(tmp_path / "00123", seed=1, fmt="PNG")
    table = tmp_path / "t.csv"
    table.write_text("file,x\n00123,1\n")
    items, skips = read_all(TableSource(str(table)))
    assert skips == []
    assert [i.path for i in items] == [str(tmp_path / "00123")]


def test_a_nul_byte_in_a_path_is_reported_not_raised(tmp_path: Path, images: list[Path]) -> None:
    table = tmp_path / "t.csv"
    table.write_bytes(b"path\nimgs/a\0b.png\nimgs/i0.png\n")
    items, skips = read_all(TableSource(str(table)))
    assert [i.path for i in items] == [str(images[0])]
    assert skips == [(str(tmp_path / "imgs" / "a\0b.png"), f"not a valid path (it holds a NUL byte) (row 1 of {table})")]


def test_a_cell_that_is_not_utf8_spoils_only_itself(tmp_path: Path, images: list[Path]) -> None:
    table = tmp_path / "t.csv"
    table.write_bytes(b"path,caption,place\nimgs/i0.png,caf\xe9,Z\xfcrich\nimgs/i1.png,ok,Bern\nimgs/\xff.png,x,y\n")
    items, skips = read_all(TableSource(str(table), caption_column="caption"))
    assert [(i.path, dict(i.meta or {})) for i in items] == [
        (str(images[0]), {CAPTION: "caf\ufffd", "place": "Z\ufffdrich"}),
        (str(images[1]), {CAPTION: "ok", "place": "Bern"}),
    ]
    assert skips == [(f"{table} row 3", "column 'path' holds bytes that are not UTF-8 text, not a URL or path")]


def test_tsv(tmp_path: Path, images: list[Path]) -> None:
    table = tmp_path / "t.tsv"
    table.write_text("image\tlicense\nimgs/i3.png\tcc, by\n")
    items, skips = read_all(TableSource(str(table)))
    assert [(i.path, dict(i.meta or {})) for i in items] == [(str(images[3]), {"license": "cc, by"})]


def test_relative_paths_are_taken_from_the_tables_folder(tmp_path: Path, images: list[Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "meta"
    sub.mkdir()
    table = sub / "t.csv"
    table.write_text(f"path\n../imgs/i0.png\n{images[1]}\n")
    monkeypatch.chdir(images[0].parent)  # not the current folder
    items, _ = read_all(TableSource(str(table)))
    assert [i.path for i in items] == [str(images[0]), str(images[1])]


def test_an_image_named_by_several_rows_is_one_item(tmp_path: Path, images: list[Path]) -> None:
    table = tmp_path / "t.csv"
    table.write_text("path,caption\nimgs/i0.png,first\nimgs/i1.png,other\n./imgs/i0.png,second\n"
                     "https://x.org/a.png,u1\nhttps://x.org/a.png,u2\n")
    items, skips = read_all(TableSource(str(table), caption_column="caption"))
    assert [(i.path, i.meta[CAPTION]) for i in items] == [
        (str(images[0]), "first"), (str(images[1]), "other"), ("https://x.org/a.png", "u1")]
    assert [s[0] for s in skips] == [f"{table} row 3", f"{table} row 5"]
    assert all("indexed once" in reason for _, reason in skips)


def test_urls_and_other_schemes(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("url,title\nhttps://example.org/a.jpg,A\n  http://example.org/b.jpg  ,B\n"
                     "ftp://example.org/c.jpg,C\ns3://bucket/d.jpg,D\n")
    items, skips = read_all(TableSource(str(table)))
    assert [(i.path, i.size, i.mtime_ns, i.kind, dict(i.meta or {})) for i in items] == [
        ("https://example.org/a.jpg", -1, 0, "url", {"title": "A"}),
        ("http://example.org/b.jpg", -1, 0, "url", {"title": "B"}),
    ]
    assert skips == [(f"{table} row 3", "ftp://example.org/c.jpg: only http and https URLs are fetched"),
                     (f"{table} row 4", "s3://bucket/d.jpg: only http and https URLs are fetched")]


def test_parts_hold_part_size_rows(tmp_path: Path, images: list[Path]) -> None:
    table = tmp_path / "t.csv"
    table.write_text("path\n" + "".join(f"imgs/i{i}.png\n" for i in range(4)) + "imgs/i9.png\n")
    parts = list(TableSource(str(table), part_size=2).parts(lambda p, r: None))
    assert [len(p.rows) for p in parts] == [2, 2, 1]
    assert [row[0] for p in parts for row in p.rows] == [1, 2, 3, 4, 5]


# --------------------------------------------------------------------------- Parquet
def test_parquet_nulls_and_wrong_types_in_the_image_column(tmp_path: Path, images: list[Path]) -> None:
    pq.write_table(pa.table({
        "url": ["imgs/i0.png", None, "", "   ", "imgs/i1.png"],
        "n": [1, 2, None, 4, 5],
        "h": pa.array([2**64 - 1, 0, 0, 0, 1], pa.uint64()),
        "price": pa.array([decimal.Decimal("1.50")] * 5, pa.decimal128(5, 2)),
        "tags": [["a", "b"], [], None, ["c"], None],
        "blob": [b"\x00\xff"] * 5,
    }), tmp_path / "a.parquet")
    items, skips = read_all(TableSource(str(tmp_path / "a.parquet")))
    assert [i.path for i in items] == [str(images[0]), str(images[1])]
    assert dict(items[0].meta) == {"n": 1, "h": 2**64 - 1, "price": 1.5, "tags": '["a", "b"]'}  # no blob
    assert dict(items[1].meta) == {"n": 5, "h": 1, "price": 1.5}
    table = tmp_path / "a.parquet"
    assert skips == [(f"{table} row {n}", "no image in column 'url'") for n in (2, 3, 4)]


@pytest.mark.parametrize("column, reason", [
    (pa.array([7, None], pa.int64()), "column 'url' holds int 7, not a URL or path"),
    (pa.array([1.5, None]), "column 'url' holds float 1.5, not a URL or path"),
    (pa.array([["imgs/i0.png"], None], pa.list_(pa.string())), "column 'url' holds list ['imgs/i0.png'], not a URL or path"),
    (pa.array([b"\xff\xfe", None], pa.binary()), "column 'url' holds bytes that are not UTF-8 text, not a URL or path"),
    (pa.array([b"  ", None], pa.binary()), "no image in column 'url'"),  # not the table's own folder
])
def test_parquet_image_column_of_a_wrong_type(tmp_path: Path, column: Any, reason: str) -> None:
    pq.write_table(pa.table({"url": column}), tmp_path / "b.parquet")
    items, skips = read_all(TableSource(str(tmp_path / "b.parquet")))
    table = tmp_path / "b.parquet"
    assert items == []
    assert skips == [(f"{table} row 1", reason), (f"{table} row 2", "no image in column 'url'")]


def test_parquet_binary_image_column_holding_utf8_paths(tmp_path: Path, images: list[Path]) -> None:
    pq.write_table(pa.table({"path": pa.array([b"imgs/i2.png"], pa.binary())}), tmp_path / "c.pq")
    items, skips = read_all(TableSource(str(tmp_path / "c.pq")))
    assert [i.path for i in items] == [str(images[2])] and skips == []


# --------------------------------------------------------------------------- columns and errors
def test_the_image_column_is_guessed_or_named(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("id,filepath,image\n1,a.png,b.png\n")
    assert TableSource(str(table)).image_column == "filepath"  # the first guess in order
    assert TableSource(str(table), image_column="image").image_column == "image"
    with pytest.raises(InvalidArgument, match=r"no column 'img'.*id, filepath, image.*--url-col"):
        TableSource(str(table), image_column="img")
    with pytest.raises(InvalidArgument, match=r"no column 'text'.*--caption-col"):
        TableSource(str(table), caption_column="text")
    other = tmp_path / "o.csv"
    other.write_text("id,where\n1,a.png\n")
    with pytest.raises(InvalidArgument, match=r"which column holds the images\?.*id, where"):
        TableSource(str(other))


def test_tables_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no such table"):
        TableSource(str(tmp_path / "none.csv"))
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(InvalidArgument, match="not a table lookalike reads"):
        TableSource(str(tmp_path / "t.xlsx"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InvalidArgument, match="not a readable Parquet table"):
        TableSource(str(tmp_path / "bad.parquet"))
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(InvalidArgument, match="not a readable CSV table"):
        TableSource(str(tmp_path / "empty.csv"))
