"""The HTTP search's person filter (``filters.person``, ``?person=``, ``person:`` in ``q``) over
``face_collection`` (real face photos: Obama 6 faces, Biden 3, unnamed)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

import lookalike
from lookalike.server import ServerConfig, create_app


@pytest.fixture(scope="module")
def client(face_collection: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServerConfig(collection=face_collection, warm=False))) as c:
        yield c


@pytest.fixture(scope="module")
def obama(face_collection: Path) -> tuple[int, list[int]]:
    """The person with most faces: ``(id, their photos' ids, most typical first)``."""
    with lookalike.Collection.open(face_collection) as coll:
        person = coll.people()[0]
        return person.id, [h.id for h in coll.search(f"person:{person.id}", k=50)]


def _ids(response) -> list[int]:  # noqa: ANN001 - an httpx response
    assert response.status_code == 200, response.text
    return [h["id"] for h in response.json()["hits"]]


def test_filters_person_alone_pages_through_the_persons_photos(client: TestClient,
                                                               obama: tuple[int, list[int]]) -> None:
    person, photos = obama
    assert len(photos) == 6
    first = client.post("/api/search", json={"filters": {"person": [person]}, "k": 4})
    assert _ids(first) == photos[:4] and first.json()["has_more"] is True
    rest = client.post("/api/search", json={"filters": {"person": [str(person)]}, "k": 4, "offset": 4})
    assert _ids(rest) == photos[4:] and rest.json()["has_more"] is False


def test_person_in_q_and_as_a_query_parameter(client: TestClient, obama: tuple[int, list[int]]) -> None:
    person, photos = obama
    response = client.get("/api/search", params={"q": f"person:{person}", "k": 10})
    assert _ids(response) == photos and response.json()["query"] == f"person:{person}"
    assert set(_ids(client.get("/api/search", params={"q": "a face", "person": str(person), "k": 10}))) == set(photos)
    assert _ids(client.post("/api/search", json={"q": "a face", "filters": {"person": [person], "glob": "*.png"}})) \
        == [i for i in photos if i in _ids(client.post("/api/search", json={"q": "x", "filters": {"glob": "*.png"}}))]


def test_unknown_or_malformed_persons_are_client_errors(client: TestClient) -> None:
    for body in ({"q": "beach", "filters": {"person": ["Nobody"]}}, {"q": "person:Nobody"},
                 {"filters": {"person": [424242]}}):
        response = client.post("/api/search", json=body)
        assert response.status_code in (400, 404), (body, response.text)
        assert "Nobody" in response.text or "424242" in response.text
    response = client.post("/api/search", json={"q": "beach - person:Ada"})
    assert response.status_code == 400 and "person: is a filter" in response.text
    assert client.post("/api/search", json={"filters": {"person": [""]}}).status_code == 422
    assert client.post("/api/search", json={"filters": {}}).status_code == 422  # still needs something
