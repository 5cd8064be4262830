"""Faces: dlib's face detectors, 5-point landmarks and 128-d face descriptors (the ``faces`` extra).

Everything here runs on dlib (the prebuilt ``dlib-bin`` wheels: no compiler, CPU only) with the
model files of ``face-recognition-models``, both from PyPI and imported only when a
:class:`FaceModel` is made, so ``import lookalike`` never needs them:

* detection: dlib's HOG frontal face detector (``"hog"``, the default: fast on a CPU) or its
  CNN MMOD detector (``"cnn"``: finds more turned and tilted faces, ~50x slower on a CPU);
* landmarks: the 5-point shape predictor (the corners of both eyes and the base of the nose);
* descriptors: dlib's ResNet (``dlib_face_recognition_resnet_model_v1``) on the face aligned by
  its landmarks into a 150x150 chip (:func:`dlib.get_face_chip`, padding 0.25). Two
  descriptors closer than :data:`SAME_PERSON_THRESHOLD` (Euclidean) are taken as one person;
  dlib reports 99.38 % on LFW at that threshold. The vectors are not unit-norm.

Coordinates are those of the image as given, which for a photo should be its display
orientation: decode it with :func:`lookalike.images.decode.decode_image`, which applies the
EXIF orientation, before detecting.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InvalidArgument, MissingExtra, ModelLoadError
from ..fsutil import file_digest

__all__ = [
    "Face", "FaceModel", "SAME_PERSON_THRESHOLD", "DESCRIPTOR_DIM", "CHIP_SIZE", "CHIP_PADDING",
    "DETECTORS", "DETECTOR_WINDOW", "MAX_UPSCALE", "DEFAULT_MIN_SIZE", "DETECT_MAX_PIXELS", "FACE_MODEL_ID",
    "face_model_files",
]

#: Two face descriptors closer than this (Euclidean) show the same person: dlib's own threshold,
#: at which its ResNet model scores 99.38 % on the LFW pairs benchmark.
SAME_PERSON_THRESHOLD = 0.6
#: The length of a face descriptor.
DESCRIPTOR_DIM = 128
#: The side of the aligned face chip the descriptor network reads, and the margin around the
#: landmarks' face that dlib's descriptor model was trained with (a share of the face's size).
CHIP_SIZE = 150
CHIP_PADDING = 0.25
#: The detectors :meth:`FaceModel.detect` can use.
DETECTORS = ("hog", "cnn")
#: The smallest face, in pixels, both detectors find in the image they scan (HOG's scanning
#: window is 80x80; measured on the test photos, the CNN stops finding faces between 80 and 52).
DETECTOR_WINDOW = 80
#: Detection enlarges a small image at most this much (as dlib's own "upsample once"): faces
#: under ~40 px give poor descriptors, and enlarging further costs the square of it.
MAX_UPSCALE = 2.0
#: The default smallest face, in display pixels, that detection looks for and reports.
DEFAULT_MIN_SIZE = 80
#: Detection scans a copy of at most this many pixels (about 2300x1700): a 12 MP phone photo is
#: scanned at 0.58 scale, which finds faces from about 140 px up at a third of the time.
DETECT_MAX_PIXELS = 4_000_000
#: Identifies the descriptor model in fingerprints and records.
FACE_MODEL_ID = "dlib-resnet-v1"

_FILES = {
    "landmarks": "shape_predictor_5_face_landmarks.dat",
    "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
    "cnn": "mmod_human_face_detector.dat",
}
#: dlib's CNN raises on images smaller than its convolution windows (measured: fails at 40 px,
#: works at 48), and no detector finds an 80 px face in them anyway.
_MIN_SCAN_SIDE = 48


@dataclass(frozen=True)
class Face:
    """One face found in an image.

    ``box`` is ``(left, top, right, bottom)`` in the image's pixels, right and bottom exclusive
    (as :meth:`PIL.Image.Image.crop` takes it), clipped to the image. ``score`` is the
    detector's confidence (HOG: its SVM margin; CNN: the MMOD confidence), comparable only
    between faces found by the same detector. ``landmarks`` are the five points of dlib's
    5-point model as ``(x, y)`` in the image's pixels, in its order: the outer and inner
    corner of one eye, the outer and inner corner of the other, the base of the nose.
    """

    box: tuple[int, int, int, int]
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def width(self) -> int:
        """The box's width in pixels."""
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        """The box's height in pixels."""
        return self.box[3] - self.box[1]


def _import_dlib() -> Any:
    try:
        return importlib.import_module("dlib")
    except ImportError as exc:
        raise MissingExtra("dlib-bin", "faces", "Finding faces") from exc


def face_model_files() -> dict[str, Path]:
    """The dlib model files of ``face-recognition-models``, by role (landmarks, descriptor, cnn).

    Raises:
        MissingExtra: the package is not installed.
        ModelLoadError: it is installed but a file is missing.
    """
    # Located, not imported: its __init__ imports pkg_resources, which recent setuptools no
    # longer ships, and all we need are the files beside it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise MissingExtra("face-recognition-models", "faces", "Finding faces")
    folder = Path(spec.origin).parent / "models"
    files = {role: folder / name for role, name in _FILES.items()}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise ModelLoadError(f"face-recognition-models is incomplete, missing {missing}; reinstall it: "
                             "pip install --force-reinstall face-recognition-models")
    return files


def _rgb(image: Image.Image) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise InvalidArgument(f"faces are found in a PIL image, not {type(image).__name__}; "
                              "decode files with lookalike.images.decode.decode_image first")
    return image if image.mode == "RGB" else image.convert("RGB")


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidArgument(f"{name} must be an integer >= {low}, not {value!r}")
    return int(value)


class FaceModel:
    """dlib's face detectors, landmarks and descriptor; see the module docstring.

    Loading takes about half a second (the CNN detector loads on its first use). A model is
    not meant to be shared between threads: give each thread its own.

    Raises (when made):
        MissingExtra: ``dlib-bin`` or ``face-recognition-models`` is not installed.
        ModelLoadError: a model file is missing or does not load.
    """

    model_id = FACE_MODEL_ID
    dim = DESCRIPTOR_DIM

    def __init__(self) -> None:
        self._dlib = _import_dlib()
        self._files = face_model_files()
        try:
            self._hog = self._dlib.get_frontal_face_detector()
            self._predictor = self._dlib.shape_predictor(str(self._files["landmarks"]))
            self._descriptor = self._dlib.face_recognition_model_v1(str(self._files["descriptor"]))
        except RuntimeError as exc:  # dlib reports an unreadable or corrupt file this way
            raise ModelLoadError(f"cannot load dlib's face models from {self._files['landmarks'].parent}: "
                                 f"{exc}") from exc

    @cached_property
    def _cnn(self) -> Any:
        try:
            return self._dlib.cnn_face_detection_model_v1(str(self._files["cnn"]))
        except RuntimeError as exc:
            raise ModelLoadError(f"cannot load dlib's CNN face detector {self._files['cnn']}: {exc}") from exc

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> str:
        """A short digest of what determines the descriptors: the model id, the chip recipe and
        the digests of the landmark and descriptor weights (not their paths, so a reinstall
        elsewhere keeps it). The detector is left out: it decides which faces are found, not
        what a face's descriptor is."""
        payload = {"model_id": self.model_id, "dim": self.dim, "chip": {"size": CHIP_SIZE, "padding": CHIP_PADDING},
                   "weights": self._weights_digests}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    @cached_property
    def _weights_digests(self) -> dict[str, str]:
        return {role: file_digest(self._files[role]) for role in ("landmarks", "descriptor")}

    # ------------------------------------------------------------------ detection
    def detect(self, image: Image.Image, *, detector: str = "hog", min_size: int = DEFAULT_MIN_SIZE,
               max_pixels: int = DETECT_MAX_PIXELS) -> list[Face]:
        """The faces in ``image``, best score first.

        The detector scans a resized copy: scaled so that a face of ``min_size`` pixels becomes
        the :data:`DETECTOR_WINDOW` it can find, but enlarged at most :data:`MAX_UPSCALE` times
        and never above ``max_pixels`` (a large photo is scanned downscaled, so its smallest
        findable face is larger than ``min_size`` then; faces under about 40 px are never found).
        Boxes are mapped back to ``image``'s pixels; faces whose box is smaller than
        ``min_size`` on either side are left out, so the faces found do not depend on how the
        copy was scaled. Landmarks are placed on ``image`` itself, at full resolution.

        Args:
            image: the picture, upright (see the module docstring); other modes than RGB are
                converted with :meth:`PIL.Image.Image.convert`.
            detector: ``"hog"`` or ``"cnn"`` (see :data:`DETECTORS`).
            min_size: the smallest face, in ``image``'s pixels, to look for and report.
            max_pixels: the largest copy scanned.

        Raises:
            InvalidArgument: an unknown detector, or a size below 1.
        """
        if detector not in DETECTORS:
            raise InvalidArgument(f"unknown face detector {detector!r}; use one of {', '.join(DETECTORS)}")
        min_size = _check_int("min_size", min_size, 1)
        max_pixels = _check_int("max_pixels", max_pixels, 1)
        rgb = _rgb(image)
        width, height = rgb.size
        if width == 0 or height == 0:  # PIL makes empty images; they hold no face
            return []
        scale = min(DETECTOR_WINDOW / min_size, MAX_UPSCALE, math.sqrt(max_pixels / (width * height)))
        # Rounded down, so that the copy stays within max_pixels.
        size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
        if min(size) < _MIN_SCAN_SIDE:
            return []
        # reducing_gap: a big downscale first shrinks by whole factors (much faster, same look).
        work = rgb if size == rgb.size else rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
        # The scales actually applied, after rounding the copy's size to whole pixels.
        sx, sy = size[0] / width, size[1] / height
        faces = []
        for (left, top, right, bottom), score in self._scan(np.asarray(work), detector):
            full = (left / sx, top / sy, right / sx, bottom / sy)
            if min(full[2] - full[0], full[3] - full[1]) < min_size:
                continue
            box = (max(0, round(full[0])), max(0, round(full[1])),
                   min(width, round(full[2])), min(height, round(full[3])))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            faces.append(Face(box=box, score=float(score), landmarks=self._landmarks(rgb, full)))
        faces.sort(key=lambda face: (-face.score, face.box))
        return faces

    def _scan(self, pixels: np.ndarray, detector: str) -> list[tuple[tuple[int, int, int, int], float]]:
        """Run one detector on an RGB array: ``[((left, top, right, bottom), score)]``, exclusive ends."""
        if detector == "cnn":
            found = [(det.rect, det.confidence) for det in self._cnn(pixels, 0)]
        else:
            # run() rather than __call__: it returns the scores as well. No upsampling: the
            # copy is already scaled for min_size.
            rects, scores, _ = self._hog.run(pixels, 0, 0.0)
            found = list(zip(rects, scores))
        # dlib's right and bottom are inclusive.
        return [((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s)) for r, s in found]

    def _landmarks(self, rgb: Image.Image, box: tuple[float, float, float, float]) -> tuple[tuple[float, float], ...]:
        """The 5 landmarks of the face in ``box`` (``rgb``'s pixels, may reach outside it)."""
        region, (x0, y0) = _around(rgb, box)
        rect = self._dlib.rectangle(round(box[0] - x0), round(box[1] - y0),
                                    round(box[2] - x0) - 1, round(box[3] - y0) - 1)
        shape = self._predictor(region, rect)
        return tuple((float(p.x + x0), float(p.y + y0)) for p in shape.parts())

    # ------------------------------------------------------------------ chips and descriptors
    def chip(self, image: Image.Image, face: Face) -> Image.Image:
        """The face aligned by its landmarks into the :data:`CHIP_SIZE` square chip the
        descriptor reads (eyes level, the face centred, :data:`CHIP_PADDING` around it)."""
        return Image.fromarray(self._chip_pixels(_rgb(image), face))

    def describe(self, image: Image.Image, faces: Sequence[Face], *, jitter: int = 0) -> np.ndarray:
        """The descriptors of ``faces`` (found in ``image``): float32 ``(len(faces), 128)``.

        Args:
            image: the image the faces were found in, as it was given to :meth:`detect`.
            faces: faces from :meth:`detect` (or stored ones: only box and landmarks are read).
            jitter: how many randomly jittered copies of each chip to average (dlib's
                ``num_jitters``; 0 and 1 both mean the chip as it is). Each copy costs a pass of
                the network, for slightly steadier descriptors; dlib's random generator runs on
                from call to call, so jittered descriptors of one face differ a little (~0.02).

        Raises:
            InvalidArgument: ``jitter`` below 0, or a face without its 5 landmarks.
        """
        jitter = _check_int("jitter", jitter, 0)
        rgb = _rgb(image)
        chips = [self._chip_pixels(rgb, face) for face in faces]
        if not chips:
            return np.zeros((0, DESCRIPTOR_DIM), dtype=np.float32)
        vectors = self._descriptor.compute_face_descriptor(chips, jitter)
        return np.asarray([np.asarray(v) for v in vectors], dtype=np.float32).reshape(len(chips), DESCRIPTOR_DIM)

    def _chip_pixels(self, rgb: Image.Image, face: Face) -> np.ndarray:
        if not isinstance(face, Face) or len(face.landmarks) != 5:
            raise InvalidArgument(f"a face needs its box and 5 landmarks (from FaceModel.detect), not {face!r}")
        region, (x0, y0) = _around(rgb, tuple(float(v) for v in face.box))  # type: ignore[arg-type]
        left, top, right, bottom = face.box
        rect = self._dlib.rectangle(left - x0, top - y0, right - x0 - 1, bottom - y0 - 1)
        points = [self._dlib.point(round(x - x0), round(y - y0)) for x, y in face.landmarks]
        shape = self._dlib.full_object_detection(rect, points)
        return np.asarray(self._dlib.get_face_chip(region, shape, size=CHIP_SIZE, padding=CHIP_PADDING))


def _around(rgb: Image.Image, box: tuple[float, float, float, float]) -> tuple[np.ndarray, tuple[int, int]]:
    """The pixels around a face box and the offset of that region in ``rgb``.

    dlib reads only the neighbourhood of a face, so it gets that rather than a whole photo
    (a 48 MP photo would be copied for each face otherwise). One face size on every side holds
    the aligned chip at any rotation (its padding reaches ~0.6 face sizes out). The region
    stops at the image's edges, so that dlib sees the borders it sees in the whole image: the
    descriptors equal those dlib computes on the whole image (black padding moved them by 0.03).
    """
    margin = max(box[2] - box[0], box[3] - box[1])
    x0, y0 = max(0, math.floor(box[0] - margin)), max(0, math.floor(box[1] - margin))
    x1, y1 = min(rgb.width, math.ceil(box[2] + margin)), min(rgb.height, math.ceil(box[3] + margin))
    return np.ascontiguousarray(np.asarray(rgb.crop((x0, y0, x1, y1)))), (x0, y0)
