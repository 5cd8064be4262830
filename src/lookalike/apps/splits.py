"""A fixed, seeded split of a labelled set: train, validation, test, and labels held out entirely.

Everything is decided by hashing the seed with an image's content hash (or a label's name),
never by file order or path, so one seed gives the same split on any machine, after files
are renamed or moved, and whatever order they were listed in. Identical files (same bytes)
always land in the same part, so a copy cannot leak a test image into training. (One
exception, harmless: a seen label's copy of a held-out label's image goes to ``test``, held
out either way, so that ``unseen`` only holds the held-out labels.)
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

from ..errors import InvalidArgument
from .labelled import LabelledSet

__all__ = ["SplitSettings", "Split", "split_labelled"]

#: Parts in the order of precedence: when copies of one file get different parts, the
#: furthest from training wins, so a test image is never trained on through its copy.
_PARTS = ("train", "val", "test", "unseen")


@dataclass(frozen=True)
class SplitSettings:
    """How to split: the seed, and the fractions of each seen label's images for test and
    validation, and of the labels held out entirely (their images are never trained on)."""

    seed: int = 0
    test: float = 0.2
    val: float = 0.1
    held_out_labels: float = 0.2

    def __post_init__(self) -> None:
        for name in ("test", "val", "held_out_labels"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise InvalidArgument(f"split fraction {name}={value} is outside [0, 1); use e.g. 0.2.")
        if self.test + self.val >= 1.0:
            raise InvalidArgument(f"test ({self.test}) + val ({self.val}) leave nothing to train on; "
                                  "keep their sum below 1 (e.g. 0.2 and 0.1).")


@dataclass(frozen=True)
class Split:
    """Indices into a :class:`LabelledSet`'s images, each image in exactly one part."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    unseen: tuple[int, ...]
    held_out_labels: tuple[str, ...]
    settings: SplitSettings

    @property
    def held_out(self) -> tuple[int, ...]:
        """Test + unseen: every image a head fitted with this split never trains or validates on."""
        return tuple(sorted(self.test + self.unseen))

    @property
    def fitted(self) -> tuple[int, ...]:
        """Train + val: every image a head sees while fitting (train) or early-stopping (val)."""
        return tuple(sorted(self.train + self.val))

    def counts(self) -> dict[str, int]:
        """Images per part."""
        return {part: len(getattr(self, part)) for part in _PARTS}


def _key(seed: int, text: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=8).digest()


def held_out_label_names(labels: list[str] | tuple[str, ...], settings: SplitSettings) -> tuple[str, ...]:
    """The labels held out entirely: a seeded-hash-chosen fraction, at least one when there are
    four labels or more (and the fraction is not zero), none with fewer; two always stay seen."""
    unique = sorted(set(labels))
    if len(unique) < 4 or settings.held_out_labels <= 0:
        return ()
    n = min(max(1, round(settings.held_out_labels * len(unique))), len(unique) - 2)
    chosen = sorted(unique, key=lambda name: _key(settings.seed, "label:" + name))[:n]
    return tuple(sorted(chosen))


def _label_parts(hashes: list[str], settings: SplitSettings) -> dict[str, str]:
    """Part of each distinct file of one seen label: test first, then val, the rest train.
    With 3 or more files each of train and test gets at least one; with 2, one each."""
    ordered = sorted(set(hashes), key=lambda h: _key(settings.seed, h))
    n = len(ordered)
    n_test = min(max(1 if n >= 2 and settings.test > 0 else 0, round(settings.test * n)), n - 1)
    n_val = max(0, min(round(settings.val * n), n - n_test - 1))
    parts = ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
    return dict(zip(ordered, parts))


def split_labelled(data: LabelledSet, settings: SplitSettings = SplitSettings()) -> Split:
    """Split ``data`` deterministically from ``settings.seed`` and each file's content hash.

    Within every seen label, files are ordered by ``hash(seed, content hash)`` and cut into
    test, validation and training parts (stratified: each label is split on its own). The
    held-out labels (:func:`held_out_label_names`) go to ``unseen`` whole. Copies of one file
    share one part, the one furthest from training among those their labels gave them.
    """
    if not data.images:
        raise InvalidArgument(f"'{data.source}' holds no labelled images to split.")
    held = held_out_label_names(data.labels, settings)
    by_label: dict[str, list[str]] = defaultdict(list)
    for im in data.images:
        by_label[im.label].append(im.hash)
    rank = {part: i for i, part in enumerate(_PARTS)}
    part_of: dict[str, str] = {}
    for label, hashes in by_label.items():
        label_parts = {h: "unseen" for h in hashes} if label in held else _label_parts(hashes, settings)
        for h, part in label_parts.items():
            if rank[part] > rank.get(part_of.get(h, "train"), 0):
                part_of[h] = part
            part_of.setdefault(h, part)
    out: dict[str, list[int]] = {part: [] for part in _PARTS}
    for i, im in enumerate(data.images):
        part = part_of[im.hash]
        if part == "unseen" and im.label not in held:
            part = "test"  # a copy of a held-out label's image: kept out of training, under its own label
        elif im.label in held:
            part = "unseen"
        out[part].append(i)
    return Split(train=tuple(out["train"]), val=tuple(out["val"]), test=tuple(out["test"]),
                 unseen=tuple(out["unseen"]), held_out_labels=held, settings=settings)
