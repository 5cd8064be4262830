"""The explore routes through FastAPI's TestClient: clusters, labels, the map's binary
buffers, similarity matrices, and the label and cluster search filters.

Each module-scoped collection is a copy of ``served_collection`` (generated images, tiny
random CLIP: the clusters and labels mean nothing, the routes' contract is what is checked)
explored with the library: k-means with k = 3, three zero-shot labels, a PCA map.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

import lookalike
from lookalike.server import ServerConfig, create_app
from support import api_error

LABELS = ["a garden", "a kitchen", "a panorama"]
ROUTES = {"/api/clusters": {"get", "post"}, "/api/clusters/{cluster_id}/members": {"get"},
          "/api/labels": {"get", "post"}, "/api/map": {"get", "post"}, "/api/map/points": {"get"},
          "/api/map/ids": {"get"}, "/api/map/colors": {"get"}, "/api/matrix": {"get"}}


def _explored(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    with lookalike.Collection.open(dest) as coll:
        coll.cluster(3)
        coll.label(LABELS)
        coll.map(method="pca")
    return dest


@pytest.fixture(scope="module")
def explored(served_collection: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _explored(served_collection, tmp_path_factory.mktemp("explored") / "c.lkl")


@pytest.fixture(scope="module")
def client(explored: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServerConfig(collection=explored, warm=False))) as c:
        yield c


@pytest.fixture(scope="module")
def plain(served_collection: Path) -> Iterator[TestClient]:
    """The shared collection as it is: never clustered, labelled or mapped."""
    with TestClient(create_app(ServerConfig(collection=served_collection, warm=False))) as c:
        yield c


def _ids(coll: lookalike.Collection) -> list[int]:
    return sorted(item.id for item in coll.items() if item.status == "ok")


# --------------------------------------------------------------------------- the spec and the errors
def test_routes_are_in_the_openapi_spec(plain: TestClient) -> None:
    paths = plain.get("/openapi.json").json()["paths"]
    for route, methods in ROUTES.items():
        assert methods <= set(paths.get(route, {})), (route, sorted(paths.get(route, {})))
    for route in ("/api/map/points", "/api/map/ids", "/api/map/colors"):
        assert "application/octet-stream" in paths[route]["get"]["responses"]["200"]["content"]
    search = {p["name"] for p in paths["/api/search"]["get"]["parameters"]}
    assert {"label", "cluster"} <= search


def test_nothing_explored_yet_is_a_404_with_the_command(plain: TestClient) -> None:
    for route, code, command in (("/api/clusters", "no_clusters", "lookalike cluster --collection"),
                                 ("/api/clusters/0/members", "no_clusters", "lookalike cluster --collection"),
                                 ("/api/labels", "no_labels", "lookalike label --collection"),
                                 ("/api/map", "no_map", "lookalike map --collection"),
                                 ("/api/map/points", "no_map", "lookalike map --collection"),
                                 ("/api/map/colors?by=label", "no_map", "lookalike map --collection")):
        err = api_error(plain.get(route), 404, code)
        assert command in err["message"], (route, err)


# --------------------------------------------------------------------------- clusters and labels
def test_clusters_summary(client: TestClient, explored: Path) -> None:
    body = client.get("/api/clusters").json()
    with lookalike.Collection.open(explored) as coll:
        n = len(coll)
    assert body["method"] == "kmeans" and body["k"] == 3 and body["k_chosen_by"] == "given"
    sizes = [c["size"] for c in body["clusters"]]
    assert sum(sizes) + body["noise"] + body["unassigned"] == n and sizes == sorted(sizes, reverse=True)
    for c in body["clusters"]:
        assert c["name"] and 1 <= len(c["central"]) <= 12
        assert c["central"][0]["thumbnail"] == f"/api/items/{c['central'][0]['id']}/thumbnail?size=256"


def test_members_are_ranked_and_paged(client: TestClient) -> None:
    cluster = client.get("/api/clusters").json()["clusters"][0]
    everyone = client.get(f"/api/clusters/{cluster['id']}/members?limit=500").json()
    scores = [h["score"] for h in everyone["hits"]]
    assert len(scores) == cluster["size"] and scores == sorted(scores, reverse=True) and not everyone["has_more"]
    first = client.get(f"/api/clusters/{cluster['id']}/members?limit=3").json()
    second = client.get(f"/api/clusters/{cluster['id']}/members?offset=3&limit=3").json()
    assert first["has_more"] and [h["id"] for h in first["hits"] + second["hits"]] == \
        [h["id"] for h in everyone["hits"][:6]]
    api_error(client.get("/api/clusters/99/members"), 404, "not_found")
    api_error(client.get("/api/clusters/0/members?limit=0"), 422)


def test_labels_summary(client: TestClient, explored: Path) -> None:
    body = client.get("/api/labels").json()
    assert body["labels"] == LABELS and [c["label"] for c in body["counts"]] == LABELS
    with lookalike.Collection.open(explored) as coll:
        assert sum(c["count"] for c in body["counts"]) == body["labelled"] == len(coll)


# --------------------------------------------------------------------------- the map
def test_map_meta_and_binary_buffers(client: TestClient, explored: Path) -> None:
    meta = client.get("/api/map").json()
    with lookalike.Collection.open(explored) as coll:
        ids = _ids(coll)
        points = coll.map_points()
    n = meta["count"]
    assert n == len(ids) and meta["method"] == "pca" and meta["ids_dtype"] == "uint32"
    resp = client.get(meta["points"])
    assert resp.headers["content-type"] == "application/octet-stream"
    assert "immutable" in resp.headers["cache-control"] and resp.headers["x-map-generation"] == meta["generation"]
    assert len(resp.content) == n * 8
    xy = np.frombuffer(resp.content, "<f4").reshape(n, 2)
    b = meta["bounds"]
    assert np.isclose(xy[:, 0].min(), b["min_x"]) and np.isclose(xy[:, 1].max(), b["max_y"])
    got = np.frombuffer(client.get(meta["ids"]).content, "<u4")
    assert sorted(got.tolist()) == ids
    np.testing.assert_allclose(xy, points.xy[np.argsort(points.ids)][np.argsort(np.argsort(got))], atol=1e-6)
    for by in ("cluster", "label", "folder"):
        coloring = meta["colors"][by]
        cats = np.frombuffer(client.get(coloring["url"]).content, "<u2")
        assert len(cats) == n
        known = cats[cats != 0xFFFF]
        assert (known < len(coloring["categories"])).all()
        assert [c["count"] for c in coloring["categories"]] == np.bincount(known, minlength=len(
            coloring["categories"])).tolist()
    assert {c["value"] for c in meta["colors"]["cluster"]["categories"]} == {0, 1, 2}
    assert [c["name"] for c in meta["colors"]["label"]["categories"]] == LABELS
    assert {Path(c["name"]).name for c in meta["colors"]["folder"]["categories"]} == {"garden", "kitchen", "wide"}
    # Asked without the current generation, the bytes are today's but not to be kept.
    assert client.get("/api/map/points?g=old").headers["cache-control"] == "no-cache"
    api_error(client.get("/api/map/colors?by=size"), 422)


# --------------------------------------------------------------------------- matrices
def test_matrix(client: TestClient, explored: Path) -> None:
    with lookalike.Collection.open(explored) as coll:
        ids = _ids(coll)
    body = client.get(f"/api/matrix?ids={ids[0]},{ids[5]},{ids[9]}").json()
    m = np.array(body["matrix"])
    assert [it["id"] for it in body["items"]] == [ids[0], ids[5], ids[9]] and m.shape == (3, 3)
    assert np.allclose(m, m.T) and np.allclose(np.diag(m), 1)
    assert client.get(f"/api/matrix?ids={ids[3]}").json()["matrix"] == [[1.0]]
    err = api_error(client.get("/api/matrix?ids=" + ",".join(str(i) for i in range(1, 66))), 422, "too_many")
    assert "64" in err["message"]
    api_error(client.get("/api/matrix?ids=999999"), 404, "not_found")
    api_error(client.get("/api/matrix?ids=1,x"), 422)
    api_error(client.get("/api/matrix"), 422)


# --------------------------------------------------------------------------- filters
def test_search_filters_by_label_and_cluster(client: TestClient, explored: Path) -> None:
    with lookalike.Collection.open(explored) as coll:
        clustering = coll.clustering()
        members = {c.id: {h.id for h in coll.cluster_members(c.id, limit=1000)} for c in clustering.clusters}
        labels = coll.item_labels(_ids(coll))
    label = client.get("/api/labels").json()["counts"][0]
    body = {"q": "a photo", "k": 100, "filters": {"label": [label["label"]]}}
    hits = client.post("/api/search", json=body).json()["hits"]
    assert len(hits) == label["count"] and all(label["label"] in dict(labels[h["id"]]) for h in hits)
    cid = clustering.clusters[-1].id
    hits = client.get(f"/api/search?q=a+photo&k=100&cluster={cid}").json()["hits"]
    assert {h["id"] for h in hits} == members[cid]
    both = client.post("/api/search", json={**body, "filters": {"label": [label["label"]], "cluster": [cid]}}).json()
    assert all(h["id"] in members[cid] for h in both["hits"])
    api_error(client.post("/api/search", json={**body, "filters": {"cluster": [-5]}}), 422)
    api_error(client.post("/api/search", json={**body, "filters": {"label": [""]}}), 422)


def test_deleted_items_never_appear(served_collection: Path, tmp_path: Path) -> None:
    path = _explored(served_collection, tmp_path / "c.lkl")
    with lookalike.Collection.open(path) as coll:
        clustering = coll.clustering()
        gone = [c.central[0].id for c in clustering.clusters]  # each cluster's medoid
        coll.forget(gone)
    with TestClient(create_app(ServerConfig(collection=path, warm=False))) as client:
        meta = client.get("/api/map").json()
        ids = set(np.frombuffer(client.get(meta["ids"]).content, "<u4").tolist())
        assert ids and not ids & set(gone) and meta["count"] == len(ids)
        for c in client.get("/api/clusters").json()["clusters"]:
            assert not {it["id"] for it in c["central"]} & set(gone)
            members = client.get(f"/api/clusters/{c['id']}/members?limit=500").json()["hits"]
            assert len(members) == c["size"] and not {h["id"] for h in members} & set(gone)
        for label in LABELS:
            hits = client.post("/api/search", json={"q": "x", "k": 100, "filters": {"label": [label]}}).json()["hits"]
            assert not {h["id"] for h in hits} & set(gone)
        api_error(client.get(f"/api/matrix?ids={gone[0]}"), 404, "not_found")


# --------------------------------------------------------------------------- computing from the API
def test_post_computes_clusters_labels_and_map(served_collection: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.lkl"
    shutil.copytree(served_collection, path)
    with TestClient(create_app(ServerConfig(collection=path, warm=False))) as client:
        api_error(client.get("/api/map"), 404, "no_map")
        body = client.post("/api/clusters", json={"k": 2}).json()
        assert body["k"] == 2 and len(body["clusters"]) == 2
        err = api_error(client.post("/api/clusters", json={"k": 5000}), 422)
        assert "5000" in err["message"]
        api_error(client.post("/api/clusters", json={"method": "hdbscan", "k": 3}), 422)
        assert client.post("/api/labels", json={"labels": ["red", "blue"]}).json()["labels"] == ["red", "blue"]
        meta = client.post("/api/map", json={"method": "pca"}).json()
        assert meta["method"] == "pca" and meta["count"] == len(client.get("/api/map/ids").content) // 4
        assert len(meta["colors"]["cluster"]["categories"]) == 2
        # Clustering again changes the map's colours and its generation.
        again = client.post("/api/clusters", json={"k": 3}).json()
        meta2 = client.get("/api/map").json()
        assert meta2["generation"] != meta["generation"] and len(meta2["colors"]["cluster"]["categories"]) == again["k"]
