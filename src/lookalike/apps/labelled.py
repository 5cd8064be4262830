"""Labelled image sets: a folder whose sub-folders name the labels, or a CSV of path and label.

What ``evaluate``, ``train`` and ``distill`` read. Every image carries its content hash
(blake2b-128, as collections store it), so splits and the embedding cache follow the bytes,
not the path: a renamed or copied file keeps its split and its cached vectors.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import InvalidArgument
from ..fsutil import user_path
from ..images.discover import discover
from ..progress import ProgressCallback, ProgressEvent
from ..store.plan import file_hash

__all__ = ["LabelledImage", "LabelledSet", "load_labelled"]


@dataclass(frozen=True)
class LabelledImage:
    """One image file, its label and the blake2b-128 hex digest of its bytes."""

    path: Path
    label: str
    hash: str


@dataclass(frozen=True)
class LabelledSet:
    """Labelled images in a stable order (sorted by label, then path), and where they came from."""

    images: tuple[LabelledImage, ...]
    source: str

    @property
    def labels(self) -> tuple[str, ...]:
        """The distinct labels, sorted."""
        return tuple(sorted({im.label for im in self.images}))

    @property
    def paths(self) -> list[Path]:
        """Every image's path, in :attr:`images` order."""
        return [im.path for im in self.images]

    @property
    def label_of_each(self) -> list[str]:
        """Every image's label, in :attr:`images` order."""
        return [im.label for im in self.images]

    @property
    def hashes(self) -> list[str]:
        """Every image's content hash, in :attr:`images` order."""
        return [im.hash for im in self.images]

    def __len__(self) -> int:
        return len(self.images)


def load_labelled(source: str | os.PathLike[str], *, depth: int = 1, min_per_label: int = 2,
                  progress: ProgressCallback | None = None) -> LabelledSet:
    """Read a labelled image set and hash every file.

    Args:
        source: a folder, where an image's label is the name of the sub-folder ``depth``
            levels below it (``depth=1``: ``source/LABEL/.../x.jpg``; images less deep are
            ignored), or a ``.csv`` file with columns ``path,label`` (a header row is
            optional; relative paths are resolved against the CSV's folder).
        depth: which folder level names the label (folders only).
        min_per_label: the fewest images a label may have (retrieval needs 2 per label).
        progress: receives ``"scan"`` events while files are listed and hashed.

    Raises:
        InvalidArgument: the source does not exist; no images; only one label; a label with
            fewer than ``min_per_label`` images; CSV rows whose files do not exist.
    """
    if depth < 1:
        raise InvalidArgument(f"--depth must be 1 or more (got {depth}): 1 means the label is the "
                              "name of each image's folder right under the labelled folder.")
    root = Path(user_path(source))
    if root.is_file() and root.suffix.lower() == ".csv":
        pairs = _csv_pairs(root)
    elif root.is_dir():
        pairs = _folder_pairs(root, depth)
    else:
        raise InvalidArgument(f"labelled images '{root}' is neither a folder nor a .csv file. Give a folder "
                              "whose sub-folders name the labels, or a CSV with columns path,label.")
    images = _hash_all(pairs, progress)
    _check(images, root, depth, min_per_label)
    return LabelledSet(tuple(sorted(images, key=lambda im: (im.label, str(im.path)))), str(root))


def _folder_pairs(root: Path, depth: int) -> list[tuple[Path, str]]:
    pairs = []
    for found in discover([root]):
        parts = Path(found.path).relative_to(root).parts
        if len(parts) > depth:  # the last part is the file name
            pairs.append((Path(found.path), parts[depth - 1]))
    return pairs


def _csv_pairs(path: Path) -> list[tuple[Path, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidArgument(f"cannot read the labelled CSV '{path}': {exc}. Save it as UTF-8 text "
                              "with columns path,label.") from exc
    path_col, label_col = 0, 1
    if rows and {"path", "label"} <= {c.strip().lower() for c in rows[0]}:
        header = [c.strip().lower() for c in rows.pop(0)]
        path_col, label_col = header.index("path"), header.index("label")
    pairs, missing = [], []
    for line, row in enumerate(rows, start=2):
        if len(row) <= max(path_col, label_col) or not row[label_col].strip():
            raise InvalidArgument(f"{path}, row {line}: expected a path and a label, got {row!r}. "
                                  "Every row needs both columns (path,label).")
        image = Path(os.path.expanduser(row[path_col].strip()))
        image = image if image.is_absolute() else path.parent / image
        (pairs if image.is_file() else missing).append((image, row[label_col].strip()))
    if missing:
        first = ", ".join(str(p) for p, _ in missing[:3])
        raise InvalidArgument(f"{len(missing)} of the {len(rows)} images listed in '{path}' do not exist "
                              f"(first: {first}). Relative paths are read from the CSV's folder; fix or "
                              "remove those rows.")
    return pairs


def _hash_all(pairs: Iterable[tuple[Path, str]], progress: ProgressCallback | None) -> list[LabelledImage]:
    images = []
    for i, (path, label) in enumerate(pairs, start=1):
        try:
            digest = file_hash(str(path))
        except OSError as exc:
            raise InvalidArgument(f"cannot read the labelled image '{path}': {exc.strerror or exc}. "
                                  "Check its permissions or remove it.") from exc
        images.append(LabelledImage(path, label, digest))
        if progress is not None:
            progress(ProgressEvent("scan", done=i))
    return images


def _check(images: list[LabelledImage], root: Path, depth: int, min_per_label: int) -> None:
    if not images:
        where = "in its rows" if root.suffix.lower() == ".csv" else f"in sub-folders {depth} level(s) down"
        raise InvalidArgument(f"no images found in '{root}' {where}. Put each label's images in a "
                              "sub-folder named after the label (or check --depth).")
    counts = Counter(im.label for im in images)
    if len(counts) < 2:
        raise InvalidArgument(f"'{root}' has one label only ({next(iter(counts))!r}); evaluating or "
                              "training needs at least two. Add a sub-folder per label, or check --depth.")
    small = sorted(label for label, n in counts.items() if n < min_per_label)
    if small:
        label = small[0]
        example = next(im.path for im in images if im.label == label)
        others = f" (and {len(small) - 1} more label(s))" if len(small) > 1 else ""
        raise InvalidArgument(f"label {label!r} in '{root}' has {counts[label]} image(s) ({example}){others}; "
                              f"each label needs at least {min_per_label}. Add images to it or remove it.")
