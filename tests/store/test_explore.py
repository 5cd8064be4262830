"""Exploring a collection through the library: clusters, zero-shot labels and the map, stored
and kept current as items are added, changed and removed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import lookalike
from lookalike import Filter, InvalidArgument, UnsupportedModality
from lookalike.store import clusters as clusters_mod
from support import make_image

pytest.importorskip("faiss")
pytest.importorskip("sklearn")


def _folder(root: Path, n: int, start: int = 0, subs: int = 3) -> Path:
    for i in range(start, start + n):
        make_image(root / f"sub{i % subs}" / f"img_{i:04d}.png", seed=i)
    return root


@pytest.fixture
def clip_coll(tmp_path: Path, tiny_clip_dir: Path):
    """12 images in three folders, a tiny text+image model."""
    c = lookalike.Collection.create(tmp_path / "c.lkl", model=f"openclip:{tiny_clip_dir}", device="cpu")
    c.add([_folder(tmp_path / "imgs", 12)])
    yield c
    c.close()


@pytest.fixture
def timm_coll(tmp_path: Path, tiny_timm_dir: Path):
    """12 images in three folders, a tiny image-only model."""
    c = lookalike.Collection.create(tmp_path / "t.lkl", model=f"timm:{tiny_timm_dir}", device="cpu")
    c.add([_folder(tmp_path / "imgs", 12)])
    yield c
    c.close()


def _ids(coll: lookalike.Collection) -> set[int]:
    return {i.id for i in coll.items() if i.status == "ok"}


# ---------------------------------------------------------------------- clusters
def test_cluster_assigns_every_item_and_is_stored(clip_coll: lookalike.Collection) -> None:
    result = clip_coll.cluster(3)
    assert result.k == 3 and result.k_chosen_by == "given" and result.method == "kmeans"
    assert sum(c.size for c in result.clusters) == len(clip_coll) == 12
    assert [c.size for c in result.clusters] == sorted((c.size for c in result.clusters), reverse=True)
    assert all(c.name for c in result.clusters) and len({c.name for c in result.clusters}) == 3
    for c in result.clusters:
        assert 1 <= len(c.central) <= c.size
        np.testing.assert_allclose(np.linalg.norm(c.centroid), 1.0, atol=1e-5)
        members = clip_coll.cluster_members(c.id)
        assert len(members) == c.size and members[0].id == c.central[0].id  # the medoid first
        assert [m.score for m in members] == sorted((m.score for m in members), reverse=True)
    stored = clip_coll.clustering()
    assert stored is not None and [c.id for c in stored.clusters] == [c.id for c in result.clusters]


def test_cluster_returns_the_stored_result_unless_refreshed(clip_coll: lookalike.Collection,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    clip_coll.cluster(2)
    calls = []
    real = clusters_mod.compute_clusters
    monkeypatch.setattr("lookalike.store.exploring.compute_clusters", lambda *a, **k: calls.append(1) or real(*a, **k))
    clip_coll.cluster(2)
    assert calls == []
    clip_coll.cluster(2, refresh=True)
    clip_coll.cluster(3)  # other settings: computed again
    assert calls == [1, 1]


def test_k_larger_than_the_collection_says_how_many_there_are(clip_coll: lookalike.Collection) -> None:
    with pytest.raises(InvalidArgument, match=r"k=40 .* 12 searchable .*12 or fewer"):
        clip_coll.cluster(40)
    with pytest.raises(InvalidArgument, match="unknown clustering method"):
        clip_coll.cluster(method="spectral")


def test_cluster_filter_and_new_items_assigned_at_index_time(clip_coll: lookalike.Collection, tmp_path: Path) -> None:
    clip_coll.cluster(2)
    before = _ids(clip_coll)
    clip_coll.add([_folder(tmp_path / "more", 4, start=100)])
    new = _ids(clip_coll) - before
    assert len(new) == 4
    # Assigned by the indexer itself: read the rows directly, no catch-up by a read.
    rows = dict(clip_coll._storage.db.conn.execute("SELECT id, cluster FROM items").fetchall())
    assert all(rows[i] in (0, 1) for i in new)
    result = clip_coll.clustering()
    assert result.unassigned == 0 and sum(c.size for c in result.clusters) == 16
    for c in result.clusters:
        hits = clip_coll.search("id:%d" % c.central[0].id, k=50, where=Filter(cluster=[c.id]))
        assert {h.id for h in hits} == {m.id for m in clip_coll.cluster_members(c.id)}


def test_deleted_items_never_appear_in_clusters_labels_or_the_map(clip_coll: lookalike.Collection) -> None:
    first = clip_coll.cluster(2)
    clip_coll.label(["cat", "dog"])
    clip_coll.map(method="pca")
    gone = [first.clusters[0].central[0].id, first.clusters[1].central[0].id]
    clip_coll.forget(gone)
    after = clip_coll.clustering()
    assert sum(c.size for c in after.clusters) == 10
    assert not {i.id for c in after.clusters for i in c.central} & set(gone)
    assert not {h.id for c in after.clusters for h in clip_coll.cluster_members(c.id)} & set(gone)
    assert not set(clip_coll.map_points().ids.tolist()) & set(gone)
    assert sum(c.count for c in clip_coll.labelling().counts) == 10
    hits = clip_coll.search("cat", k=50, where=Filter(label=["cat", "dog"]))
    assert len(hits) == 10 and not {h.id for h in hits} & set(gone)
    assert clip_coll.item_labels(gone) == {}


def test_a_changed_file_is_assigned_again(clip_coll: lookalike.Collection, tmp_path: Path) -> None:
    clip_coll.cluster(2)
    clip_coll.label(["cat", "dog"])
    path = tmp_path / "imgs" / "sub0" / "img_0000.png"
    make_image(path, seed=999)
    clip_coll.add([tmp_path / "imgs"])
    item = clip_coll.item_at(path)
    row = clip_coll._storage.db.conn.execute("SELECT cluster, label FROM items WHERE id = ?", (item.id,)).fetchone()
    assert row[0] in (0, 1) and row[1] in ("cat", "dog")


def test_hdbscan_on_planted_clusters_with_noise(tmp_path: Path, tiny_timm_dir: Path) -> None:
    from tools.synthetic_collection import write_synthetic_collection

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 64))
    v = np.concatenate([centres[i] + rng.normal(scale=0.08, size=(60, 64)) for i in range(4)]
                       + [rng.normal(size=(10, 64))]).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    with write_synthetic_collection(tmp_path / "s.lkl", v, model=f"timm:{tiny_timm_dir}") as coll:
        result = coll.cluster(method="hdbscan")
        assert result.k == 4 and result.k_chosen_by == "density"
        assert sorted(c.size for c in result.clusters) == [60, 60, 60, 60] or result.noise >= 5
        assert sum(c.size for c in result.clusters) + result.noise == 250
        noise = sorted(i.id for i in coll.items())[240:]  # the 10 scattered points, written last
        coll.forget(noise)
        auto = coll.cluster(refresh=True)
        assert auto.k_chosen_by == "silhouette" and auto.k == 4 and auto.k_scores[4] == max(auto.k_scores.values())
        names = {c.name for c in auto.clusters}
        assert names <= {"synthetic", "synthetic 2", "synthetic 3", "synthetic 4"}  # image-only: the folder


# ---------------------------------------------------------------------- labels
def test_labels_are_stored_filterable_and_follow_new_items(clip_coll: lookalike.Collection, tmp_path: Path) -> None:
    result = clip_coll.label(["cat", "dog", "beach"])
    assert result.labels == ["cat", "dog", "beach"] and not result.multi
    assert result.labelled == 12 and sum(c.count for c in result.counts) == 12
    labels = clip_coll.item_labels(sorted(_ids(clip_coll)))
    assert len(labels) == 12 and all(len(v) == 1 for v in labels.values())
    for count in result.counts:
        hits = clip_coll.search("id:%d" % next(iter(labels)), k=50, where=Filter(label=[count.label]))
        assert len(hits) == count.count
        assert all(labels[h.id][0][0] == count.label for h in hits)
    before = _ids(clip_coll)
    clip_coll.add([_folder(tmp_path / "more", 3, start=200)])
    assert clip_coll.labelling().labelled == 15
    assert set(clip_coll.item_labels(sorted(_ids(clip_coll) - before))) == _ids(clip_coll) - before


def test_multi_labels_keep_every_label_above_the_minimum(clip_coll: lookalike.Collection) -> None:
    result = clip_coll.label(["cat", "dog", "beach"], multi=True, min_score=-1.0)
    assert result.multi and result.labelled == 12
    assert all(len(v) == 3 for v in clip_coll.item_labels(sorted(_ids(clip_coll))).values())
    nothing = clip_coll.label(["cat", "dog"], min_score=1.0)  # no image scores 1.0 against a text
    assert nothing.labelled == 0 and clip_coll.search("cat", k=5, where=Filter(label=["cat"])) == []
    with pytest.raises(InvalidArgument, match="min_score"):
        clip_coll.label(["cat"], multi=True)
    with pytest.raises(InvalidArgument, match="distinct"):
        clip_coll.label(["cat", "Cat"])


def test_an_image_only_model_cannot_label_but_can_cluster(timm_coll: lookalike.Collection) -> None:
    with pytest.raises(UnsupportedModality, match="images only.*lookalike cluster"):
        timm_coll.label(["cat", "dog"])
    result = timm_coll.cluster(3)
    assert {c.name for c in result.clusters} <= {"sub0", "sub1", "sub2", "sub0 2", "sub1 2", "sub2 2",
                                                 "sub0 3", "sub1 3", "sub2 3"}


# ---------------------------------------------------------------------- the map
def test_map_is_stored_and_places_new_items_with_transform(clip_coll: lookalike.Collection, tmp_path: Path) -> None:
    clip_coll.cluster(2)
    points = clip_coll.map(method="pca")
    assert points.method == "pca" and len(points) == 12 and points.xy.shape == (12, 2)
    assert points.xy.dtype == np.float32 and np.isfinite(points.xy).all()
    assert set(points.clusters.tolist()) <= {0, 1} and len(points.folder_names) == 3
    shutil.copy(tmp_path / "imgs" / "sub0" / "img_0000.png", tmp_path / "copy.png")
    clip_coll.add([_folder(tmp_path / "more", 2, start=300), tmp_path / "copy.png"])
    again = clip_coll.map_points()
    assert len(again) == 15 and again.placed >= 3
    by_id = dict(zip(again.ids.tolist(), map(tuple, again.xy.tolist())))
    first = dict(zip(points.ids.tolist(), map(tuple, points.xy.tolist())))
    assert all(by_id[i] == first[i] for i in first)  # the fitted positions do not move
    copy = clip_coll.item_at(tmp_path / "copy.png").id
    original = clip_coll.item_at(tmp_path / "imgs" / "sub0" / "img_0000.png").id
    np.testing.assert_allclose(by_id[copy], by_id[original], atol=1e-5)  # same vector, same place
    assert clip_coll.map(method="pca").placed == again.placed  # stored: no refit
    refit = clip_coll.map(method="pca", refresh=True)
    assert len(refit) == 15 and refit.placed == 0


def test_empty_and_one_item_collections(tmp_path: Path, tiny_clip_dir: Path) -> None:
    with lookalike.Collection.create(tmp_path / "e.lkl", model=f"openclip:{tiny_clip_dir}", device="cpu") as coll:
        assert coll.clustering() is None and coll.map_points() is None and coll.labelling() is None
        empty = coll.cluster()
        assert empty.k == 0 and empty.clusters == []
        assert len(coll.map(method="pca")) == 0
        assert coll.label(["cat"]).labelled == 0
        make_image(tmp_path / "one" / "a.png", seed=1)
        coll.add([tmp_path / "one"])
        one = coll.cluster(refresh=True)
        assert one.k == 1 and one.clusters[0].size == 1
        assert coll.map(method="pca", refresh=True).xy.tolist() == [[0.0, 0.0]]
        assert coll.labelling().labelled == 1


def test_a_schema_2_collection_opens_and_its_items_are_pending(tmp_path: Path) -> None:
    """Migration 3 adds the explore columns to a database written before them: NULL, pending."""
    import sqlite3

    from lookalike.store.metadata import MIGRATIONS, MetadataDB

    path = tmp_path / "items.sqlite"
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO items (path, size, mtime_ns, status, vec_row) VALUES ('/a.png', 1, 1, 'ok', 0)")
    conn.commit()
    conn.close()
    db = MetadataDB(path)
    assert db.conn.execute("SELECT cluster, label, label_score, map_x, map_y FROM items").fetchall() == [(None,) * 5]
    assert {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} >= {
        "clusters", "label_set", "item_labels"}
    db.close()


def test_a_lost_reducer_is_refitted_by_map_and_skipped_by_reads(clip_coll: lookalike.Collection, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    clip_coll.map(method="pca")
    for reducer in clip_coll.path.glob("map-*.pkl"):
        reducer.unlink()
    clip_coll.add([_folder(tmp_path / "more", 2, start=400)])
    shown = clip_coll.map_points()  # a read: the new items cannot be placed, the rest is shown
    assert len(shown) == 12 and "map --refresh" in caplog.text
    refit = clip_coll.map(method="pca")
    assert len(refit) == 14 and list(clip_coll.path.glob("map-*.pkl"))
