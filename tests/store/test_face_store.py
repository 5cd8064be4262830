"""coll.faces: finding faces in a collection's photos (real ones, ``face_photos``), the records
and crops kept, incremental runs, hostile photos, crashes, and forgetting."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike import Collection, FaceNotFound, ItemNotFound
from lookalike.store.face_index import CROP_SIZE

from tools.face_samples import NO_FACE

pytest.importorskip("dlib")


@pytest.fixture
def coll(face_collection: Path, tmp_path: Path) -> Iterator[Collection]:
    """An editable copy of ``face_collection``."""
    path = Path(shutil.copytree(face_collection, tmp_path / "faces.lkl"))
    with Collection.open(path) as c:
        yield c


def _item(coll: Collection, name: str) -> lookalike.Item:
    return next(i for i in coll.items() if Path(i.path).name == name)


def test_records_crops_vectors_and_stats(face_collection: Path) -> None:
    with Collection.open(face_collection) as coll:
        assert coll.faces.indexed
        stats = coll.faces.stats()
        assert stats == lookalike.FaceStats(scanned_items=11, pending_items=0, faces=9, people=2, named_people=0,
                                            unassigned_faces=0)
        for name in NO_FACE:
            assert coll.faces.of_item(_item(coll, name).id) == []
        item = _item(coll, "obama.jpg")
        (face,) = coll.faces.of_item(item.id)
        assert face.item_id == item.id and face.path == item.path and coll.faces.get(face.id) == face
        left, top, right, bottom = face.box
        assert 0 <= left < right <= item.width and 0 <= top < bottom <= item.height
        assert face.size == min(right - left, bottom - top) and len(face.landmarks) == 5
        assert all(left - 5 <= x <= right + 5 and top - 5 <= y <= bottom + 5 for x, y in face.landmarks)
        with Image.open(io.BytesIO(coll.faces.crop(face.id))) as crop:
            assert crop.format == "JPEG" and crop.size == (CROP_SIZE, CROP_SIZE)
        partial = coll.faces.of_item(_item(coll, "obama_partial_face.jpg").id)
        assert len(partial) == 1
        vecs = coll.faces.vectors([face.id, partial[0].id])
        assert vecs.shape == (2, 128) and vecs.dtype == np.float32
        assert float(np.linalg.norm(vecs[0] - vecs[1])) < 0.6
        with pytest.raises(FaceNotFound) as err:
            coll.faces.get(10_000)
        assert err.value.face_id == 10_000
        with pytest.raises(FaceNotFound):
            coll.faces.crop(10_000)
        with pytest.raises(FaceNotFound):
            coll.faces.vectors([face.id, 10_000])
        with pytest.raises(ItemNotFound):
            coll.faces.of_item(10_000)


def test_second_run_skips_and_a_changed_photo_is_scanned_again(coll: Collection, face_photos: Path,
                                                                tmp_path: Path) -> None:
    report = coll.faces.index()
    assert (report.scanned, report.skipped, report.faces) == (0, 11, 0)
    # A new photo without a face, then a face photo under the same path: the item's hash
    # changes, its scan is forgotten, the next run finds the face and it joins Obama.
    folder = tmp_path / "more"
    folder.mkdir()
    target = folder / "x.jpg"
    shutil.copy(face_photos / "landscape.jpg", target)
    coll.add([folder])
    assert coll.faces.index().no_faces == 1
    obama_id = coll.faces.of_item(_item(coll, "obama.jpg").id)[0].person_id
    shutil.copy(face_photos / "obama.jpg", target)
    coll.add([folder])
    assert coll.faces.stats().pending_items == 1
    report = coll.faces.index()
    assert (report.scanned, report.faces, report.assigned, report.new_people) == (1, 1, 1, 0)
    (face,) = coll.faces.of_item(_item(coll, "x.jpg").id)
    assert face.person_id == obama_id
    # An item whose content changes loses its faces at once; a deleted one too.
    item = _item(coll, "biden.jpg")
    with coll._storage.db.transaction():
        coll._storage.db.conn.execute("UPDATE items SET hash = 'changed' WHERE id = ?", (item.id,))
    assert coll.faces.of_item(item.id) == [] and coll.faces.stats().pending_items == 1
    coll.forget([_item(coll, "obama2.jpg").id])
    assert coll.faces.stats().faces == 8


def test_forget_leaves_no_face_data(coll: Collection) -> None:
    crop = coll.faces.crop(coll.people.faces(coll.people()[0].id)[0].id)
    coll.people.name(coll.people()[0].id, "Somebody Unique")
    assert coll.faces.forget() == 9
    assert not coll.faces.indexed and coll.people() == [] and coll.faces.stats().scanned_items == 0
    assert list(coll.path.glob("faces-*")) == []
    for file in coll.path.iterdir():
        if file.is_file():
            data = file.read_bytes()
            assert crop[-80:-2] not in data and b"Somebody Unique" not in data, file.name  # scan data, unique
    # Indexing again after forgetting: tests/store/test_faces_safety.py (the crash test starts so).
