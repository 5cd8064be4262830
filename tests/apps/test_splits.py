"""Seeded splits: deterministic from content, independent of file order and paths, leak-free."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from lookalike.apps.labelled import LabelledImage, LabelledSet, load_labelled
from lookalike.apps.splits import Split, SplitSettings, split_labelled
from lookalike.errors import InvalidArgument
from support import make_image


def _synthetic(n_labels: int = 6, per_label: int = 10, seed: int = 0) -> LabelledSet:
    images = [LabelledImage(Path(f"/x/{label}/{i}.png"), f"label{label}", f"{label:04d}{i:028d}")
              for label in range(n_labels) for i in range(per_label)]
    return LabelledSet(tuple(images), "synthetic")


def _by_hash(data: LabelledSet, split: Split) -> dict[str, frozenset[str]]:
    return {part: frozenset(data.images[i].hash for i in getattr(split, part))
            for part in ("train", "val", "test", "unseen")}


def test_every_image_in_exactly_one_part() -> None:
    data = _synthetic()
    split = split_labelled(data)
    parts = [split.train, split.val, split.test, split.unseen]
    flat = [i for part in parts for i in part]
    assert sorted(flat) == list(range(len(data)))
    assert sorted(split.held_out) == sorted(split.test + split.unseen)
    assert len(split.held_out_labels) == 1  # 20% of 6 labels, rounded
    assert {data.images[i].label for i in split.unseen} == set(split.held_out_labels)
    for label in set(data.labels) - set(split.held_out_labels):  # stratified: every seen label in each part
        for part in (split.train, split.val, split.test):
            assert any(data.images[i].label == label for i in part)


def test_same_seed_same_split_whatever_the_order_and_paths() -> None:
    data = _synthetic()
    shuffled = list(data.images)
    random.Random(3).shuffle(shuffled)
    moved = LabelledSet(tuple(LabelledImage(Path(f"/elsewhere/{k}.jpg"), im.label, im.hash)
                              for k, im in enumerate(shuffled)), "moved")
    assert _by_hash(data, split_labelled(data)) == _by_hash(moved, split_labelled(moved))
    other = split_labelled(data, SplitSettings(seed=1))
    assert _by_hash(data, other) != _by_hash(data, split_labelled(data))


def test_identical_files_share_a_part() -> None:
    base = list(_synthetic(n_labels=4, per_label=8).images)
    copies = [LabelledImage(Path(f"/copy/{i}.png"), im.label if i % 2 else "label0", im.hash)
              for i, im in enumerate(base[::3])]
    data = LabelledSet(tuple(base + copies), "with copies")
    for seed in range(5):
        split = split_labelled(data, SplitSettings(seed=seed))
        parts = _by_hash(data, split)
        # Copies never straddle train, val and held-out; a seen label's copy of a held-out
        # label's image is in test (held out too, under its own label).
        held = parts["test"] | parts["unseen"]
        assert not (parts["train"] & parts["val"]) and not (parts["train"] & held) and not (parts["val"] & held)
        for i, im in enumerate(data.images):
            same = [j for j, other in enumerate(data.images) if other.hash == im.hash]
            assert len({("held" if j in split.held_out else "train" if j in split.train else "val")
                        for j in same}) == 1


def test_small_labels_keep_train_and_test() -> None:
    data = _synthetic(n_labels=3, per_label=3)
    split = split_labelled(data)
    assert split.held_out_labels == ()  # fewer than 4 labels: none held out
    for label in data.labels:
        assert sum(data.images[i].label == label for i in split.train) >= 1
        assert sum(data.images[i].label == label for i in split.test) >= 1


def test_settings_are_checked() -> None:
    with pytest.raises(InvalidArgument):
        SplitSettings(test=0.7, val=0.4)
    with pytest.raises(InvalidArgument):
        SplitSettings(held_out_labels=1.5)


def test_split_of_real_files_survives_renaming(tmp_path: Path) -> None:
    for label in range(4):
        for i in range(4):
            make_image(tmp_path / "a" / f"l{label}" / f"{i}.png", seed=label * 10 + i, size=(8, 8))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for f in (tmp_path / "b").rglob("*.png"):
        f.rename(f.with_name("renamed-" + f.name))
    one, two = load_labelled(tmp_path / "a"), load_labelled(tmp_path / "b")
    assert _by_hash(one, split_labelled(one)) == _by_hash(two, split_labelled(two))
