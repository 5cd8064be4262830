"""Real images with planted near-duplicate copies, for ``benchmarks/bench_dupes.py``.

A *planted set* is a folder of distinct real images (the originals) and, next to a seeded
random third of them, one edited copy each, with the ground truth in ``truth.json``:

* originals: Debian's wallpapers (:func:`tools.samples.photo_sources`, downsized to at most
  :data:`PHOTO_MAX_SIDE` px, one per family: ``Elephants_3840x2160.jpg`` is the same picture
  as ``Elephants.jpg``) and clip art from ``openclipart-png`` with its category folder as the
  label (the grab-bag folders :data:`tools.samples.CLIPART_EXCLUDED_DIRS` and ``unsorted``
  are used too, the folder as their label). The clip-art trees that are sets of
  near-identical images (icon themes, ``shapes``, playing cards, LEDs, ...;
  :data:`tools.samples.CLIPART_EXCLUDED_TREES`) are left out: their members differ by one
  glyph or a colour, which is a near duplicate by any eye. Originals that are
  copies of one another already (byte-identical, or equal 32 x 32 thumbnails: the package
  ships some images twice, at two sizes) are dropped, so the only duplicates in a set are
  the planted ones;
* the edits (:data:`EDITS`): JPEG re-encode at quality 50; resize to 40 %; crop 8 % off two
  adjacent sides; a text watermark (Pillow's default font, scaled to the image); PNG <-> JPEG
  conversion; brightness +15 %; rotation by 3 degrees; a horizontal flip. Each chosen original
  gets one edit, round-robin over a shuffled order, so each edit is planted equally often;
* a copy is written next to its original as ``<stem>__<edit>.<ext>``.

:func:`make_planted_set` builds a set once and caches it (``truth.json`` is written last and
holds the parameters: a second call with the same ones returns at once).
:func:`split_pool` divides the usable images between the quality benchmark and the threshold
calibration so that the two share no clip art.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from tools import samples

__all__ = ["EDITS", "Original", "Planted", "PlantedSet", "usable_pool", "split_pool", "make_planted_set",
           "apply_edit", "flatten"]

#: The planted edits, in report order (the flip last: whether it counts is a user choice).
EDITS: tuple[str, ...] = ("jpeg50", "resize40", "crop8", "watermark", "convert", "brighter15", "rotate3", "flip")
#: Wallpapers are downsized to this longer side (the originals of the set).
PHOTO_MAX_SIDE = 1280
#: Bump when the recipe changes, so cached sets are rebuilt.
RECIPE_VERSION = 2
#: Clip-art trees used although :data:`tools.samples.CLIPART_EXCLUDED_TREES` lists them:
#: unrelated drawings without a category (excluded there for want of a label).
_KEPT_TREES = ("unsorted",)
#: Wallpaper name parts that mark variants of one picture (resolution, dark/light, colour).
_FAMILY_SUFFIX = re.compile(r"(_\d+x\d+|-[dl]|-(dark|light)|-(cold|dark|radioactive|warm)-no-logo)$", re.I)


@dataclass(frozen=True)
class Original:
    """A source image: ``path`` (outside the set), ``label`` (category folder or ``photo``)."""

    path: Path
    label: str
    kind: str  # "photo" or "clipart"


@dataclass(frozen=True)
class Planted:
    """One planted pair, paths relative to the set's image folder."""

    original: str
    copy: str
    edit: str


@dataclass
class PlantedSet:
    """A built set: ``root`` (the image folder), ``labels`` (relative path -> label, originals
    and copies), ``kinds`` (relative path -> photo/clipart), ``pairs`` and ``edited`` (originals
    that got a copy)."""

    root: Path
    labels: dict[str, str]
    kinds: dict[str, str]
    pairs: list[Planted]

    @property
    def originals(self) -> list[str]:
        copies = {p.copy for p in self.pairs}
        return sorted(p for p in self.labels if p not in copies)

    @property
    def edited(self) -> set[str]:
        return {p.original for p in self.pairs}


# --------------------------------------------------------------------------- the pool
def _photo_family(path: Path) -> str:
    return _FAMILY_SUFFIX.sub("", path.stem).lower()


def _photo_pool() -> list[Original]:
    """One wallpaper per family (the largest file of each), sorted by path."""
    best: dict[str, Path] = {}
    for path in samples.photo_sources():
        fam = _photo_family(path)
        if fam not in best or path.stat().st_size > best[fam].stat().st_size:
            best[fam] = path
    return [Original(p, "photo", "photo") for p in sorted(best.values())]


def _clipart_pool() -> list[Original]:
    root = samples.clipart_root()
    out = []
    for path in samples.clipart_files():
        rel = path.parent.relative_to(root).as_posix()
        label = samples.clipart_label(rel)
        if label is None:
            excluded = [t for t in samples.CLIPART_EXCLUDED_TREES if rel == t or rel.startswith(t + "/")]
            if excluded and not any(rel == t or rel.startswith(t + "/") for t in _KEPT_TREES):
                continue
            label = rel  # grab-bag folders: the folder is the category
        out.append(Original(path, label, "clipart"))
    return out


def flatten(image: Image.Image) -> Image.Image:
    """RGB with any transparency composited onto white (as lookalike decodes it)."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _thumb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.draft("RGB", (64, 64))
        return np.asarray(flatten(image).resize((32, 32), Image.Resampling.BOX), dtype=np.float32).ravel()


def _drop_copies(pool: list[Original], max_mad: float = 3.0) -> list[Original]:
    """``pool`` without images that are copies of an earlier one: same bytes, or 32 x 32
    thumbnails whose mean absolute difference is below ``max_mad`` (of 255)."""
    seen: set[str] = set()
    unique = []
    for orig in pool:
        digest = hashlib.sha256(orig.path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append(orig)
    thumbs = np.stack([_thumb(o.path) for o in unique])
    # |a - b| averaged. Prefilter by squared L2 distance: sum d^2 <= 255 sum |d|, so a pair
    # within max_mad is within 255 * max_mad * D of it; survivors are checked exactly.
    thumbs = thumbs.astype(np.float64)
    sq = (thumbs ** 2).sum(axis=1)
    keep = np.ones(len(unique), dtype=bool)
    for i in range(len(unique)):
        if not keep[i]:
            continue
        d2 = sq[i] + sq[i + 1:] - 2 * thumbs[i + 1:] @ thumbs[i]
        near = np.flatnonzero(d2 <= 255 * max_mad * thumbs.shape[1] + 1.0) + i + 1
        for j in near:
            if keep[j] and np.abs(thumbs[i] - thumbs[j]).mean() < max_mad:
                keep[j] = False
    return [o for o, k in zip(unique, keep) if k]


def usable_pool() -> list[Original]:
    """Every usable original (wallpapers first, then clip art), no two copies of each other."""
    return _drop_copies(_photo_pool() + _clipart_pool())


def split_pool(pool: Sequence[Original], n_quality: int, seed: int = 0) -> tuple[list[Original], list[Original]]:
    """``(quality, calibration)``: every wallpaper in both (there are too few to split; the
    copies planted in them differ), the clip art shuffled by ``seed`` and divided, the first
    ``n_quality - wallpapers`` to the quality set and the rest to calibration."""
    photos = [o for o in pool if o.kind == "photo"]
    clipart = [o for o in pool if o.kind == "clipart"]
    random.Random(f"split/{seed}").shuffle(clipart)
    cut = max(0, n_quality - len(photos))
    return photos + clipart[:cut], photos + clipart[cut:]


# --------------------------------------------------------------------------- the edits
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _watermark(image: Image.Image, rng: random.Random) -> Image.Image:
    base = image.convert("RGBA")
    w, h = base.size
    text = rng.choice(["© lookalike 2026", "SAMPLE", "stock photo", "© J. Doe"])
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = _font(max(10, int(min(w, h) * 0.08)))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = max(0, w - (right - left) - int(0.04 * w))
    y = max(0, h - (bottom - top) - int(0.06 * h))
    draw.text((x, y), text, font=font, fill=(255, 255, 255, 170), stroke_width=max(1, font.size // 12)
              if hasattr(font, "size") else 1, stroke_fill=(0, 0, 0, 170))
    out = Image.alpha_composite(base, layer)
    return out if image.mode == "RGBA" else out.convert("RGB")


def apply_edit(image: Image.Image, edit: str, fmt: str, rng: random.Random) -> tuple[Image.Image, str]:
    """The edited image and its format (``"JPEG"`` or ``"PNG"``), from the decoded original
    (RGB or RGBA) and its format."""
    w, h = image.size
    if edit == "jpeg50":
        return flatten(image), "JPEG"
    if edit == "resize40":
        return image.resize((max(1, round(w * 0.4)), max(1, round(h * 0.4))), Image.Resampling.LANCZOS), fmt
    if edit == "crop8":
        dx, dy = round(w * 0.08), round(h * 0.08)
        left, top = rng.choice([(True, True), (True, False), (False, True), (False, False)])
        box = (dx if left else 0, dy if top else 0, w - (0 if left else dx), h - (0 if top else dy))
        return image.crop(box), fmt
    if edit == "watermark":
        return _watermark(image, rng), fmt
    if edit == "convert":
        return (image, "PNG") if fmt == "JPEG" else (flatten(image), "JPEG")
    if edit == "brighter15":
        rgb = ImageEnhance.Brightness(image.convert("RGB")).enhance(1.15)
        if image.mode == "RGBA":
            rgb.putalpha(image.getchannel("A"))
        return rgb, fmt
    if edit == "rotate3":
        fill = (255, 255, 255, 0) if image.mode == "RGBA" else (255, 255, 255)
        return image.rotate(3, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill), fmt
    if edit == "flip":
        return ImageOps.mirror(image), fmt
    raise ValueError(f"unknown edit {edit!r}; use one of {', '.join(EDITS)}")


def _save(image: Image.Image, path: Path, fmt: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "JPEG":
        quality = 50 if "__jpeg50" in path.name else 90
        flatten(image).save(tmp, "JPEG", quality=quality)
    else:
        image.save(tmp, "PNG")
    os.replace(tmp, path)


def _load(orig: Original) -> tuple[Image.Image, str]:
    with Image.open(orig.path) as src:
        fmt = "JPEG" if src.format in ("JPEG", "WEBP") else "PNG"
        if orig.kind == "photo":
            src.draft("RGB", (PHOTO_MAX_SIDE, PHOTO_MAX_SIDE))
        image = src.convert("RGBA") if src.mode in ("RGBA", "LA", "PA", "P") else src.convert("RGB")
    if orig.kind == "photo" and max(image.size) > PHOTO_MAX_SIDE:
        image.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE), Image.Resampling.LANCZOS)
    return image, fmt


def _rel_name(orig: Original) -> str:
    if orig.kind == "photo":
        return f"photos/{orig.path.stem}" + (".jpg" if orig.path.suffix.lower() in (".jpg", ".jpeg", ".webp")
                                              else ".png")
    return f"clipart/{orig.path.relative_to(samples.clipart_root()).as_posix()}"


# --------------------------------------------------------------------------- the set
def make_planted_set(dest: Path, originals: Sequence[Original], seed: int, fraction: float = 1 / 3) -> PlantedSet:
    """Build (once) the planted set of ``originals`` in ``dest``; see the module docstring."""
    dest = Path(dest)
    truth_file = dest / "truth.json"
    params = {"recipe": RECIPE_VERSION, "seed": seed, "fraction": fraction,
              "originals": [str(o.path) for o in originals]}
    try:
        data = json.loads(truth_file.read_text())
    except (OSError, ValueError):
        data = None
    if data is None or data.get("params") != params:
        data = _build(dest, originals, seed, fraction, params)
    root = dest / "images"
    return PlantedSet(root, data["labels"], data["kinds"], [Planted(**p) for p in data["pairs"]])


def _build(dest: Path, originals: Sequence[Original], seed: int, fraction: float,
           params: dict[str, object]) -> dict[str, object]:
    root = dest / "images"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rng = random.Random(f"plant/{seed}")
    chosen = set(rng.sample(range(len(originals)), round(len(originals) * fraction)))
    order = list(EDITS)
    rng.shuffle(order)
    labels: dict[str, str] = {}
    kinds: dict[str, str] = {}
    pairs: list[dict[str, str]] = []
    for i, orig in enumerate(originals):
        rel = _rel_name(orig)
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        image, fmt = _load(orig)
        if orig.kind == "photo":
            _save(image, target, "JPEG" if rel.endswith(".jpg") else "PNG")
        else:
            shutil.copyfile(orig.path, target)
        labels[rel], kinds[rel] = orig.label, orig.kind
        if i not in chosen:
            continue
        edit = order[len(pairs) % len(order)]
        edited, out_fmt = apply_edit(image, edit, fmt, random.Random(f"edit/{seed}/{rel}"))
        copy = f"{rel.rsplit('.', 1)[0]}__{edit}.{'jpg' if out_fmt == 'JPEG' else 'png'}"
        _save(edited, root / copy, out_fmt)
        labels[copy], kinds[copy] = orig.label, orig.kind
        pairs.append({"original": rel, "copy": copy, "edit": edit})
    data = {"params": params, "labels": labels, "kinds": kinds, "pairs": pairs}
    tmp = dest / "truth.json.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, dest / "truth.json")
    return data
