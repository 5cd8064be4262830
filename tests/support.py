"""Helpers shared by test modules: ``from support import make_image, samples``.

A plain module rather than conftest imports: test folders have no ``__init__.py``, so
``import conftest`` would resolve to whichever conftest pytest loaded last. ``tests/`` is on
``sys.path`` through ``pythonpath`` in pyproject.toml.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["ROOT", "samples", "make_image"]


def _load_samples_module():
    name = "lookalike_samples"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "samples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


#: tools/samples.py: fetches and caches the real sample images.
samples = _load_samples_module()


def make_image(path: Path, seed: int, size: tuple[int, int] = (96, 80), fmt: str | None = None) -> Path:
    """Write a small distinct image (random blocks of colour) and return its path."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path
