"""End to end: index a folder full of hostile files through the public API.

One folder holds every kind of broken or awkward file from test_decode next to ordinary
photos, plus a symlink loop and a broken link. Indexing it must finish, record each bad
file with a reason (and never give it a vector), index every readable file, and keep
memory bounded while refusing the decompression bomb.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import lookalike


@dataclass
class HostileFolder:
    root: Path
    good: dict[str, Path]  # name -> path
    bad: dict[str, tuple[Path, str]]  # name -> (path, a word its failure reason must contain)
    loop: Path
    broken_link: Path


def build_hostile_folder(root: Path, hostile: Any, bomb: bytes) -> HostileFolder:
    """Write the folder; every good file has distinct bytes, so each is embedded once."""
    sub = root / "sub" / "deeper"
    sub.mkdir(parents=True)
    good_bytes: dict[str, bytes] = {
        "photo_0.jpg": hostile.encode(hostile.blocks(100), "JPEG", quality=90),
        "photo_1.png": hostile.encode(hostile.blocks(101), "PNG"),
        "sub/photo_2.jpg": hostile.encode(hostile.blocks(102), "JPEG", quality=90),
        "sub/deeper/photo_3.webp": hostile.encode(hostile.blocks(103), "WEBP"),
        "really_a_png.jpg": hostile.encode(hostile.blocks(104), "PNG"),
        "cmyk.jpg": hostile.cmyk_jpeg(),
        "grey16.png": hostile.grey16_png(32768),
        "rgb16.png": hostile.rgb16_png(24, 16, (65535, 32768, 0)),
        "palette_transparent.png": hostile.palette_transparent_png(),
        "rgba.png": hostile.rgba_png(),
        "la.png": hostile.la_png(),
        "float.tiff": hostile.float_tiff(),
        "animated.gif": hostile.animated("GIF"),
        "animated.webp": hostile.animated("WEBP"),
        "animated.png": hostile.animated("PNG"),
        "rotated_6.jpg": hostile.exif_rotated_jpeg(6),
        "rotated_8.jpg": hostile.exif_rotated_jpeg(8),
        "café_猫_🐱.png": hostile.encode(hostile.blocks(105), "PNG"),
        "panorama_182MP.jpg": hostile.uniform_grey_jpeg(13504, 13504),
    }
    bad_bytes: dict[str, tuple[bytes, str]] = {
        "truncated.jpg": (hostile.truncated_jpeg(), "truncated"),
        "truncated.png": (hostile.truncated_png(), "truncated"),
        "sub/cut_in_header.png": (hostile.png_cut_in_header(), "truncated"),
        "empty.jpg": (b"", "empty file"),
        "shopping_list.jpg": (hostile.text(), "not an image"),
        "bomb.png": (bomb, "decompression bomb"),
    }
    good = {}
    for name, data in good_bytes.items():
        (root / name).write_bytes(data)
        good[name] = root / name
    bad = {}
    for name, (data, word) in bad_bytes.items():
        (root / name).write_bytes(data)
        bad[name] = (root / name, word)
    loop = sub / "back_to_sub"
    loop.symlink_to("..", target_is_directory=True)
    broken = root / "gone.png"
    broken.symlink_to(root / "deleted.png")
    return HostileFolder(root, good, bad, loop, broken)


@pytest.fixture
def folder(tmp_path: Path, hostile: Any, png_bomb_bytes: bytes) -> HostileFolder:
    return build_hostile_folder(tmp_path / "photos", hostile, png_bomb_bytes)


def test_hostile_folder_is_indexed_safely(
    tmp_path: Path, folder: HostileFolder, lite_model: Any, peak_rss: Any, decoder: str
) -> None:
    """Guards the whole decode path in production use, with each decoder (libvips and
    Pillow): the run completes; bad files are failures with reasons and no vectors; every
    readable file (CMYK, 16-bit, animated, rotated, unicode, mis-named, 182 MP) is indexed;
    the loop and broken link are skipped; memory stays bounded."""
    coll = lookalike.Collection.create(tmp_path / "c.lkl", model=lite_model)
    with peak_rss() as mem:
        report = coll.add([folder.root])

    good_paths = {str(p) for p in folder.good.values()}
    bad_paths = {str(p): word for p, word in folder.bad.values()}

    # Every bad file failed, with a reason that says why; nothing else failed.
    failed = dict(report.failed)
    assert set(failed) == set(bad_paths), report.failed
    for path, word in bad_paths.items():
        assert word in failed[path], (path, failed[path])

    # Every good file was embedded (distinct bytes, so no copies).
    assert report.added == report.embedded == len(good_paths)
    assert report.updated == report.renamed == report.copied == report.removed == 0

    # The loop and the broken link were reported, nothing else.
    skipped = dict(report.skipped)
    assert set(skipped) == {str(folder.loop), str(folder.broken_link)}, report.skipped
    assert "already visited" in skipped[str(folder.loop)]
    assert skipped[str(folder.broken_link)] == "broken symbolic link"

    # The collection's own account agrees.
    info = coll.info(max_errors=100)
    assert info.items == len(coll) == len(good_paths)
    assert info.failed == len(bad_paths)
    assert info.errors == sorted(report.failed)

    # Search sees exactly the good files: no failed file ever got a vector.
    query = lite_model.encode_images([folder.good["photo_0.jpg"]])[0]
    hits = coll.search(query, k=1000)
    assert {h.path for h in hits} == good_paths
    assert hits[0].path == str(folder.good["photo_0.jpg"])
    rows = {h.path: coll.item(h.id) for h in hits}
    assert all(row.status == "ok" and row.error is None for row in rows.values())

    # Sizes are the displayed sizes: rotated photos swap, the panorama keeps its full size.
    size = {name: (rows[str(p)].width, rows[str(p)].height) for name, p in folder.good.items()}
    assert size["rotated_6.jpg"] == size["rotated_8.jpg"] == (20, 40)
    assert size["panorama_182MP.jpg"] == (13504, 13504)
    assert size["animated.gif"] == (30, 30)

    # The bomb was refused from its header, so memory stayed far below its 900 MP.
    assert mem.growth < 1.5 * 2**30, f"RSS grew {mem.growth / 2**20:.0f} MB"


def test_rescan_of_hostile_folder_does_no_work(
    tmp_path: Path, folder: HostileFolder, lite_model: Any, hostile: Any
) -> None:
    """A second add of the unchanged folder embeds nothing and does not retry the failures;
    after a bad file is fixed, only that file is read again. (Indexer bookkeeping, so it runs
    with the default decoder only; the decoding itself is tested with both above.)"""
    coll = lookalike.Collection.create(tmp_path / "c.lkl", model=lite_model)
    first = coll.add([folder.root])
    assert len(first.failed) == len(folder.bad)

    again = coll.add([folder.root])
    assert again.embedded == 0 and again.failed == []
    assert again.unchanged == len(folder.good) + len(folder.bad)
    assert {p for p, _ in again.skipped} == {str(folder.loop), str(folder.broken_link)}

    fixed, _ = folder.bad["shopping_list.jpg"]
    fixed.write_bytes(hostile.encode(hostile.blocks(999), "JPEG"))
    os.utime(fixed, ns=(1_000_000_000, 1_000_000_000))
    third = coll.add([folder.root])
    assert third.failed == [] and third.embedded == 1 and third.updated == 1
    assert coll.info().failed == len(folder.bad) - 1
    assert len(coll) == len(folder.good) + 1

