"""The on-disk index (``ivfpq-disk``) as a collection's index: forced or chosen by ``auto``,
kept in step with additions and deletions, its files replaced on rebuild and removed when
no longer used. Every answer is checked against exact search over the same collection.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

pytest.importorskip("faiss")

import lookalike.index.rank as rank_mod  # noqa: E402
import lookalike.store.ann as ann_mod  # noqa: E402
from lookalike import Collection  # noqa: E402
from lookalike.index.disk_index import DiskAnnIndex  # noqa: E402
from lookalike.store.ann import IndexSettings, wants_disk  # noqa: E402
from lookalike.store.storage import Storage  # noqa: E402
from support import make_image  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, lite_model) -> Path:
    """A 90-image collection, indexed once; tests copy it."""
    root = tmp_path_factory.mktemp("ann_disk")
    folder = root / "imgs"
    for i in range(90):
        make_image(folder / f"d{i % 3}" / f"img_{i:03d}.png", seed=i, size=(64 + i % 5 * 20, 64))
    with Collection.create(root / "c.lkl", model=lite_model) as coll:
        coll.add([folder])
    return root


@pytest.fixture
def coll(built: Path, tmp_path: Path, lite_model) -> Iterator[Collection]:
    shutil.copytree(built, tmp_path / "w")
    db = sqlite3.connect(tmp_path / "w" / "c.lkl" / "items.sqlite")
    db.execute("UPDATE items SET path = replace(path, ?, ?)", (str(built), str(tmp_path / "w")))
    db.commit()
    db.close()
    c = Collection.open(tmp_path / "w" / "c.lkl", model=lite_model)
    yield c
    c.close()


def _folder(c: Collection) -> Path:
    return c.path.parent / "imgs"


def _disk_files(c: Collection) -> list[str]:
    return sorted(p.name for p in c.path.iterdir() if p.name.startswith(ann_mod.ONDISK_PREFIX))


def _exact(c: Collection, query: str, k: int) -> list[int]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Storage, "ann_index", lambda self: None)
        return [h.id for h in c.search(query, k=k)]


def test_forced_disk_index_matches_exact(coll: Collection) -> None:
    ann = coll.build_index("ivfpq-disk")
    assert isinstance(ann, DiskAnnIndex) and ann.ntotal == len(coll)
    state = coll.index_state
    assert state is not None and state.spec["kind"] == "ivfpq-disk" and state.measured.recall >= 0.9
    assert "on disk" in state.label
    assert len(_disk_files(coll)) == 2  # one .faissindex, one .ivfdata
    loaded = coll._storage.ann_index()
    assert isinstance(loaded, DiskAnnIndex)
    agree = []
    for item_id in (1, 17, 45, 80):
        got = [h.id for h in coll.search(f"id:{item_id}", k=5)]
        assert got[0] == item_id
        agree.append(len(set(got) & set(_exact(coll, f"id:{item_id}", 5))) / 5)
    assert np.mean(agree) >= 0.9


def test_additions_go_to_the_delta_and_deletions_never_surface(coll: Collection, monkeypatch) -> None:
    coll.build_index("ivfpq-disk")
    built_at = coll.index_state.built_at
    (data_file,) = coll.path.glob("*.ivfdata")
    digest = hashlib.sha256(data_file.read_bytes()).hexdigest()
    new = make_image(_folder(coll) / "new" / "fresh.png", seed=999)
    assert coll.add([_folder(coll)]).added == 1
    assert coll.index_state.built_at == built_at, "an addition rebuilt the index"
    reopened = Collection.open(coll.path)
    ann = reopened._storage.ann_index()
    assert isinstance(ann, DiskAnnIndex) and ann.ntotal == 91 and ann.delta.ntotal >= 1
    assert reopened.search(str(new), k=1)[0].path == str(new)
    assert hashlib.sha256(data_file.read_bytes()).hexdigest() == digest, "the mapped file was written"
    victims = sorted(_folder(coll).rglob("*.png"))[:10]
    victim_ids = {coll.item_at(v).id for v in victims}  # by path: a search could name a look-alike
    for v in victims:
        v.unlink()
    coll.add([_folder(coll)])
    for item_id in (12, 40, 77):
        assert not victim_ids & {h.id for h in coll.search(f"id:{item_id}", k=30)}
    # A rebuild (forced here by the deleted share) writes new files and removes the old ones.
    old_files = _disk_files(coll)
    monkeypatch.setattr(ann_mod, "STALE_REBUILD", 0.0)
    sorted(_folder(coll).rglob("*.png"))[-1].unlink()
    coll.add([_folder(coll)])
    assert coll.index_state.built_at != built_at
    assert len(_disk_files(coll)) == 2 and not set(old_files) & set(_disk_files(coll))
    assert coll._storage.ann_index().ntotal == len(coll) == 80


def test_auto_switches_to_disk_and_exact_removes_the_files(coll: Collection, monkeypatch) -> None:
    monkeypatch.setattr(rank_mod, "EXACT_BELOW", 10)
    monkeypatch.setattr(ann_mod, "ONDISK_ABOVE", 50)
    assert isinstance(coll.build_index("auto", latency_ms=None), DiskAnnIndex)
    assert coll.index_state.built_with.mode == "auto" and _disk_files(coll)
    assert not isinstance(coll.build_index("ivf"), DiskAnnIndex)
    assert _disk_files(coll) == [], "an unused on-disk index was left behind"
    coll.build_index("ivfpq-disk")
    assert coll.build_index("exact") is None and _disk_files(coll) == []


def test_wants_disk_by_size_memory_budget_or_force() -> None:
    n, d = 1_000_000, 512
    assert not wants_disk(IndexSettings("auto"), n, d)
    assert wants_disk(IndexSettings("auto"), ann_mod.ONDISK_ABOVE, d)
    # The smallest in-RAM candidate (sign bits, 64 B + 8 B of row map a vector) needs ~72 MB.
    assert wants_disk(IndexSettings("auto", memory_bytes=50 * 1024**2), n, d)
    assert not wants_disk(IndexSettings("auto", memory_bytes=200 * 1024**2), n, d)
    assert wants_disk(IndexSettings("ivfpq-disk"), 100, d)
    assert not wants_disk(IndexSettings("ivfpq"), 10 * ann_mod.ONDISK_ABOVE, d)
