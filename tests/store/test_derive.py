"""A collection derived from another's stored vectors (store/derive.py): items and metadata
copied, vectors transformed chunk by chunk, vector-derived results left behind, the index
rebuilt, the source untouched, no image read, and nothing left at ``out`` by a failure."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike import Collection
from lookalike.errors import CollectionError, CollectionExists, InvalidArgument
from lookalike.images.thumbnails import thumbnail_path
from lookalike.images.traits import ImageTraits
from lookalike.store.derive import derive_collection
from lookalike.store.manifest import Manifest
from lookalike.store.storage import Storage


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


DIM = 64
PREPROCESS = {"size": 32, "resize_mode": "letterbox", "crop_pct": 1.0, "interpolation": "bicubic",
              "mean": [0.5] * 3, "std": [0.5] * 3, "fill": None}


class StubModel:
    """Stands in for a loaded model: derive needs only its identity (no weights, no torch)."""

    def __init__(self, model_id: str, fingerprint: str, dim: int = DIM) -> None:
        self.model_id, self._fingerprint, self.dim = model_id, fingerprint, dim

    def fingerprint(self) -> str:
        return self._fingerprint

    def info(self) -> dict:
        return {"model_id": self.model_id, "dim": self.dim, "modalities": ["image"], "preprocess": PREPROCESS,
                "fingerprint": self._fingerprint, "runtime": "torch", "precision": "fp32"}


SOURCE_MODEL = StubModel("test:source", "50c0")
OTHER_MODEL = StubModel("test:other", "07e4")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic collection: 7 embedded items (two share a vector, as copies of one file
    do), one failure, traits on every item, metadata on one, a garbage vector row, and a
    clustering and zero-shot labels that derive must not carry over; a flat index."""
    path = tmp_path_factory.mktemp("derive-src") / "src.lkl"
    storage = Storage.initialise(path, Manifest(model=SOURCE_MODEL.info()))
    v = np.random.default_rng(0).standard_normal((7, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    vec_row = [0, 2, 3, 4, 5, 6, 0]  # row 1 is garbage (a re-embedded file's old vector)
    rows = [(f"/pics/{i:02d}.png", 10 + i, 1000 + i, f"h{vec_row[i]}", 32, 32, "ok", None, vec_row[i])
            for i in range(7)] + [("/pics/broken.jpg", 12, 1000, "hb", None, None, "failed", "not an image", None)]
    traits = [(ImageTraits(i, i + 1, i + 2, 0.5, None, 3), f"/pics/{i:02d}.png") for i in range(7)]

    def write() -> None:
        storage.db.upsert(rows)
        storage.db.set_traits(traits)
        storage.db.meta.set([("/pics/01.png", {"caption": "a red square", "stars": 4})])
        storage.db.conn.execute("UPDATE items SET cluster = 0, label = 'cat', label_score = 0.5, map_x = 1, map_y = 2")
        storage.db.conn.execute("INSERT INTO clusters (id, name, centroid, central) VALUES (0, 'c', x'00', '[]')")
        storage.db.set_state("clustering", "{}")

    with storage.write_lock():
        storage.commit_vectors(v, write)
    storage.close()
    with Collection.open(path) as coll:
        coll.build_index("flat")
    thumbnail = thumbnail_path(path, 2, "h2", 128)
    thumbnail.parent.mkdir(parents=True)
    thumbnail.write_bytes(b"a cached JPEG")
    return path


def rotation(dim: int, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return q.astype(np.float32)


def test_derive_copies_items_and_transforms_vectors_without_reading_images(
        source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_decoding(monkeypatch)
    before = tree_digest(source)
    rot = rotation(64)
    events = []
    with Collection.open(source) as src:
        report = derive_collection(src, tmp_path / "new.lkl", OTHER_MODEL, lambda v: v @ rot, chunk_rows=2,
                                   progress=events.append)
        src_items = {i.id: i for i in src.items()}
        ok = [i for i in src_items if src_items[i].status == "ok"]
        src_vectors = src.get_vectors(ok)
        src_traits = src._storage.db.traits(list(src_items))
    assert tree_digest(source) == before  # not one byte of the source changed
    assert (report.items, report.embedded, report.vectors) == (8, 7, 6)  # the copy shares its vector
    assert report.model_id == OTHER_MODEL.model_id and report.index == "Flat"
    assert [e.kind for e in events][-1] == "done" and events[-2].done == events[-2].total == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no work folder left
    with Collection.open(tmp_path / "new.lkl") as new:
        assert new.manifest.model_id == OTHER_MODEL.model_id
        assert new.manifest.fingerprint == OTHER_MODEL.fingerprint()
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
        assert thumbnail_path(new.path, 2, "h2", 128).read_bytes() == b"a cached JPEG"  # ids are kept
        hits = new.search(f"id:{ok[1]}", k=2)  # search by id needs no model and no image
        assert hits[0].id == ok[1] and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_derive_copies_vectors_unchanged_without_a_transform(source: Path, tmp_path: Path) -> None:
    with Collection.open(source) as src:
        ids, vectors = src.embeddings()
        derive_collection(src, tmp_path / "same.lkl", SOURCE_MODEL)
    with Collection.open(tmp_path / "same.lkl") as new:
        new_ids, new_vectors = new.embeddings()
        assert np.array_equal(new_ids, ids) and np.array_equal(new_vectors, vectors)


def test_a_failed_derive_leaves_nothing_at_out(source: Path, tmp_path: Path) -> None:
    calls = []

    def breaks_midway(v: np.ndarray) -> np.ndarray:
        calls.append(len(v))
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return v

    with Collection.open(source) as src:
        with pytest.raises(RuntimeError, match="interrupted"):
            derive_collection(src, tmp_path / "new.lkl", OTHER_MODEL, breaks_midway, chunk_rows=2)
        with pytest.raises(InvalidArgument, match=r"shape \(2, 32\), not \(2, 64\)"):
            derive_collection(src, tmp_path / "new.lkl", OTHER_MODEL, lambda v: v[:, :32], chunk_rows=2)
    assert list(tmp_path.iterdir()) == []  # neither a collection nor a work folder


def test_derive_refuses_an_occupied_target_or_one_inside_the_source(source: Path, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with Collection.open(source) as src:
        with pytest.raises(CollectionExists, match="already exists"):
            derive_collection(src, source, OTHER_MODEL)
        with pytest.raises(CollectionError, match="not an empty folder"):
            derive_collection(src, tmp_path / "full", OTHER_MODEL)
        with pytest.raises(InvalidArgument, match="inside the source collection"):
            derive_collection(src, source / "sub.lkl", OTHER_MODEL)
        (tmp_path / "empty").mkdir()
        assert derive_collection(src, tmp_path / "empty", OTHER_MODEL).path == tmp_path / "empty"
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
