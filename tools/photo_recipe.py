"""How one benchmark "photo" is cut from a wallpaper: the random recipe and its rendering.

Used by :func:`tools.bench_data.make_photo_folder`. A :class:`PhotoPlan` is drawn from a
seeded ``random.Random`` (so a photo depends only on the seed, its index and the attempt)
and rendered from the decoded source by :func:`render_photo`. Changing either changes
the photos: bump :data:`tools.bench_data.RECIPE_VERSION` so cached folders are rebuilt.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

#: JPEG wallpapers are the real photographs, so they are drawn this many times
#: as often as the PNG/WEBP artwork.
PHOTO_JPEG_WEIGHT = 3.0
#: Minimum fraction of a source's area that a photo's crop keeps.
PHOTO_MIN_AREA = 0.4
#: Largest rotation, in degrees, applied to a photo (half of them are rotated).
PHOTO_MAX_ROTATION = 3.0
#: Aspect ratios (width / height) that photos are cropped to, as cameras and
#: phones produce them; portrait ones only fit taller sources.
PHOTO_ASPECTS: tuple[float, ...] = (4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4, 2 / 3)
#: JPEG quality range for the re-encode, inclusive.
PHOTO_QUALITY = (70, 95)


@dataclass(frozen=True)
class PhotoPlan:
    """Everything needed to render one photo; drawn up front in the parent.

    Coordinates are in source pixels. The crop is the rectangle of size
    ``crop_w`` x ``crop_h`` centred on (``cx``, ``cy``) and turned by
    ``angle`` degrees; it becomes an ``out_w`` x ``out_h`` image.
    """

    index: int
    attempt: int
    source: str
    cx: float
    cy: float
    crop_w: float
    crop_h: float
    angle: float
    flip: bool
    out_w: int
    out_h: int
    quality: int


def _is_jpeg(path: Path) -> bool:
    return path.suffix.lower() in {".jpg", ".jpeg"}


def _place_crop(rng: random.Random, width: int, height: int, angle: float
                ) -> tuple[float, float, float, float, float]:
    """Draw the crop of a *width* x *height* source turned by *angle*: (aspect, w, h, cx, cy)."""
    cos_a, sin_a = math.cos(math.radians(abs(angle))), math.sin(math.radians(abs(angle)))

    def largest_crop_height(aspect: float) -> float:
        # The turned crop's bounding box must fit in the source:
        #   w*cos + h*sin <= W  and  w*sin + h*cos <= H,  with w = aspect * h.
        return min(width / (aspect * cos_a + sin_a), height / (aspect * sin_a + cos_a))

    # Try camera aspect ratios in random order; take the first one that still
    # leaves room for a varied crop size above the minimum area.
    aspects = list(PHOTO_ASPECTS)
    rng.shuffle(aspects)
    aspects.append(width / height)  # the source's own ratio always fits best
    for aspect in aspects:
        max_h = largest_crop_height(aspect)
        max_area = aspect * max_h * max_h / (width * height)
        if max_area >= PHOTO_MIN_AREA + 0.1:
            break
    area = rng.uniform(PHOTO_MIN_AREA, max_area) if max_area > PHOTO_MIN_AREA else max_area
    crop_h = math.sqrt(area * width * height / aspect)
    crop_w = aspect * crop_h
    # The centre may go anywhere that keeps the turned crop inside the source.
    half_w = (crop_w * cos_a + crop_h * sin_a) / 2
    half_h = (crop_w * sin_a + crop_h * cos_a) / 2
    cx = rng.uniform(half_w, max(half_w, width - half_w))
    cy = rng.uniform(half_h, max(half_h, height - half_h))
    return aspect, crop_w, crop_h, cx, cy


def plan_photo(
    index: int,
    attempt: int,
    seed: int,
    sources: Sequence[Path],
    sizes: Sequence[tuple[int, int]],
    min_side: int,
    max_side: int,
) -> PhotoPlan:
    """Draw the random recipe for photo *index*.

    Each photo has its own ``random.Random`` seeded with (seed, index,
    attempt), so a photo does not depend on how many others are made, and a
    retry (*attempt* > 0) gives a different photo. The order of the draws is
    part of the recipe: reordering them changes every photo.
    """
    rng = random.Random(f"photo/{seed}/{index}/{attempt}")
    weights = [PHOTO_JPEG_WEIGHT if _is_jpeg(p) else 1.0 for p in sources]
    choice = rng.choices(range(len(sources)), weights=weights)[0]
    width, height = sizes[choice]
    angle = rng.uniform(-PHOTO_MAX_ROTATION, PHOTO_MAX_ROTATION) if rng.random() < 0.5 else 0.0
    aspect, crop_w, crop_h, cx, cy = _place_crop(rng, width, height, angle)
    long_side = rng.randint(min_side, max_side)
    if aspect >= 1:
        out_w, out_h = long_side, max(1, round(long_side / aspect))
    else:
        out_w, out_h = max(1, round(long_side * aspect)), long_side
    return PhotoPlan(
        index=index,
        attempt=attempt,
        source=str(sources[choice]),
        cx=cx,
        cy=cy,
        crop_w=crop_w,
        crop_h=crop_h,
        angle=angle,
        flip=rng.random() < 0.5,
        out_w=out_w,
        out_h=out_h,
        quality=rng.randint(*PHOTO_QUALITY),
    )


def load_rgb(path: str) -> Image.Image:
    """Decode a source as RGB, flattening any transparency onto black."""
    with Image.open(path) as image:
        image.load()
        if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")


def render_photo(source: Image.Image, plan: PhotoPlan) -> Image.Image:
    """Cut, turn, scale and flip one photo out of *source* as *plan* says.

    The crop's axis-aligned bounding box is resized (with Pillow's
    antialiasing) straight to the output scale, then turned and trimmed to the
    output size. Turning after scaling keeps the costly steps proportional to
    the output, not to the (up to 18 MP) source.
    """
    scale = plan.out_w / plan.crop_w  # output pixels per source pixel
    cos_a = math.cos(math.radians(abs(plan.angle)))
    sin_a = math.sin(math.radians(abs(plan.angle)))
    box_w = plan.crop_w * cos_a + plan.crop_h * sin_a
    box_h = plan.crop_w * sin_a + plan.crop_h * cos_a
    # Pad by a few output pixels so that the turn has real data at
    # the edges rather than the fill colour.
    pad = 2 / scale
    left = max(0.0, plan.cx - box_w / 2 - pad)
    top = max(0.0, plan.cy - box_h / 2 - pad)
    right = min(float(source.width), plan.cx + box_w / 2 + pad)
    bottom = min(float(source.height), plan.cy + box_h / 2 + pad)
    size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    image = source.resize(size, Image.Resampling.BICUBIC, box=(left, top, right, bottom), reducing_gap=3.0)
    # Where the crop centre lands in the scaled box (not quite the box centre
    # where the padding was clipped at the source's edge).
    centre_x = (plan.cx - left) * image.width / (right - left)
    centre_y = (plan.cy - top) * image.height / (bottom - top)
    if plan.angle:
        # Bilinear, not bicubic: at 1:1 scale the difference is a faint blur,
        # while bicubic turns take ~3x as long and dominated the run time.
        image = image.rotate(plan.angle, resample=Image.Resampling.BILINEAR, center=(centre_x, centre_y))
    x0 = min(max(0, round(centre_x - plan.out_w / 2)), max(0, image.width - plan.out_w))
    y0 = min(max(0, round(centre_y - plan.out_h / 2)), max(0, image.height - plan.out_h))
    image = image.crop((x0, y0, x0 + plan.out_w, y0 + plan.out_h))
    if image.size != (plan.out_w, plan.out_h):  # rounding left us a pixel short
        image = image.resize((plan.out_w, plan.out_h), Image.Resampling.BICUBIC)
    if plan.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image
