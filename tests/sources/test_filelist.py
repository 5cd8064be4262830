"""FileListSource: one path or URL per line, read as parts; hostile lists (blank lines,
comments, repeats, paths that do not exist, a byte-order mark, CRLF) are reported, never fatal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from support import make_image
from lookalike.errors import InvalidArgument
from lookalike.sources import FileListSource, SourceItem


def read_all(source: FileListSource) -> tuple[list[SourceItem], list[tuple[str, str]], list[int]]:
    """``(items, skips, part sizes)`` of a whole source, parts read in order."""
    skips: list[tuple[str, str]] = []
    items: list[SourceItem] = []
    sizes: list[int] = []

    def on_skip(path: str, reason: str) -> None:
        skips.append((path, reason))

    for index, part in enumerate(source.parts(on_skip)):
        assert part.index == index and part.key is None  # lists are checked item by item
        got = list(part.read(on_skip))
        sizes.append(len(got))
        items += got
    return items, skips, sizes


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return [make_image(tmp_path / "imgs" / f"i{i}.png", seed=i) for i in range(4)]


def test_blank_lines_comments_repeats_and_missing_paths(tmp_path: Path, images: list[Path]) -> None:
    missing = tmp_path / "imgs" / "gone.png"
    lines = ["", str(images[0]), "   ", "# a comment", str(images[1]), str(images[0]), f"  {images[2]}  ",
             str(missing), "", str(tmp_path / "imgs"), str(images[1]), str(images[3])]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(lines) + "\n")

    items, skips, _ = read_all(FileListSource(str(listing)))

    assert [i.path for i in items] == [str(p) for p in (images[0], images[1], images[2], images[3])]
    for item, img in zip(items, (images[0], images[1], images[2], images[3])):
        st = img.stat()
        assert (item.size, item.mtime_ns, item.kind, item.data, item.meta) == (st.st_size, st.st_mtime_ns,
                                                                                 "file", None, None)
    assert sorted(skips) == sorted([
        (str(images[0]), "listed more than once; indexed once"),
        (str(missing), "no such file"),
        (str(tmp_path / "imgs"), "not a regular file"),
        (str(images[1]), "listed more than once; indexed once"),
    ])


def test_relative_paths_are_taken_from_the_current_folder(tmp_path: Path, images: list[Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    listing = tmp_path / "elsewhere" / "list.txt"
    listing.parent.mkdir()
    # The same file named relatively and absolutely is one entry.
    listing.write_text(f"imgs/i0.png\n./imgs/i1.png\n{images[0]}\n")
    monkeypatch.chdir(tmp_path)
    items, skips, _ = read_all(FileListSource(str(listing)))
    assert [i.path for i in items] == [str(images[0]), str(images[1])]
    assert skips == [(str(images[0]), "listed more than once; indexed once")]


def test_byte_order_mark_and_crlf_line_ends(tmp_path: Path, images: list[Path]) -> None:
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + f"{images[0]}\r\n\r\n{images[1]}\r\n".encode())
    items, skips, _ = read_all(FileListSource(str(listing)))
    assert [i.path for i in items] == [str(images[0]), str(images[1])]  # no "\ufeff" glued to the first path
    assert skips == []


def test_urls_pass_through_unread(tmp_path: Path, images: list[Path]) -> None:
    listing = tmp_path / "list.txt"
    url = "https://example.org/a.jpg?x=1#frag"
    listing.write_text(f"{url}\nHTTP://EXAMPLE.ORG/B.PNG\n{images[0]}\n{url}\n")
    items, skips, _ = read_all(FileListSource(str(listing)))
    assert [(i.path, i.size, i.mtime_ns, i.kind) for i in items[:2]] == [
        (url, -1, 0, "url"), ("HTTP://EXAMPLE.ORG/B.PNG", -1, 0, "url")]
    assert items[2].path == str(images[0]) and items[2].kind == "file"
    assert skips == [(url, "listed more than once; indexed once")]


def test_standard_input(tmp_path: Path, images: list[Path]) -> None:
    stdin = io.StringIO(f"{images[2]}\n\n{images[0]}\n")
    source = FileListSource("-", stdin=stdin)
    assert source.label == "standard input"
    items, skips, _ = read_all(source)
    assert [i.path for i in items] == [str(images[2]), str(images[0])]
    assert not stdin.closed  # not ours to close


def test_parts_split_the_list_in_order(tmp_path: Path, images: list[Path]) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(p) for p in images) + "\n" + "\n".join(str(p) for p in images))
    items, skips, sizes = read_all(FileListSource(str(listing), part_size=3))
    assert sizes == [3, 1]  # repeats do not fill parts
    assert [i.path for i in items] == [str(p) for p in images]
    assert len(skips) == 4


def test_empty_list_has_no_parts(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("\n\n# nothing\n")
    assert read_all(FileListSource(str(listing))) == ([], [], [])


def test_a_missing_list_is_an_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no such file list"):
        FileListSource(str(tmp_path / "nope.txt"))
    with pytest.raises(InvalidArgument, match="no such file list"):
        FileListSource(str(tmp_path))  # a folder is not a list


def test_a_nul_byte_in_a_path_is_reported_not_raised(tmp_path: Path, images: list[Path]) -> None:
    listing = tmp_path / "list.txt"
    listing.write_bytes(f"{tmp_path}/a\0b.png\n{images[0]}\n".encode())
    items, skips, _ = read_all(FileListSource(str(listing)))
    assert [i.path for i in items] == [str(images[0])]
    assert skips == [(f"{tmp_path}/a\0b.png", "not a valid path (it holds a NUL byte)")]
