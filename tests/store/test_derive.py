"""A collection derived from another's stored vectors (store/derive.py): items and metadata
copied, vectors transformed chunk by chunk, vector-derived results left behind, the index
rebuilt, the source untouched, no image read, and nothing left at ``out`` by a failure."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike import Collection
from lookalike.errors import CollectionError, CollectionExists, InvalidArgument
from lookalike.store.derive import derive_collection
from support import make_image, save_tiny_timm


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256): equal digests, untouched folder."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to decode an image fails the test."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was decoded")

    import lookalike.images.decode as decode

    monkeypatch.setattr(decode, "decode_image", refuse)
    monkeypatch.setattr(Image, "open", refuse)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> lookalike.EmbeddingModel:
    """A second tiny timm model (other weights: another model id and fingerprint), 64-d."""
    folder = save_tiny_timm(tmp_path_factory.mktemp("tiny-timm-1") / "model", seed=1)
    return lookalike.load_model(f"timm:{folder}", device="cpu", runtime="torch")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, tiny_timm_dir: Path) -> Path:
    """A small collection: 7 images (one a copy of another), one broken file, metadata on one
    item, and a clustering and zero-shot label that derive must not carry over. Its images
    are moved away afterwards: nothing may read them again."""
    root = tmp_path_factory.mktemp("derive-src")
    imgs = root / "imgs"
    for i in range(6):
        make_image(imgs / f"{i:02d}.png", seed=i)
    shutil.copy(imgs / "00.png", imgs / "copy-of-00.png")
    (imgs / "broken.jpg").write_bytes(b"not an image")
    with Collection.create(root / "src.lkl", f"timm:{tiny_timm_dir}", runtime="torch") as coll:
        report = coll.add([imgs])
        assert len(coll) == 7 and len(report.failed) == 1
        db = coll._storage.db
        first = coll.item_at(imgs / "01.png")
        with db.transaction():
            db.meta.set_by_id([(first.id, {"caption": "a red square", "stars": 4})])
            db.conn.execute("UPDATE items SET cluster = 0, label = 'cat', label_score = 0.5, map_x = 1, map_y = 2")
            db.conn.execute("INSERT INTO clusters (id, name, centroid, central) VALUES (0, 'c', x'00', '[]')")
            db.set_state("clustering", "{}")
        coll.build_index("flat")
    imgs.rename(root / "moved-away")
    return root / "src.lkl"


def rotation(dim: int, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return q.astype(np.float32)


def test_derive_copies_items_and_transforms_vectors_without_reading_images(
        source: Path, other_model: lookalike.EmbeddingModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_decoding(monkeypatch)
    before = tree_digest(source)
    rot = rotation(64)
    events = []
    with Collection.open(source) as src:
        report = derive_collection(src, tmp_path / "new.lkl", other_model, lambda v: v @ rot, chunk_rows=2,
                                   progress=events.append)
        src_items = {i.id: i for i in src.items()}
        ok = [i for i in src_items if src_items[i].status == "ok"]
        src_vectors = src.get_vectors(ok)
        src_traits = src._storage.db.traits(list(src_items))
    assert tree_digest(source) == before  # not one byte of the source changed
    assert (report.items, report.embedded, report.vectors) == (8, 7, 6)  # the copy shares its vector
    assert report.model_id == other_model.model_id and report.index == "Flat"
    assert [e.kind for e in events][-1] == "done" and events[-2].done == events[-2].total == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no work folder left
    with Collection.open(tmp_path / "new.lkl") as new:
        assert new.manifest.model_id == other_model.model_id
        assert new.manifest.fingerprint == other_model.fingerprint()
        assert {i.id: i for i in new.items()} == src_items  # ids, paths, sizes, hashes, failures
        np.testing.assert_allclose(new.get_vectors(ok), src_vectors @ rot, atol=1e-6)
        db = new._storage.db
        assert db.traits(list(src_items)) == src_traits
        with_meta = db.meta.get(list(src_items))
        assert list(with_meta.values()) == [{"caption": "a red square", "stars": 4}]
        assert db.conn.execute("SELECT COUNT(*) FROM items WHERE cluster IS NOT NULL OR label IS NOT NULL "
                               "OR map_x IS NOT NULL").fetchone()[0] == 0
        assert db.conn.execute("SELECT COUNT(*) FROM clusters").fetchone()[0] == 0
        assert db.get_state("clustering") is None
        assert new.index_state is not None and new.index_state.label == "Flat"
        hits = new.search(f"id:{ok[1]}", k=2)  # search by id needs no model and no image
        assert hits[0].id == ok[1] and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_derive_copies_vectors_unchanged_without_a_transform(source: Path, tiny_timm_dir: Path,
                                                             tmp_path: Path) -> None:
    model = lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu", runtime="torch")
    with Collection.open(source) as src:
        ids, vectors = src.embeddings()
        derive_collection(src, tmp_path / "same.lkl", model)
    with Collection.open(tmp_path / "same.lkl", model=f"timm:{tiny_timm_dir}") as new:
        new_ids, new_vectors = new.embeddings()
        assert np.array_equal(new_ids, ids) and np.array_equal(new_vectors, vectors)


def test_a_failed_derive_leaves_nothing_at_out(source: Path, other_model: lookalike.EmbeddingModel,
                                               tmp_path: Path) -> None:
    calls = []

    def breaks_midway(v: np.ndarray) -> np.ndarray:
        calls.append(len(v))
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return v

    with Collection.open(source) as src:
        with pytest.raises(RuntimeError, match="interrupted"):
            derive_collection(src, tmp_path / "new.lkl", other_model, breaks_midway, chunk_rows=2)
        with pytest.raises(InvalidArgument, match=r"shape \(2, 32\), not \(2, 64\)"):
            derive_collection(src, tmp_path / "new.lkl", other_model, lambda v: v[:, :32], chunk_rows=2)
    assert list(tmp_path.iterdir()) == []  # neither a collection nor a work folder


def test_derive_refuses_an_occupied_target_or_one_inside_the_source(
        source: Path, other_model: lookalike.EmbeddingModel, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with Collection.open(source) as src:
        with pytest.raises(CollectionExists, match="already exists"):
            derive_collection(src, source, other_model)
        with pytest.raises(CollectionError, match="not an empty folder"):
            derive_collection(src, tmp_path / "full", other_model)
        with pytest.raises(InvalidArgument, match="inside the source collection"):
            derive_collection(src, source / "sub.lkl", other_model)
        (tmp_path / "empty").mkdir()
        assert derive_collection(src, tmp_path / "empty", other_model).path == tmp_path / "empty"
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
