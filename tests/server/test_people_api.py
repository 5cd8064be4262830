"""The people and faces routes through FastAPI's TestClient, over ``face_collection`` (real
face photos, tiny random CLIP, faces indexed: two unnamed people, one with 6 faces, one with 3).

Read-only tests share one client on the fixture itself; every test that edits people works
on its own copy.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import lookalike
from lookalike.server import ServerConfig, create_app
from support import api_error

TOKEN = "people-token-for-tests"
ROUTES = {"/api/people": {"get"}, "/api/people/{person}": {"get"}, "/api/people/{person}/photos": {"get"},
          "/api/people/{person}/name": {"post"}, "/api/people/merge": {"post"},
          "/api/people/{person}/split": {"post"}, "/api/people/{person}/reject": {"post"},
          "/api/faces/{face_id}/crop": {"get"}, "/api/items/{item_id}/faces": {"get"}}


@pytest.fixture(scope="module")
def client(face_collection: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServerConfig(collection=face_collection, warm=False))) as c:
        yield c


@pytest.fixture
def edited(face_collection: Path, tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """A client over a copy of the collection, to edit."""
    path = tmp_path / "faces.lkl"
    shutil.copytree(face_collection, path)
    with TestClient(create_app(ServerConfig(collection=path, warm=False))) as c:
        yield c, path


def _people(client: TestClient) -> tuple[dict, dict]:
    """(the person with most faces, the other one) as GET /api/people lists them."""
    people = client.get("/api/people").json()["people"]
    assert [p["faces"] for p in people] == [6, 3]
    return people[0], people[1]


def _photos(client: TestClient, person: int | str) -> set[int]:
    return {h["id"] for h in client.get(f"/api/people/{person}/photos?limit=100").json()["hits"]}


# --------------------------------------------------------------------------- reading
def test_routes_are_in_the_openapi_spec(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for route, methods in ROUTES.items():
        assert methods <= set(paths.get(route, {})), (route, sorted(paths.get(route, {})))
    assert "image/jpeg" in paths["/api/faces/{face_id}/crop"]["get"]["responses"]["200"]["content"]


def test_people_list_person_and_photos(client: TestClient, face_collection: Path) -> None:
    res = client.get("/api/people").json()
    assert res["total"] == 2 and res["offset"] == 0 and res["indexed"] and res["crops_allowed"]
    assert res["unassigned"] == 0
    big, small = _people(client)
    assert big["name"] is None and big["label"] == f"person {big['id']}" and big["photos"] == 6
    assert big["cover_face"] is not None and big["cover_face"] not in big["sample_faces"]
    assert len(big["sample_faces"]) == 4 and len(small["sample_faces"]) == 2
    assert client.get("/api/people?min_faces=4").json()["total"] == 1
    assert [p["id"] for p in client.get("/api/people?offset=1&limit=1").json()["people"]] == [small["id"]]

    one = client.get(f"/api/people/{big['id']}").json()
    assert one["person"] == big and len(one["faces"]) == 6 and not one["has_more"]
    with lookalike.Collection.open(face_collection) as coll:
        sizes = {it.id: (it.width, it.height) for it in coll.items()}
    scores = [f["score"] for f in one["faces"]]
    assert scores == sorted(scores, reverse=True)
    for f in one["faces"]:
        left, top, right, bottom = f["box"]
        width, height = sizes[f["item_id"]]
        assert 0 <= left < right <= width and 0 <= top < bottom <= height, f
    page = client.get(f"/api/people/{big['id']}?offset=2&limit=3").json()
    assert [f["id"] for f in page["faces"]] == [f["id"] for f in one["faces"][2:5]] and page["has_more"]

    photos = client.get(f"/api/people/{big['id']}/photos").json()
    assert len(photos["hits"]) == 6 and not photos["has_more"] and photos["person"] == big["id"]
    assert {h["id"] for h in photos["hits"]} == {f["item_id"] for f in one["faces"]}
    assert photos["hits"][0]["thumbnail"].startswith("/api/items/")
    assert client.get(f"/api/people/{small['id']}/photos?limit=2").json()["has_more"]


def test_face_crop_and_an_items_faces(client: TestClient, face_collection: Path) -> None:
    big, _ = _people(client)
    resp = client.get(f"/api/faces/{big['cover_face']}/crop")
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
    assert resp.headers["cache-control"].startswith("private")
    with Image.open(io.BytesIO(resp.content)) as crop:
        assert crop.format == "JPEG" and crop.width == crop.height >= 32
    face = client.get(f"/api/people/{big['id']}").json()["faces"][0]
    res = client.get(f"/api/items/{face['item_id']}/faces").json()
    assert res["indexed"] and res["item_id"] == face["item_id"] and res["width"] > 0 and res["height"] > 0
    assert [(f["id"], f["box"], f["person_id"], f["person_label"]) for f in res["faces"]] == [
        (face["id"], face["box"], big["id"], big["label"])]
    with lookalike.Collection.open(face_collection) as coll:
        with_faces = {f["item_id"] for p in (big, _) for f in client.get(f"/api/people/{p['id']}").json()["faces"]}
        without = [it.id for it in coll.items() if it.id not in with_faces]
    assert without, "the fixture has photos with no faces"
    assert client.get(f"/api/items/{without[0]}/faces").json()["faces"] == []


def test_unknown_people_faces_and_items_are_404(client: TestClient) -> None:
    api_error(client.get("/api/people/999999"), 404, "not_found")
    api_error(client.get("/api/people/Nobody%20Here"), 404, "not_found")
    api_error(client.get("/api/people/" + "9" * 30), 404, "not_found")  # past SQLite's integers
    api_error(client.get("/api/people/999999/photos"), 404, "not_found")
    api_error(client.get("/api/faces/999999/crop"), 404, "not_found")
    api_error(client.get("/api/items/999999/faces"), 404, "not_found")
    api_error(client.post("/api/people/999999/name", json={"name": "X"}), 404, "not_found")
    api_error(client.post("/api/people/merge", json={"into": 999999, "others": [1]}), 404, "not_found")
    api_error(client.post("/api/people/999999/reject", json={"faces": [1]}), 404, "not_found")


def test_bad_edits_are_refused(client: TestClient) -> None:
    big, _ = _people(client)
    api_error(client.post("/api/people/merge", json={"into": big["id"], "others": []}), 422, "invalid_request")
    api_error(client.post("/api/people/merge", json={"into": big["id"], "others": [big["id"]]}), 422,
              "invalid_request", "itself")
    api_error(client.post(f"/api/people/{big['id']}/split", json={"faces": []}), 422, "invalid_request")
    api_error(client.post(f"/api/people/{big['id']}/reject", json={"faces": [1], "x": 1}), 422)
    api_error(client.post(f"/api/people/{big['id']}/name", json={"name": "x" * 201}), 422)
    api_error(client.get("/api/people?limit=0"), 422)


def test_a_collection_never_scanned_for_faces(served_collection: Path) -> None:
    with TestClient(create_app(ServerConfig(collection=served_collection, warm=False))) as c:
        res = c.get("/api/people").json()
        assert (res["total"], res["people"], res["indexed"]) == (0, [], False)
        hit = c.post("/api/search", json={"q": "a photo", "k": 1}).json()["hits"][0]
        assert c.get(f"/api/items/{hit['id']}/faces").json() == {
            "item_id": hit["id"], "width": hit["width"], "height": hit["height"], "indexed": False, "faces": []}


# --------------------------------------------------------------------------- editing
def test_name_reject_split_merge_and_search_by_person(edited: tuple[TestClient, Path]) -> None:
    client, path = edited
    big, small = _people(client)
    named = client.post(f"/api/people/{big['id']}/name", json={"name": "  Barack Obama "}).json()
    assert (named["id"], named["name"], named["label"]) == (big["id"], "Barack Obama", "Barack Obama")
    assert client.get("/api/people/barack%20obama").json()["person"]["id"] == big["id"]
    api_error(client.post(f"/api/people/{small['id']}/name", json={"name": "barack obama"}), 422, contains="merge")
    obama = _photos(client, "Barack Obama")
    assert len(obama) == 6

    # Search by the person: alone (their photos), by name in the filters, and with words.
    hits = client.post("/api/search", json={"filters": {"person": ["Barack Obama"]}, "k": 50}).json()["hits"]
    assert {h["id"] for h in hits} == obama
    hits = client.post("/api/search", json={"q": "a photo", "filters": {"person": [big["id"]]}, "k": 50}).json()["hits"]
    assert {h["id"] for h in hits} == obama
    api_error(client.post("/api/search", json={"filters": {"person": ["Nobody Here"]}}), 400)

    # Not this person: the face leaves, its photo shows it unassigned.
    faces = client.get(f"/api/people/{big['id']}").json()["faces"]
    out = client.post(f"/api/people/{big['id']}/reject", json={"faces": [faces[-1]["id"]]}).json()
    assert out["rejected"] == 1 and out["person"]["faces"] == 5
    shown = client.get(f"/api/items/{faces[-1]['item_id']}/faces").json()["faces"]
    assert [(f["id"], f["person_id"], f["person_label"]) for f in shown] == [(faces[-1]["id"], None, None)]

    # Split two faces into a new, named person; then merge it back.
    new = client.post(f"/api/people/{big['id']}/split",
                      json={"faces": [faces[0]["id"], faces[1]["id"]], "name": "Look-alike"}).json()
    assert (new["name"], new["faces"]) == ("Look-alike", 2) and new["id"] not in (big["id"], small["id"])
    assert client.get(f"/api/people/{big['id']}").json()["person"]["faces"] == 3
    merged = client.post("/api/people/merge", json={"into": "Barack Obama", "others": [str(new["id"])]}).json()
    assert (merged["id"], merged["name"], merged["faces"]) == (big["id"], "Barack Obama", 5)
    api_error(client.get(f"/api/people/{new['id']}"), 404)

    # Clearing the name; the library sees every edit.
    assert client.post(f"/api/people/{big['id']}/name", json={"name": ""}).json()["name"] is None
    with lookalike.Collection.open(path) as coll:
        assert [(p.id, p.name, p.faces) for p in coll.people()] == [(big["id"], None, 5), (small["id"], None, 3)]


# --------------------------------------------------------------------------- privacy and the token
def test_crops_need_a_token_beyond_loopback(face_collection: Path) -> None:
    config = ServerConfig(collection=face_collection, warm=False, host="0.0.0.0")
    assert not config.crops_allowed
    with TestClient(create_app(config)) as c:
        res = c.get("/api/people").json()
        assert not res["crops_allowed"] and res["total"] == 2
        api_error(c.get(f"/api/faces/{res['people'][0]['cover_face']}/crop"), 403, "crops_hidden", "--token")
        assert c.get(f"/api/people/{res['people'][0]['id']}").json()["crops_allowed"] is False
    config = ServerConfig(collection=face_collection, warm=False, host="0.0.0.0", token=TOKEN)
    with TestClient(create_app(config), headers={"authorization": f"Bearer {TOKEN}"}) as c:
        face = c.get("/api/people").json()["people"][0]["cover_face"]
        assert c.get(f"/api/faces/{face}/crop").status_code == 200


def test_people_routes_need_the_token(face_collection: Path) -> None:
    with TestClient(create_app(ServerConfig(collection=face_collection, warm=False, token=TOKEN))) as c:
        for url in ("/api/people", "/api/people/1", "/api/people/1/photos", "/api/faces/1/crop",
                    "/api/items/1/faces", "/people"):
            api_error(c.get(url), 401, "unauthorized")
        api_error(c.post("/api/people/merge", json={"into": 1, "others": [2]}), 401, "unauthorized")
        api_error(c.post("/api/people/1/name", json={"name": "x"}), 401, "unauthorized")
        assert c.get("/api/people", headers={"authorization": f"Bearer {TOKEN}"}).json()["total"] == 2
