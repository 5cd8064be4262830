"""The duplicates API through FastAPI's TestClient: listing and paging groups, the histogram,
resolving (refused without ``--allow-actions``; a dry run and an applied move with it), and
errors as JSON.

The collection holds generated images, exact byte copies of two of them and a resized JPEG
of a third, indexed with the tiny random CLIP. That model finds every generated image alike
(its embeddings mean nothing), so the tests that check what groups ask for the ``exact`` and
``perceptual`` tiers only: those look at bytes and pixels, not at the model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import lookalike
from lookalike.server import ServerConfig, create_app
from support import make_image, api_error as _error

#: The hash tiers alone, with no similarity floor: the tiny CLIP's embeddings mean nothing.
HASH_TIERS = {"tiers": ["exact", "perceptual"], "perceptual_floor": -1, "hash_bits": 6}


def _build(root: Path, model_dir: Path) -> Path:
    """Images under ``root/images`` (8 distinct, 2 byte copies, 1 resized JPEG) and their collection."""
    images = root / "images"
    for i in range(8):
        make_image(images / "photos" / f"img{i}.png", seed=100 + i)
    (images / "copies").mkdir()
    for i in (1, 2):
        shutil.copy(images / "photos" / f"img{i}.png", images / "copies" / f"copy{i}.png")
    (images / "resized").mkdir()
    with Image.open(images / "photos" / "img3.png") as im:
        im.resize((192, 160), Image.Resampling.NEAREST).save(images / "resized" / "big3.jpg", quality=95)
    path = root / "dupes.lkl"
    with lookalike.Collection.create(path, model=f"openclip:{model_dir}", device="cpu") as coll:
        report = coll.add([images])
    assert report.added + report.copied == 11 and not report.failed, report
    return path


@pytest.fixture(scope="module")
def dupes_collection(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Path:
    """A shared collection the read-only tests must not change."""
    return _build(tmp_path_factory.mktemp("dupes-api"), tiny_clip_dir)


@pytest.fixture(scope="module")
def client(dupes_collection: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServerConfig(collection=dupes_collection))) as c:
        yield c


@pytest.fixture
def own_collection(tmp_path: Path, tiny_clip_dir: Path) -> Path:
    """A collection (and images) of this test's own, for the tests that move files."""
    return _build(tmp_path, tiny_clip_dir)


def _names(group: dict) -> list[str]:
    return [m["path"].split("/images/")[1] for m in group["members"]]


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the hash of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------ listing
def test_groups_of_exact_and_perceptual_copies(client: TestClient) -> None:
    body = client.get("/api/duplicates", params=HASH_TIERS).json()
    assert body["total_groups"] == 3 and body["total_files"] == 6
    assert body["page"] == 1 and body["pages"] == 1 and body["per_page"] == 20
    assert body["actions_allowed"] is False
    assert body["threshold"] == body["default_threshold"]
    by_tier = {g["tier"]: g for g in body["groups"] if g["tier"] != "exact"}
    exact = sorted(sorted(_names(g)) for g in body["groups"] if g["tier"] == "exact")
    assert exact == [["copies/copy1.png", "photos/img1.png"], ["copies/copy2.png", "photos/img2.png"]]
    resized = by_tier["perceptual"]
    # keep=largest: the 192 x 160 JPEG beats its 96 x 80 original, and is listed first.
    assert _names(resized) == ["resized/big3.jpg", "photos/img3.png"]
    kept, other = resized["members"]
    assert kept["keep"] and not other["keep"] and (kept["width"], kept["height"]) == (192, 160)
    # Matched by their hashes (the medoid is listed with the tier that links the group, or as exact).
    tiers = [m["tier"] for m in resized["members"]]
    assert "perceptual" in tiers and set(tiers) <= {"exact", "perceptual"} and not other["reference"]
    assert kept["thumbnail"] == f"/api/items/{kept['id']}/thumbnail?size=256"
    assert kept["size"] == os.path.getsize(kept["path"]) and kept["folder"].endswith("/images/resized")
    assert kept["modified"].startswith("20") and -1 <= other["similarity"] <= 1
    for group in body["groups"]:
        assert sum(m["keep"] for m in group["members"]) == 1 and group["members"][0]["keep"]
        assert group["id"] in {m["id"] for m in group["members"]}
    assert client.get(kept["thumbnail"]).headers["content-type"] == "image/jpeg"


def test_keep_rules_and_reference_folders(client: TestClient, dupes_collection: Path) -> None:
    params = {**HASH_TIERS, "keep": "shortest-path"}
    body = client.get("/api/duplicates", params=params).json()
    resized = next(g for g in body["groups"] if g["tier"] == "perceptual")
    assert _names(resized)[0] == "photos/img3.png"  # shorter than resized/big3.jpg
    photos = str(dupes_collection.parent / "images" / "photos")
    copies = str(dupes_collection.parent / "images" / "copies")
    body = client.get("/api/duplicates", params={**HASH_TIERS, "reference": copies}).json()
    for group in body["groups"]:
        if group["tier"] == "exact":
            kept = group["members"][0]
            assert kept["reference"] and kept["keep"] and kept["folder"] == copies
    body = client.get("/api/duplicates", params={**HASH_TIERS, "prefer": photos}).json()
    assert all(g["members"][0]["folder"] == photos for g in body["groups"])


def test_default_settings_use_every_tier(client: TestClient) -> None:
    """The tiny model finds all the generated images alike: at its default threshold every
    image falls into groups, each member linked by its strongest tier."""
    body = client.get("/api/duplicates").json()
    assert body["total_files"] >= 6
    tiers = {m["tier"] for g in body["groups"] for m in g["members"]}
    assert "semantic" in tiers and tiers <= {"exact", "perceptual", "semantic"}
    only_exact = client.get("/api/duplicates", params={"tiers": "exact"}).json()
    assert only_exact["total_groups"] == 2 and {g["tier"] for g in only_exact["groups"]} == {"exact"}


def test_paging_slices_one_cached_grouping(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = client.app.state.service
    calls: list[object] = []
    real = svc.coll.duplicates
    monkeypatch.setattr(svc.coll, "duplicates", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    svc.forget_duplicates()
    whole = client.get("/api/duplicates", params=HASH_TIERS).json()["groups"]
    pages = [client.get("/api/duplicates", params={**HASH_TIERS, "per_page": 1, "page": p}).json()
             for p in (1, 2, 3, 4)]
    assert [g for page in pages for g in page["groups"]] == whole
    assert [p["pages"] for p in pages] == [3, 3, 3, 3] and pages[3]["groups"] == []
    assert len(calls) == 1, "every page at one setting is a slice of the first grouping"
    client.get("/api/duplicates", params={**HASH_TIERS, "threshold": 0.5})
    client.get("/api/duplicates", params={**HASH_TIERS, "threshold": 0.5, "page": 2})
    assert len(calls) == 2, "a new threshold groups again, once"


def test_histogram(client: TestClient) -> None:
    body = client.get("/api/duplicates/histogram", params={"bins": 20}).json()
    assert len(body["edges"]) == 21 and len(body["counts"]) == 20 and len(body["pairs_above"]) == 21
    assert body["edges"] == sorted(body["edges"]) and body["edges"][-1] == 1.0
    assert sum(body["counts"]) == body["pairs_above"][0] == 9  # one per distinct vector: copies share theirs
    assert body["pairs_above"] == sorted(body["pairs_above"], reverse=True)
    info = client.get("/api/duplicates").json()
    assert body["default_threshold"] == info["default_threshold"]
    _error(client.get("/api/duplicates/histogram", params={"bins": 2}), 422, "invalid_request", "bins")


def test_listing_errors_are_json(client: TestClient) -> None:
    for params, where in [({"threshold": 2}, "threshold"), ({"tiers": "bogus"}, "tiers"), ({"keep": "best"}, "keep"),
                          ({"page": 0}, "page"), ({"per_page": 1000}, "per_page"), ({"fraction": 0}, "fraction"),
                          ({"burst_seconds": -1}, "burst_seconds"), ({"threshold": "high"}, "threshold")]:
        _error(client.get("/api/duplicates", params=params), 422, "invalid_request", where)
    # The library's own refusal (both a threshold and a fraction) is a 422 too, in its words.
    _error(client.get("/api/duplicates", params={"threshold": 0.9, "fraction": 0.1}), 422, "invalid_request",
           "not both")


def test_a_fraction_groups_the_closest_pairs(client: TestClient) -> None:
    body = client.get("/api/duplicates", params={"fraction": 0.2, "tiers": ["exact", "semantic"]}).json()
    assert -1 <= body["threshold"] <= 1 and body["total_groups"] >= 1


def test_info_and_page_say_whether_actions_are_allowed(client: TestClient) -> None:
    assert client.get("/api/info").json()["actions_allowed"] is False
    page = client.get("/dupes")
    assert page.status_code == 200 and "dupes.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'href="/dupes"' in client.get("/").text
    assert client.get("/static/dupes.css").status_code == 200
    spec = client.get("/openapi.json").json()["paths"]
    assert {"/api/duplicates", "/api/duplicates/histogram", "/api/duplicates/resolve"} <= set(spec)
    assert "/dupes" not in spec


# ------------------------------------------------------------------------------ resolve
def test_resolve_is_refused_without_allow_actions(client: TestClient, dupes_collection: Path) -> None:
    before = _tree(dupes_collection.parent / "images")
    group = client.get("/api/duplicates", params=HASH_TIERS).json()["groups"][0]
    for apply in (False, True):
        resp = client.post("/api/duplicates/resolve",
                           json={"settings": HASH_TIERS, "groups": [{"id": group["id"]}], "apply": apply})
        _error(resp, 403, "actions_disabled", "--allow-actions")
    assert _tree(dupes_collection.parent / "images") == before
    assert not (dupes_collection / "quarantine").exists()


def test_a_dry_run_plans_and_touches_nothing(own_collection: Path) -> None:
    root = own_collection.parent / "images"
    before = _tree(root)
    with TestClient(create_app(ServerConfig(collection=own_collection, allow_actions=True))) as c:
        listing = c.get("/api/duplicates", params=HASH_TIERS).json()
        assert listing["actions_allowed"] is True and c.get("/api/info").json()["actions_allowed"] is True
        ids = [g["id"] for g in listing["groups"]]
        body = c.post("/api/duplicates/resolve",
                      json={"settings": HASH_TIERS, "groups": [{"id": i} for i in ids]}).json()
    assert body["applied"] is False and body["journal"] is None and body["done"] == 0
    assert body["quarantine"] == str(own_collection / "quarantine")
    assert len(body["steps"]) == 3 and not body["failed"] and not body["skipped"]
    others = {m["id"] for g in listing["groups"] for m in g["members"] if not m["keep"]}
    assert {s["item_id"] for s in body["steps"]} == others
    for step in body["steps"]:
        assert step["action"] == "move" and step["target"].startswith(str(own_collection / "quarantine") + "/")
    assert body["bytes_freed"] == sum(os.path.getsize(s["path"]) for s in body["steps"])
    assert _tree(root) == before, "a dry run touches nothing"
    assert not (own_collection / "quarantine").exists()


def test_an_applied_move_goes_to_the_quarantine_with_a_journal(own_collection: Path, tmp_path: Path) -> None:
    quarantine = tmp_path / "quarantine-here"
    config = ServerConfig(collection=own_collection, allow_actions=True, quarantine=quarantine)
    with TestClient(create_app(config)) as c:
        groups = c.get("/api/duplicates", params=HASH_TIERS).json()["groups"]
        resized = next(g for g in groups if g["tier"] == "perceptual")
        exact = next(g for g in groups if g["tier"] == "exact")
        big, small = resized["members"]
        # Against the keep rule: keep the small original, trash the big JPEG; the exact group as proposed.
        choice = [{"id": resized["id"], "keep": [small["id"]], "trash": [big["id"]]}, {"id": exact["id"]}]
        body = c.post("/api/duplicates/resolve", json={"settings": HASH_TIERS, "groups": choice, "apply": True}).json()
        assert body["applied"] is True and body["done"] == 2 and not body["failed"], body
        moved = {s["path"]: s["target"] for s in body["steps"]}
        assert set(moved) == {big["path"], exact["members"][1]["path"]}
        for source, target in moved.items():
            assert not os.path.exists(source) and os.path.isfile(target)
            assert target.startswith(str(quarantine) + "/")
        journal = Path(body["journal"])
        assert journal.is_file() and journal.parent == quarantine and body["quarantine"] == str(quarantine)
        assert os.path.exists(small["path"]) and os.path.exists(exact["members"][0]["path"])
        # The grouping is redone: the moved files are out of the collection and of every group.
        after = c.get("/api/duplicates", params=HASH_TIERS).json()
        assert after["total_groups"] == 1
        listed = {m["path"] for g in after["groups"] for m in g["members"]}
        assert not listed & set(moved)
        assert c.get(f"/api/items/{big['id']}").status_code == 404
    from lookalike.apps.dupes import undo

    with lookalike.Collection.open(own_collection) as coll:
        report = undo(journal, coll=coll)
        assert not report.failed and all(os.path.exists(p) for p in moved)


def test_resolve_refuses_bad_choices(own_collection: Path) -> None:
    root = own_collection.parent / "images"
    before = _tree(root)
    with TestClient(create_app(ServerConfig(collection=own_collection, allow_actions=True))) as c:
        groups = c.get("/api/duplicates", params=HASH_TIERS).json()["groups"]
        g, other = groups[0], groups[1]
        ids = [m["id"] for m in g["members"]]

        def post(choices: list[dict], **extra) -> object:
            return c.post("/api/duplicates/resolve", json={"settings": HASH_TIERS, "groups": choices, **extra})

        _error(post([{"id": 10**9}]), 409, "stale_group", "list the duplicates again")
        _error(post([{"id": g["id"], "trash": [other["members"][0]["id"]]}]), 422, "invalid_request", "no member")
        _error(post([{"id": g["id"], "keep": ids, "trash": ids[:1]}]), 422, "invalid_request", "both kept and trashed")
        _error(post([{"id": g["id"], "keep": []}]), 422, "invalid_request", "keep at least one")
        _error(post([{"id": g["id"]}, {"id": g["id"]}]), 422, "invalid_request", "twice")
        _error(post([]), 422, "invalid_request", "groups")
        _error(post([{"id": g["id"]}], action="shred"), 422, "invalid_request", "action")
        # No request names a destination: the quarantine is the server's.
        _error(post([{"id": g["id"]}], to="/tmp/elsewhere"), 422, "invalid_request", "to")
        _error(c.post("/api/duplicates/resolve", content=b"{not json", headers={"content-type": "application/json"}),
               422, "invalid_request")
    assert _tree(root) == before


def test_serve_options(dupes_collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve --allow-actions --quarantine DIR`` reaches the app's config; read-only by default."""
    uvicorn = pytest.importorskip("uvicorn")
    from typer.testing import CliRunner

    from lookalike.cli.app import app

    apps: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda web, **kw: apps.append(web))
    result = CliRunner().invoke(app, ["serve", "--collection", str(dupes_collection)])
    assert result.exit_code == 0, result.output
    config = apps[0].state.service.config
    assert config.allow_actions is False and config.quarantine_dir == dupes_collection / "quarantine"
    result = CliRunner().invoke(app, ["serve", "--collection", str(dupes_collection), "--allow-actions",
                                      "--quarantine", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    config = apps[1].state.service.config
    assert config.allow_actions is True and config.quarantine_dir == tmp_path / "q"
    assert "actions allowed" in result.output and str(tmp_path / "q") in result.output


def test_an_empty_collection_has_no_groups(tmp_path: Path, tiny_clip_dir: Path) -> None:
    lookalike.Collection.create(tmp_path / "empty.lkl", model=f"openclip:{tiny_clip_dir}", device="cpu").close()
    with TestClient(create_app(ServerConfig(collection=tmp_path / "empty.lkl"))) as c:
        body = c.get("/api/duplicates", params={"page": 3}).json()
        assert body["total_groups"] == body["total_files"] == 0 and body["groups"] == [] and body["pages"] == 1
        histogram = c.get("/api/duplicates/histogram").json()
        assert sum(histogram["counts"]) == 0 and len(histogram["edges"]) == 51
