"""The search page over tar members and URLs with metadata, in headless Chromium: the
"where" conditions, captions on the cards, and metadata in the detail view."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from lookalike.server import ServerConfig
from sources_support import SourcesCollection, build_sources_collection
from support import live_server

playwright_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("httpx")
pytest.importorskip("pyarrow")
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> SourcesCollection:
    return build_sources_collection(tmp_path_factory.mktemp("sources-ui"), f"openclip:{tiny_clip_dir}")


@pytest.fixture(scope="module")
def base_url(built: SourcesCollection) -> Iterator[str]:
    with live_server(ServerConfig(collection=built.path)) as url:
        yield url


def _cards(page) -> list[dict]:
    page.wait_for_function("() => !document.querySelector('#grid .skeleton')")
    return page.eval_on_selector_all("#grid .card", "els => els.map(e => ({id: e.dataset.id, "
                                     "text: e.querySelector('.name').textContent, "
                                     "caption: e.querySelector('.name').classList.contains('caption')}))")


def test_where_conditions_captions_and_metadata(page, base_url: str, built: SourcesCollection) -> None:
    page.goto(base_url + "/?q=a+photo")
    page.wait_for_function("() => document.querySelectorAll('#grid .card').length === 6")
    where = page.locator("#filter-where")
    assert where.is_visible()  # the collection has metadata: the field is offered
    assert "license" in page.eval_on_selector_all("#where-keys option", "os => os.map(o => o.value)")

    where.fill("license=cc-by, w>=5")
    where.press("Enter")
    page.wait_for_function("() => new URLSearchParams(location.search).getAll('where').length === 2")
    page.wait_for_function("() => document.querySelectorAll('#grid .card').length === 1")
    assert [c["text"] for c in _cards(page)] == ["002.jpg"]  # no caption: the file name
    assert page.locator("#where-chips .chip").count() == 2

    page.locator("#where-chips .chip button").nth(1).click()  # remove w>=5
    page.wait_for_function("() => document.querySelectorAll('#grid .card').length === 3")
    cards = _cards(page)
    assert {c["text"] for c in cards if c["caption"]} == {"a red kite over the dunes", "a lighthouse at dusk"}

    lighthouse = next(i for i, c in enumerate(cards) if c["text"] == "a lighthouse at dusk")
    page.locator("#grid .card").nth(lighthouse).click()
    page.wait_for_function("() => [...document.querySelectorAll('#detail-meta dt')].some(d => d.textContent === 'stars')")
    facts = dict(zip(page.eval_on_selector_all("#detail-meta dt", "els => els.map(e => e.textContent)"),
                     page.eval_on_selector_all("#detail-meta dd", "els => els.map(e => e.textContent)")))
    assert facts["license"] == "cc-by" and facts["stars"] == "5" and facts["caption"] == "a lighthouse at dusk"
    assert facts["url"] == built.urls["u0.png"]
    assert page.locator("#detail-open").get_attribute("href") == built.urls["u0.png"]  # a URL item: its source
    assert page.locator("#detail-open").text_content() == "Source"
    page.keyboard.press("Escape")

    # A condition the server cannot read: its message is shown, and the chip can be removed.
    where.fill("license")
    where.press("Enter")
    page.wait_for_function("() => !document.getElementById('error').hidden")
    assert "not a condition" in page.locator("#error").text_content()
