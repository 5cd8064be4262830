"""coll.faces under stress: hostile photos (1x1, EXIF-rotated, 30 MP, unreadable), a crash between
the face vectors' append and their commit, compaction of the face vectors, the faces extra missing."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike import Collection, MissingExtra
from lookalike.store import face_index, face_vectors
from lookalike.store.face_db import FaceTables

pytest.importorskip("dlib")


def _copy(face_collection: Path, tmp_path: Path, *, forget: bool = False) -> Collection:
    """An editable copy of ``face_collection``, its faces forgotten when asked."""
    coll = Collection.open(shutil.copytree(face_collection, tmp_path / "faces.lkl"))
    if forget:
        coll.faces.forget()
    return coll


def _add(coll: Collection, tmp_path: Path, files: dict[str, Path]) -> None:
    folder = tmp_path / "more"
    folder.mkdir()
    for name, src in files.items():
        shutil.copy(src, folder / name)
    coll.add([folder], workers=2)


def _by_name(coll: Collection) -> dict[str, list]:
    return {Path(i.path).name: coll.faces.of_item(i.id) for i in coll.items()}


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0, w) * max(0, h)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_hostile_photos(face_collection: Path, face_photos: Path, tmp_path: Path) -> None:
    made = tmp_path / "made"
    made.mkdir()
    Image.new("RGB", (1, 1), (200, 100, 50)).save(made / "dot.png")
    with Image.open(face_photos / "obama.jpg") as upright:
        upright = upright.convert("RGB")
        # Stored turned a quarter left, with EXIF orientation 6 ("turn right to view"): it
        # displays upright, and boxes must be those of the upright photo.
        exif = Image.Exif()
        exif[0x0112] = 6
        upright.transpose(Image.Transpose.ROTATE_90).save(made / "rotated.jpg", exif=exif, quality=92)
        scale = 5.5  # 910x1137 -> 5005x6253, 31 MP: scanned on a copy of 4 MP, boxes mapped back
        upright.resize((round(upright.width * scale), round(upright.height * scale)),
                       Image.Resampling.BILINEAR).save(made / "huge.jpg", quality=85)
    files = {p.name: p for p in made.iterdir()} | {"broken.jpg": face_photos / "obama2.jpg"}
    with _copy(face_collection, tmp_path) as coll:
        _add(coll, tmp_path, files)
        broken = next(Path(i.path) for i in coll.items() if Path(i.path).name == "broken.jpg")
        good = broken.read_bytes()
        broken.write_bytes(good[: len(good) // 20])  # cut after it was added: unreadable now
        report = coll.faces.index()
        assert (report.scanned, report.faces, report.no_faces, report.failed, report.skipped) == (4, 2, 1, 1, 11)
        assert (report.assigned, report.new_people) == (2, 0)  # both join Obama
        assert report.errors and report.errors[0][0] == str(broken)
        found = _by_name(coll)
        assert found["dot.png"] == [] and found["broken.jpg"] == []
        reference = found["obama.jpg"][0].box
        assert _iou(found["rotated.jpg"][0].box, reference) > 0.9
        huge = found["huge.jpg"][0].box
        # Found on a copy at another scale than obama.jpg: HOG's boxes shift a little.
        assert _iou(tuple(round(v / scale) for v in huge), reference) > 0.75
        item = next(i for i in coll.items() if Path(i.path).name == "huge.jpg")
        assert huge[2] <= item.width and huge[3] <= item.height and min(huge[2] - huge[0], huge[3] - huge[1]) > 1000
        # A failed scan is not retried until asked (or the file changes), then it succeeds.
        assert coll.faces.index().scanned == 0
        broken.write_bytes(good)
        again = coll.faces.index(retry_failed=True)
        assert (again.scanned, again.faces, again.failed) == (1, 1, 0)
        assert len(coll.faces.of_item(next(i.id for i in coll.items() if Path(i.path) == broken))) == 1


def test_a_crash_between_append_and_commit_is_repaired(face_collection: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with _copy(face_collection, tmp_path, forget=True) as coll:
        kept = ("biden.jpg", "biden_cropped.jpg", "biden_mirrored.jpg", "landscape.jpg", "obama.jpg")
        coll.forget([i.id for i in coll.items() if Path(i.path).name not in kept])
        monkeypatch.setattr(face_index, "COMMIT_EVERY", 2)
        real = FaceTables.record_scan
        calls = []

        def crash(self: FaceTables, *args: object) -> list[int]:
            calls.append(1)
            if len(calls) == 3:  # the second batch: its vectors are appended, its transaction is not done
                raise RuntimeError("simulated crash")
            return real(self, *args)

        monkeypatch.setattr(FaceTables, "record_scan", crash)
        with pytest.raises(RuntimeError, match="simulated"):
            coll.faces.index()
        vf = face_vectors.FaceVectors(coll.path, coll._storage.db)
        # Items go by path: biden and biden_cropped committed, biden_mirrored (and landscape) appended only.
        assert vf.rows == 2 and vf.file.rows_on_disk() == 3
        assert coll.faces.stats().faces == 2 and coll.faces.stats().pending_items == 3
        monkeypatch.setattr(FaceTables, "record_scan", real)
    with Collection.open(coll.path) as coll:
        report = coll.faces.index()  # the writer lock cuts the tail first
        assert (report.scanned, report.faces, report.skipped) == (3, 2, 2)
        vf = face_vectors.FaceVectors(coll.path, coll._storage.db)
        assert vf.rows == 4 == vf.file.rows_on_disk()
        found = _by_name(coll)
        vecs = {n: coll.faces.vectors([found[n][0].id])[0] for n in ("obama.jpg", "biden.jpg", "biden_mirrored.jpg")}
        assert np.linalg.norm(vecs["biden_mirrored.jpg"] - vecs["biden.jpg"]) < 0.6  # each row is its own face's
        assert np.linalg.norm(vecs["biden.jpg"] - vecs["obama.jpg"]) > 0.6
        assert [p.faces for p in coll.people()] == [3] and len(coll.people.unassigned()) == 1


def test_a_face_vector_file_shorter_than_recorded_loses_only_those_faces(face_collection: Path,
                                                                        tmp_path: Path) -> None:
    # Only an OS crash that lost an fsynced write leaves the file shorter than the committed
    # rows: the faces of the lost rows are forgotten (never read past the end) and found again.
    with _copy(face_collection, tmp_path) as coll:
        vf = face_vectors.FaceVectors(coll.path, coll._storage.db)
        faces = [f for i in coll.items() for f in coll.faces.of_item(i.id)]
        last = max(faces, key=lambda f: coll._storage.db.conn.execute(
            "SELECT vec_row FROM faces WHERE id = ?", (f.id,)).fetchone()[0])
        rows, before = vf.rows, coll.faces.vectors([f.id for f in faces])
        with open(vf.file.path, "r+b") as f:
            f.truncate((rows - 1) * 4 * 128 + 100)  # one row lost, the next one torn
    with Collection.open(coll.path) as coll:
        coll.compact()  # any writer repairs first
        vf = face_vectors.FaceVectors(coll.path, coll._storage.db)
        assert vf.rows == rows - 1 == vf.file.rows_on_disk()
        assert coll.faces.of_item(last.item_id) == [] and coll.faces.stats().pending_items == 1
        report = coll.faces.index()
        assert (report.scanned, report.faces) == (1, 1)
        again = [f for i in coll.items() for f in coll.faces.of_item(i.id)]
        assert len(again) == len(faces) and np.allclose(coll.faces.vectors([f.id for f in again]), before, atol=1e-5)


def test_face_vectors_are_compacted_and_stay_right(face_collection: Path, tmp_path: Path) -> None:
    with _copy(face_collection, tmp_path) as coll:
        keep = _by_name(coll)["biden.jpg"][0]
        before = coll.faces.vectors([keep.id])
        coll.forget([i.id for i in coll.items() if Path(i.path).name != "biden.jpg"])
        vf = face_vectors.FaceVectors(coll.path, coll._storage.db)
        assert vf.rows == 9 and vf.garbage() == 8
        coll.faces.index()  # compacts: 8 of 9 rows are garbage
        assert vf.rows == 1 and vf.file.path.name == "faces-1.f32"
        assert [p.name for p in coll.path.glob("faces-*")] == ["faces-1.f32"]
        np.testing.assert_array_equal(coll.faces.vectors([keep.id]), before)


def test_missing_extra_touches_nothing(face_collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _copy(face_collection, tmp_path, forget=True) as coll:
        monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib raises ImportError
        generation = coll.generation
        with pytest.raises(MissingExtra, match=r"lookalike\[faces\]"):
            coll.faces.index()
        assert not coll.faces.indexed and coll.faces.stats().scanned_items == 0
        assert coll.generation == generation and list(coll.path.glob("faces-*")) == []
