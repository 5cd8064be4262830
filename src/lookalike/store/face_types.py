"""What the faces and people of a collection return: plain frozen records (see :mod:`.facing`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..explore.people import DEFAULT_MIN_FACES, DEFAULT_THRESHOLD

__all__ = ["FaceRecord", "Person", "FaceIndexReport", "FaceStats", "PeopleSettings", "RegroupReport"]


@dataclass(frozen=True)
class FaceRecord:
    """One face found in a photo of the collection.

    ``box`` is ``(left, top, right, bottom)`` in display pixels of the original photo (EXIF
    orientation applied, right and bottom exclusive), ``landmarks`` dlib's five points in the
    same pixels, ``size`` the box's shorter side. ``manual``: a person put the face in its
    person (by naming, merging, splitting or rejecting), so a regroup never moves it.
    """

    id: int
    item_id: int
    path: str
    box: tuple[int, int, int, int]
    landmarks: tuple[tuple[float, float], ...]
    score: float
    size: int
    person_id: int | None
    manual: bool


@dataclass(frozen=True)
class Person:
    """A group of faces taken to show one person; ``faces`` and ``photos`` count its faces and
    the distinct items they are in. ``cover_face`` is the face to show (the best scored of
    those placed by hand, else of all), ``sample_path`` its photo."""

    id: int
    name: str | None
    faces: int
    photos: int
    cover_face: int | None
    sample_path: str | None

    @property
    def label(self) -> str:
        """The name, else ``"person <id>"``."""
        return self.name if self.name else f"person {self.id}"


@dataclass(frozen=True)
class FaceIndexReport:
    """What :meth:`Faces.index <lookalike.store.facing.Faces.index>` did.

    ``scanned`` items were read this run: ``faces`` faces were found, ``no_faces`` of them
    showed none, ``failed`` could not be read (``errors``: ``(path, reason)``); ``skipped``
    were scanned before with the same content. Then grouping ``assigned`` new faces to known
    people, made ``new_people`` people, and left ``unassigned`` faces (in total) in no person.
    """

    scanned: int = 0
    faces: int = 0
    no_faces: int = 0
    failed: int = 0
    skipped: int = 0
    assigned: int = 0
    new_people: int = 0
    unassigned: int = 0
    elapsed_s: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class FaceStats:
    """Counts: items scanned for faces (``pending_items``: searchable items not scanned yet, or
    changed since), faces found, people (and how many are named), faces in no person."""

    scanned_items: int
    pending_items: int
    faces: int
    people: int
    named_people: int
    unassigned_faces: int


@dataclass(frozen=True)
class PeopleSettings:
    """How faces are grouped: faces closer than ``threshold`` (Euclidean, dlib's 0.6) link, and a
    group needs ``min_faces`` faces to become a person."""

    threshold: float = DEFAULT_THRESHOLD
    min_faces: int = DEFAULT_MIN_FACES


@dataclass(frozen=True)
class RegroupReport:
    """What :meth:`People.regroup <lookalike.store.facing.People.regroup>` did: people after it,
    faces in a person, faces in none."""

    people: int
    assigned: int
    unassigned: int
    elapsed_s: float
