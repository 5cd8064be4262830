"""The People page, the search page's person filter and the detail view's face outlines, in
headless Chromium (Debian's, through Playwright; see test_browser.py).

Every test serves its own copy of ``face_collection`` (real face photos, tiny random CLIP,
faces indexed: two unnamed people, one with 6 faces, one with 3). The README's screenshot of
the People page (both people named, real crops) goes to ``$LOOKALIKE_SCREENSHOTS`` and, with
``LOOKALIKE_DOCS_IMAGES=1``, to ``docs/images/people.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

import lookalike
from lookalike.server import ServerConfig
from support import ROOT, live_server

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser

SCREENSHOTS = Path(os.environ.get("LOOKALIKE_SCREENSHOTS", ROOT / ".cache" / "screenshots"))
DOCS_IMAGES = ROOT / "docs" / "images"
VIEWPORT = {"width": 1180, "height": 800}
TIMEOUT_MS = 15_000
CROPS_LOADED = ("() => { const i = Array.from(document.querySelectorAll('img.cover, img.mini, img.face-img')); "
                "return i.length > 0 && i.every(x => x.complete && x.naturalWidth > 0); }")


@pytest.fixture
def faces_copy(face_collection: Path, tmp_path: Path) -> Path:
    path = tmp_path / "faces.lkl"
    shutil.copytree(face_collection, path)
    return path


@pytest.fixture
def served(faces_copy: Path) -> Iterator[str]:
    with live_server(ServerConfig(collection=faces_copy, warm=False)) as url:
        yield url


def _people(path: Path) -> list[lookalike.Person]:
    with lookalike.Collection.open(path) as coll:
        people = coll.people()
    assert [p.faces for p in people] == [6, 3]
    return people


def _name(path: Path, names: dict[int, str]) -> None:
    with lookalike.Collection.open(path) as coll:
        for pid, name in names.items():
            coll.people.name(pid, name)


def _open_people(page, url: str) -> None:
    page.goto(url + "/people")
    page.wait_for_selector(".person-card")
    page.wait_for_function(CROPS_LOADED)


# --------------------------------------------------------------------------- the People page
def test_rename_and_merge(page, served: str, faces_copy: Path) -> None:
    big, small = _people(faces_copy)
    _open_people(page, served)
    cards = page.locator(".person-card")
    assert cards.count() == 2
    assert cards.first.locator(".person-counts").inner_text() == "6 faces · 6 photos"
    # Rename inline: the name turns into a field; Enter saves.
    cards.first.locator(".person-name").click()
    page.locator("input.rename").fill("Barack Obama")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('.person-card .person-name').textContent === 'Barack Obama'")
    # Esc cancels a rename.
    cards.nth(1).locator(".person-name").click()
    page.locator("input.rename").fill("Not saved")
    page.keyboard.press("Escape")
    assert page.locator("input.rename").count() == 0
    with lookalike.Collection.open(faces_copy) as coll:
        assert (coll.people.get(big.id).name, coll.people.get(small.id).name) == ("Barack Obama", None)
    # Select both and merge: the named one stays, with every face.
    assert page.locator("#merge").is_disabled()
    cards.nth(1).locator(".pick").check()
    cards.first.locator(".pick").check()
    page.locator("#merge").click()
    page.wait_for_function("() => document.querySelectorAll('.person-card').length === 1")
    assert "Merged 2 people into Barack Obama" in page.locator("#notice").inner_text()
    assert page.locator(".person-card .person-counts").inner_text() == "9 faces · 9 photos"
    with lookalike.Collection.open(faces_copy) as coll:
        assert [(p.id, p.name, p.faces) for p in coll.people()] == [(big.id, "Barack Obama", 9)]


def test_person_view_not_this_person_and_split(page, served: str, faces_copy: Path) -> None:
    big, _ = _people(faces_copy)
    _open_people(page, served)
    page.locator(".person-card .person-open").first.click()
    page.wait_for_function("() => document.querySelectorAll('#faces .face').length === 6 && "
                           "document.querySelectorAll('#photos .card').length === 6")
    assert page.url.endswith(f"/people?person={big.id}")
    assert page.locator("#person-search").get_attribute("href") == f"/?person={big.id}"
    # One face is not this person.
    first = page.locator("#faces .face").first
    rejected = int(first.get_attribute("data-id"))
    first.click()
    assert first.get_attribute("aria-checked") == "true"
    page.locator("#reject").click()
    page.wait_for_function("() => document.querySelectorAll('#faces .face').length === 5")
    # Two more go to a new, named person.
    split = [int(page.locator("#faces .face").nth(i).get_attribute("data-id")) for i in (0, 1)]
    for i in (0, 1):
        page.locator("#faces .face").nth(i).click()
    page.locator("#split-name").fill("Look-alike")
    page.locator("#split").click()
    page.wait_for_function("() => document.querySelectorAll('#faces .face').length === 3 && "
                           "document.getElementById('notice').textContent.includes('moved to a new person, Look-alike')")
    with lookalike.Collection.open(faces_copy) as coll:
        assert coll.faces.get(rejected).person_id is None
        new = coll.people.get("Look-alike")
        assert sorted(f.id for f in coll.people.faces(new.id)) == sorted(split)
    # A photo opens in the detail view.
    page.locator("#photos .card").first.click()
    page.wait_for_selector("#detail[open]")


def test_crops_are_hidden_beyond_loopback_without_a_token(page, faces_copy: Path) -> None:
    with live_server(ServerConfig(collection=faces_copy, warm=False, host="0.0.0.0")) as url:
        page.goto(url + "/people")
        page.wait_for_selector(".person-card")
        assert "--token" in page.locator("#crops-hidden").inner_text()
        assert page.locator("img.cover").count() == 0 and page.locator(".person-card .no-crop").count() == 2


# --------------------------------------------------------------------------- the search page
def test_person_filter_and_face_outlines(page, served: str, faces_copy: Path) -> None:
    big, small = _people(faces_copy)
    _name(faces_copy, {big.id: "Barack Obama"})
    with lookalike.Collection.open(faces_copy) as coll:
        photos = {p.id: {it.id for it in coll.people.photos(p.id)} for p in (big, small)}
    # The People page's link: the person alone, as a chip.
    page.goto(served + f"/?person={big.id}")
    page.wait_for_function("() => document.querySelectorAll('#grid .card').length === 6")
    assert page.locator(".person-chip").inner_text().startswith("Barack Obama")
    ids = {int(x) for x in page.eval_on_selector_all("#grid .card", "els => els.map(e => e.dataset.id)")}
    assert ids == photos[big.id]
    # Without the chip there is no query; another person comes from the select.
    page.locator(".person-chip button").click()
    page.wait_for_selector("#empty:not([hidden])")
    page.locator("#filter-person").select_option(str(small.id))
    page.wait_for_function(f"() => location.search.includes('person={small.id}') && "
                           "document.querySelectorAll('#grid .card').length === 3")
    ids = {int(x) for x in page.eval_on_selector_all("#grid .card", "els => els.map(e => e.dataset.id)")}
    assert ids == photos[small.id]
    # The detail view outlines the face, scaled to the image as shown, with the label.
    page.goto(served + f"/?person={big.id}")
    page.wait_for_selector("#grid .card")
    item = int(page.locator("#grid .card").first.get_attribute("data-id"))
    page.locator("#grid .card").first.click()
    page.wait_for_function("() => { const i = document.getElementById('detail-img'); return i.complete && "
                           "i.naturalWidth > 0 && document.querySelectorAll('.face-box').length > 0 && "
                           "!document.getElementById('detail-faces').hidden; }")
    with lookalike.Collection.open(faces_copy) as coll:
        faces = coll.faces.of_item(item)
        width = coll.item(item).width
    assert page.locator(".face-box").count() == len(faces) == 1
    assert page.locator(".face-box .face-label").inner_text() == "Barack Obama"
    img = page.locator("#detail-img").bounding_box()
    box = page.locator(".face-box").bounding_box()
    scale = img["width"] / width
    left, top, right, bottom = faces[0].box
    assert abs(box["x"] - (img["x"] + left * scale)) <= 2 and abs(box["y"] - (img["y"] + top * scale)) <= 2
    assert abs(box["width"] - (right - left) * scale) <= 3 and abs(box["height"] - (bottom - top) * scale) <= 3


# --------------------------------------------------------------------------- the README's screenshot
def test_people_page_screenshot(page, served: str, faces_copy: Path) -> None:
    big, small = _people(faces_copy)
    _name(faces_copy, {big.id: "Barack Obama", small.id: "Joe Biden"})
    page.set_viewport_size({"width": 760, "height": 470})
    _open_people(page, served)
    page.evaluate("() => Promise.all(Array.from(document.querySelectorAll('.person-card img'), i => i.decode()))")
    page.locator(".person-card .pick").nth(1).check()  # a selection, as when merging
    page.wait_for_timeout(200)  # painted, not just decoded
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "people.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 5_000
    if os.environ.get("LOOKALIKE_DOCS_IMAGES"):
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, DOCS_IMAGES / shot.name)
