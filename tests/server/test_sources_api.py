"""The API over items that are not plain files: tar members and URLs (read from the download
cache, never fetched again), their metadata, and ``filters.conditions`` (``--where``)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import lookalike
from lookalike.server import ServerConfig, create_app
from sources_support import SourcesCollection, build_sources_collection
from support import api_error

pytest.importorskip("httpx")
pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> SourcesCollection:
    return build_sources_collection(tmp_path_factory.mktemp("sources-api"), f"openclip:{tiny_clip_dir}")


@pytest.fixture(scope="module")
def ids(built: SourcesCollection) -> dict[str, int]:
    with lookalike.Collection.open(built.path) as coll:
        return {item.path: item.id for item in coll.items()}


@pytest.fixture(scope="module")
def client(built: SourcesCollection) -> Iterator[TestClient]:
    with TestClient(create_app(ServerConfig(collection=built.path))) as c:
        yield c


def _jpeg_side(resp) -> int:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(resp.content)) as img:
        assert img.format == "JPEG"
        return max(img.size)


def test_thumbnails_of_a_tar_member_and_a_cached_url(client: TestClient, built: SourcesCollection,
                                                     ids: dict[str, int]) -> None:
    member = next(iter(built.member_bytes))
    assert _jpeg_side(client.get(f"/api/items/{ids[member]}/thumbnail?size=128")) <= 128
    again = client.get(f"/api/items/{ids[member]}/thumbnail?size=128")  # from the thumbnail cache
    assert again.status_code == 200
    assert _jpeg_side(client.get(f"/api/items/{ids[built.urls['u0.png']]}/thumbnail?size=256")) <= 256


def test_originals_are_the_items_own_bytes(client: TestClient, built: SourcesCollection,
                                           ids: dict[str, int]) -> None:
    for identity, data in built.member_bytes.items():
        resp = client.get(f"/api/items/{ids[identity]}/image")
        assert resp.status_code == 200 and resp.content == data
        assert resp.headers["content-type"] == ("image/png" if identity.endswith(".png") else "image/jpeg")
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["content-disposition"].startswith("inline")
    url = built.urls["u1.jpg"]
    resp = client.get(f"/api/items/{ids[url]}/image")
    assert resp.status_code == 200
    with Image.open(io.BytesIO(resp.content)) as img:
        assert img.size == (96, 80)


def test_an_uncached_url_is_a_404_that_says_why(client: TestClient, built: SourcesCollection,
                                                ids: dict[str, int]) -> None:
    item_id = ids[built.uncached]
    for route in (f"/api/items/{item_id}/thumbnail?size=512", f"/api/items/{item_id}/image"):
        api_error(client.get(route), 404, "image_unavailable", contains="download cache")
    # Its metadata is still there: only the pixels are gone.
    assert client.get(f"/api/items/{item_id}").json()["caption"] == "a gone download"


def test_the_item_api_has_metadata_caption_and_kind(client: TestClient, built: SourcesCollection,
                                                     ids: dict[str, int]) -> None:
    member = next(iter(built.member_bytes))
    body = client.get(f"/api/items/{ids[member]}").json()
    assert body["kind"] == "member" and body["name"] == "000.jpg" and body["path"] == member
    assert body["caption"] == "a red kite over the dunes"
    assert body["metadata"] == {"caption": "a red kite over the dunes", "license": "cc-by", "w": 3}
    url = built.urls["u1.jpg"]
    body = client.get(f"/api/items/{ids[url]}").json()
    assert body["kind"] == "url" and body["name"] == "u1.jpg"
    assert body["metadata"] == {"caption": "orange cat", "license": "cc-by-sa", "stars": 2}
    no_caption = [p for p in built.member_bytes if p.endswith("002.jpg")][0]
    body = client.get(f"/api/items/{ids[no_caption]}").json()
    assert body["caption"] is None and body["metadata"] == {"license": "cc-by", "w": 12}


def _search(client: TestClient, conditions: list[str], **extra) -> set[str]:
    resp = client.post("/api/search", json={"q": "a photo", "k": 50, "filters": {"conditions": conditions}, **extra})
    assert resp.status_code == 200, resp.text
    return {h["path"] for h in resp.json()["hits"]}


def test_conditions_filter_post_search(client: TestClient, built: SourcesCollection) -> None:
    members = list(built.member_bytes)
    assert _search(client, ["license=cc-by"]) == {members[0], members[2], built.urls["u0.png"]}
    assert _search(client, ["license=cc-by", "w>=5"]) == {members[2]}
    assert _search(client, ["stars<3"]) == {built.urls["u1.jpg"], built.urls["u2.png"]}
    assert _search(client, ["license in cc0,cc-by-sa"]) == {members[1], built.urls["u1.jpg"], built.urls["u2.png"]}
    assert _search(client, ["license=none-such"]) == set()
    hits = client.post("/api/search", json={"q": "a photo", "k": 50,
                                            "filters": {"conditions": ["license=cc-by"]}}).json()["hits"]
    captions = {h["path"]: h["caption"] for h in hits}
    assert captions == {members[0]: "a red kite over the dunes", members[2]: None,
                        built.urls["u0.png"]: "a lighthouse at dusk"}
    assert {h["kind"] for h in hits} == {"member", "url"}


def test_conditions_as_get_query_parameters(client: TestClient, built: SourcesCollection,
                                            ids: dict[str, int]) -> None:
    resp = client.get("/api/search", params=[("q", "a photo"), ("k", "50"), ("conditions", "license=cc-by"),
                                             ("conditions", "w>=5")])
    assert resp.status_code == 200, resp.text
    assert [h["path"] for h in resp.json()["hits"]] == [list(built.member_bytes)[2]]
    member = list(built.member_bytes)[0]
    resp = client.get(f"/api/items/{ids[member]}/similar", params={"k": 50, "conditions": "stars>=2"})
    assert resp.status_code == 200, resp.text
    assert {h["path"] for h in resp.json()["hits"]} == {built.urls["u0.png"], built.urls["u1.jpg"]}


def test_a_bad_condition_is_a_400_naming_it(client: TestClient) -> None:
    resp = client.post("/api/search", json={"q": "a photo", "filters": {"conditions": ["license"]}})
    api_error(resp, 400, "bad_filter", contains="'license'")
    api_error(client.get("/api/search", params={"q": "x", "conditions": "path>3"}), 400, "bad_filter",
              contains="paths compare with")


def test_other_item_lists_name_the_kind(client: TestClient, built: SourcesCollection, ids: dict[str, int]) -> None:
    member, url = next(iter(built.member_bytes)), built.urls["u0.png"]
    resp = client.get("/api/matrix", params={"ids": f"{ids[member]},{ids[url]}"})
    assert resp.status_code == 200, resp.text
    assert [(i["kind"], i["name"]) for i in resp.json()["items"]] == [("member", "000.jpg"), ("url", "u0.png")]
