"""Duplicates of a collection: the three tiers, keep rules, reference and preferred folders,
bursts, the lazy backfill of older collections, and the incremental neighbour cache."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

import lookalike
from lookalike import DuplicateSettings, InvalidArgument
from lookalike.store.dupes import Member, choose_kept
from lookalike.store.items import Item
from lookalike.images.traits import ImageTraits


def smooth(path: Path, seed: int, size: tuple[int, int] = (240, 180), **save: object) -> Path:
    """A photo-like image whose perceptual hashes survive resizing and re-encoding."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **save)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """20 distinct images, a byte copy, a 40 % resize and a JPEG re-encode of three of them."""
    root = tmp_path / "photos"
    for i in range(20):
        smooth(root / f"img{i:02d}.png", seed=i)
    (root / "copy").mkdir()
    shutil.copy(root / "img01.png", root / "copy" / "img01.png")
    Image.open(root / "img02.png").resize((96, 72), Image.Resampling.LANCZOS).save(root / "img02_small.png")
    Image.open(root / "img03.png").convert("RGB").save(root / "img03.jpg", quality=50)
    return root


@pytest.fixture
def coll(tmp_path: Path, folder: Path, tiny_timm_dir: Path):
    c = lookalike.Collection.create(tmp_path / "c.lkl", model=f"timm:{tiny_timm_dir}", device="cpu")
    c.add([folder])
    yield c
    c.close()


#: The hash tiers alone, at the hash distance these smooth test images keep under their edits:
#: the tiny random model's embeddings mean nothing, so no similarity floor for hash matches.
HASHES = dict(tiers=("exact", "perceptual"), hash_bits=6, perceptual_floor=-1.0)


def by_tier(groups) -> dict[str, list[set[str]]]:
    out: dict[str, list[set[str]]] = {}
    for g in groups:
        out.setdefault(g.tier, []).append({Path(m.item.path).name for m in g.members})
    return out


def test_exact_and_perceptual_tiers_find_copies_and_edits(coll) -> None:
    # The tiny random model's embeddings mean nothing: semantic tier off.
    groups = coll.duplicates(**HASHES)
    tiers = by_tier(groups)
    assert tiers["exact"] == [{"img01.png"}]  # the byte copy (same name, another folder)
    assert sorted(map(sorted, tiers["perceptual"])) == [["img02.png", "img02_small.png"], ["img03.jpg", "img03.png"]]
    exact = next(g for g in groups if g.tier == "exact")
    assert {m.tier for m in exact.members} == {"exact"} and exact.similarity == 1.0
    assert all(sum(m.keep for m in g.members) == 1 and g.members[0].keep for g in groups)


def test_exact_tier_alone_only_groups_byte_copies(coll) -> None:
    assert [g.tier for g in coll.duplicates(tiers=("exact",))] == ["exact"]


def test_semantic_tier_follows_the_threshold(coll) -> None:
    loose = coll.duplicates(threshold=-1.0, tiers=("semantic",))
    # At -1 every pair matches, but groups never exceed what their neighbour lists connect and
    # every pair in a group matches; at 1.0 only identical vectors (copies) group.
    assert sum(len(g.members) for g in loose) >= 20
    strict = coll.duplicates(threshold=1.0, tiers=("semantic",))
    assert {frozenset(Path(m.item.path).name for m in g.members) for g in strict} == {frozenset({"img01.png"})}


def test_fraction_picks_the_threshold_from_the_nearest_pairs(coll) -> None:
    hist = coll.duplicate_histogram(bins=10)
    assert len(hist.edges) == 11 and sum(hist.counts) == len(coll) - 1  # copies share a row
    assert hist.pairs_above[0] == sum(hist.counts) and hist.pairs_above == sorted(hist.pairs_above, reverse=True)
    assert hist.default_threshold == coll.default_duplicate_threshold
    few = coll.duplicates(fraction=0.05, tiers=("semantic",))
    many = coll.duplicates(fraction=0.9, tiers=("semantic",))
    assert sum(len(g.members) for g in few) < sum(len(g.members) for g in many)


@pytest.mark.parametrize("bad", [dict(threshold=1.5), dict(fraction=0), dict(tiers=("fuzzy",)),
                                 dict(keep="biggest"), dict(threshold=0.9, fraction=0.1), dict(hash_bits=65),
                                 dict(burst_seconds=-1)])
def test_bad_settings_are_refused(bad) -> None:
    with pytest.raises(InvalidArgument):
        DuplicateSettings(**bad)


def member(i: int, path: str, *, size: int = 100, wh: tuple[int, int] = (10, 10), mtime: float = 0.0,
           taken: float | None = None, tags: int = 0, sharp: float = 0.0) -> Member:
    item = Item(i, path, size, int(mtime * 1e9), f"h{i}", wh[0], wh[1], "ok")
    return Member(item, ImageTraits(0, 0, 0, sharp, taken, tags), 1.0, "semantic", False, False)


@pytest.mark.parametrize("rule, expected", [
    ("largest", 2), ("oldest", 3), ("newest", 4), ("most-metadata", 5), ("shortest-path", 6), ("sharpest", 1),
])
def test_keep_rules(rule: str, expected: int) -> None:
    members = [
        member(1, "/p/aaaa/one.jpg", sharp=9.0, mtime=50),
        member(2, "/p/aaaa/two.jpg", wh=(20, 20), mtime=50),
        member(3, "/p/aaaa/three.jpg", mtime=99, taken=10.0),      # EXIF time wins over mtime
        member(4, "/p/aaaa/four.jpg", mtime=200),
        member(5, "/p/aaaa/five.jpg", tags=12, mtime=50),
        member(6, "/p/s.jpg", mtime=50),
    ]
    chosen = choose_kept(members, DuplicateSettings(keep=rule))
    assert chosen[0].item.id == expected and chosen[0].keep and sum(m.keep for m in chosen) == 1


def test_largest_breaks_pixel_ties_by_bytes_then_id() -> None:
    members = [member(3, "/a", size=10), member(1, "/b", size=50), member(2, "/c", size=50)]
    assert choose_kept(members, DuplicateSettings())[0].item.id == 1


def test_reference_and_preferred_folders(tmp_path: Path) -> None:
    ref, pref = str(tmp_path / "originals"), str(tmp_path / "best")
    members = [member(1, str(tmp_path / "x" / "big.jpg"), wh=(99, 99)),
               member(2, f"{pref}/a.jpg"), member(3, f"{ref}/a.jpg"), member(4, f"{ref}/b.jpg")]
    chosen = choose_kept(members, DuplicateSettings(reference=(ref,), prefer=(pref,)))
    assert chosen[0].item.id == 3
    assert {m.item.id for m in chosen if m.reference} == {3, 4}
    # Reference files are never acted on: they count as kept.
    assert {m.item.id for m in chosen if not m.keep} == {1, 2}
    chosen = choose_kept(members[:2], DuplicateSettings(prefer=(pref,)))
    assert chosen[0].item.id == 2  # preferred beats the larger file


def exif_shot(path: Path, seed: int, when: str, sub: str = "0") -> Path:
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    ifd[0x9003], ifd[0x9291] = when, sub
    return smooth(path, seed, exif=exif, quality=95)


def test_bursts_are_their_own_kind_and_keep_the_sharpest(tmp_path: Path, tiny_timm_dir: Path) -> None:
    root = tmp_path / "burst"
    exif_shot(root / "s1.jpg", 1, "2024:01:01 10:00:00", "1")
    exif_shot(root / "s2.jpg", 1, "2024:01:01 10:00:00", "6")
    img = Image.open(root / "s2.jpg")
    exif = img.getexif()
    img.filter(ImageFilter.SHARPEN).save(root / "s3.jpg", exif=exif, quality=95)
    exif_shot(root / "far1.jpg", 9, "2024:01:01 10:00:00")
    exif_shot(root / "far2.jpg", 9, "2024:03:01 10:00:00")
    with lookalike.Collection.create(tmp_path / "b.lkl", model=f"timm:{tiny_timm_dir}", device="cpu") as c:
        c.add([root])
        groups = c.duplicates(tiers=("perceptual",), hash_bits=8, perceptual_floor=-1, burst_seconds=2)
        kinds = {frozenset(Path(m.item.path).name for m in g.members): g for g in groups}
        burst = kinds[frozenset({"s1.jpg", "s2.jpg", "s3.jpg"})]
        assert burst.kind == "burst"
        sharpest = max(burst.members, key=lambda m: m.traits.sharpness)
        assert burst.kept.item.id == sharpest.item.id
        assert kinds[frozenset({"far1.jpg", "far2.jpg"})].kind == "duplicate"
        assert all(g.kind == "duplicate" for g in c.duplicates(tiers=("perceptual",), hash_bits=8, perceptual_floor=-1))


def test_an_older_collection_gets_its_traits_on_first_use(coll, folder: Path) -> None:
    db = coll.path / "items.sqlite"
    with sqlite3.connect(db) as con:
        # As a collection written before traits existed (schema 1) is after its migration.
        con.execute("UPDATE items SET phash = NULL, dhash = NULL, phash_mirror = NULL, sharpness = NULL")
        con.execute("DELETE FROM state WHERE key = 'traits_backfilled'")
    (folder / "img05.png").unlink()  # a file gone since: it keeps no traits, nothing breaks
    events = []
    groups = coll.duplicates(**HASHES, progress=events.append)
    assert {e.kind for e in events} >= {"traits"}
    assert len(groups) == 3
    with sqlite3.connect(db) as con:
        missing = con.execute("SELECT path FROM items WHERE phash IS NULL").fetchall()
    assert [Path(p).name for (p,) in missing] == ["img05.png"]
    events.clear()
    coll.duplicates(**HASHES, progress=events.append)
    assert "traits" not in {e.kind for e in events}  # tried once: the gone file is not retried


def test_neighbour_lists_are_cached_and_updated_incrementally(coll, folder: Path, monkeypatch) -> None:
    import lookalike.store.neighbours as neighbours

    first = coll.duplicates(**HASHES)
    assert (coll.path / "neighbours.npz").exists()

    def fail(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(neighbours, "knn_graph", fail)
    monkeypatch.setattr(neighbours, "update_knn_graph", fail)
    assert coll.duplicates(**HASHES) == first  # unchanged: read from the cache
    monkeypatch.undo()
    searched = []
    Image.open(folder / "img04.png").resize((120, 90)).save(folder / "img04_half.png")
    coll.add([folder])
    groups = coll.duplicates(**HASHES,
                             progress=lambda e: searched.append(e.total) if e.kind == "neighbours" else None)
    assert searched and max(searched) == 1  # only the new row was searched
    assert {"img04.png", "img04_half.png"} in [{Path(m.item.path).name for m in g.members} for g in groups]


def test_forget_and_restore_keep_ids_and_vectors(coll, folder: Path) -> None:
    item = coll.item_at(folder / "img07.png")
    before = coll.get_vectors([item.id])
    snaps = coll.forget([item.id])
    assert coll.item_at(folder / "img07.png") is None
    assert all(h.id != item.id for h in coll.search(before[0], k=30))
    assert coll.restore(snaps) == []
    assert coll.item(item.id) == item and np.array_equal(coll.get_vectors([item.id]), before)
    assert coll.search(before[0], k=1)[0].id == item.id
    again = coll.forget([item.id])
    coll.add([folder])  # the file is still there: indexed again under a new id
    assert coll.restore(again) == again  # the path is taken: not restored twice
    with pytest.raises(lookalike.ItemNotFound):
        coll.forget([10_000])


def test_stored_item_round_trips_through_json(coll, folder: Path) -> None:
    import json

    from lookalike import StoredItem

    snap = coll.forget([coll.item_at(folder / "img08.png").id])[0]
    assert snap.traits is not None and snap.vec_row is not None
    assert StoredItem.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
    # A snapshot of another vector file generation (compacted since) is handed back for add().
    other = replace(snap, vector_file="vectors-9.f32")
    assert coll.restore([other]) == [other] and coll.item_at(folder / "img08.png") is None


def test_lazy_groups_read_a_page_at_a_time(coll) -> None:
    eager = coll.duplicates(**HASHES)
    lazy = coll.duplicates(**HASHES, lazy=True)
    assert len(lazy) == len(eager) and lazy.files == sum(len(g.members) for g in eager)
    assert list(lazy) == eager and lazy[1:] == eager[1:] and lazy[-1] == eager[-1]
    assert lazy.find([eager[-1].id, 10_000]) == {eager[-1].id: eager[-1]}
    assert lazy.threshold == coll.default_duplicate_threshold
    with pytest.raises(IndexError):
        lazy[len(eager)]


def test_neighbour_lists_start_over_once_many_rows_are_gone(coll, monkeypatch) -> None:
    import lookalike.store.neighbours as neighbours

    coll.duplicates(**HASHES)
    calls = []
    real_full, real_update = neighbours.knn_graph, neighbours.update_knn_graph
    monkeypatch.setattr(neighbours, "knn_graph", lambda *a, **k: calls.append("full") or real_full(*a, **k))
    monkeypatch.setattr(neighbours, "update_knn_graph", lambda *a, **k: calls.append("update") or real_update(*a, **k))
    items = list(coll.items())
    coll.forget([items[0].id])  # a few gone: the lists are updated
    coll.duplicates(**HASHES)
    coll.forget([i.id for i in items[1:len(items) // 3]])  # a third gone: recomputed
    coll.duplicates(**HASHES)
    assert calls == ["update", "full"]
