"""Shared fixtures.

Real sample images come from Debian packages fetched and cached by ``tools/samples.py``
(``~/.cache/lookalike/samples`` unless ``$LOOKALIKE_SAMPLES_DIR`` says otherwise). Tests that
need them use the ``clipart`` / ``photos`` fixtures; where apt-get is unavailable they skip,
except under CI, where a missing sample set is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _load_samples_module():
    spec = importlib.util.spec_from_file_location("lookalike_samples", ROOT / "tools" / "samples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


samples = _load_samples_module()


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
def lite_model():
    """The bundled default model, loaded once per test session on the CPU."""
    import lookalike

    return lookalike.load_model("lite", device="cpu")


def make_image(path: Path, seed: int, size: tuple[int, int] = (96, 80), fmt: str | None = None) -> Path:
    """Write a small distinct image (random blocks of colour) and return its path."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


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
