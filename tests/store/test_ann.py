"""The collection's ANN index: choice, live updates, deletions, filters, agreement, crashes.

Every check compares against exact search over the same collection, so an approximate
answer is only accepted where it is the right answer.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

pytest.importorskip("faiss")

import lookalike.index.rank as rank_mod  # noqa: E402
import lookalike.store.ann as ann_mod  # noqa: E402
from lookalike import Collection  # noqa: E402
from lookalike.apps.evaluate import image_retrieval  # noqa: E402
from lookalike.store.filters import Filter  # noqa: E402
from lookalike.store.storage import Storage  # noqa: E402
from support import make_image  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, lite_model) -> Path:
    """A 90-image collection, indexed once; tests copy it."""
    root = tmp_path_factory.mktemp("ann")
    folder = root / "imgs"
    for i in range(90):
        make_image(folder / f"d{i % 3}" / f"img_{i:03d}.png", seed=i, size=(64 + i % 5 * 20, 64))
    with Collection.create(root / "c.lkl", model=lite_model) as coll:
        coll.add([folder])
    return root


@pytest.fixture
def coll(built: Path, tmp_path: Path, lite_model) -> Iterator[Collection]:
    shutil.copytree(built, tmp_path / "w")
    # The copy's rows must point at the copied images, or every file would look new.
    db = sqlite3.connect(tmp_path / "w" / "c.lkl" / "items.sqlite")
    db.execute("UPDATE items SET path = replace(path, ?, ?)", (str(built), str(tmp_path / "w")))
    db.commit()
    db.close()
    c = Collection.open(tmp_path / "w" / "c.lkl", model=lite_model)
    yield c
    c.close()


def _folder(c: Collection) -> Path:
    return c.path.parent / "imgs"


def _ann(c: Collection):  # noqa: ANN202 - AnnIndex | None
    """The index searches use (white-box: the store's own storage layer)."""
    return c._storage.ann_index()


def _vector_file(c: Collection) -> str:
    (only,) = c.path.glob("vectors-*.f32")
    return only.name


def _exact(c: Collection, query: str, k: int, **kw) -> list[int]:
    """The same search with the index switched off."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Storage, "ann_index", lambda self: None)
        return [h.id for h in c.search(query, k=k, **kw)]


@pytest.mark.parametrize("mode", ["flat", "hnsw", "ivf", "ivfpq", "sq8", "binary"])
def test_forced_index_matches_exact(coll: Collection, mode: str) -> None:
    """Each forced kind is built, recorded with its measured recall, and used by search."""
    ann = coll.build_index(mode)
    assert ann is not None and ann.ntotal == len(coll)
    state = coll.index_state
    assert state is not None and state.measured.recall >= 0.9 and state.vector_file == _vector_file(coll)
    assert _ann(coll) is not None
    agree = []
    for item_id in (1, 17, 45, 80):
        got = [h.id for h in coll.search(f"id:{item_id}", k=5)]
        assert got[0] == item_id
        agree.append(len(set(got) & set(_exact(coll, f"id:{item_id}", 5))) / 5)
    assert np.mean(agree) >= 0.9


def test_auto_stays_exact_below_threshold_and_tunes_above(coll: Collection, monkeypatch) -> None:
    """auto: no index under EXACT_BELOW; above it a tuned index meeting the recall target."""
    assert coll.build_index("auto") is None
    assert not (coll.path / ann_mod.INDEX_FILE).exists()
    monkeypatch.setattr(rank_mod, "EXACT_BELOW", 10)
    ann = coll.build_index("auto", recall=0.95)
    assert ann is not None
    state = coll.index_state
    assert state is not None and state.met_target and state.measured.recall >= 0.95
    assert state.built_with.mode == "auto"


def test_additions_update_the_index_without_rebuild(coll: Collection) -> None:
    """New images are appended (same build), and are found at once."""
    coll.build_index("ivf")
    built_at = coll.index_state.built_at
    new = make_image(_folder(coll) / "new" / "fresh.png", seed=999)
    report = coll.add([_folder(coll)])
    assert report.added == 1
    assert coll.index_state.built_at == built_at
    ann = _ann(coll)
    assert ann is not None and ann.ntotal == len(coll) == 91
    assert coll.search(str(new), k=1)[0].path == str(new)


def test_deleted_items_never_resurface_even_after_rebuild(coll: Collection, monkeypatch) -> None:
    """Deleted files vanish from ANN results at once, and stay gone once a rebuild compacts them."""
    coll.build_index("hnsw")
    victims = sorted(_folder(coll).rglob("*.png"))[:10]
    victim_ids = {h.id for v in victims for h in coll.search(str(v), k=1)}
    assert len(victim_ids) == len(victims), "each victim must be found as itself first"
    for v in victims:
        v.unlink()
    coll.add([_folder(coll)])
    for item_id in range(1, 91):
        if item_id in victim_ids:
            continue
        assert not victim_ids & {h.id for h in coll.search(f"id:{item_id}", k=20)}
    monkeypatch.setattr(ann_mod, "STALE_REBUILD", 0.0)
    built_at = coll.index_state.built_at
    sorted(_folder(coll).rglob("*.png"))[-1].unlink()
    coll.add([_folder(coll)])
    assert coll.index_state.built_at != built_at, "a rebuild should have happened"
    assert _ann(coll).ntotal == len(coll) == 79
    survivor = int(coll.embeddings()[0][0])
    assert not victim_ids & {h.id for h in coll.search(f"id:{survivor}", k=79)}


def test_filtered_ann_search_returns_k_when_k_match(coll: Collection) -> None:
    """Filters act inside the index: a selective filter still fills k results."""
    coll.build_index("ivf")
    wide = Filter(min_width=140)  # 1 in 5 images is 144 px wide
    hits = coll.search("id:1", k=10, where=wide)
    assert len(hits) == 10
    assert all(coll.item(h.id).width >= 140 for h in hits)
    under = coll.search("id:1", k=30, under=[str(_folder(coll) / "d2")])
    assert len(under) == 30 and all("/d2/" in h.path for h in under)
    few = Filter(where=lambda row: row.path.endswith(("img_010.png", "img_020.png", "img_030.png")))
    assert sorted(h.path[-11:] for h in coll.search("id:5", k=10, where=few)) == [
        "img_010.png", "img_020.png", "img_030.png"]
    assert [h.id for h in coll.search("id:7", k=8, where=wide)] == _exact(coll, "id:7", 8, where=wide)


def test_unusable_index_falls_back_to_exact_and_is_rebuilt(coll: Collection) -> None:
    """A corrupt index is never trusted: searches stay exact, the next add rebuilds it."""
    coll.build_index("ivf")
    (coll.path / ann_mod.INDEX_FILE).write_bytes(b"garbage")
    coll._storage.invalidate()  # this connection's own writes do not change data_version
    assert _ann(coll) is None
    assert [h.id for h in coll.search("id:3", k=5)] == _exact(coll, "id:3", 5)
    coll.add([_folder(coll)])
    assert _ann(coll) is not None


def test_index_for_another_vector_generation_is_not_used(coll: Collection, monkeypatch) -> None:
    """After compaction renumbers vector rows, the old index is ignored, then rebuilt."""
    import lookalike.store.indexer as indexer

    coll.build_index("flat")
    for v in sorted(_folder(coll).rglob("*.png"))[:60]:
        v.unlink()
    monkeypatch.setattr(indexer, "COMPACT_MIN_ROWS", 1)
    coll.add([_folder(coll)])
    assert _vector_file(coll) == "vectors-1.f32"
    assert coll.index_state.vector_file == "vectors-1.f32"
    ann = _ann(coll)
    assert ann is not None and ann.ntotal == len(coll) == 30
    assert [h.id for h in coll.search("id:88", k=5)] == _exact(coll, "id:88", 5)


def test_crash_between_commit_and_index_save_loses_nothing(coll: Collection, monkeypatch) -> None:
    """Vectors committed but the index not yet saved: searches still find the new items."""
    from lookalike.index.faiss_index import AnnIndex

    coll.build_index("ivf")
    new = make_image(_folder(coll) / "new" / "late.png", seed=4242)

    def crash(self, path):  # noqa: ANN001
        raise KeyboardInterrupt

    monkeypatch.setattr(AnnIndex, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        coll.add([_folder(coll)])
    monkeypatch.undo()
    reopened = Collection.open(coll.path)
    hits = reopened.search("id:1", k=100)
    assert str(new) in {h.path for h in hits}
    assert _ann(reopened).ntotal == 91


def test_sigkill_while_saving_the_index_keeps_the_old_one(coll: Collection) -> None:
    """kill -9 in the middle of writing the index file leaves the previous index intact."""
    coll.build_index("ivf")
    before = (coll.path / ann_mod.INDEX_FILE).read_bytes()
    make_image(_folder(coll) / "new" / "k.png", seed=31337)
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        import lookalike
        real = np.savez
        def dying(f, **arrays):
            f.write(b"PK partial")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        np.savez = dying
        c = lookalike.Collection.open({str(coll.path)!r})
        c.add([{str(_folder(coll))!r}])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert (coll.path / ann_mod.INDEX_FILE).read_bytes() == before
    reopened = Collection.open(coll.path)
    assert _ann(reopened) is not None and _ann(reopened).ntotal == 91


# slow: ~12-40 s on real clip art. The default suite's siblings check the same ANN path against
# exact search: test_forced_index_matches_exact[*] and test_auto_stays_exact_below_threshold_and_tunes_above.
@pytest.mark.slow
def test_knn_accuracy_through_auto_index_within_a_point_of_exact(lite_model, clipart_labelled, tmp_path,
                                                                  monkeypatch) -> None:
    """Quality is preserved: kNN@1 on real labelled clip art through the auto index ~= exact."""
    monkeypatch.setattr(rank_mod, "EXACT_BELOW", 1)
    folder = tmp_path / "clipart"
    for label, paths in clipart_labelled.items():
        for p in paths[:8]:
            dest = folder / label / p.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, dest)
    with Collection.create(tmp_path / "c.lkl", model=lite_model) as c:
        c.add([folder])
        assert _ann(c) is not None, "auto should have built an index"
        ids, exact_vectors = c.embeddings()
        labels = {i: Path(c.item(int(i)).path).parent.relative_to(folder).as_posix() for i in ids}
        ann_hits = c.search_batch([f"id:{i}" for i in ids], k=2)
    ann_knn1 = np.mean([labels[hits[1].id] == labels[int(i)] for i, hits in zip(ids, ann_hits)])
    exact = image_retrieval(exact_vectors, [labels[int(i)] for i in ids])
    assert abs(ann_knn1 - exact.knn1) <= 0.01, (ann_knn1, exact.knn1)
