"""The web UI in a real browser: Debian's headless Chromium driven by Playwright.

The app is served by uvicorn on a loopback port. Most tests use ``served_collection``
(generated images, tiny random CLIP: see conftest.py), since they check what the page does,
not what it finds. One test, the one that makes the README's screenshot (``search.png``),
searches real clip art with the real ``lite`` model; it needs the Debian samples.

The browser is the system's (``/usr/bin/chromium``, from apt; ``make test`` installs it);
Playwright never downloads one. Screenshots go to ``$LOOKALIKE_SCREENSHOTS`` (default
``.cache/screenshots``). Without Chromium these tests skip, except under CI, where that is
a failure.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Iterator

import pytest

import lookalike
from lookalike.server import ServerConfig
from support import ROOT, live_server

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser  # in the default suite; `-m "not browser"` leaves them out

SCREENSHOTS = Path(os.environ.get("LOOKALIKE_SCREENSHOTS", ROOT / ".cache" / "screenshots"))
TIMEOUT_MS = 30_000




#: Real clip-art images per category in the README screenshot's collection (35 categories,
#: 105 images): more than one page of results (48), and three apples for "a red apple".
CLIPART_PER_CLASS = 3


@pytest.fixture(scope="module")
def base_url(served_collection: Path) -> Iterator[str]:
    """The app over the shared generated collection, on a loopback port."""
    with live_server(ServerConfig(collection=served_collection)) as url:
        yield url


@pytest.fixture(scope="module")
def clipart_url(tmp_path_factory: pytest.TempPathFactory, clipart_labelled: dict[str, list[Path]],
                lite_model) -> Iterator[str]:
    """The app over real clip art (the first CLIPART_PER_CLASS of each labelled category, in
    category folders) indexed with ``lite``, served with the session's loaded model."""
    root = tmp_path_factory.mktemp("clipart")
    for label, paths in clipart_labelled.items():
        folder = root / "images" / label.replace("/", "_")
        folder.mkdir(parents=True)
        for p in paths[:CLIPART_PER_CLASS]:
            shutil.copy2(p, folder / p.name)
    coll = lookalike.Collection.create(root / "clipart.lkl", model=lite_model)
    try:
        report = coll.add([root / "images"])
        assert not report.failed, report.failed
        with live_server(ServerConfig(collection=coll.path), collection=coll) as url:
            yield url
    finally:
        coll.close()






def _shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 5_000
    return path


def _thumbs_loaded(page, at_least: int) -> None:
    """Wait until that many result thumbnails have actually loaded (not just been placed)."""
    page.wait_for_function(
        "n => Array.from(document.querySelectorAll('#grid .card img')).filter(i => i.complete && i.naturalWidth > 0)"
        ".length >= n", arg=at_least)


def _ids(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all("#grid .card", "els => els.map(e => e.dataset.id)")]


def test_type_a_query_and_see_thumbnails(page, clipart_url: str) -> None:
    """The README screenshot: real clip art searched for "a red apple" with the real model."""
    page.goto(clipart_url)
    assert page.locator("#empty").is_visible()
    assert "images by words" in page.locator("#empty-text").inner_text()
    page.locator("#q").press_sequentially("a red apple", delay=30)
    _thumbs_loaded(page, 12)
    assert page.locator("#grid .card").count() == 48
    assert re.search(r"\?q=a\+red\+apple$", page.url), page.url
    assert re.match(r"48\+ results · \d+ ms", page.locator("#count").inner_text())
    # The score shows on hover.
    first = page.locator("#grid .card").first
    first.hover()
    page.wait_for_function("() => getComputedStyle(document.querySelector('#grid .card .score')).opacity === '1'")
    assert float(first.locator(".score").inner_text()) > 0
    _shot(page, "search")
    # Infinite scroll: the next page arrives at the bottom.
    page.mouse.wheel(0, 20_000)
    page.wait_for_function("() => document.querySelectorAll('#grid .card').length > 48")
    # The URL is shareable: opening it again runs the same search.
    ids = _ids(page)[:10]
    page.goto(page.url)
    _thumbs_loaded(page, 10)
    assert _ids(page)[:10] == ids and page.locator("#q").input_value() == "a red apple"


def test_upload_an_image_and_get_results(page, base_url: str, served_collection: Path) -> None:
    with lookalike.Collection.open(served_collection) as coll:
        ids = [item.id for item in coll.items() if item.status == "ok"]
        target = coll.item(sorted(ids)[11])
    page.goto(base_url)
    page.locator("#file").set_input_files(target.path)
    _thumbs_loaded(page, 8)
    assert _ids(page)[0] == target.id, "the uploaded image itself comes first"
    assert page.locator("#query-image").is_visible()
    _shot(page, "upload")
    page.locator("#query-image-clear").click()
    page.wait_for_function("() => !document.querySelector('#empty').hidden")


def test_open_a_result_and_use_more_like_this(page, base_url: str) -> None:
    page.goto(base_url + "/?q=tree")
    _thumbs_loaded(page, 6)
    second = _ids(page)[1]
    page.locator("#grid .card").nth(1).click()
    dialog = page.locator("#detail")
    dialog.wait_for(state="visible")
    page.wait_for_function("() => document.querySelectorAll('#detail-meta dt').length >= 6")
    assert "folder" in page.locator("#detail-meta").inner_text()
    page.wait_for_function("() => document.querySelector('#detail-img').naturalWidth > 0")
    _shot(page, "detail")
    # Arrow keys step through results in the detail view.
    page.keyboard.press("ArrowRight")
    page.wait_for_function("id => !document.querySelector('#detail-open').href.endsWith(`/${id}/image`)", arg=second)
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("id => document.querySelector('#detail-open').href.endsWith(`/${id}/image`)", arg=second)
    page.locator("#detail-similar").click()
    dialog.wait_for(state="hidden")
    page.wait_for_url(re.compile(rf"similar={second}$"))
    _thumbs_loaded(page, 6)
    assert second not in _ids(page), "more like this leaves the item itself out"
    assert page.locator("#refine .chip.similar").count() == 1
    _shot(page, "similar")


def _library_ids(collection: Path, query: str, k: int) -> list[int]:
    """The library's ranking for ``query``: what the page must show once it has refined."""
    with lookalike.Collection.open(collection) as coll:
        return [h.id for h in coll.search(query, k=k)]


def _wait_for_ids(page, ids: list[int]) -> None:
    """Wait until the first cards are exactly ``ids``, in order."""
    page.wait_for_function(
        "ids => Array.from(document.querySelectorAll('#grid .card')).slice(0, ids.length)"
        ".map(e => Number(e.dataset.id)).join() === ids.join()", arg=ids)


def test_thumbs_up_refines_the_query(page, base_url: str, served_collection: Path) -> None:
    """👍 and 👎 add the item to the query with weight +1 / -1: the page then shows the library's
    ranking for that mix. (With a real model the liked image leads it; the tiny model's
    rankings are arbitrary, so the page is compared with the library instead.)"""
    page.goto(base_url + "/?q=flower")
    _thumbs_loaded(page, 8)
    before = _ids(page)
    liked = before[5]
    want = _library_ids(served_collection, f"flower + id:{liked}", 8)
    assert want != before[:8], "the like must change the ranking for this test to see it applied"
    card = page.locator(f"#grid .card[data-id='{liked}']")
    card.hover()
    card.get_by_role("button", name="More like this one (L)").click()
    page.wait_for_url(re.compile(rf"like={liked}"))
    _wait_for_ids(page, want)
    assert page.locator("#refine .chip.like").count() == 1
    assert page.locator(f"#grid .card.liked[data-id='{liked}']").count() == 1
    _shot(page, "refine")
    # 👎 from the keyboard on another result (not the liked one: that would swap its 👍 for a 👎).
    position = next(i for i, item in enumerate(_ids(page)) if i >= 3 and item != liked)
    page.locator("#grid .card").nth(position).focus()
    disliked = _ids(page)[position]
    page.keyboard.press("d")
    page.wait_for_url(re.compile(rf"like={liked}&dislike={disliked}"))
    assert page.locator("#refine .chip.like").count() == page.locator("#refine .chip.dislike").count() == 1
    _wait_for_ids(page, _library_ids(served_collection, f"flower + id:{liked} - id:{disliked}", 8))


def test_keyboard_navigation_and_phone_width(browser, base_url: str) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, has_touch=True,
                                  is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(base_url + "/?q=house")
        _thumbs_loaded(page, 4)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, "no sideways scrolling on a phone"
        cols = page.evaluate("() => getComputedStyle(document.querySelector('#grid')).gridTemplateColumns.split(' ').length")
        assert 2 <= cols <= 4
        _shot(page, "phone")
    finally:
        context.close()


def test_keyboard_only(page, base_url: str) -> None:
    page.goto(base_url)
    page.evaluate("() => document.activeElement.blur()")  # the box has autofocus; "/" brings it back
    page.keyboard.press("/")
    assert page.evaluate("() => document.activeElement.id") == "q"
    page.keyboard.type("car")
    # Each keystroke may start a search; the results of "c" or "ca" can be on the page while
    # the one for "car" is still to come and replace them (taking the focus with them).
    page.wait_for_load_state("networkidle")
    _thumbs_loaded(page, 4)
    page.keyboard.press("ArrowDown")
    assert page.evaluate("() => document.activeElement.classList.contains('card')")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.activeElement.dataset.index") == "1"
    page.keyboard.press("Enter")
    page.locator("#detail").wait_for(state="visible")
    page.keyboard.press("Escape")
    page.locator("#detail").wait_for(state="hidden")


def test_error_and_empty_states(page, base_url: str) -> None:
    page.goto(base_url + "/?q=id:999999999")
    page.locator("#error").wait_for(state="visible")
    assert "no item with id 999999999" in page.locator("#error").inner_text()
    page.locator("#q").fill("")
    page.locator("#q").press("Enter")
    page.wait_for_function("() => !document.querySelector('#empty').hidden && document.querySelector('#error').hidden")
