"""WebDatasetSource: tar shards streamed in place, samples grouped by key; hostile shards (a
truncated member, link members, path-traversal names, a file that is no tar) are reported
member by member and nothing in a shard is ever written anywhere."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from support import make_image
from lookalike.errors import InvalidArgument
from lookalike.sources import CAPTION, SourceItem, WebDatasetSource, expand_shards, is_shard_pattern
from lookalike.sources import webdataset as wds

pytest.importorskip("braceexpand")

MTIME = 1_700_000_000


def png(seed: int, tmp: Path) -> bytes:
    return make_image(tmp / f"src-{seed}.png", seed=seed).read_bytes()


def add_file(tar: tarfile.TarFile, name: str, data: bytes, mtime: int = MTIME) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), mtime
    tar.addfile(info, io.BytesIO(data))


def add_link(tar: tarfile.TarFile, name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tar.addfile(info)


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            add_file(tar, name, data)
    return path


def read_all(source: WebDatasetSource) -> tuple[list[SourceItem], list[tuple[str, str]]]:
    skips: list[tuple[str, str]] = []
    items: list[SourceItem] = []

    def on_skip(path: str, reason: str) -> None:
        skips.append((path, reason))

    for part in source.parts(on_skip):
        items += part.read(on_skip)
    return items, skips


# --------------------------------------------------------------------------- shard patterns
def test_brace_ranges_and_globs(tmp_path: Path) -> None:
    for i in range(4):
        write_tar(tmp_path / f"s-{i:03d}.tar", [])
    assert expand_shards([str(tmp_path / "s-{001..002}.tar")]) == [str(tmp_path / "s-001.tar"),
                                                                    str(tmp_path / "s-002.tar")]
    # a glob's matches sorted; a shard named twice is read once, where it first came
    assert expand_shards([str(tmp_path / "s-003.tar"), str(tmp_path / "s-*.tar")]) == [
        str(tmp_path / f"s-{i:03d}.tar") for i in (3, 0, 1, 2)]
    with pytest.raises(InvalidArgument, match=r"s-004\.tar: no such shard"):
        expand_shards([str(tmp_path / "s-{003..004}.tar")])
    with pytest.raises(InvalidArgument, match="no such shard"):
        WebDatasetSource([str(tmp_path / "x-*.tar")])
    assert is_shard_pattern("a/{0..9}.TAR") and is_shard_pattern("b.tar.gz") and not is_shard_pattern("c.csv")


def test_parts_are_keyed_by_shard_size_and_mtime(tmp_path: Path) -> None:
    shards = [write_tar(tmp_path / f"{i}.tar", [(f"{i}.png", png(i, tmp_path))]) for i in range(2)]
    parts = list(WebDatasetSource([str(tmp_path / "{0..1}.tar")]).parts(lambda p, r: pytest.fail(r)))
    assert [p.index for p in parts] == [0, 1]
    for part, shard in zip(parts, shards):
        st = shard.stat()
        assert (part.key.path, part.key.size, part.key.mtime_ns) == (str(shard), st.st_size, st.st_mtime_ns)


# --------------------------------------------------------------------------- samples
def test_samples_carry_caption_metadata_and_class(tmp_path: Path) -> None:
    a, b, c = png(1, tmp_path), png(2, tmp_path), png(3, tmp_path)
    shard = write_tar(tmp_path / "s.tar", [
        ("d/000001.jpg", a), ("d/000001.txt", "  a red kite \n".encode()),
        ("d/000001.json", json.dumps({"license": "cc-by", "w": 640, "ok": True, "nested": {"x": 1},
                                      "none": None}).encode()),
        ("d/000001.cls", b"7"),
        ("d/000002.png", b), ("d/000002.cls", "\u00b2".encode()),  # "²": a digit to str.isdigit(), not to int()
        ("d/000003.png", c), ("d/000003.json", b"{broken"), ("d/000003.npy", b"\x93NUMPY"),
        ("notes.md", b"# not an image"),
    ])
    items, skips = read_all(WebDatasetSource([str(shard)]))
    assert skips == []
    assert [i.path for i in items] == [f"{shard}#d/000001.jpg", f"{shard}#d/000002.png", f"{shard}#d/000003.png"]
    assert [i.data for i in items] == [a, b, c]
    assert [(i.size, i.mtime_ns, i.kind) for i in items] == [(len(d), MTIME * 10**9, "member") for d in (a, b, c)]
    assert dict(items[0].meta) == {CAPTION: "a red kite", "license": "cc-by", "w": 640, "ok": True,
                                   "nested": '{"x": 1}', "cls": 7}
    assert dict(items[1].meta) == {"cls": "\u00b2"}
    assert not items[2].meta  # unreadable JSON is no metadata, and no reason to stop


def test_two_images_of_one_sample_share_its_caption(tmp_path: Path) -> None:
    shard = write_tar(tmp_path / "s.tar", [("k.jpg", png(1, tmp_path)), ("k.png", png(2, tmp_path)),
                                           ("k.txt", b"both")])
    items, _ = read_all(WebDatasetSource([str(shard)]))
    assert [(i.path.rsplit("#", 1)[1], i.meta[CAPTION]) for i in items] == [("k.jpg", "both"), ("k.png", "both")]


# --------------------------------------------------------------------------- hostile shards
def _no_file_named(name: str, *roots: Path) -> None:
    for root in roots:
        found = [p for p in root.rglob(name)]
        assert found == [], f"{name} was written: {found}"


def test_link_and_path_traversal_members_are_reported_and_never_written(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    good = png(1, tmp_path)
    evil = png(2, tmp_path)
    shard = tmp_path / "deep" / "er" / "s.tar"
    shard.parent.mkdir(parents=True)
    with tarfile.open(shard, "w") as tar:
        add_file(tar, "000000.png", good)
        add_file(tar, "../../x.jpg", evil)
        add_file(tar, "a/../../../x.jpg", evil)
        add_file(tar, "/tmp/x.jpg", evil)
        add_file(tar, "..\\..\\x.jpg", evil)
        add_link(tar, "000001.png", "/etc/passwd")
        add_link(tar, "000002.png", "000000.png", tarfile.LNKTYPE)
        add_file(tar, "000003.png", png(3, tmp_path))
    # Were anything extracted relative to the shard or the current folder, "../../x.jpg"
    # would land in tmp_path.
    monkeypatch.chdir(shard.parent)
    items, skips = read_all(WebDatasetSource([str(shard)]))

    assert [i.path for i in items] == [f"{shard}#000000.png", f"{shard}#000003.png"]
    traversal = "member name leaves the shard's folder (path traversal); not read"
    link = "not a regular file (a link or device member); not read"
    assert skips == [(f"{shard}#../../x.jpg", traversal), (f"{shard}#a/../../../x.jpg", traversal),
                     (f"{shard}#/tmp/x.jpg", traversal), (f"{shard}#..\\..\\x.jpg", traversal),
                     (f"{shard}#000001.png", link), (f"{shard}#000002.png", link)]
    _no_file_named("x.jpg", tmp_path)
    assert not Path("/tmp/x.jpg").exists() or Path("/tmp/x.jpg").read_bytes() != evil
    with pytest.raises(FileNotFoundError):
        wds.read_member(f"{shard}#../../x.jpg")
    with pytest.raises(FileNotFoundError):
        wds.read_member(f"{shard}#000001.png")


def test_a_member_name_that_is_not_utf8(tmp_path: Path) -> None:
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        add_file(tar, "caf\xe9.png", png(1, tmp_path))  # the name's byte 0xE9 alone: not UTF-8
        add_file(tar, "ok.png", png(2, tmp_path))
    items, skips = read_all(WebDatasetSource([str(shard)]))
    assert [i.path for i in items] == [f"{shard}#ok.png"]
    assert skips == [(f"{shard}#caf\\udce9.png", "member name is not UTF-8; not read")]
    for where, _ in skips:
        where.encode("utf-8")  # printable and storable, unlike the name tarfile decoded


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.gz"])
def test_a_truncated_member_ends_the_shard_with_a_reason(tmp_path: Path, compress: bool) -> None:
    members = [(f"{i:06d}.png", png(i, tmp_path)) for i in range(4)]
    whole = write_tar(tmp_path / "whole.tar", members).read_bytes()
    cut = whole.find(members[2][1]) + 40  # in the middle of the third image
    shard = tmp_path / ("s.tar.gz" if compress else "s.tar")
    shard.write_bytes(gzip.compress(whole[:cut]) if compress else whole[:cut])

    items, skips = read_all(WebDatasetSource([str(shard)]))
    assert [i.path for i in items] == [f"{shard}#000000.png", f"{shard}#000001.png"]
    assert [i.data for i in items] == [members[0][1], members[1][1]]
    assert len(skips) == 1
    where, reason = skips[0]
    assert where == str(shard)
    assert reason.startswith("cannot read the rest of the shard (truncated or damaged")
    assert "000002.png" in reason  # the member that was cut names itself


def test_a_file_that_is_no_tar(tmp_path: Path) -> None:
    shard = tmp_path / "s.tar"
    shard.write_bytes(os.urandom(3000))
    items, skips = read_all(WebDatasetSource([str(shard)]))
    assert items == []
    assert [(w, r.split(" (")[0]) for w, r in skips] == [(str(shard), "cannot read the rest of the shard")]


def test_an_oversized_member_is_passed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small, big = png(1, tmp_path), png(2, tmp_path) + b"\0" * 4096
    monkeypatch.setattr(wds, "MAX_MEMBER_BYTES", len(small) + 1)
    shard = write_tar(tmp_path / "s.tar", [("0.png", big), ("1.png", small)])
    items, skips = read_all(WebDatasetSource([str(shard)]))
    assert [i.path for i in items] == [f"{shard}#1.png"]
    assert skips == [(f"{shard}#0.png", f"member of {len(big)} bytes is over the 0 MiB limit")]


def test_a_shard_gone_between_listing_and_reading(tmp_path: Path) -> None:
    shards = [write_tar(tmp_path / f"{i}.tar", [("a.png", png(i, tmp_path))]) for i in range(2)]
    source = WebDatasetSource([str(s) for s in shards])
    shards[0].unlink()
    items, skips = read_all(source)
    assert [i.path for i in items] == [f"{shards[1]}#a.png"]
    assert skips == [(str(shards[0]), "no such file")]


# --------------------------------------------------------------------------- read_member
def test_read_member(tmp_path: Path) -> None:
    data = {name: png(i, tmp_path) for i, name in enumerate(["a.png", "b#1.png", "sub/c#d.png"])}
    shard = write_tar(tmp_path / "with#hash" / "s.tar", list(data.items()))
    items, skips = read_all(WebDatasetSource([str(shard)]))
    assert skips == []
    for item in items:
        assert wds.read_member(item.path) == item.data  # the identity the source gave reads back
    assert wds.split_identity(f"{shard}#b#1.png") == (str(shard), "b#1.png")
    gz = tmp_path / "s.TAR.GZ"
    gz.write_bytes(gzip.compress(shard.read_bytes()))
    assert wds.read_member(f"{gz}#sub/c#d.png") == data["sub/c#d.png"]
    with pytest.raises(FileNotFoundError, match="no such member"):
        wds.read_member(f"{shard}#nope.png")
    with pytest.raises(FileNotFoundError):
        wds.read_member(f"{tmp_path / 'gone.tar'}#a.png")
