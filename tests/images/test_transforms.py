"""PreprocessConfig and build_transform: shapes, normalisation, padding and cropping geometry."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lookalike.images.transforms import PreprocessConfig, build_transform

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
HALF = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
#: One 8-bit step after mean = std = 0.5 normalisation.
STEP = 1 / 127.5


def run(img: Image.Image, **cfg: Any) -> np.ndarray:
    return build_transform(PreprocessConfig(**cfg))(img)


def normalised(rgb: tuple[int, int, int], mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    return (np.asarray(rgb, dtype=np.float32) / 255 - np.asarray(mean)) / np.asarray(std)


# ----------------------------------------------------------------- shapes and values


@pytest.mark.parametrize("mode", ["letterbox", "crop", "squash"])
@pytest.mark.parametrize("size", [(300, 200), (200, 300), (64, 64), (1, 1), (1000, 3), (3, 1000)])
def test_output_is_3_by_size_by_size_float32(mode: str, size: tuple[int, int]) -> None:
    """Every mode and aspect ratio, down to 1x1 and 1000x3, gives a finite (3, S, S) float32."""
    out = run(Image.new("RGB", size, (10, 120, 250)), size=32, resize_mode=mode)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    assert np.isfinite(out).all()


@pytest.mark.parametrize("mode", ["letterbox", "crop", "squash"])
@pytest.mark.parametrize(("colour", "value"), [(WHITE, 1.0), ((0, 0, 0), -1.0)])
def test_normalisation_with_half_mean_and_std(mode: str, colour: tuple[int, int, int], value: float) -> None:
    """mean = std = 0.5 maps white to 1.0 and black to -1.0 exactly (square input: no padding)."""
    out = run(Image.new("RGB", (50, 50), colour), size=16, resize_mode=mode, **HALF)
    np.testing.assert_allclose(out, value, atol=1e-6)


def test_per_channel_normalisation_uses_imagenet_defaults() -> None:
    """The default config normalises each channel with its own mean and std."""
    cfg = PreprocessConfig()
    out = run(Image.new("RGB", (40, 40), (200, 100, 50)), size=8)
    expected = normalised((200, 100, 50), cfg.mean, cfg.std)
    np.testing.assert_allclose(out[:, 4, 4], expected, atol=1e-5)


def test_non_rgb_input_is_converted() -> None:
    """Greyscale input becomes three equal channels rather than failing."""
    out = run(Image.new("L", (20, 20), 255), size=8, resize_mode="squash", **HALF)
    np.testing.assert_allclose(out, 1.0, atol=1e-6)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "lanczos", "nearest"])
def test_every_interpolation_works(interpolation: str) -> None:
    """Each filter name resizes; a flat image stays flat."""
    out = run(Image.new("RGB", (90, 70), WHITE), size=24, interpolation=interpolation, **HALF)
    np.testing.assert_allclose(out[:, 12, 12], 1.0, atol=1e-5)


# ----------------------------------------------------------------- geometry


def test_letterbox_pads_short_axis_with_mean_colour() -> None:
    """A white 2:1 image fills the middle half; the bands above and below normalise to ~0."""
    out = run(Image.new("RGB", (200, 100), WHITE), size=64, resize_mode="letterbox", **HALF)
    np.testing.assert_allclose(out[:, :16, :], 0.0, atol=STEP)  # top band
    np.testing.assert_allclose(out[:, 48:, :], 0.0, atol=STEP)  # bottom band
    np.testing.assert_allclose(out[:, 17:47, :], 1.0, atol=1e-5)  # the image, full width


def test_letterbox_pads_left_and_right_for_tall_images() -> None:
    """A 1:2 image is padded on the left and right, not cropped."""
    out = run(Image.new("RGB", (100, 200), WHITE), size=64, resize_mode="letterbox", **HALF)
    np.testing.assert_allclose(out[:, :, :16], 0.0, atol=STEP)
    np.testing.assert_allclose(out[:, :, 48:], 0.0, atol=STEP)
    np.testing.assert_allclose(out[:, :, 17:47], 1.0, atol=1e-5)


def test_letterbox_padding_with_imagenet_mean_is_near_zero() -> None:
    """With per-channel means the padding is the rounded mean colour: within one 8-bit step of 0."""
    cfg = PreprocessConfig(size=32, resize_mode="letterbox")
    out = build_transform(cfg)(Image.new("RGB", (100, 20), WHITE))
    for c in range(3):
        assert abs(float(out[c, 0, 0])) <= 1 / (255 * cfg.std[c])


def test_letterbox_explicit_fill() -> None:
    """``fill`` sets the padding colour."""
    out = run(Image.new("RGB", (100, 50), WHITE), size=32, resize_mode="letterbox", fill=(255, 0, 0), **HALF)
    np.testing.assert_allclose(out[:, 0, 0], [1.0, -1.0, -1.0], atol=1e-6)


def test_letterbox_keeps_the_whole_image() -> None:
    """Nothing is cropped: blue at the far left and far right of a wide image both survive."""
    img = Image.new("RGB", (300, 100), WHITE)
    img.paste(BLUE, (0, 0, 30, 100))
    img.paste(BLUE, (270, 0, 300, 100))
    out = run(img, size=60, resize_mode="letterbox", **HALF)
    np.testing.assert_allclose(out[:, 30, 1], normalised(BLUE, HALF["mean"], HALF["std"]), atol=1e-5)
    np.testing.assert_allclose(out[:, 30, 58], normalised(BLUE, HALF["mean"], HALF["std"]), atol=1e-5)


@pytest.mark.parametrize("crop_pct", [1.0, 0.875])
@pytest.mark.parametrize("size", [(300, 100), (100, 300)])
def test_crop_keeps_the_centre(crop_pct: float, size: tuple[int, int]) -> None:
    """Red middle, blue ends (wide or tall): the crop sees only red.

    The red area overhangs the centre square by 20 px a side so resampling filters that
    reach just past the crop edge (correctly) see red too."""
    w, h = size
    img = Image.new("RGB", size, BLUE)
    side = min(w, h) + 40
    left, top = max(0, (w - side) // 2), max(0, (h - side) // 2)
    img.paste(RED, (left, top, min(w, left + side), min(h, top + side)))
    out = run(img, size=32, resize_mode="crop", crop_pct=crop_pct, **HALF)
    red = normalised(RED, HALF["mean"], HALF["std"])
    np.testing.assert_allclose(out, np.broadcast_to(red[:, None, None], (3, 32, 32)), atol=1e-5)


def test_crop_pct_zooms_in() -> None:
    """crop_pct < 1 keeps only the middle of the short side: a 10% blue border is cut away."""
    img = Image.new("RGB", (200, 200), BLUE)
    img.paste(RED, (20, 20, 180, 180))
    zoomed = run(img, size=40, resize_mode="crop", crop_pct=0.75, **HALF)
    full = run(img, size=40, resize_mode="crop", crop_pct=1.0, **HALF)
    red = normalised(RED, HALF["mean"], HALF["std"])
    np.testing.assert_allclose(zoomed[:, 0, 0], red, atol=1e-5)
    assert not np.allclose(full[:, 0, 0], red, atol=0.1)


def test_squash_ignores_aspect_ratio() -> None:
    """Squash stretches: a blue left third stays the left third."""
    img = Image.new("RGB", (300, 100), RED)
    img.paste(BLUE, (0, 0, 100, 100))
    out = run(img, size=30, resize_mode="squash", interpolation="nearest", **HALF)
    blue, red = normalised(BLUE, HALF["mean"], HALF["std"]), normalised(RED, HALF["mean"], HALF["std"])
    np.testing.assert_allclose(out[:, :, :10], blue[:, None, None] * np.ones((1, 30, 10)), atol=1e-5)
    np.testing.assert_allclose(out[:, :, 10:], red[:, None, None] * np.ones((1, 30, 20)), atol=1e-5)


# ----------------------------------------------------------------- config


def test_config_round_trips_through_dict_and_json() -> None:
    """to_dict/from_dict (also via JSON, where tuples become lists) give an equal, hashable config."""
    cfg = PreprocessConfig(size=160, resize_mode="letterbox", crop_pct=0.9, interpolation="bilinear",
                           mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), fill=(1, 2, 3))
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    via_json = PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert via_json == cfg and hash(via_json) == hash(cfg)
    assert PreprocessConfig.from_dict(PreprocessConfig().to_dict()) == PreprocessConfig()


def test_lists_are_stored_as_tuples() -> None:
    """Regression: a config built with lists (as from JSON) was unequal to the same config with
    tuples and unhashable; it now normalises to tuples."""
    listed = PreprocessConfig(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], fill=[0, 0, 0])  # type: ignore[arg-type]
    assert listed == PreprocessConfig(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), fill=(0, 0, 0))
    assert isinstance(listed.mean, tuple) and isinstance(listed.fill, tuple)
    hash(listed)


def test_numpy_size_becomes_a_json_serialisable_int() -> None:
    """Regression: a numpy integer size (from a model config) broke the JSON manifest."""
    cfg = PreprocessConfig(size=np.int64(192))  # type: ignore[arg-type]
    assert type(cfg.size) is int
    json.dumps(cfg.to_dict())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 0},
        {"size": -5},
        {"size": 2.5},
        {"size": True},
        {"resize_mode": "stretch"},
        {"interpolation": "box"},
        {"crop_pct": 0.0},
        {"crop_pct": 1.5},
        {"crop_pct": "0.9"},
        {"std": (0.0, 0.5, 0.5)},
        {"std": (-0.2, 0.5, 0.5)},
        {"mean": (0.5, 0.5)},
        {"mean": (0.5, 0.5, 0.5, 0.5)},
        {"mean": (float("nan"), 0.5, 0.5)},
        {"mean": "abc"},
        {"mean": 0.5},
        {"fill": (0, 0, 256)},
        {"fill": (0, 0)},
        {"fill": (0.5, 0, 0)},
    ],
)
def test_invalid_config_raises_value_error(kwargs: dict[str, Any]) -> None:
    """Bad settings fail at construction with ValueError, not later inside a transform.

    (Regression for std=0, which divided by zero, and wrong-length mean/std/fill, which only
    failed when the transform was built or first used.)"""
    with pytest.raises(ValueError):
        PreprocessConfig(**kwargs)


def test_from_dict_rejects_unknown_settings() -> None:
    """Regression: an unknown key raised a bare TypeError from the constructor; it is a
    ValueError naming the key."""
    data = PreprocessConfig().to_dict() | {"sharpen": True}
    with pytest.raises(ValueError, match="sharpen"):
        PreprocessConfig.from_dict(data)


@pytest.mark.parametrize(
    ("cfg", "side"),
    [
        ({"size": 224, "resize_mode": "crop", "crop_pct": 0.875}, 256),
        ({"size": 224, "resize_mode": "crop", "crop_pct": 1.0}, 224),
        ({"size": 224, "resize_mode": "crop", "crop_pct": 0.9}, 249),
        ({"size": 224, "resize_mode": "letterbox"}, 224),
        ({"size": 384, "resize_mode": "squash"}, 384),
    ],
)
def test_min_decode_side(cfg: dict[str, Any], side: int) -> None:
    """The short side a decoder may shrink to: the scaled side before the crop, never less."""
    assert PreprocessConfig(**cfg).min_decode_side == side


def test_min_decode_side_loses_no_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    """Transforming a draft-sized image at exactly min_decode_side needs no upscaling for crop."""
    cfg = PreprocessConfig(size=224, resize_mode="crop", crop_pct=0.875)
    img = Image.new("RGB", (cfg.min_decode_side * 4 // 3, cfg.min_decode_side), WHITE)
    real = Image.Image.resize
    sizes: list[tuple[tuple[int, int], tuple[int, int]]] = []

    def spy(self: Image.Image, size: Any, *args: Any, **kwargs: Any) -> Image.Image:
        sizes.append((self.size, tuple(size)))
        return real(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", spy)
    assert build_transform(cfg)(img).shape == (3, 224, 224)
    assert sizes, "no resize happened: the spy saw nothing"
    assert all(new[0] <= old[0] and new[1] <= old[1] for old, new in sizes), sizes
