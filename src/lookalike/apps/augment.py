"""Seeded, reproducible image augmentations for distillation.

Each view is drawn from a generator seeded by ``(seed, key, view)``, where ``key`` is the
image's content hash: view ``i`` of an image is the same whatever the file is called, where it
sits in the list, or how many other images there are, so a re-run (or a cache of view vectors)
sees exactly the same pixels. The operations are the usual ones for teaching a student a
teacher's embedding, kept moderate so that a view still shows what the image shows:

- a random resized crop covering 50-100 % of the image area, aspect ratio 3:4 to 4:3;
- a horizontal flip, half of the time;
- mild colour jitter: brightness, contrast and saturation each scaled by 0.8-1.2.

Views are PIL images at the crop's own resolution; the model's preprocessing resizes them, so
a view goes through exactly the transform a clean image does.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

from ..errors import InvalidArgument

__all__ = ["AugmentSettings", "augmented_view", "augmented_views", "view_rng"]


@dataclass(frozen=True)
class AugmentSettings:
    """How far a view may stray from its image.

    Attributes:
        scale: the fraction of the image area a crop covers, (low, high).
        ratio: the crop's aspect ratio (width / height), (low, high), sampled log-uniformly.
        flip: the probability of a horizontal flip.
        jitter: brightness, contrast and saturation are each multiplied by a factor drawn
            from ``[1 - jitter, 1 + jitter]``; 0 turns colour jitter off.
    """

    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter: float = 0.2

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise InvalidArgument(f"augmentation scale {self.scale} must satisfy 0 < low <= high <= 1")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise InvalidArgument(f"augmentation ratio {self.ratio} must satisfy 0 < low <= high")
        if not 0 <= self.flip <= 1 or not 0 <= self.jitter < 1:
            raise InvalidArgument(f"augmentation flip {self.flip} must be in [0, 1] and jitter {self.jitter} in [0, 1)")


def view_rng(seed: int, key: str, view: int) -> np.random.Generator:
    """The generator for view ``view`` of the image whose content hash is ``key``."""
    digest = hashlib.blake2b(f"{seed}:{key}:{view}".encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def _crop_box(width: int, height: int, rng: np.random.Generator, settings: AugmentSettings) -> tuple[int, int, int, int]:
    """A random resized crop's box (torchvision's recipe: ten tries, then a centred crop)."""
    area = width * height
    log_lo, log_hi = math.log(settings.ratio[0]), math.log(settings.ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*settings.scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    # Fallback: the largest centred crop within the ratio bounds.
    in_ratio = width / height
    if in_ratio < settings.ratio[0]:
        w, h = width, int(round(width / settings.ratio[0]))
    elif in_ratio > settings.ratio[1]:
        w, h = int(round(height * settings.ratio[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def _jitter(image: Image.Image, rng: np.random.Generator, amount: float) -> Image.Image:
    # Factors are drawn even when jitter is 0, so the stream of draws (and so the crops of
    # later calls) does not depend on the setting.
    factors = rng.uniform(1 - amount, 1 + amount, size=3) if amount else np.ones(3)
    for enhancer, factor in zip((ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color), factors):
        if factor != 1.0:
            image = enhancer(image).enhance(float(factor))
    return image


def augmented_view(image: Image.Image, *, key: str, view: int, seed: int = 0,
                   settings: AugmentSettings = AugmentSettings()) -> Image.Image:
    """View ``view`` of ``image`` (RGB), reproducible from ``(seed, key, view)``.

    Args:
        image: the decoded image; it is not modified.
        key: a stable name for the image, normally its content hash.
        view: the view's number (0, 1, ...).
        seed: the run's seed.
        settings: how strong the augmentation is.
    """
    rng = view_rng(seed, key, view)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    out = rgb.crop(_crop_box(rgb.width, rgb.height, rng, settings))
    if rng.uniform() < settings.flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _jitter(out, rng, settings.jitter)


def augmented_views(image: Image.Image, *, key: str, views: int, seed: int = 0,
                    settings: AugmentSettings = AugmentSettings()) -> list[Image.Image]:
    """Views ``0 .. views - 1`` of ``image``; see :func:`augmented_view`."""
    return [augmented_view(image, key=key, view=v, seed=seed, settings=settings) for v in range(views)]
