"""A real collection of real clip art, served: shared by the API, fuzz and browser tests.

Built once per session with the bundled ``lite`` model from the labelled clip-art sample
(six images from each category, copied into ``category/`` folders).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")


PER_CLASS = 6


@pytest.fixture(scope="session")
def served_collection(tmp_path_factory: pytest.TempPathFactory, clipart_labelled, lite_model) -> Path:
    """Path of a collection over ~200 real clip-art images in category folders."""
    import lookalike

    root = tmp_path_factory.mktemp("served")
    images = root / "images"
    for label, paths in clipart_labelled.items():
        folder = images / label.replace("/", "_")
        folder.mkdir(parents=True)
        for p in paths[:PER_CLASS]:
            shutil.copy2(p, folder / p.name)
    path = root / "clipart.lkl"
    with lookalike.Collection.create(path, model=lite_model) as coll:
        report = coll.add([images])
    assert not report.failed, report.failed
    return path
