"""Fixtures shared by the model tests: the image helper, and real photos by name."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

import support

@pytest.fixture(scope="session")
def make_image() -> Callable[..., Path]:
    """``make_image(path, seed, size=(96, 80))`` from tests/support.py, as a fixture."""
    return support.make_image


@pytest.fixture(scope="session")
def photo(photo_sources: list[Path]) -> Callable[[str], Path]:
    """``photo("LadyBird.jpg")``: the real wallpaper photo with that file name."""
    by_name = {p.name: p for p in photo_sources}

    def find(name: str) -> Path:
        if name not in by_name:
            pytest.fail(f"{name} is not among the sample photos ({len(by_name)} found)")
        return by_name[name]

    return find
