"""Fixtures shared by the model tests: the root conftest's image helper, and real photos by name."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


@pytest.fixture(scope="session")
def make_image(pytestconfig: pytest.Config) -> Callable[..., Path]:
    """``make_image(path, seed, size=(96, 80))`` from tests/conftest.py, found among the loaded plugins.

    Importing it as ``conftest`` would be ambiguous: several test folders have a conftest.py.
    """
    for plugin in pytestconfig.pluginmanager.get_plugins():
        file = getattr(plugin, "__file__", None)
        if file and Path(file).resolve() == ROOT_CONFTEST and hasattr(plugin, "make_image"):
            return plugin.make_image
    pytest.fail("tests/conftest.py (which defines make_image) is not loaded")


@pytest.fixture(scope="session")
def photo(photo_sources: list[Path]) -> Callable[[str], Path]:
    """``photo("LadyBird.jpg")``: the real wallpaper photo with that file name."""
    by_name = {p.name: p for p in photo_sources}

    def find(name: str) -> Path:
        if name not in by_name:
            pytest.fail(f"{name} is not among the sample photos ({len(by_name)} found)")
        return by_name[name]

    return find
