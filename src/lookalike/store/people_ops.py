"""Who is who: grouping faces into people (after an index, or a full regroup) and a person's edits.

The rule that ties them: "a person you edited keeps its faces". Naming, merging, splitting and
rejecting pin (``manual = 1``) the faces involved and every face the person holds at that
moment; a grouping never moves a pinned face and never puts a face into a person it rejects
(each reject is passed to :func:`~lookalike.explore.people.group_faces` as a cannot-link pair
with one pinned face of that person).

Groupings are computed outside a transaction (they may take a while) and written in one only
if no edit came in meanwhile (:data:`~.face_db.PEOPLE_VERSION`); otherwise they are computed
again. Edits are one short transaction each.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Callable, Sequence, TypeVar

import numpy as np

from ..errors import CollectionError, InvalidArgument, PersonNotFound
from ..explore.people import assign_new, group_faces
from ..models.faces import DESCRIPTOR_DIM
from ..progress import ProgressCallback, ProgressEvent
from .face_db import PEOPLE, FaceTables
from .face_types import PeopleSettings, Person, RegroupReport
from .face_vectors import FaceVectors

__all__ = ["people_settings", "resolve", "group_new", "regroup", "rename", "merge", "split", "reject"]

T = TypeVar("T")
_ATTEMPTS = 3


def people_settings(tables: FaceTables) -> PeopleSettings:
    """The stored grouping settings (defaults when none were stored)."""
    raw = tables.settings(PEOPLE) or {}
    default = PeopleSettings()
    return PeopleSettings(float(raw.get("threshold", default.threshold)), int(raw.get("min_faces", default.min_faces)))


def checked_settings(threshold: float | None, min_faces: int | None, stored: PeopleSettings) -> PeopleSettings:
    """``stored`` with the values given; InvalidArgument for values out of range."""
    t = stored.threshold if threshold is None else threshold
    m = stored.min_faces if min_faces is None else min_faces
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < float(t) < 2:
        raise InvalidArgument(f"threshold must be a distance between 0 and 2 (dlib's is 0.6), not {t!r}")
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise InvalidArgument(f"min_faces must be an integer >= 1, not {m!r}")
    return PeopleSettings(float(t), int(m))


# ------------------------------------------------------------------ resolving
def resolve(tables: FaceTables, person: int | str) -> int:
    """A person's id from its id (an int, "3" or "person 3") or its name (case-insensitive; a name is
    never digits alone, see :func:`_clean_name`, so the two cannot clash)."""
    if isinstance(person, str):
        key = person.strip()
        found = tables.person_by_name(key) if key else None
        if found is not None:
            return found
        if key.lower().startswith("person "):
            key = key[len("person "):].strip()
        if key.isdigit():
            person = int(key)
    if isinstance(person, (int, np.integer)) and not isinstance(person, bool) and int(person) in tables.person_ids():
        return int(person)
    names = tables.names()
    known = f"named people: {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}" if names else "no one is named"
    raise PersonNotFound(person, f"no person {person!r} in this collection ({known}); list them with `lookalike people`")


def person(tables: FaceTables, person_id: int) -> Person:
    found = tables.people(person_id=person_id)
    if not found:
        raise PersonNotFound(person_id, f"no person {person_id} in this collection; list them with `lookalike people`")
    return found[0]


# ------------------------------------------------------------------ grouping
def _vectors(fv: FaceVectors, tables: FaceTables) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(face ids, person ids (-1: none), manual, descriptors)`` of every face, from one moment."""
    def read(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ids, vec_rows, persons, manual = tables.grouping_arrays()
        vecs = np.asarray(rows[vec_rows], dtype=np.float32) if len(ids) else np.zeros((0, DESCRIPTOR_DIM), np.float32)
        return ids, persons, manual, vecs
    return fv.read(read)


def _apply(tables: FaceTables, compute: Callable[[], T], write: Callable[[T], None]) -> T:
    """Compute outside a transaction, write inside one if no edit came in meanwhile (else again)."""
    for _ in range(_ATTEMPTS):
        version = tables.version()
        plan = compute()
        with tables.db.transaction():
            if tables.version() == version:
                write(plan)
                tables.bump()
                return plan
    raise CollectionError("people kept changing while faces were grouped; try again")


def group_new(fv: FaceVectors, tables: FaceTables, new_ids: Sequence[int], settings: PeopleSettings,
              progress: ProgressCallback | None = None) -> tuple[int, int, int]:
    """Group after an index: new faces join the person of their nearest assigned face (closer
    than the threshold), then the faces in no person are grouped among themselves into new
    people (existing people untouched). Returns ``(assigned, new people, unassigned)``."""
    def compute() -> tuple[list[tuple[int, int]], list[list[int]], int]:
        ids, persons, _manual, vecs = _vectors(fv, tables)
        is_new = np.isin(ids, np.asarray(list(new_ids), dtype=np.int64)) & (persons < 0)
        known = persons >= 0
        persons = persons.copy()
        if is_new.any() and known.any():
            persons[is_new] = assign_new(vecs[is_new], vecs[known], persons[known], threshold=settings.threshold)
        joined = [(int(f), int(p)) for f, p in zip(ids[is_new], persons[is_new]) if p >= 0]
        free = np.flatnonzero(persons < 0)
        groups: list[list[int]] = []
        if len(free):
            labels = group_faces(vecs[free], threshold=settings.threshold, min_faces=settings.min_faces)
            for label in np.unique(labels[labels >= 0]):
                groups.append([int(ids[free[i]]) for i in np.flatnonzero(labels == label)])
        left = int(len(free) - sum(len(g) for g in groups))
        return joined, groups, left

    def write(plan: tuple[list[tuple[int, int]], list[list[int]], int]) -> None:
        joined, groups, _ = plan
        pairs = list(joined)
        for faces in groups:
            pid = tables.create_person()
            pairs += ((f, pid) for f in faces)
        # One pass in face id order: person by person, the updates hopped across the table
        # (bench_faces regroup, a first grouping of 100,000 faces: 11.4 s -> 9.6 s).
        tables.assign(sorted(pairs))

    if progress:
        progress(ProgressEvent("people", 0, None, reason="grouping faces"))
    joined, groups, left = _apply(tables, compute, write)
    if progress:
        progress(ProgressEvent("people", 1, 1, reason="grouping faces"))
    return len(joined), len(groups), left


def regroup(fv: FaceVectors, tables: FaceTables, settings: PeopleSettings,
            progress: ProgressCallback | None = None) -> RegroupReport:
    """Group every face again; pinned faces stay, rejects hold (see the module docstring).

    A new group takes the id of the automatic person (one with no pinned face) that held most of
    its faces, each at most once, so unedited people keep their ids (and a name) across regroups;
    other groups become new people; unnamed people left without faces are deleted.
    """
    start = time.perf_counter()

    def compute() -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
        ids, persons, manual, vecs = _vectors(fv, tables)
        fixed = np.where(manual & (persons >= 0), persons, -1)
        index = {int(f): i for i, f in enumerate(ids)}
        pinned_face: dict[int, int] = {}
        for i in np.flatnonzero(fixed >= 0):
            pinned_face.setdefault(int(fixed[i]), int(i))
        cannot = [(index[f], pinned_face[p]) for f, p in tables.rejects()
                  if f in index and p in pinned_face and fixed[index[f]] != p]
        labels = (group_faces(vecs, threshold=settings.threshold, min_faces=settings.min_faces, fixed=fixed,
                              cannot_link=cannot) if len(ids) else np.zeros(0, np.int64))
        pinned_people = {int(p) for p in fixed[fixed >= 0]}
        overlap = Counter((int(lb), int(p)) for lb, p in zip(labels, persons)
                          if lb >= 0 and int(lb) not in pinned_people and p >= 0 and int(p) not in pinned_people)
        reuse: dict[int, int] = {}
        taken: set[int] = set()
        for (label, old), _n in sorted(overlap.items(), key=lambda kv: (-kv[1], kv[0])):
            if label not in reuse and old not in taken:
                reuse[label] = old
                taken.add(old)
        for label in sorted({int(lb) for lb in labels if lb >= 0 and int(lb) not in pinned_people} - set(reuse)):
            reuse[label] = -1  # a new person, made when written
        return ids, np.where(manual, -2, labels), reuse

    def write(plan: tuple[np.ndarray, np.ndarray, dict[int, int]]) -> None:
        ids, labels, reuse = plan
        made = {lb: (old if old >= 0 else tables.create_person()) for lb, old in reuse.items()}
        tables.assign((int(f), None if lb == -1 else made.get(int(lb), int(lb)))
                      for f, lb in zip(ids, labels) if lb != -2)
        tables.delete_empty_unnamed()

    if progress:
        progress(ProgressEvent("people", 0, None, reason="grouping faces"))
    _apply(tables, compute, write)
    stats = tables.stats()
    if progress:
        progress(ProgressEvent("people", 1, 1, reason="grouping faces"))
    return RegroupReport(people=stats.people, assigned=stats.faces - stats.unassigned_faces,
                         unassigned=stats.unassigned_faces, elapsed_s=time.perf_counter() - start)


# ------------------------------------------------------------------ edits
def _clean_name(name: str | None) -> str | None:
    if name is not None and not isinstance(name, str):
        raise InvalidArgument(f"a person's name is text, not {type(name).__name__}")
    name = " ".join(name.split()) if name else ""
    if name.isdigit() or (name.lower().startswith("person ") and name[7:].strip().isdigit()):
        # person:3 and "person 3" mean the person with id 3 everywhere (search, CLI, API).
        raise InvalidArgument(f"{name!r} would read as a person's id; give a name with a letter in it")
    return name or None


def _check_name_free(tables: FaceTables, name: str | None, person_id: int | None) -> None:
    if name is None:
        return
    other = tables.person_by_name(name)
    if other is not None and other != person_id:
        raise InvalidArgument(f"the name {name!r} is taken by person {other}; if they are the same person, "
                              f"merge them (`lookalike people merge {other} ...`) instead")


def _own_faces(tables: FaceTables, person_id: int, face_ids: Sequence[int]) -> list[int]:
    faces = [int(f) for f in dict.fromkeys(face_ids)]
    if not faces:
        raise InvalidArgument("name at least one face (see `lookalike people faces ID` for their ids)")
    owners = tables.person_of_faces(faces)
    strays = [f for f in faces if owners.get(f, -1) != person_id]
    if strays:
        raise InvalidArgument(f"face {strays[0]} is not one of person {person_id}'s faces "
                              f"(see `lookalike people faces {person_id}`)")
    return faces


def _edit(tables: FaceTables, change: Callable[[], int]) -> Person:
    with tables.db.transaction():
        pid = change()
        tables.delete_empty_unnamed()
        tables.bump()
    return person(tables, pid)


def rename(tables: FaceTables, who: int | str, name: str | None) -> Person:
    """Name a person (None or "" clears it) and pin its faces."""
    pid, clean = resolve(tables, who), _clean_name(name)
    _check_name_free(tables, clean, pid)

    def change() -> int:
        tables.rename(pid, clean)
        tables.pin_person(pid)
        return pid
    return _edit(tables, change)


def merge(tables: FaceTables, into: int | str, others: Sequence[int | str]) -> Person:
    """Move the faces of ``others`` into ``into`` (pinned) and delete them; ``into`` keeps its
    name, or takes the first other's name if it has none."""
    target = resolve(tables, into)
    sources = [s for s in dict.fromkeys(resolve(tables, o) for o in others) if s != target]
    if not sources:
        raise InvalidArgument("merge needs at least one other person than the one merged into")

    def change() -> int:
        name = tables.person_name(target) or next((n for n in map(tables.person_name, sources) if n), None)
        for source in sources:
            moved = [f.id for f in tables.faces_of_person(source)]
            tables.set_person(moved, target, True)
            tables.move_rejects(source, target)
            tables.drop_rejects(moved, target)
        tables.pin_person(target)
        tables.delete_people(sources)
        tables.rename(target, name)
        return target
    return _edit(tables, change)


def split(tables: FaceTables, who: int | str, face_ids: Sequence[int], name: str | None = None) -> Person:
    """A new person with these faces of ``who`` (pinned); they reject ``who``, whose rest is pinned."""
    pid, clean = resolve(tables, who), _clean_name(name)
    faces = _own_faces(tables, pid, face_ids)
    _check_name_free(tables, clean, None)

    def change() -> int:
        new = tables.create_person(clean)
        tables.set_person(faces, new, True)
        tables.add_rejects((f, pid) for f in faces)
        tables.pin_person(pid)
        return new
    return _edit(tables, change)


def reject(tables: FaceTables, who: int | str, face_ids: Sequence[int]) -> None:
    """"Not this person": the faces leave ``who`` (in no person, unpinned) and reject it; the rest is pinned."""
    pid = resolve(tables, who)
    faces = _own_faces(tables, pid, face_ids)
    with tables.db.transaction():
        tables.set_person(faces, None, False)
        tables.add_rejects((f, pid) for f in faces)
        tables.pin_person(pid)
        tables.delete_empty_unnamed()
        tables.bump()
