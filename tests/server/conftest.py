"""A collection of generated images, served: shared by the API, fuzz and browser tests.

The server's job is plumbing (routes, errors, limits, paging, filters, thumbnails, safety),
none of which depends on what the vectors mean. So the shared collection is built from
generated images with the tiny random CLIP (``tiny_clip_dir``): no sample download, no
``lite`` load, and text search still works (it just ranks at random). The one test that
needs real images and a real model, the browser test that makes the README screenshot,
builds its own collection in test_browser.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from support import make_image

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

#: Ordinary images per folder; the folders are what the ``under`` filter tests select.
FOLDERS = {"garden": 24, "kitchen": 20}
#: Panoramas at least this wide, so that a ``min_width`` filter has something to keep
#: and (everything else being 96 px wide) something to leave out.
WIDE_MIN = 10_000
WIDE_COUNT = 4


@pytest.fixture(scope="session")
def served_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The generated images behind ``served_collection``, sorted: 44 small distinct PNG/JPEG
    images in ``garden/`` and ``kitchen/``, and 4 panoramas (>= 10,000 px wide) in ``wide/``."""
    images = tmp_path_factory.mktemp("served") / "images"
    paths, seed = [], 0
    for folder, count in FOLDERS.items():
        for i in range(count):
            seed += 1
            paths.append(make_image(images / folder / f"{folder}_{i:02d}.{'png' if i % 3 else 'jpg'}", seed=seed))
    for i in range(WIDE_COUNT):
        paths.append(make_image(images / "wide" / f"panorama_{i}.png", seed=900 + i, size=(WIDE_MIN + 240 * i, 48)))
    return sorted(paths)


@pytest.fixture(scope="session")
def served_collection(served_images: list[Path], tiny_clip_dir: Path) -> Path:
    """Path of a collection of ``served_images`` indexed with the tiny CLIP (model
    ``openclip:<tiny_clip_dir>``). Tests must not change it; copy it to experiment."""
    import lookalike

    root = served_images[0].parents[2]
    path = root / "generated.lkl"
    with lookalike.Collection.create(path, model=f"openclip:{tiny_clip_dir}", device="cpu") as coll:
        report = coll.add([root / "images"])
    assert not report.failed and report.added == len(served_images), report
    return path


# --------------------------------------------------------------------------- the browser
#: Playwright's default timeout for the browser tests.
TIMEOUT_MS = 30_000


def _chromium() -> str:
    """Debian's chromium: skipped where it is missing, except under CI, where that fails."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    message = "Debian's chromium is not installed (make test installs it: apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium (the system's, never a Playwright download), one per test module."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = _chromium()
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, headless=True,
                               args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh page (the test module's ``VIEWPORT`` and ``TIMEOUT_MS`` where it sets them); a
    JavaScript error on it fails the test."""
    viewport = getattr(request.module, "VIEWPORT", {"width": 1280, "height": 820})
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    p = context.new_page()
    p.set_default_timeout(getattr(request.module, "TIMEOUT_MS", TIMEOUT_MS))
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
