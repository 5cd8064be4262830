"""coll.people over ``face_collection`` (real photos: Obama 6 faces, Biden 3): listing, resolving,
editing (name, merge, split, reject), and regrouping that keeps every edit."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

import lookalike
from lookalike import Collection, InvalidArgument, PersonNotFound

from tools.face_samples import PEOPLE_BIDEN, PEOPLE_OBAMA

pytest.importorskip("dlib")


def _names(records: list) -> list[str]:
    return sorted(Path(r.path).name for r in records)


def _who(coll: Collection) -> tuple[int, int]:
    """The ids of Obama's and Biden's person (the photos say which is which)."""
    by_photo = {Path(f.path).name: f.person_id for p in coll.people() for f in coll.people.faces(p.id)}
    return by_photo["obama.jpg"], by_photo["biden.jpg"]


@pytest.fixture
def coll(face_collection: Path, tmp_path: Path) -> Iterator[Collection]:
    """An editable copy of ``face_collection``."""
    path = Path(shutil.copytree(face_collection, tmp_path / "faces.lkl"))
    with Collection.open(path) as c:
        yield c


def test_two_people_from_the_real_photos(face_collection: Path) -> None:
    with Collection.open(face_collection) as coll:
        people = coll.people()
        assert [(p.faces, p.photos, p.name) for p in people] == [(6, 6, None), (3, 3, None)]
        obama, biden = _who(coll)
        assert _names(coll.people.faces(obama)) == sorted(PEOPLE_OBAMA)
        assert _names(coll.people.faces(biden)) == sorted(PEOPLE_BIDEN)
        assert sorted(Path(i.path).name for i in coll.people.photos(biden)) == sorted(PEOPLE_BIDEN)
        assert coll.people.unassigned() == []
        person = coll.people.get(obama)
        assert person.label == f"person {obama}" and person.cover_face in {f.id for f in coll.people.faces(obama)}
        assert Path(person.sample_path or "").name in PEOPLE_OBAMA
        faces = coll.people.faces(obama)
        assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
        assert coll.people(min_faces=4) == [coll.people.get(obama)]
        assert coll.people.settings == lookalike.PeopleSettings(0.6, 3)


def test_resolve_by_id_name_and_unknown(coll: Collection) -> None:
    obama, _ = _who(coll)
    coll.people.name(obama, "Barack Obama")
    assert coll.people.resolve("barack OBAMA") == obama
    assert coll.people.resolve(obama) == obama == coll.people.resolve(str(obama))
    with pytest.raises(PersonNotFound) as err:
        coll.people.resolve("Ada")
    assert err.value.person == "Ada" and "Barack Obama" in str(err.value) and "lookalike people" in str(err.value)
    with pytest.raises(PersonNotFound):
        coll.people.get(10_000)
    assert coll.people.resolve(f"person {obama}") == obama  # a person's label names it too


@pytest.mark.parametrize("name", ["7", " 12 ", "person 3"])
def test_a_name_that_reads_as_an_id_is_refused(coll: Collection, name: str) -> None:
    # person:7 in a query means the person with id 7; a person named "7" could never be found.
    obama, _ = _who(coll)
    with pytest.raises(InvalidArgument, match="id"):
        coll.people.name(obama, name)


def test_name_pins_and_a_taken_name_says_merge(coll: Collection) -> None:
    obama, biden = _who(coll)
    person = coll.people.name(obama, "  Barack   Obama ")
    assert person.name == "Barack Obama" and person.label == "Barack Obama"
    assert all(f.manual for f in coll.people.faces(obama))
    assert not any(f.manual for f in coll.people.faces(biden))
    with pytest.raises(InvalidArgument, match="merge"):
        coll.people.name(biden, "barack obama")
    assert coll.people.name(obama, "").name is None  # cleared; the faces stay pinned
    assert all(f.manual for f in coll.people.faces(obama))


def test_merge_moves_faces_and_takes_a_name(coll: Collection) -> None:
    obama, biden = _who(coll)
    coll.people.name(biden, "Joe")
    merged = coll.people.merge(obama, biden)
    assert (merged.id, merged.faces, merged.name) == (obama, 9, "Joe")
    assert [p.id for p in coll.people()] == [obama]
    assert all(f.manual for f in coll.people.faces(obama))
    with pytest.raises(InvalidArgument):
        coll.people.merge(obama, obama)


def test_split_and_reject(coll: Collection) -> None:
    obama, _ = _who(coll)
    faces = {Path(f.path).name: f.id for f in coll.people.faces(obama)}
    partial = [faces["obama_partial_face.jpg"], faces["obama_partial_face2.jpg"]]
    new = coll.people.split(obama, partial, name="Partial")
    assert (new.faces, new.name) == (2, "Partial")
    assert coll.people.get(obama).faces == 4 and all(f.manual for f in coll.people.faces(obama))
    with pytest.raises(InvalidArgument, match="not one of"):
        coll.people.reject(obama, partial)
    coll.people.reject(obama, [faces["obama3.jpg"]])
    assert coll.people.get(obama).faces == 3
    assert [Path(f.path).name for f in coll.people.unassigned()] == ["obama3.jpg"]


def test_regroup_keeps_names_merges_splits_and_rejects(coll: Collection) -> None:
    obama, biden = _who(coll)
    faces = {Path(f.path).name: f.id for f in coll.people.faces(obama)}
    coll.people.name(biden, "Joe")
    split = coll.people.split(obama, [faces["obama_partial_face.jpg"]], name="Partial")
    coll.people.reject(obama, [faces["obama3.jpg"]])
    before = {p.id: (p.name, _names(coll.people.faces(p.id))) for p in coll.people()}

    for settings in ({}, {"min_faces": 1}, {"threshold": 0.9}):
        report = coll.people.regroup(**settings)
        assert report.people == 3 and report.assigned + report.unassigned == 9
        after = {p.id: (p.name, _names(coll.people.faces(p.id))) for p in coll.people()}
        # Pinned faces stay; the rejected face never goes back to Obama (it may join the
        # person split off, whose one face it is close to).
        for pid in (obama, biden, split.id):
            assert after[pid][0] == before[pid][0] and set(before[pid][1]) <= set(after[pid][1])
        assert after[obama] == before[obama]  # obama3 is the only face left to join it
        assert coll.faces.get(faces["obama3.jpg"]).person_id != obama
    assert coll.people.settings.min_faces == 1


def test_regroup_of_unedited_people_keeps_their_ids(coll: Collection) -> None:
    before = {p.id: _names(coll.people.faces(p.id)) for p in coll.people()}
    coll.people.regroup()
    assert {p.id: _names(coll.people.faces(p.id)) for p in coll.people()} == before
    coll.people.regroup(threshold=0.01)  # nothing links: everyone unassigned, people deleted
    assert coll.people() == [] and len(coll.people.unassigned()) == 9
    with pytest.raises(InvalidArgument):
        coll.people.regroup(threshold=0)
