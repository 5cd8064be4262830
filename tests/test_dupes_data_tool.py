"""Tests for tools/dupes_data.py: the planted edits of the duplicates benchmark.

All on made-up images: what each edit does, which originals count as copies of one
another, and how a planted set is laid out and cached. No sample package is needed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools import dupes_data
from tools.dupes_data import EDITS, Original, apply_edit, make_planted_set


def _picture(w: int = 200, h: int = 120, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A smooth random picture (a blurred-looking gradient mix), ``w`` x ``h``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    channels = [np.sin(x * rng.uniform(2, 9) + y * rng.uniform(2, 9) + rng.uniform(0, 6)) for _ in range(3)]
    arr = ((np.stack(channels, axis=2) + 1) * 127.5).astype(np.uint8)
    image = Image.fromarray(arr, "RGB")
    if mode == "RGBA":
        image.putalpha(Image.fromarray(np.where(x < 0.3, 0, 255).astype(np.uint8), "L"))
    return image


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_each_edit_does_what_it_says(fmt: str) -> None:
    image = _picture()
    rng = random.Random(0)
    out = {edit: apply_edit(image, edit, fmt, rng) for edit in EDITS}
    assert out["jpeg50"][1] == "JPEG"
    assert out["resize40"][0].size == (80, 48)
    assert out["crop8"][0].size == (200 - 16, 120 - 10)
    assert out["convert"][1] == ("PNG" if fmt == "JPEG" else "JPEG")
    assert out["rotate3"][0].size[0] > 200 and out["rotate3"][0].size[1] > 120  # expanded, not cropped
    assert np.array_equal(np.asarray(out["flip"][0]), np.asarray(image)[:, ::-1])
    ratio = np.asarray(out["brighter15"][0], dtype=float).mean() / np.asarray(image, dtype=float).mean()
    assert 1.08 < ratio < 1.16  # +15 %, less what saturates at 255
    marked = np.abs(np.asarray(out["watermark"][0].convert("RGB"), dtype=int) - np.asarray(image, dtype=int))
    h = marked.shape[0]
    assert marked[h // 2:].sum() > 0 and marked[: h // 4].sum() == 0  # bottom only
    for edit in ("resize40", "crop8", "watermark", "brighter15", "rotate3", "flip"):
        assert out[edit][1] == fmt, edit  # only jpeg50 and convert change the format


def test_edits_keep_transparency_except_in_jpeg() -> None:
    image = _picture(mode="RGBA")
    rng = random.Random(1)
    for edit in ("resize40", "crop8", "watermark", "brighter15", "rotate3", "flip"):
        assert apply_edit(image, edit, "PNG", rng)[0].mode == "RGBA", edit
    flat, fmt = apply_edit(image, "convert", "PNG", rng)
    assert fmt == "JPEG" and flat.mode == "RGB"
    assert np.asarray(flat)[:, :10].min() == 255  # transparent parts on white, as lookalike decodes them


def test_unknown_edit_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown edit"):
        apply_edit(_picture(), "sepia", "PNG", random.Random(0))


def test_copies_among_originals_are_dropped(tmp_path: Path) -> None:
    base = _picture(seed=1)
    paths = {}
    for name, image in {
        "a": base,
        "a_small": base.resize((100, 60), Image.Resampling.LANCZOS),   # the same picture, smaller
        "a_spot": base.copy(),                                          # a few pixels changed a lot
        "b": _picture(seed=2),
    }.items():
        if name == "a_spot":
            image.paste((0, 0, 0), (0, 0, 20, 20))
        paths[name] = tmp_path / f"{name}.png"
        image.save(paths[name])
    (tmp_path / "a_again.png").write_bytes(paths["a"].read_bytes())  # byte-identical
    pool = [Original(tmp_path / f"{n}.png", "x", "clipart") for n in ("a", "a_small", "a_spot", "a_again", "b")]
    kept = [o.path.stem for o in dupes_data._drop_copies(pool)]
    # a_spot differs from a in one black 20 x 20 corner: a mean difference of ~2.3/255 on the
    # 32 x 32 thumbnails (under the 3 allowed) but concentrated, so that a squared-distance
    # prefilter sized for spread-out noise would let it through.
    assert kept == ["a", "b"]


def _photo_pool(tmp_path: Path, n: int) -> list[Original]:
    src = tmp_path / "src"
    src.mkdir()
    pool = []
    for i in range(n):
        path = src / f"p{i:02d}.png"
        _picture(64, 48, seed=10 + i).save(path)
        pool.append(Original(path, "photo", "photo"))
    return pool


def test_a_planted_set_holds_a_third_edited_next_to_their_originals(tmp_path: Path) -> None:
    pool = _photo_pool(tmp_path, 24)
    ps = make_planted_set(tmp_path / "set", pool, seed=3)
    assert len(ps.originals) == 24 and len(ps.pairs) == 8
    assert sorted(p.edit for p in ps.pairs) == sorted(EDITS)  # round-robin: each edit once
    for p in ps.pairs:
        assert (ps.root / p.original).is_file() and (ps.root / p.copy).is_file()
        assert Path(p.copy).parent == Path(p.original).parent
        assert p.copy.startswith(p.original.rsplit(".", 1)[0] + "__" + p.edit)
    truth = json.loads((tmp_path / "set" / "truth.json").read_text())
    assert len(truth["pairs"]) == 8 and set(truth["labels"]) == set(ps.labels)
    files = sorted(f.relative_to(ps.root).as_posix() for f in ps.root.rglob("*") if f.is_file())
    assert files == sorted(ps.labels)


def test_a_planted_set_is_cached_and_depends_on_its_seed(tmp_path: Path) -> None:
    pool = _photo_pool(tmp_path, 12)
    first = make_planted_set(tmp_path / "set", pool, seed=0)
    stamp = {p: (first.root / p).stat().st_mtime_ns for p in first.labels}
    again = make_planted_set(tmp_path / "set", pool, seed=0)
    assert again.pairs == first.pairs
    assert {p: (again.root / p).stat().st_mtime_ns for p in again.labels} == stamp  # nothing rewritten
    other = make_planted_set(tmp_path / "set", pool, seed=1)
    assert {p.original for p in other.pairs} != {p.original for p in first.pairs}
    assert not any((other.root / p.copy).exists() for p in first.pairs if p not in other.pairs)
