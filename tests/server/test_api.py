"""The HTTP API through FastAPI's TestClient: every endpoint, its errors, and the safety rules.

Runs over ``served_collection`` (tests/server/conftest.py): generated images and a tiny random
CLIP, so rankings are arbitrary; the tests check the API's contract, never what ranks first
for a text query.
"""

from __future__ import annotations

import hmac
import http.server
import io
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import lookalike
from lookalike.server import ServerConfig, create_app
from support import make_image, api_error as _error


@pytest.fixture(scope="module")
def client(served_collection: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServerConfig(collection=served_collection))) as c:
        yield c


@pytest.fixture(scope="module")
def items(served_collection: Path) -> dict[int, str]:
    with lookalike.Collection.open(served_collection) as coll:
        return {item.id: item.path for item in coll.items() if item.status == "ok"}


def _png(size=(64, 48), seed=0) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------ collection
def test_info_health_and_docs(client: TestClient, items: dict[int, str], served_images: list[Path],
                              tiny_clip_dir: Path) -> None:
    info = client.get("/api/info").json()
    assert info["items"] == len(items) == len(served_images)
    assert info["model"] == f"openclip:{tiny_clip_dir}" and info["dim"] == 32 and info["text_search"] is True
    assert info["index"]["kind"] == "exact" and info["url_queries"] is False
    assert client.get("/healthz").json() == {"status": "ok", "items": len(items)}
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {"/api/search", "/api/search/image", "/api/items/{item_id}", "/api/items/{item_id}/similar",
            "/api/items/{item_id}/thumbnail", "/api/items/{item_id}/image", "/api/info", "/healthz",
            "/metrics"} <= paths
    assert client.get("/docs").status_code == 200


def test_ui_is_served_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<title>lookalike</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    for asset in ("app.js", "style.css", "icon.svg"):
        assert client.get(f"/static/{asset}").status_code == 200


# ------------------------------------------------------------------------------ search
def test_text_search_and_pagination(client: TestClient) -> None:
    first = client.get("/api/search", params={"q": "a red apple", "k": 20}).json()
    hits = first["hits"]
    assert len(hits) == 20 and first["has_more"] is True and first["query"] == "a red apple"
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    h = hits[0]
    assert h["thumbnail"] == f"/api/items/{h['id']}/thumbnail?size=256" and h["image"] == f"/api/items/{h['id']}/image"
    assert h["name"] == Path(h["path"]).name and h["width"] > 0
    # Two pages of 10 are the first 20, in order.
    p1 = client.get("/api/search", params={"q": "a red apple", "k": 10}).json()["hits"]
    p2 = client.get("/api/search", params={"q": "a red apple", "k": 10, "offset": 10}).json()["hits"]
    assert [x["id"] for x in p1 + p2] == [x["id"] for x in hits]
    # POST with the same text gives the same ranking.
    post = client.post("/api/search", json={"q": "a red apple", "k": 20}).json()["hits"]
    assert [x["id"] for x in post] == [x["id"] for x in hits]


def _library_hits(collection: Path, query: str, k: int) -> list[tuple[int, float]]:
    """(id, score) of the library's own search for ``query``: what the API must answer."""
    with lookalike.Collection.open(collection) as coll:
        return [(h.id, h.score) for h in coll.search(query, k=k)]


def _ids_and_scores(hits: list[dict]) -> list[tuple[int, float]]:
    return [(h["id"], pytest.approx(h["score"], abs=1e-5)) for h in hits]


def test_mix_of_ids_and_weights(client: TestClient, items: dict[int, str], served_collection: Path) -> None:
    """Terms are mixed with their weights exactly as the library mixes them. (The ranking is
    compared with the library's rather than judged: the tiny model's rankings mean nothing.)"""
    a, b = sorted(items)[:2]
    res = client.post("/api/search", json={"terms": [{"id": a}], "k": 5}).json()
    assert res["hits"][0]["id"] == a and res["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    mixed = client.post("/api/search", json={"q": "flower", "terms": [{"id": a, "weight": 2}, {"id": b, "weight": -1}],
                                             "k": 5}).json()
    assert mixed["query"] == f"flower + 2*id:{a} - id:{b}"
    want = _library_hits(served_collection, f"flower + 2:id:{a} - id:{b}", k=5)
    assert want != _library_hits(served_collection, f"flower + id:{a} + id:{b}", k=5), "weights must matter here"
    assert _ids_and_scores(mixed["hits"]) == want
    # The query string understands the CLI's algebra (ids and weights), not file paths.
    algebra = client.get("/api/search", params={"q": f"id:{a} - 0.5:night", "k": 3}).json()
    assert algebra["query"] == f"id:{a} - 0.5*night"
    assert _ids_and_scores(algebra["hits"]) == _library_hits(served_collection, f"id:{a} - 0.5:night", k=3)
    _error(client.post("/api/search", json={"terms": [{"id": a}, {"id": a, "weight": -1}]}), 400, "bad_query",
           "cancel out")


def test_filters_apply_inside_the_search(client: TestClient, items: dict[int, str]) -> None:
    """A filtered search fills k from the matching items only: asking for exactly as many results
    as match returns all of them, which a filter applied to the unfiltered top k would not."""
    folder = str(Path(next(iter(items.values()))).parent)
    inside = {i for i, p in items.items() if str(Path(p).parent) == folder}
    assert 0 < len(inside) < len(items)  # the filter has something to keep and something to leave out
    res = client.get("/api/search", params={"q": "anything", "k": len(inside), "under": folder}).json()
    assert {h["id"] for h in res["hits"]} == inside and res["has_more"] is False
    res = client.post("/api/search", json={"q": "anything", "k": len(inside), "filters": {"under": [folder]}}).json()
    assert {h["id"] for h in res["hits"]} == inside
    # Width: only the generated panoramas are 10,000 px or wider (see conftest.py).
    wide_ids = {i for i, p in items.items() if Path(p).parent.name == "wide"}
    assert 0 < len(wide_ids) < len(items)
    unfiltered = client.get("/api/search", params={"q": "x", "k": len(wide_ids)}).json()["hits"]
    assert {h["id"] for h in unfiltered} != wide_ids, "pick another query: its top hits are the panoramas"
    for res in (client.get("/api/search", params={"q": "x", "k": len(wide_ids), "min_width": 10_000}).json(),
                client.post("/api/search", json={"q": "x", "k": len(wide_ids), "filters": {"min_width": 10_000}}
                            ).json()):
        assert {h["id"] for h in res["hits"]} == wide_ids and res["has_more"] is False
        assert all(h["width"] >= 10_000 for h in res["hits"])
    _error(client.post("/api/search", json={"q": "x", "filters": {"colour": "red"}}), 422, "invalid_request")


def test_search_errors(client: TestClient) -> None:
    _error(client.get("/api/search"), 422, "invalid_request", "q")
    _error(client.get("/api/search", params={"q": "x", "k": 0}), 422)
    _error(client.get("/api/search", params={"q": "x", "k": 900, "offset": 900}), 400, "too_many")
    _error(client.post("/api/search", json={}), 422, "invalid_request", "give q, terms")
    _error(client.post("/api/search", json={"terms": [{"id": 1, "text": "x"}]}), 422, contains="exactly one")
    _error(client.post("/api/search", content=b"{not json", headers={"content-type": "application/json"}), 422)
    _error(client.post("/api/search", json={"terms": [{"id": 10**9}]}), 404, "not_found")
    _error(client.get("/api/search", params={"q": "id:12abc"}), 400, "bad_query", "whole number")
    _error(client.get("/api/search", params={"q": "cat + + dog"}), 400, "bad_query")


@pytest.mark.parametrize("q", ["/etc/passwd", "../secret.jpg", "./a.png", "~/photo.jpg", "photo.heic",
                               "id:1 + /etc/hosts"])
def test_query_never_reads_a_client_named_file(client: TestClient, q: str) -> None:
    """Regression guard: the CLI's query language reads image paths; the server's must not."""
    _error(client.get("/api/search", params={"q": q}), 400, "bad_query", "file paths are not accepted")


def test_urls_are_not_fetched_unless_allowed(client: TestClient) -> None:
    _error(client.post("/api/search", json={"terms": [{"url": "http://127.0.0.1:9/x.png"}]}), 400, "bad_query",
           "does not fetch URLs")
    _error(client.get("/api/search", params={"q": "http://127.0.0.1:9/x.png"}), 400, "bad_query", "does not fetch")


@pytest.fixture
def image_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    """A loopback HTTP server with /a.png and /hop (a redirect to the same file via 'localhost')."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    (tmp_path / "a.png").write_bytes(_png(seed=3))
    port_box: list[int] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path), **kw)

        def do_GET(self):  # noqa: N802
            if self.path == "/hop":
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{port_box[0]}/a.png")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_box.append(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()


def test_allow_listed_url_is_fetched_and_redirects_are_checked(served_collection: Path, image_host) -> None:
    host, port = image_host
    config = ServerConfig(collection=served_collection, allow_url_hosts=(host,), warm=False)
    with TestClient(create_app(config)) as c:
        assert c.get("/api/info").json()["url_queries"] is True
        ok = c.post("/api/search", json={"terms": [{"url": f"http://{host}:{port}/a.png"}], "k": 3})
        assert ok.status_code == 200 and len(ok.json()["hits"]) == 3
        # A redirect to a host off the list is refused, not followed.
        _error(c.post("/api/search", json={"terms": [{"url": f"http://{host}:{port}/hop"}]}), 400, "bad_image",
               "not allowed")
        _error(c.post("/api/search", json={"terms": [{"url": f"http://localhost:{port}/a.png"}]}), 400, "bad_image",
               "allow-list")
        _error(c.post("/api/search", json={"terms": [{"url": "file:///etc/passwd"}]}), 400, "bad_image")


# ------------------------------------------------------------------------------ image upload
def test_upload_finds_the_same_image_first(client: TestClient, items: dict[int, str]) -> None:
    item_id, path = sorted(items.items())[5]
    data = Path(path).read_bytes()
    res = client.post("/api/search/image", files={"file": ("q.png", data, "image/png")}, data={"k": "4"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["hits"][0]["id"] == item_id and body["hits"][0]["score"] > 0.99 and body["query"] == "[image]"
    # Mixed with terms: the uploaded image minus that same item cancels; plus text is fine.
    mixed = client.post("/api/search/image", files={"file": ("q.png", data, "image/png")},
                        data={"terms": '[{"text": "tree", "weight": 0.3}]', "k": "2"})
    assert mixed.status_code == 200 and mixed.json()["query"] == "0.3*tree + [image]"
    _error(client.post("/api/search/image", files={"file": ("q.png", data, "image/png")},
                       data={"terms": "not json"}), 422, "invalid_request")


def test_upload_errors(client: TestClient) -> None:
    _error(client.post("/api/search/image", files={"file": ("x.png", b"not an image at all", "image/png")}), 400,
           "bad_image", "x.png")
    _error(client.post("/api/search/image", files={"file": ("x.png", b"", "image/png")}), 400, "bad_image", "empty")
    _error(client.post("/api/search/image", data={"k": "3"}), 422, "invalid_request", "file")
    truncated = _png(seed=1)[:200]
    _error(client.post("/api/search/image", files={"file": ("t.png", truncated, "image/png")}), 400, "bad_image")


def test_upload_size_and_pixel_caps(served_collection: Path) -> None:
    config = ServerConfig(collection=served_collection, max_upload_bytes=50_000, max_pixels=10_000, warm=False)
    with TestClient(create_app(config)) as c:
        big = _png((400, 400), seed=2)
        assert len(big) > 50_000 + 64 * 1024
        _error(c.post("/api/search/image", files={"file": ("big.png", big, "image/png")}), 413, "too_large")
        # Just over the image limit but under the body limit: refused by the endpoint itself.
        mid = _png((160, 160), seed=4)
        assert 50_000 < len(mid) < 50_000 + 64 * 1024
        _error(c.post("/api/search/image", files={"file": ("mid.png", mid, "image/png")}), 413, "too_large")
        # Small file, too many pixels: refused before decoding.
        flat = io.BytesIO()
        Image.new("RGB", (300, 300), "white").save(flat, "PNG")
        _error(c.post("/api/search/image", files={"file": ("wide.png", flat.getvalue(), "image/png")}), 400,
               "bad_image", "pixels")

        # A body with no Content-Length (chunked) is counted as it arrives.
        def chunks():
            for _ in range(20):
                yield b"x" * 10_000

        _error(c.post("/api/search", content=chunks(), headers={"content-type": "application/json"}), 413,
               "too_large")


# ------------------------------------------------------------------------------ items
def test_item_similar_thumbnail_and_original(client: TestClient, items: dict[int, str], served_collection: Path
                                             ) -> None:
    item_id, path = sorted(items.items())[7]
    meta = client.get(f"/api/items/{item_id}").json()
    assert meta["id"] == item_id and meta["path"] == path and meta["name"] == Path(path).name
    assert meta["folder"] == str(Path(path).parent) and meta["size"] == Path(path).stat().st_size
    assert meta["width"] > 0 and meta["hash"]

    sim = client.get(f"/api/items/{item_id}/similar", params={"k": 5}).json()
    assert len(sim["hits"]) == 5 and item_id not in [h["id"] for h in sim["hits"]]

    t0 = time.perf_counter()
    thumb = client.get(f"/api/items/{item_id}/thumbnail", params={"size": 128})
    first_s = time.perf_counter() - t0
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(thumb.content))
    assert img.format == "JPEG" and max(img.size) <= 128 and max(img.size) >= 64
    cached = list((served_collection / "thumbnails" / "128").glob(f"{item_id}-*.jpg"))
    assert len(cached) == 1
    again = client.get(f"/api/items/{item_id}/thumbnail", params={"size": 128},
                       headers={"if-none-match": thumb.headers["etag"]})
    assert again.status_code == 304
    t0 = time.perf_counter()
    assert client.get(f"/api/items/{item_id}/thumbnail", params={"size": 128}).content == thumb.content
    assert time.perf_counter() - t0 < max(first_s, 0.5)
    _error(client.get(f"/api/items/{item_id}/thumbnail", params={"size": 100}), 422, contains="one of")

    orig = client.get(f"/api/items/{item_id}/image")
    assert orig.status_code == 200 and orig.content == Path(path).read_bytes()
    assert orig.headers["content-type"] == "image/png" and orig.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("url", ["/api/items/999999", "/api/items/999999/similar", "/api/items/999999/thumbnail",
                                 "/api/items/999999/image"])
def test_unknown_item_is_404(client: TestClient, url: str) -> None:
    _error(client.get(url), 404, "not_found", "no item with id 999999")


@pytest.mark.parametrize("url", ["/api/items/abc", "/api/items/-1", "/api/items/1.5/image",
                                 "/api/items/99999999999999999999999/image", "/api/items/1/thumbnail?size=big"])
def test_bad_item_ids_are_422(client: TestClient, url: str) -> None:
    _error(client.get(url), 422, "invalid_request")


@pytest.mark.parametrize("url", [
    "/api/items/../../../../etc/passwd",
    "/api/items/%2e%2e%2f%2e%2e%2fetc%2fpasswd/image",
    "/api/items/..%2f..%2fetc%2fpasswd",
    "/api/items//etc/passwd/image",
    "/api/items/%2Fetc%2Fpasswd/image",
    "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2fapp.py",
    "/static//etc/passwd",
    "/api/items/1/image/../../../../etc/passwd",
    "/etc/passwd",
])
def test_traversal_attempts_never_reach_files(client: TestClient, url: str) -> None:
    resp = client.get(url)
    assert resp.status_code in (404, 422), (url, resp.status_code)
    assert "root:" not in resp.text and "def create_app" not in resp.text
    assert resp.headers["content-type"].startswith("application/json") or resp.status_code == 404


def test_missing_file_is_404_not_500(tmp_path: Path, tiny_clip_dir: Path) -> None:
    folder = tmp_path / "imgs"
    gone = make_image(folder / "gone.png", seed=1)
    make_image(folder / "kept.png", seed=2)
    with lookalike.Collection.create(tmp_path / "c.lkl", model=f"openclip:{tiny_clip_dir}", device="cpu") as coll:
        coll.add([folder])
        gone_id = coll.search(gone, k=1)[0].id
    gone.unlink()
    with TestClient(create_app(ServerConfig(collection=tmp_path / "c.lkl", warm=False))) as c:
        _error(c.get(f"/api/items/{gone_id}/image"), 404, "image_unavailable", "gone")
        _error(c.get(f"/api/items/{gone_id}/thumbnail"), 404, "image_unavailable")


# ------------------------------------------------------------------------------ safety
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def locked(served_collection: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServerConfig(collection=served_collection, token=TOKEN, warm=False))) as c:
        yield c


@pytest.mark.parametrize("url", ["/", "/healthz", "/metrics", "/api/info", "/api/search?q=x", "/api/items/1",
                                 "/api/items/1/image", "/api/items/1/thumbnail", "/static/app.js", "/docs",
                                 "/openapi.json", "/no/such/route"])
def test_token_guards_every_route(locked: TestClient, url: str) -> None:
    locked.cookies.clear()
    _error(locked.get(url), 401, "unauthorized", "token")
    _error(locked.get(url, headers={"authorization": "Bearer wrong-token-xyz"}), 401)
    assert locked.get(url, headers={"authorization": f"Bearer {TOKEN}"}).status_code in (200, 404)


def test_token_by_query_sets_a_cookie_and_leaves_the_url(locked: TestClient) -> None:
    locked.cookies.clear()
    resp = locked.get("/?q=cat&token=" + TOKEN, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/?q=cat"
    cookie = resp.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert locked.get("/api/info").status_code == 200  # the cookie now carries it
    locked.cookies.clear()
    _error(locked.get("/api/info", headers={"cookie": "lookalike_token=nope-nope"}), 401)
    assert locked.post("/api/search?token=" + TOKEN, json={"q": "x", "k": 1}).status_code == 200
    _error(locked.get("/api/info", headers={"cookie": "lookalike_token=\"unterminated"}), 401)


def test_tokens_are_compared_in_constant_time(locked: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    locked.cookies.clear()
    locked.get("/healthz", headers={"authorization": "Bearer guess"})
    assert calls and all(b == TOKEN.encode() for _, b in calls)


def test_config_validation(served_collection: Path) -> None:
    with pytest.raises(ValueError, match="at least 8"):
        ServerConfig(collection=served_collection, token="short")
    with pytest.raises(ValueError, match="printable ASCII"):
        ServerConfig(collection=served_collection, token="has a space in it")
    cfg = ServerConfig(collection=served_collection, allow_url_hosts=("example.com", "*.images.org"))
    assert cfg.host_allowed("example.com") and cfg.host_allowed("EXAMPLE.com.")
    assert cfg.host_allowed("a.images.org") and not cfg.host_allowed("images.org.evil.com")
    assert not cfg.host_allowed("sub.example.com") and not cfg.host_allowed("evilimages.org")


def test_cors_is_off_unless_asked(client: TestClient, served_collection: Path) -> None:
    origin = {"origin": "https://elsewhere.example"}
    assert "access-control-allow-origin" not in client.get("/api/info", headers=origin).headers
    config = ServerConfig(collection=served_collection, cors_origins=("https://elsewhere.example",), warm=False)
    with TestClient(create_app(config)) as c:
        assert c.get("/api/info", headers=origin).headers["access-control-allow-origin"] == origin["origin"]
        other = c.get("/api/info", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_slow_requests_time_out_with_503(served_collection: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(ServerConfig(collection=served_collection, request_timeout_s=0.2, warm=False))
    svc = app.state.service
    real = svc.search

    def slow(*args, **kwargs):
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(svc, "search", slow)
    with TestClient(app) as c:
        t0 = time.perf_counter()
        _error(c.get("/api/search", params={"q": "x"}), 503, "timeout", "longer than 0.2")
        assert time.perf_counter() - t0 < 0.8, "the 503 waited for the slow handler"
        assert c.get("/healthz").status_code == 200


def test_unexpected_errors_are_json_500_without_details(served_collection: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(ServerConfig(collection=served_collection, warm=False))

    def boom(*args, **kwargs):
        raise RuntimeError("secret internals /home/user/.ssh")

    monkeypatch.setattr(app.state.service, "search", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        err = _error(c.get("/api/search", params={"q": "x"}), 500, "server_error")
        assert "secret" not in err["message"]


def test_unknown_routes_and_methods_are_json(client: TestClient) -> None:
    _error(client.get("/api/nope"), 404, "not_found")
    _error(client.delete("/api/info"), 405, "method_not_allowed")


def test_metrics_count_by_route_template(client: TestClient, items: dict[int, str]) -> None:
    some = sorted(items)[:3]
    for i in some:
        client.get(f"/api/items/{i}")
    client.get("/api/search", params={"q": "cat"})
    text = client.get("/metrics").text
    assert 'lookalike_http_requests_total{method="GET",route="/api/items/{item_id}",status="200"}' in text
    assert 'route="/api/items/' + str(some[0]) not in text, "raw paths must not become labels"
    assert "lookalike_http_request_duration_seconds_bucket" in text
    assert f"lookalike_collection_items {float(len(items))}" in text
    assert 'lookalike_searches_total{kind="text"}' in text
