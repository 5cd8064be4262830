"""Search by person on real face photos (``face_collection``: Obama 6 faces, Biden 3, unnamed).

A persons-only query returns exactly the person's photos, most typical face first; a query
with terms ranks by its vector among them; several persons mean photos showing all of them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.errors import PersonNotFound, QueryError
from lookalike.query import Query
from lookalike.store.filters import Filter


@pytest.fixture(scope="module")
def people(face_collection: Path) -> dict[str, int]:
    """``{"obama": id, "biden": id}`` of the fixture's two people (most faces first)."""
    with lookalike.Collection.open(face_collection) as coll:
        obama, biden = coll.people()[:2]
    assert (obama.faces, biden.faces) == (6, 3)
    return {"obama": obama.id, "biden": biden.id}


@pytest.fixture(scope="module")
def together(face_collection: Path, face_images: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
             people: dict[str, int]) -> tuple[Path, int]:
    """A copy of the collection, the people named, plus one photo of Obama and Biden side by
    side (faces indexed incrementally): ``(collection, the new photo's item id)``."""
    root = tmp_path_factory.mktemp("together")
    shutil.copytree(face_collection, root / "c.lkl")
    left, right = (Image.open(face_images[n]).convert("RGB") for n in ("obama.jpg", "biden.jpg"))
    height = min(left.height, right.height)
    left, right = (im.resize((round(im.width * height / im.height), height)) for im in (left, right))
    both = Image.new("RGB", (left.width + right.width, height))
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    (root / "photos").mkdir()
    both.save(root / "photos" / "both.jpg", quality=92)
    with lookalike.Collection.open(root / "c.lkl") as coll:
        coll.add([root / "photos"])
        coll.faces.index()
        coll.people.name(people["obama"], "Barack Obama")
        coll.people.name(people["biden"], "Joe")
        item = coll.item_at(root / "photos" / "both.jpg")
        assert item is not None and {f.person_id for f in coll.faces.of_item(item.id)} == set(people.values())
    return root / "c.lkl", item.id


def _expected_order(coll: lookalike.Collection, person: int) -> list[int]:
    """The person's photos by cosine of their face to the mean face, computed here by hand."""
    faces = coll.people.faces(person, limit=1000)
    v = coll.faces.vectors([f.id for f in faces]).astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    mean = v.mean(axis=0) / np.linalg.norm(v.mean(axis=0))
    best: dict[int, float] = {}
    for f, cos in zip(faces, v @ mean):
        best[f.item_id] = max(best.get(f.item_id, -2.0), float(cos))
    return sorted(best, key=lambda i: (-best[i], i))


def test_a_person_alone_is_their_photos_by_closeness(face_collection: Path, people: dict[str, int]) -> None:
    with lookalike.Collection.open(face_collection) as coll:
        for name, count in (("obama", 6), ("biden", 3)):
            hits = coll.search(f"person:{people[name]}", k=50)
            photos = {item.id for item in coll.people.photos(people[name])}
            assert {h.id for h in hits} == photos and len(hits) == count
            assert [h.id for h in hits] == _expected_order(coll, people[name])
            assert all(0.5 < h.score <= 1.0 + 1e-6 for h in hits)
        top = coll.search(f"person:{people['obama']}", k=50)
        assert coll.search(f"person:{people['obama']}", k=2) == top[:2]
        assert coll.search(f"person:{people['obama']}", k=50, min_score=top[2].score) == top[:3]
        # The same through the filter, with a query of no terms (what `search --person` sends).
        assert coll.search(Query(()), k=50, where=Filter(person=[people["obama"]])) == top


def test_text_ranks_within_the_persons_photos(face_collection: Path, people: dict[str, int]) -> None:
    with lookalike.Collection.open(face_collection) as coll:
        photos = {item.id for item in coll.people.photos(people["biden"])}
        everything = coll.search("a man at the beach", k=100)
        want = [h for h in everything if h.id in photos][:2]
        for hits in (coll.search(f"a man at the beach person:{people['biden']}", k=2),
                     coll.search("a man at the beach", k=2, where=Filter(person=[str(people["biden"])]))):
            assert [h.id for h in hits] == [h.id for h in want]
            assert [h.score for h in hits] == pytest.approx([h.score for h in want], abs=1e-5)


def test_filters_combine_with_persons(face_collection: Path, face_photos: Path, people: dict[str, int]) -> None:
    with lookalike.Collection.open(face_collection) as coll:
        hits = coll.search(f"person:{people['obama']}", k=50, where=Filter(glob="*.png"))
        assert [Path(h.path).name for h in hits] == ["32bit.png"]
        assert coll.search(f"person:{people['obama']}", k=50, under=[face_photos / "nowhere"]) == []
        assert len(coll.search(f"person:{people['obama']}", k=50, under=[face_photos])) == 6


def test_two_people_are_photos_showing_both(together: tuple[Path, int], people: dict[str, int]) -> None:
    path, both = together
    with lookalike.Collection.open(path) as coll:
        hits = coll.search('person:"barack obama" person:joe', k=50)
        assert [h.id for h in hits] == [both]
        alone = {name: {h.id: h.score for h in coll.search(f"person:{people[name]}", k=50)} for name in people}
        assert hits[0].score == pytest.approx(min(alone["obama"][both], alone["biden"][both]))
        assert len(alone["obama"]) == 7 and len(alone["biden"]) == 4
        # A person in the query and another in the filter are ANDed too, with terms as well.
        assert [h.id for h in coll.search("person:Joe", k=50, where=Filter(person=["BARACK OBAMA"]))] == [both]
        assert [h.id for h in coll.search("portrait person:Joe", k=50, where=Filter(person=[people["obama"]]))] \
            == [both]


def test_a_batch_mixes_person_queries_and_plain_ones(together: tuple[Path, int]) -> None:
    path, _ = together
    with lookalike.Collection.open(path) as coll:
        queries = ["person:Joe", "a portrait", "a portrait person:Joe", "person:Joe person:'Barack Obama'"]
        assert coll.search_batch(queries, k=5) == [coll.search(q, k=5) for q in queries]


def test_unknown_or_missing_persons_are_query_errors(face_collection: Path, people: dict[str, int]) -> None:
    with lookalike.Collection.open(face_collection) as coll:
        for query, where in (("person:Nobody", None), ("beach person:999999", None),
                             ("beach", Filter(person=["Nobody"]))):
            with pytest.raises(PersonNotFound) as info:
                coll.search(query, where=where)
            assert str(info.value.person) in ("Nobody", "999999")
        with pytest.raises(QueryError, match="empty query"):
            coll.search(Query(()))
