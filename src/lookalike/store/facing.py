"""The faces and people of a collection: ``coll.faces`` (:class:`Faces`) and ``coll.people`` (:class:`People`).

Faces are found by ``coll.faces.index()`` (:mod:`.face_index`: dlib's detector, landmarks and
128-d descriptors, the ``faces`` extra) and grouped into people (:mod:`.people_ops`); a person
is edited by naming, merging, splitting and "not this person", and edits survive regrouping.
The tables are :mod:`.face_db`'s, the descriptors :mod:`.face_vectors`'s. See the "faces and
people" section of docs/architecture.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..errors import FaceNotFound, InvalidArgument, ItemNotFound
from ..models.faces import DEFAULT_MIN_SIZE, DESCRIPTOR_DIM, DETECTORS
from ..progress import ProgressCallback
from . import people_ops
from .face_db import FACES, PEOPLE, FaceTables
from .face_index import index_faces
from .face_types import FaceIndexReport, FaceRecord, FaceStats, PeopleSettings, Person, RegroupReport
from .face_vectors import FaceVectors
from .item_access import item_reader
from .items import Item

if TYPE_CHECKING:
    from .item_bytes import ItemReader
    from .storage import Storage

__all__ = ["Faces", "People", "Facing", "FaceRecord", "Person", "FaceIndexReport", "FaceStats", "PeopleSettings",
           "RegroupReport"]


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidArgument(f"{name} must be an integer >= {low}, not {value!r}")
    return int(value)


def _page(offset: int, limit: int | None) -> tuple[int, int | None]:
    return _check_int("offset", offset, 0), None if limit is None else _check_int("limit", limit, 0)


class Faces:
    """The faces found in a collection's photos (``coll.faces``)."""

    def __init__(self, storage: "Storage", reader: Callable[[], "ItemReader"]) -> None:
        self._storage = storage
        self._reader = reader
        self._tables = FaceTables(storage.db)
        self._vectors = FaceVectors(storage.path, storage.db)

    def index(self, *, detector: str = "hog", min_size: int = DEFAULT_MIN_SIZE, jitter: int = 0,
              workers: int | None = None, retry_failed: bool = False,
              progress: ProgressCallback | None = None) -> FaceIndexReport:
        """Find the faces of every searchable item not scanned yet (or changed since), then group
        the new faces into people (joining known people, or new ones among the faces in none).

        ``detector`` is ``"hog"`` (fast on a CPU) or ``"cnn"`` (finds turned faces; 30-50x slower on a CPU);
        ``min_size`` the smallest face in display pixels; ``jitter`` dlib's descriptor jitter;
        ``workers`` the decode threads. Unreadable photos are recorded with their reason and not
        retried until they change (or ``retry_failed``). Safe to interrupt: the next run resumes.

        Raises:
            MissingExtra: the ``faces`` extra is not installed (nothing is touched).
            InvalidArgument: an unknown detector, a size below 1, a jitter below 0.
            CollectionError: another process is writing to this collection.
        """
        from ..models.faces import FaceModel

        if detector not in DETECTORS:
            raise InvalidArgument(f"unknown face detector {detector!r}; use one of {', '.join(DETECTORS)}")
        min_size, jitter = _check_int("min_size", min_size, 1), _check_int("jitter", jitter, 0)
        if workers is not None:
            _check_int("workers", workers, 1)
        model = FaceModel()  # MissingExtra here, before the lock or any write
        with self._storage.write_lock():
            return index_faces(self._storage, self._reader(), model, detector=detector, min_size=min_size,
                               jitter=jitter, workers=workers, retry_failed=retry_failed, progress=progress)

    def forget(self) -> int:
        """Delete every face, crop, scan, person, reject, the face vector files and the grouping
        settings, and compact the database so that none of it stays on disk; the faces deleted.

        Raises:
            CollectionError: another process is writing to this collection.
        """
        db = self._storage.db
        with self._storage.write_lock():
            with db.transaction():
                n = self._tables.clear()
                db.conn.execute("DELETE FROM state WHERE key IN ('face_vector_file', 'face_vector_rows')")
            self._vectors.drop_files()
            db.conn.execute("VACUUM")  # deleted rows linger in free pages until the file is rewritten
            db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # and in the write-ahead log until it is emptied
        return n

    @property
    def indexed(self) -> bool:
        """Whether :meth:`index` ever ran (and :meth:`forget` did not run since)."""
        return self._tables.settings(FACES) is not None

    def of_item(self, item_id: int) -> list[FaceRecord]:
        """The faces of one item, best score first.

        Raises:
            ItemNotFound: no such item.
        """
        with self._storage.db.snapshot():
            if self._storage.db.get(int(item_id)) is None:
                raise ItemNotFound(int(item_id), f"no item with id {item_id} in {self._storage.path}")
            return self._tables.faces_of_item(int(item_id))

    def get(self, face_id: int) -> FaceRecord:
        """One face by id.

        Raises:
            FaceNotFound: no such face.
        """
        found = self._tables.face(int(face_id))
        if found is None:
            raise self._missing(face_id)
        return found

    def crop(self, face_id: int) -> bytes:
        """The face's square JPEG crop (160 px, see ``face_index.CROP_SIZE``), made when it was found.

        Raises:
            FaceNotFound: no such face.
        """
        jpeg = self._tables.crop(int(face_id))
        if jpeg is None:
            raise self._missing(face_id)
        return jpeg

    def vectors(self, face_ids: Sequence[int]) -> np.ndarray:
        """The descriptors of the given faces, ``(n, 128)`` float32, in order.

        Raises:
            FaceNotFound: a face id is unknown.
        """
        ids = [int(f) for f in face_ids]

        def read(rows: np.ndarray) -> np.ndarray:
            found = self._tables.vec_rows(ids)
            missing = [f for f in ids if f not in found]
            if missing:
                raise self._missing(missing[0])
            if not ids:
                return np.zeros((0, DESCRIPTOR_DIM), np.float32)
            return np.asarray(rows[[found[f] for f in ids]], dtype=np.float32)
        return self._vectors.read(read)

    def stats(self) -> FaceStats:
        """Counts of scanned and pending items, faces, people and faces in no person."""
        with self._storage.db.snapshot():
            return self._tables.stats()

    def _missing(self, face_id: int) -> FaceNotFound:
        return FaceNotFound(int(face_id), f"no face with id {face_id} in {self._storage.path}; "
                                          "see `lookalike people faces ID` for a person's faces")


class People:
    """The people the faces of a collection were grouped into (``coll.people``).

    A person is named by id or by name (case-insensitive) wherever one is asked for. Editing a
    person (name, merge, split, reject) pins the faces it holds then: regrouping never moves them.
    """

    def __init__(self, storage: "Storage") -> None:
        self._storage = storage
        self._tables = FaceTables(storage.db)

    def __call__(self, *, min_faces: int = 1) -> list[Person]:
        """Every person with at least ``min_faces`` faces, most faces first, then by id."""
        return self._tables.people(_check_int("min_faces", min_faces, 0))

    def get(self, person: int | str) -> Person:
        """One person by id or name.

        Raises:
            PersonNotFound: no such person.
        """
        with self._storage.db.snapshot():
            return people_ops.person(self._tables, self.resolve(person))

    def resolve(self, person: int | str) -> int:
        """A person's id from its id or name (case-insensitive).

        Raises:
            PersonNotFound: no such person (the message lists the names).
        """
        return people_ops.resolve(self._tables, person)

    def faces(self, person: int | str, *, offset: int = 0, limit: int | None = 100) -> list[FaceRecord]:
        """A person's faces, best score first (``limit`` None: all)."""
        offset, limit = _page(offset, limit)
        with self._storage.db.snapshot():
            return self._tables.faces_of_person(self.resolve(person), offset, limit)

    def unassigned(self, *, offset: int = 0, limit: int | None = 100) -> list[FaceRecord]:
        """Faces in no person, best score first."""
        offset, limit = _page(offset, limit)
        return self._tables.faces_of_person(None, offset, limit)

    def photos(self, person: int | str, *, offset: int = 0, limit: int | None = None) -> list[Item]:
        """The distinct items a person's faces are in, by id."""
        offset, limit = _page(offset, limit)
        db = self._storage.db
        with db.snapshot():
            pid = self.resolve(person)
            ids = [int(r[0]) for r in db.conn.execute(
                "SELECT DISTINCT item_id FROM faces WHERE person_id = ? ORDER BY item_id LIMIT ? OFFSET ?",
                (pid, -1 if limit is None else limit, offset))]
            rows = db.get_many(ids)
        return [rows[i].public() for i in ids if i in rows]

    def name(self, person: int | str, name: str | None) -> Person:
        """Name a person (None or "" clears the name); its faces are pinned.

        Raises:
            PersonNotFound: no such person.
            InvalidArgument: another person has that name (merge them instead).
        """
        return people_ops.rename(self._tables, person, name)

    def merge(self, into: int | str, *others: int | str) -> Person:
        """Move the faces of ``others`` into ``into`` (pinned) and delete ``others``; ``into``
        keeps its name, or takes the first other's name if it has none.

        Raises:
            PersonNotFound: a person does not exist.
            InvalidArgument: no other person given.
        """
        return people_ops.merge(self._tables, into, others)

    def split(self, person: int | str, face_ids: Sequence[int], *, name: str | None = None) -> Person:
        """A new person (named ``name``) with these faces of ``person``; they are pinned to it and
        reject ``person``, whose other faces are pinned. Returns the new person.

        Raises:
            PersonNotFound: no such person.
            InvalidArgument: no faces, a face not of ``person``, or a name another person has.
        """
        return people_ops.split(self._tables, person, face_ids, name)

    def reject(self, person: int | str, face_ids: Sequence[int]) -> None:
        """"Not this person": the faces leave ``person`` (to no person) and never join it in a
        regroup; the person's other faces are pinned.

        Raises:
            PersonNotFound: no such person.
            InvalidArgument: no faces, or a face not of ``person``.
        """
        people_ops.reject(self._tables, person, face_ids)

    def regroup(self, *, threshold: float | None = None, min_faces: int | None = None,
                progress: ProgressCallback | None = None) -> RegroupReport:
        """Group every face again (threshold and min_faces, when given, become the settings);
        pinned faces and rejects hold, unedited people keep their ids where they keep most faces.

        Raises:
            InvalidArgument: a threshold outside (0, 2) or min_faces below 1.
            CollectionError: another process is writing to this collection.
        """
        settings = people_ops.checked_settings(threshold, min_faces, self.settings)
        with self._storage.write_lock():
            with self._storage.db.transaction():
                self._tables.set_settings(PEOPLE, {"threshold": settings.threshold, "min_faces": settings.min_faces})
            return people_ops.regroup(FaceVectors(self._storage.path, self._storage.db), self._tables, settings,
                                      progress)

    @property
    def settings(self) -> PeopleSettings:
        """How faces are grouped (threshold 0.6 and min_faces 3 until a regroup sets others)."""
        return people_ops.people_settings(self._tables)


class Facing:
    """``coll.faces`` and ``coll.people`` (mixed into ``Collection``)."""

    _storage: "Storage"

    @property
    def faces(self) -> Faces:
        """The faces found in the collection's photos; see :class:`Faces`."""
        return Faces(self._storage, lambda: item_reader(self))

    @property
    def people(self) -> People:
        """The people those faces were grouped into; see :class:`People`."""
        return People(self._storage)
