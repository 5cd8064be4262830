"""``faces index``: find the faces of every searchable item not scanned yet, store them, group them.

In order (the caller holds the writer lock, and made the :class:`~lookalike.models.faces.FaceModel`
first, so a missing ``faces`` extra stops it before anything is touched):

1. :meth:`FaceTables.pending <.face_db.FaceTables.pending>`: searchable items with no scan of
   their current content (new, changed, or unreadable last time with ``retry_failed``).
2. :func:`~lookalike.pipeline.ordered_map`: decode threads read each item's bytes (a file, a
   tar member, a cached URL) and decode them once, EXIF-upright, shrunk on load while the
   short side stays >= :data:`DECODE_MIN_SIDE` (large enough for the detector's own scan).
3. In this thread, for each photo: detect, landmarks, descriptors (one dlib model: its
   detectors gain little from threads on a few cores, and each thread would load its own
   copy), and a :data:`CROP_SIZE` px square JPEG crop, all from that one decode; boxes and
   landmarks are mapped back to display pixels of the original. A photo that cannot be read
   or scanned is recorded with its reason, never stops the run.
4. Every :data:`COMMIT_EVERY` photos: descriptors appended to ``faces-<gen>.f32`` and fsynced,
   then one transaction with the faces, crops, scans and the new row count
   (:meth:`FaceVectors.commit <.face_vectors.FaceVectors.commit>`).
5. Face vectors compacted when > 30 % garbage; new faces grouped
   (:func:`.people_ops.group_new`).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import UnreadableImage
from ..images.decode import DecodedImage, decode_image
from ..models.faces import DESCRIPTOR_DIM, Face
from ..pipeline.loader import default_workers, ordered_map
from ..progress import ProgressCallback, ProgressEvent
from .face_db import FACES, FaceRow, FaceTables
from .face_types import FaceIndexReport
from .face_vectors import FaceVectors
from .people_ops import group_new, people_settings

if TYPE_CHECKING:
    from ..models.faces import FaceModel
    from .item_bytes import ItemReader
    from .storage import Storage

__all__ = ["index_faces", "DECODE_MIN_SIDE", "CROP_SIZE", "COMMIT_EVERY", "face_crop"]

#: Photos are decoded with their short side shrunk to no less than this: the detector scans at
#: most 4 MP anyway (``DETECT_MAX_PIXELS``), and landmarks and descriptors need no more.
DECODE_MIN_SIDE = 1600
#: The side of the square face crop kept for the UI, and its JPEG quality.
CROP_SIZE, CROP_QUALITY = 160, 85
#: The crop's side as a share of the face box's longer side (a little hair and chin around).
CROP_MARGIN = 1.4
#: Photos per commit (and at most this many seconds between commits).
COMMIT_EVERY, COMMIT_SECONDS = 64, 10.0

_Job = tuple[int, str, "str | None"]


@dataclass
class _Scan:
    """One item's result: its faces (display pixels) and descriptors, or why it failed."""

    item_id: int
    path: str
    hash: str | None
    rows: list[tuple] = field(default_factory=list)  # FaceRow without vec_row: (box, landmarks, score, size, jpeg)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, DESCRIPTOR_DIM), np.float32))
    error: str | None = None


def _decode(reader: "ItemReader", job: _Job) -> tuple[_Job, DecodedImage | None, str | None]:
    """Runs in a decode thread: the item's upright pixels, or why they cannot be had."""
    try:
        return job, decode_image(reader.source(job[1]), min_side=DECODE_MIN_SIDE, name=job[1]), None
    except UnreadableImage as exc:
        return job, None, exc.reason
    except Exception as exc:  # noqa: BLE001 - one bad file never stops the run
        return job, None, f"{type(exc).__name__}: {exc}"


def face_crop(image: Image.Image, box: tuple[int, int, int, int], size: int = CROP_SIZE) -> bytes:
    """A ``size`` px square JPEG around ``box`` (``image``'s pixels), kept inside the image."""
    left, top, right, bottom = box
    side = max(1, min(round(CROP_MARGIN * max(right - left, bottom - top)), image.width, image.height))
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0 = int(min(max(0, round(cx - side / 2)), image.width - side))
    y0 = int(min(max(0, round(cy - side / 2)), image.height - side))
    crop = image.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    crop.convert("RGB").save(out, format="JPEG", quality=CROP_QUALITY)
    return out.getvalue()


def _scan(model: "FaceModel", job: _Job, decoded: DecodedImage, *, detector: str, min_size: int,
          jitter: int) -> _Scan:
    """Detect, describe and crop the faces of one decoded photo; boxes in display pixels."""
    image = decoded.image if decoded.image.mode == "RGB" else decoded.image.convert("RGB")
    # The decoder may have shrunk the photo: sx, sy map its pixels back to the original's.
    sx, sy = decoded.width / image.width, decoded.height / image.height
    faces = model.detect(image, detector=detector, min_size=max(1, round(min_size / max(sx, sy))))
    vectors = model.describe(image, faces, jitter=jitter)
    rows = []
    for face in faces:
        box = _display_box(face, sx, sy, decoded.width, decoded.height)
        rows.append((box, tuple((x * sx, y * sy) for x, y in face.landmarks), face.score,
                     min(box[2] - box[0], box[3] - box[1]), face_crop(image, face.box)))
    return _Scan(job[0], job[1], job[2], rows, vectors)


def _display_box(face: Face, sx: float, sy: float, width: int, height: int) -> tuple[int, int, int, int]:
    left, top, right, bottom = face.box
    return (max(0, round(left * sx)), max(0, round(top * sy)), min(width, round(right * sx)),
            min(height, round(bottom * sy)))


def _commit(fv: FaceVectors, tables: FaceTables, scans: list[_Scan]) -> list[int]:
    """Store a batch (vectors first, then one transaction); the new faces' ids."""
    vectors = np.concatenate([s.vectors for s in scans]) if scans else np.zeros((0, DESCRIPTOR_DIM), np.float32)
    new_ids: list[int] = []

    def write(start: int) -> None:
        row = start
        for scan in scans:
            faces: list[FaceRow] = []
            for box, marks, score, size, jpeg in scan.rows:
                faces.append((box, marks, score, size, row, jpeg))
                row += 1
            new_ids.extend(tables.record_scan(scan.item_id, scan.hash, faces, scan.error))
    fv.commit(vectors, write)
    return new_ids


def index_faces(storage: "Storage", reader: "ItemReader", model: "FaceModel", *, detector: str, min_size: int,
                jitter: int, workers: int | None, retry_failed: bool,
                progress: ProgressCallback | None) -> FaceIndexReport:
    """Implementation of :meth:`Faces.index <lookalike.store.facing.Faces.index>` (writer lock held)."""
    start = time.perf_counter()
    tables, fv = FaceTables(storage.db), FaceVectors(storage.path, storage.db)
    with storage.db.snapshot():
        jobs = tables.pending(retry_failed)
        skipped = tables.searchable_items() - len(jobs)
    with storage.db.transaction():
        tables.set_settings(FACES, {"detector": detector, "min_size": min_size, "jitter": jitter,
                                    "model": model.model_id, "fingerprint": model.fingerprint()})
    n_workers = workers or default_workers()
    # A decoded photo can be ~50 MB (an 18 MP wallpaper is not shrunk on load) and detection is
    # the slow step: one photo ahead per thread keeps it busy. Measured on 44 Debian wallpapers:
    # peak RSS 1.5 GB with 2 x workers + 2 ahead, 1.0 GB with workers + 1, the same speed.
    decoded = ordered_map(lambda job: _decode(reader, job), jobs, workers=n_workers, prefetch=n_workers + 1)
    batch: list[_Scan] = []
    new_ids: list[int] = []
    counts = {"faces": 0, "none": 0}
    errors: list[tuple[str, str]] = []
    last = time.monotonic()
    for done, (job, image, error) in enumerate(decoded, 1):
        scan = _Scan(*job, error=error)
        if image is not None:
            try:
                scan = _scan(model, job, image, detector=detector, min_size=min_size, jitter=jitter)
            except Exception as exc:  # noqa: BLE001 - dlib on a strange image: recorded, the run goes on
                scan = _Scan(*job, error=f"{type(exc).__name__}: {exc}")
        if scan.error is not None:
            errors.append((scan.path, scan.error))
        else:
            counts["faces"] += len(scan.rows)
            counts["none"] += not scan.rows
        batch.append(scan)
        if progress:
            progress(ProgressEvent("faces", done, len(jobs), path=scan.path if scan.error else None,
                                   reason=scan.error))
        if len(batch) >= COMMIT_EVERY or time.monotonic() - last > COMMIT_SECONDS:
            new_ids += _commit(fv, tables, batch)
            batch, last = [], time.monotonic()
    if batch:
        new_ids += _commit(fv, tables, batch)
    fv.compact()
    assigned, new_people, unassigned = group_new(fv, tables, new_ids, people_settings(tables), progress)
    return FaceIndexReport(scanned=len(jobs), faces=counts["faces"], no_faces=counts["none"], failed=len(errors),
                           skipped=skipped, assigned=assigned, new_people=new_people, unassigned=unassigned,
                           elapsed_s=time.perf_counter() - start, errors=errors)
