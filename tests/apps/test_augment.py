"""Augmented views are reproducible from (seed, content hash, view) and stay moderate."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.apps.augment import AugmentSettings, augmented_view, augmented_views
from lookalike.errors import InvalidArgument


def _image(seed: int = 0, size: tuple[int, int] = (120, 90)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


def test_views_are_reproducible_and_independent_of_order() -> None:
    img = _image()
    first = augmented_views(img, key="abc", views=4, seed=3)
    again = augmented_views(img.copy(), key="abc", views=4, seed=3)
    assert all(_same(a, b) for a, b in zip(first, again))
    # View 2 alone is view 2 of the batch: nothing depends on the other views or images.
    assert _same(augmented_view(img, key="abc", view=2, seed=3), first[2])
    # Views differ from one another, and with the seed or the key.
    assert not _same(first[0], first[1])
    assert not _same(augmented_view(img, key="abc", view=0, seed=4), first[0])
    assert not _same(augmented_view(img, key="abd", view=0, seed=3), first[0])


def test_views_are_moderate_crops_of_the_image() -> None:
    img = _image(1)
    settings = AugmentSettings()
    for view in augmented_views(img, key="k", views=16, seed=0):
        assert view.mode == "RGB"
        area = view.width * view.height / (img.width * img.height)
        assert settings.scale[0] - 0.05 <= area <= 1.0
    # Without crop, flip or jitter, a view is the image itself.
    plain = AugmentSettings(scale=(1.0, 1.0), ratio=(120 / 90, 120 / 90), flip=0.0, jitter=0.0)
    assert _same(augmented_view(img, key="k", view=0, settings=plain), img)
    # A grey (L) or RGBA image gives an RGB view; the input is left alone.
    grey = img.convert("L")
    assert augmented_view(grey, key="k", view=0).mode == "RGB" and grey.mode == "L"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="scale"):
        AugmentSettings(scale=(0.0, 1.0))
    with pytest.raises(InvalidArgument, match="flip"):
        AugmentSettings(flip=2.0)
