"""lookalike.models.faces on real photos: dlib's detectors, landmarks and descriptors.

The photos are the face_recognition 1.3.0 sdist's test images (``face_images`` fixture): three
photos of one person, one of another, two partial faces, and a 32-bit PNG copy of one photo.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import InvalidArgument, MissingExtra
from lookalike.images.decode import decode_image
from lookalike.models import faces as faces_module
from lookalike.models.faces import CHIP_SIZE, DESCRIPTOR_DIM, DETECT_MAX_PIXELS, SAME_PERSON_THRESHOLD, Face, FaceModel
from tools import face_samples, samples


@pytest.fixture(scope="module")
def model() -> FaceModel:
    pytest.importorskip("dlib")
    return FaceModel()


@pytest.fixture(scope="module")
def found(model: FaceModel, face_images: dict[str, Path]) -> dict[str, tuple[Image.Image, list[Face], np.ndarray]]:
    """Every photo decoded (EXIF applied), its faces and their descriptors, by file name."""
    out = {}
    for name, path in face_images.items():
        image = decode_image(path).image
        faces = model.detect(image)
        out[name] = (image, faces, model.describe(image, faces))
    return out


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# --------------------------------------------------------------------------- real photos
def test_same_person_within_threshold_other_person_beyond(found: dict) -> None:
    for name in (*face_samples.SAME_PERSON, *face_samples.OTHER_PERSON, "32bit.png"):
        image, faces, vectors = found[name]
        assert len(faces) == 1, name
        assert vectors.shape == (1, DESCRIPTOR_DIM) and vectors.dtype == np.float32
        left, top, right, bottom = faces[0].box
        assert 0 <= left < right <= image.width and 0 <= top < bottom <= image.height
        assert all(left - 1 <= x <= right + 1 and top - 1 <= y <= bottom + 1 for x, y in faces[0].landmarks), name
    same = [found[name][2][0] for name in face_samples.SAME_PERSON]
    other = found["biden.jpg"][2][0]
    for a, b in itertools.combinations(same, 2):
        assert _distance(a, b) < SAME_PERSON_THRESHOLD  # measured 0.33 to 0.43
    for a in same:
        assert _distance(a, other) > SAME_PERSON_THRESHOLD  # measured 0.81 to 0.87
    # The 32-bit RGBA PNG is obama2.jpg's photo: decoded onto white, it is the same face.
    assert _distance(found["32bit.png"][2][0], found["obama2.jpg"][2][0]) < 0.1


def test_partial_faces_are_found_at_the_edge_and_match(found: dict) -> None:
    """Pinned: HOG finds both partial faces (a face cut by the photo's edge); the box is clipped
    to the image, and the descriptor still matches the person's other photos."""
    for name, edge in (("obama_partial_face.jpg", "left"), ("obama_partial_face2.jpg", "right")):
        image, faces, vectors = found[name]
        assert len(faces) == 1, name
        box = faces[0].box
        assert box[0] == 0 if edge == "left" else box[2] == image.width
        assert _distance(vectors[0], found["obama.jpg"][2][0]) < SAME_PERSON_THRESHOLD  # measured 0.24, 0.27


def test_chip_descriptor_and_fingerprint(model: FaceModel, found: dict) -> None:
    image, faces, vectors = found["obama.jpg"]
    chip = model.chip(image, faces[0])
    assert chip.size == (CHIP_SIZE, CHIP_SIZE) and chip.mode == "RGB"
    # The descriptor is the network's reading of that chip: describe() is the chip, described.
    again = np.asarray(model._descriptor.compute_face_descriptor(np.asarray(chip), 0), dtype=np.float32)
    np.testing.assert_allclose(again, vectors[0], atol=1e-6)
    # A face read back from storage (plain ints and floats) describes the same.
    stored = Face(box=tuple(int(v) for v in faces[0].box), score=0.0,  # type: ignore[arg-type]
                  landmarks=tuple((float(x), float(y)) for x, y in faces[0].landmarks))
    np.testing.assert_array_equal(model.describe(image, [stored]), vectors)
    assert model.describe(image, []).shape == (0, DESCRIPTOR_DIM)
    jittered = model.describe(image, faces, jitter=3)
    assert 0 < _distance(jittered[0], vectors[0]) < 0.2  # measured 0.11
    fingerprint = model.fingerprint()
    assert len(fingerprint) == 16 and fingerprint == model.fingerprint()


def test_fingerprint_follows_the_weights(model: FaceModel, monkeypatch: pytest.MonkeyPatch) -> None:
    fingerprint = model.fingerprint()
    digests = dict(model._weights_digests)
    assert set(digests) == {"landmarks", "descriptor"} and all(len(d) == 16 for d in digests.values())
    monkeypatch.setitem(model.__dict__, "_weights_digests", {**digests, "descriptor": "0" * 16})
    assert model.fingerprint() != fingerprint


def test_invalid_arguments(model: FaceModel, found: dict) -> None:
    image, faces, _ = found["obama.jpg"]
    with pytest.raises(InvalidArgument, match="detector"):
        model.detect(image, detector="haar")
    with pytest.raises(InvalidArgument, match="min_size"):
        model.detect(image, min_size=0)
    with pytest.raises(InvalidArgument, match="jitter"):
        model.describe(image, faces, jitter=-1)
    with pytest.raises(InvalidArgument, match="landmarks"):
        model.describe(image, [Face(box=(0, 0, 10, 10), score=1.0, landmarks=())])
    with pytest.raises(InvalidArgument, match="decode_image"):
        model.detect(np.zeros((10, 10, 3), np.uint8))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- no faces, hostile inputs
@pytest.fixture(scope="module")
def faceless() -> list[Path]:
    """Real landscapes (wallpaper photos) and clip art (fruit, buildings): no faces in any."""
    try:
        nature = samples.fetch_package("mate-backgrounds") / "usr" / "share" / "backgrounds" / "mate" / "nature"
        clipart = samples.clipart_root()
    except samples.SamplesUnavailable as exc:
        if os.environ.get("CI"):  # as in conftest.py: under CI a missing sample set is a failure
            raise
        pytest.skip(f"real sample images unavailable: {exc}")
    return [nature / "Dune.jpg", nature / "GreenMeadow.jpg",
            clipart / "food" / "fruit" / "apple.png", clipart / "buildings" / "carnegie_library_building_01.png"]


def test_landscapes_and_clipart_have_no_faces(model: FaceModel, faceless: list[Path]) -> None:
    for path in faceless:
        assert model.detect(decode_image(path).image) == [], path.name


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_one_pixel_and_tiny_images(model: FaceModel, mode: str) -> None:
    for size in ((1, 1), (1, 300), (40, 40), (0, 0)):
        image = Image.new(mode, size)
        for detector in ("hog", "cnn"):  # dlib's CNN raises on images this small: never reached
            assert model.detect(image, detector=detector) == []
            assert model.detect(image, detector=detector, min_size=1) == []
    assert model.describe(Image.new(mode, (1, 1)), []).shape == (0, DESCRIPTOR_DIM)


def test_exif_rotated_photo_gives_boxes_upright(model: FaceModel, found: dict, tmp_path: Path) -> None:
    """A phone photo stored sideways with an EXIF orientation: decode_image turns it upright, and
    the face is found where it shows, with the same descriptor."""
    upright, faces, vectors = found["obama.jpg"]
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the pixels are stored turned left
    path = tmp_path / "sideways.jpg"
    upright.rotate(90, expand=True).save(path, quality=95, exif=exif)
    with Image.open(path) as raw:
        assert raw.size == (upright.height, upright.width)
        assert model.detect(raw.convert("RGB")) == []  # the frontal detector does not see a sideways face
    shown = decode_image(path).image
    assert shown.size == upright.size
    turned = model.detect(shown)
    assert len(turned) == 1 and _iou(turned[0].box, faces[0].box) > 0.9
    assert _distance(model.describe(shown, turned)[0], vectors[0]) < 0.1


def test_huge_photo_is_scanned_downscaled_and_boxes_map_back(model: FaceModel, found: dict,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    small, faces, vectors = found["obama.jpg"]
    huge = small.resize((small.width * 3, small.height * 3), Image.Resampling.BILINEAR)  # 9.3 MP
    scanned: list[tuple[int, ...]] = []
    scan = model._scan

    def spy(pixels: np.ndarray, detector: str) -> Any:
        scanned.append(pixels.shape)
        return scan(pixels, detector)

    monkeypatch.setattr(model, "_scan", spy)
    big = model.detect(huge)
    assert len(scanned) == 1 and scanned[0][0] * scanned[0][1] <= DETECT_MAX_PIXELS < huge.width * huge.height
    assert len(big) == 1
    expected = tuple(3 * v for v in faces[0].box)
    assert _iou(big[0].box, expected) > 0.8  # the scan saw another pyramid level: boxes differ a little
    # Landmarks are placed on the full-size photo, so they agree far better than the boxes.
    for (x, y), (ex, ey) in zip(big[0].landmarks, faces[0].landmarks):
        assert abs(x - 3 * ex) <= 6 and abs(y - 3 * ey) <= 6  # two pixels of the small photo (measured 3)
    assert _distance(model.describe(huge, big)[0], vectors[0]) < 0.15


def test_min_size_scans_small_photos_enlarged(model: FaceModel, found: dict) -> None:
    """A 65 px face: below the default min_size (and the detector's 80 px window), found when
    asked for with min_size=40 (the copy is scanned at twice the size), its box mapped back."""
    image, faces, vectors = found["obama.jpg"]
    small = image.resize((image.width // 4, image.height // 4), Image.Resampling.BILINEAR)
    assert model.detect(small) == []
    tiny = model.detect(small, min_size=40)
    assert len(tiny) == 1
    assert _iou(tiny[0].box, tuple(v / 4 for v in faces[0].box)) > 0.7
    assert min(tiny[0].width, tiny[0].height) >= 40
    assert _distance(model.describe(small, tiny)[0], vectors[0]) < SAME_PERSON_THRESHOLD


@pytest.mark.slow
def test_cnn_detector_finds_the_same_face(model: FaceModel, found: dict) -> None:
    """The CNN detector (~6 s per megapixel on a CPU) on a reduced photo."""
    image, faces, vectors = found["obama.jpg"]
    reduced = image.resize((image.width * 2 // 5, image.height * 2 // 5), Image.Resampling.BILINEAR)
    cnn = model.detect(reduced, detector="cnn")
    assert len(cnn) == 1 and cnn[0].score > 0
    assert _iou(cnn[0].box, tuple(v * 2 / 5 for v in faces[0].box)) > 0.6
    assert _distance(model.describe(reduced, cnn)[0], vectors[0]) < SAME_PERSON_THRESHOLD


# --------------------------------------------------------------------------- without the extra
def test_missing_dlib_is_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    with pytest.raises(MissingExtra) as info:
        FaceModel()
    assert info.value.package == "dlib-bin" and info.value.extra == "faces"
    assert "pip install 'lookalike[faces]'" in str(info.value)


def test_missing_model_files_is_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("dlib")
    find_spec = faces_module.importlib.util.find_spec
    monkeypatch.setattr(faces_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else find_spec(name, *a))
    with pytest.raises(MissingExtra) as info:
        FaceModel()
    assert info.value.package == "face-recognition-models" and info.value.extra == "faces"
    assert "pip install 'lookalike[faces]'" in str(info.value)
