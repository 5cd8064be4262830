"""Query parsing, query vectors, and searching a collection (local paths, ids and http URLs)."""

from __future__ import annotations

import http.server
import shutil
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from support import make_image
from lookalike.query import url as url_mod
from lookalike.errors import QueryError, UnreadableImage
from lookalike.query import Query, Term, parse_query_tokens
from lookalike.store.collection import Collection


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def pics(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve distinct images in two sub-folders (a/ and b/)."""
    root = tmp_path_factory.mktemp("search") / "pics"
    for i in range(12):
        make_image(root / ("a" if i < 6 else "b") / f"p{i:02d}.png", seed=100 + i)
    return root


@pytest.fixture(scope="module")
def coll(pics: Path, lite_model, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collection]:
    """A lite collection of ``pics``, built once for the module."""
    c = Collection.create(tmp_path_factory.mktemp("coll") / "c.lkl", model=lite_model)
    report = c.add([pics])
    assert report.added == 12
    yield c
    c.close()


def _id_of(coll: Collection, path: Path) -> int:
    item = coll.item_at(path)
    assert item is not None, path
    return item.id


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


class _NoLengthHandler(http.server.BaseHTTPRequestHandler):
    """Streams a body without Content-Length (HTTP/1.0, ends when the connection closes)."""

    body = b""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def http_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A threaded http.server on 127.0.0.1 serving a temporary folder: yields (base_url, folder)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    folder = tmp_path / "www"
    folder.mkdir()

    def handler(*args: object, **kwargs: object) -> _QuietHandler:
        return _QuietHandler(*args, directory=str(folder), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- parse_query
def test_adjacent_words_join_into_one_text_term() -> None:
    """Guards `lookalike search red apple` meaning the phrase "red apple", not two terms."""
    q = parse_query_tokens(["red", "apple", "pie"])
    assert q.terms == (Term(1.0, "text", "red apple pie"),)


@pytest.mark.parametrize("token,weight,value", [("2:dog", 2.0, "dog"), ("0.5:x", 0.5, "x"), (".5:x", 0.5, "x"),
                                                ("3.:cat", 3.0, "cat"), ("-2:dog", -2.0, "dog"),
                                                ("+1.5:a b", 1.5, "a b")])
def test_weights(token: str, weight: float, value: str) -> None:
    """Guards the W:term weight syntax, including leading-dot and signed weights."""
    (term,) = parse_query_tokens([token]).terms
    assert term.kind == "text" and term.weight == pytest.approx(weight) and term.value == value


def test_not_a_weight_stays_text() -> None:
    """Guards that something that only looks numeric before a colon is not taken as a weight."""
    assert parse_query_tokens(["a:b"]).terms == (Term(1.0, "text", "a:b"),)
    assert parse_query_tokens(["1e3:x"]).terms == (Term(1.0, "text", "1e3:x"),)


def test_operators_set_signs() -> None:
    """Guards + and -: each applies to the next term only, and multiplies its weight."""
    q = parse_query_tokens(["dog", "-", "grass", "+", "0.5:sky", "-", "2:sea"])
    assert [(t.weight, t.value) for t in q.terms] == [(1.0, "dog"), (-1.0, "grass"), (0.5, "sky"), (-2.0, "sea")]


def test_leading_minus_negates_first_term() -> None:
    """Guards a query starting with an operator: '- dog' is -1 * dog."""
    assert parse_query_tokens(["-", "dog"]).terms == (Term(-1.0, "text", "dog"),)


def test_weighted_word_then_words_joins() -> None:
    """Guards joining after a weighted word, and refusing a weighted word after plain ones."""
    assert parse_query_tokens(["2:red", "apple"]).terms == (Term(2.0, "text", "red apple"),)
    with pytest.raises(QueryError, match="put \\+ or -"):
        parse_query_tokens(["red", "2:apple"])


def test_ids() -> None:
    """Guards id:N terms, weighted or not."""
    assert parse_query_tokens(["id:42"]).terms == (Term(1.0, "id", 42),)
    assert parse_query_tokens(["id:1", "-", "0.5:id:7"]).terms == (Term(1.0, "id", 1), Term(-0.5, "id", 7))


@pytest.mark.parametrize("token", ["id:x", "id:", "id:1.5", "id:3a"])
def test_bad_ids(token: str) -> None:
    """Guards a malformed id: a QueryError that shows the right form."""
    with pytest.raises(QueryError, match="id:42"):
        parse_query_tokens([token])


def test_existing_path_is_image(pics: Path) -> None:
    """Guards paths: an existing file is an image term even without ./ and with a weight."""
    img = pics / "a" / "p00.png"
    assert parse_query_tokens([str(img)]).terms == (Term(1.0, "image", str(img)),)
    assert parse_query_tokens(["0.5:" + str(img)]).terms == (Term(0.5, "image", str(img)),)


@pytest.mark.parametrize("token", ["./nope.jpg", "/no/such/file", "../x", "~/definitely-missing-lookalike.png",
                                   "missing.PNG", "holiday.webp"])
def test_missing_image_paths_are_errors(token: str) -> None:
    """Guards a path-looking term that does not exist: an error, not a silent text search."""
    with pytest.raises(QueryError, match="no such image file"):
        parse_query_tokens([token])


def test_word_with_dot_is_text() -> None:
    """Guards words with a non-image extension (e.g. 'node.js') staying text."""
    assert parse_query_tokens(["node.js"]).terms == (Term(1.0, "text", "node.js"),)


def test_urls() -> None:
    """Guards http(s) URLs becoming url terms (not fetched at parse time)."""
    q = parse_query_tokens(["https://example.invalid/a.jpg", "+", "2:http://example.invalid/b"])
    assert q.terms == (Term(1.0, "url", "https://example.invalid/a.jpg"), Term(2.0, "url", "http://example.invalid/b"))


@pytest.mark.parametrize("tokens,match", [
    (["dog", "+", "-", "cat"], "two operators"),
    (["dog", "-", "+", "cat"], "two operators"),
    (["-", "-", "dog"], "two operators"),
    (["+", "-", "dog"], "two operators"),
    (["dog", "+"], "ends with an operator"),
    (["dog", "-"], "ends with an operator"),
    ([], "empty query"),
    (["", "  "], "empty query"),
    (["+"], "empty query"),
    (["id:1", "id:2"], "put \\+ or -"),
    (["dog", "id:2"], "put \\+ or -"),
])
def test_parse_errors(tokens: list[str], match: str) -> None:
    """Guards each malformed query giving a QueryError (also a ValueError) that says what to fix."""
    with pytest.raises(QueryError, match=match) as info:
        parse_query_tokens(tokens)
    assert isinstance(info.value, ValueError)


def test_query_parse_string_forms(pics: Path, tmp_path: Path) -> None:
    """Guards Query.parse: shell quoting, apostrophes in text, and a path with spaces."""
    assert Query.parse("a child's toy").terms == (Term(1.0, "text", "a child's toy"),)
    assert Query.parse('"2:red car" - id:3').terms == (Term(2.0, "text", "red car"), Term(-1.0, "id", 3))
    spaced = tmp_path / "my pic.png"
    shutil.copy(pics / "a" / "p01.png", spaced)
    assert Query.parse(str(spaced)).terms == (Term(1.0, "image", str(spaced)),)


def test_parse_query_takes_a_string_and_tokens_have_their_own_parser() -> None:
    """Regression: lookalike.parse_query("red apple") used to take a token list and so parsed the
    string character by character; now it reads one query string, and a list is refused with
    the name of the token parser."""
    import lookalike

    assert lookalike.parse_query("red apple").terms == (Term(1.0, "text", "red apple"),)
    assert lookalike.parse_query("2:dog - grass").terms == (Term(2.0, "text", "dog"), Term(-1.0, "text", "grass"))
    assert lookalike.parse_query_tokens(["red", "apple"]) == lookalike.parse_query("red apple")
    with pytest.raises(QueryError, match="parse_query_tokens"):
        lookalike.parse_query(["red", "apple"])  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="parse_query"):
        lookalike.parse_query_tokens("red apple")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- query_vector
def test_same_id_minus_itself_cancels(coll: Collection) -> None:
    """Guards terms that sum to nothing: a QueryError, not a NaN vector."""
    with pytest.raises(QueryError, match="cancel"):
        coll.query_vector("id:1 - id:1")


def test_id_mix_is_normalised_weighted_sum(coll: Collection) -> None:
    """Guards mixing: id:1 + id:2 is the normalised mean, 2:id:1 + id:2 weights the first twice."""
    v1, v2 = coll.get_vectors([1, 2])
    mean = (v1 + v2) / np.linalg.norm(v1 + v2)
    np.testing.assert_allclose(coll.query_vector("id:1 + id:2"), mean, atol=1e-6)
    mixed = 2 * v1 + v2
    np.testing.assert_allclose(coll.query_vector("2:id:1 + id:2"), mixed / np.linalg.norm(mixed), atol=1e-6)
    diff = v1 - 0.5 * v2
    np.testing.assert_allclose(coll.query_vector("id:1 - 0.5:id:2"), diff / np.linalg.norm(diff), atol=1e-6)
    out = coll.query_vector("id:1 + id:2")
    assert out.dtype == np.float32 and np.linalg.norm(out) == pytest.approx(1.0, abs=1e-6)


def test_unknown_id_is_query_error(coll: Collection) -> None:
    """Guards an id that is not in the collection."""
    with pytest.raises(QueryError, match="no item with id 999"):
        coll.query_vector("id:999")


def test_vector_queries(coll: Collection) -> None:
    """Guards raw vectors: rescaled to unit length; wrong dimension or zero vector refused."""
    v = coll.get_vectors([3])[0]
    np.testing.assert_allclose(coll.query_vector(v * 7.0), v, atol=1e-6)
    with pytest.raises(QueryError, match="dimensions"):
        coll.query_vector(np.ones(5, dtype=np.float32))
    with pytest.raises(QueryError, match="no direction"):
        coll.query_vector(np.zeros(coll.manifest.dim, dtype=np.float32))


def test_image_and_text_terms(coll: Collection, pics: Path, lite_model) -> None:
    """Guards image and text terms: each is its own model embedding, mixed as weighted unit vectors."""
    img = pics / "b" / "p07.png"
    vi = lite_model.encode_images([img])[0]
    np.testing.assert_allclose(coll.query_vector(img), vi, atol=1e-5)
    vt = lite_model.encode_text(["a red square"])[0]
    np.testing.assert_allclose(coll.query_vector("a red square"), vt, atol=1e-5)
    mix = 2 * vt - vi
    got = coll.query_vector(Query((Term(2.0, "text", "a red square"), Term(-1.0, "image", str(img)))))
    np.testing.assert_allclose(got, mix / np.linalg.norm(mix), atol=1e-5)


# --------------------------------------------------------------------------- search
def test_search_by_id_finds_itself_first(coll: Collection, pics: Path) -> None:
    """Guards ranking: an item's own vector is the best hit with score ~1, scores descend."""
    target = pics / "a" / "p03.png"
    hits = coll.search(f"id:{_id_of(coll, target)}", k=5)
    assert len(hits) == 5
    assert hits[0].path == str(target) and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_by_path_and_pil_image(coll: Collection, pics: Path) -> None:
    """Guards image queries given as a Path, a path string and a PIL image."""
    target = pics / "b" / "p09.png"
    for query in (target, str(target), Image.open(target)):
        hits = coll.search(query, k=1)
        assert hits[0].path == str(target) and hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_k_caps_and_k_below_one(coll: Collection) -> None:
    """Guards k: more than the collection returns everything once; k < 1 is a QueryError."""
    hits = coll.search("id:1", k=100)
    assert len(hits) == 12 and len({h.id for h in hits}) == 12
    for k in (0, -3):
        with pytest.raises(QueryError, match="k must be at least 1"):
            coll.search("id:1", k=k)


def test_min_score_filters(coll: Collection) -> None:
    """Guards min_score: only hits at or above it are kept."""
    all_hits = coll.search("id:2", k=12)
    cut = all_hits[4].score
    hits = coll.search("id:2", k=12, min_score=cut)
    assert hits == [h for h in all_hits if h.score >= cut] and len(hits) >= 5
    assert coll.search("id:2", k=12, min_score=1.01) == []


def test_under_filter(coll: Collection, pics: Path) -> None:
    """Guards `under`: only files below the folder, even when the query is an item outside it."""
    a_item = _id_of(coll, pics / "a" / "p00.png")
    hits = coll.search(f"id:{a_item}", k=12, under=[str(pics / "b")])
    assert len(hits) == 6
    assert all(h.path.startswith(str(pics / "b") + "/") for h in hits)
    both = coll.search(f"id:{a_item}", k=12, under=[str(pics / "a"), str(pics / "b")])
    assert len(both) == 12
    # A sibling folder whose name merely starts with the same letters is not "under".
    assert coll.search(f"id:{a_item}", k=12, under=[str(pics / "b") + "x"]) == []


def test_filter_bounds_beyond_sqlite_integers(coll: Collection) -> None:
    """Regression (found by fuzzing the API): a size or date bound past SQLite's 64-bit
    INTEGER raised OverflowError; such bounds are clamped and select what they mean."""
    from datetime import datetime

    from lookalike.store.filters import Filter

    n = len(coll)
    assert coll.search("x", k=n, where=Filter(min_width=10**30)) == []
    assert len(coll.search("x", k=n, where=Filter(max_width=10**30, min_height=-10**30))) == n
    assert len(coll.search("x", k=n, where=Filter(modified_before=datetime(9999, 12, 31)))) == n
    assert coll.search("x", k=n, where=Filter(modified_after=1e300)) == []


def test_queries_from_others_never_touch_files(pics: Path) -> None:
    """allow_files=False (the server's parsing): a path is refused, an existing file included,
    and the file system is not consulted."""
    real = str(pics / "a" / "p00.png")
    assert Query.parse(real).terms[0].kind == "image"
    for text in (real, "./x.jpg", "../../etc/passwd", "~/a.png", "photo.HEIC", f"dog + {real}"):
        with pytest.raises(QueryError, match="file paths are not accepted"):
            Query.parse(text, allow_files=False)
    q = Query.parse("id:3 - 0.5:night sky + http://example.com/a.png", allow_files=False)
    assert [t.kind for t in q.terms] == ["id", "text", "url"]


def test_fetch_url_allow_list_covers_redirects(pics: Path, http_root: tuple[str, Path]) -> None:
    base, www = http_root
    shutil.copytree(pics / "a", www / "a")
    host = url_mod.url_host(base)
    with pytest.raises(UnreadableImage, match="not on the allow-list"):
        url_mod.fetch_url(f"{base}/a/p00.png", allow_host=lambda h: False)
    data = url_mod.fetch_url(f"{base}/a/p00.png", allow_host=lambda h: h == host)
    assert data == (pics / "a" / "p00.png").read_bytes()
    assert url_mod.url_host("HTTP://Example.COM:8080/x") == "example.com"
    # A redirect is checked against the allow-list too: http.server redirects the folder /a
    # to /a/, and a policy that accepts the first host only must refuse the hop.
    asked: list[str] = []

    def first_only(h: str) -> bool:
        asked.append(h)
        return len(asked) == 1

    with pytest.raises(UnreadableImage, match="redirects to"):
        url_mod.fetch_url(f"{base}/a", allow_host=first_only)
    assert asked == [host, host]


def test_empty_collection_search(tmp_path: Path, lite_model) -> None:
    """Guards searching a collection with nothing in it: no hits, no error."""
    with Collection.create(tmp_path / "empty.lkl", model=lite_model) as c:
        assert c.search(np.ones(c.manifest.dim, dtype=np.float32), k=3) == []


# --------------------------------------------------------------------------- URLs
def test_search_by_http_url(coll: Collection, pics: Path, http_root: tuple[str, Path]) -> None:
    """Guards URL queries: the image is downloaded, decoded and embedded like a local file."""
    base, www = http_root
    target = pics / "a" / "p05.png"
    shutil.copy(target, www / "q.png")
    hits = coll.search(f"{base}/q.png", k=1)
    assert hits[0].path == str(target) and hits[0].score == pytest.approx(1.0, abs=1e-4)
    # And mixed with an id, as a weighted term.
    other = _id_of(coll, pics / "b" / "p10.png")
    v = coll.query_vector(f"{base}/q.png + id:{other}")
    ref = coll.get_vectors([_id_of(coll, target)])[0] + coll.get_vectors([other])[0]
    np.testing.assert_allclose(v, ref / np.linalg.norm(ref), atol=1e-4)


def test_http_404_is_unreadable_image(coll: Collection, http_root: tuple[str, Path]) -> None:
    """Guards a missing URL: UnreadableImage naming the HTTP status."""
    base, _ = http_root
    with pytest.raises(UnreadableImage, match="HTTP 404"):
        coll.search(f"{base}/missing.png", k=1)


def test_http_not_an_image(coll: Collection, http_root: tuple[str, Path]) -> None:
    """Guards a URL that serves something that is not an image: UnreadableImage naming the URL."""
    base, www = http_root
    (www / "page.png").write_text("<html>hello</html>")
    with pytest.raises(UnreadableImage) as info:
        coll.search(f"{base}/page.png", k=1)
    assert info.value.path == f"{base}/page.png"


def test_http_oversized_body_with_content_length(coll: Collection, pics: Path, http_root: tuple[str, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards URL_MAX_BYTES being honoured at call time (it used to be frozen into a default argument)."""
    base, www = http_root
    shutil.copy(pics / "a" / "p00.png", www / "big.png")
    monkeypatch.setattr(url_mod, "URL_MAX_BYTES", 64)
    with pytest.raises(UnreadableImage, match="limit"):
        coll.search(f"{base}/big.png", k=1)


def test_http_oversized_body_without_content_length(pics: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the size cap on a streamed body that declares no length."""
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    body = (pics / "a" / "p00.png").read_bytes()
    handler = type("H", (_NoLengthHandler,), {"body": body})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/x.png"
        assert url_mod.fetch_url(url) == body
        monkeypatch.setattr(url_mod, "URL_MAX_BYTES", len(body) - 1)
        with pytest.raises(UnreadableImage, match="limit"):
            url_mod.fetch_url(url)
        assert url_mod.fetch_url(url, max_bytes=len(body)) == body
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_url_refuses_other_schemes_and_dead_hosts(tmp_path: Path) -> None:
    """Guards fetch_url: non-http schemes and connection failures are UnreadableImage, never raw OSError."""
    with pytest.raises(UnreadableImage, match="only http"):
        url_mod.fetch_url(f"file://{tmp_path}/x.png")
    with pytest.raises(UnreadableImage, match="cannot fetch"):
        url_mod.fetch_url("http://127.0.0.1:9/x.png", timeout=2)
