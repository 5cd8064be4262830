"""``lookalike align``: fit the collection model's text side to the user's captions (LiT-style).

From (image, caption) pairs, a map from the text encoder's own space
(:meth:`~lookalike.models.base.EmbeddingModel.text_features`) to the collection's image
space, the image side left as it is. The pairs come from a CSV (``path,caption``) or from
the file names (``red_apple-01.png`` -> "red apple"); the targets are the vectors the
collection already stores, so no image is decoded.

Pairs are split by content hash (seeded): a held-out part never fitted on, and of the rest
a validation part that chooses the ridge strength and stops the contrastive training. The
ridge map shrinks towards the model's own text tower, so words the captions never use keep
what the model knew of them. Both
heads (:mod:`.align_fit`) and the model's own text tower are scored on the held-out pairs
(caption->image mAP among the held-out images); the better head is saved, as a ``text``
head: ``lookalike reproject --head`` then gives a collection whose text search uses it.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import InvalidArgument, UnsupportedModality
from ..fsutil import user_path
from ..progress import ProgressCallback, ProgressEvent
from .align_fit import (CaptionScores, ContrastiveSettings, PairSet, caption_retrieval, fit_contrastive, fit_ridge,
                        tower_prior)
from .train_head import check_head_out, check_no_head

if TYPE_CHECKING:
    from ..store.collection import Collection

__all__ = ["AlignReport", "align_text", "filename_caption", "MIN_PAIRS"]

#: Fewer pairs than this cannot be split into fitting, validation and held-out parts usefully.
MIN_PAIRS = 10
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^\W\d_]+")


def filename_caption(name: str) -> str:
    """A weak caption from a file name: ``red_apple-01.png`` -> "red apple", ``RedApple2.jpg``
    -> "red apple". The extension goes; words split on ``_ - .``, spaces and camelCase;
    tokens of digits only are dropped. Empty when nothing is left."""
    stem = Path(name.rsplit("#", 1)[-1].rsplit("/", 1)[-1]).stem
    words = []
    for token in re.split(r"[\s_\-.]+", stem):
        words += [w.lower() for w in _WORDS.findall(token) if not w.isdigit()]
    return " ".join(words)


@dataclass(frozen=True)
class AlignReport:
    """What ``align_text`` fitted and how each text side retrieves the held-out images.

    ``ridge``, ``contrastive`` and ``model`` (the collection model's own text tower; None
    when it has none usable) are scored on the same held-out pairs; ``kept`` names the head
    saved to ``out``.
    """

    out: Path
    base: str
    base_fingerprint: str
    captions: str
    pairs: int
    counts: dict[str, int]
    ridge_strength: float
    ridge_tried: list[dict[str, float]]
    contrastive_epoch: int
    ridge: CaptionScores
    contrastive: CaptionScores
    model: CaptionScores | None
    kept: str
    seconds: float
    skipped: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (stored in the head's ``head.json`` as its report)."""
        return {"out": str(self.out), "base": self.base, "base_fingerprint": self.base_fingerprint,
                "captions": self.captions, "pairs": self.pairs, "counts": dict(self.counts), "skipped": self.skipped,
                "ridge_strength": self.ridge_strength, "ridge_tried": self.ridge_tried,
                "contrastive_epoch": self.contrastive_epoch, "ridge": self.ridge.to_dict(),
                "contrastive": self.contrastive.to_dict(), "model": self.model.to_dict() if self.model else None,
                "kept": self.kept, "seconds": self.seconds, "settings": self.settings}


@dataclass(frozen=True)
class _Pairs:
    ids: list[int]
    hashes: list[str]
    captions: list[str]
    skipped: int


def _csv_rows(path: Path) -> list[tuple[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r and any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidArgument(f"cannot read the captions CSV {path}: {exc}. Give a UTF-8 CSV with columns "
                              "path,caption.") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "caption"]:
        rows = rows[1:]
    bad = [i for i, r in enumerate(rows) if len(r) < 2 or not r[1].strip()]
    if bad:
        raise InvalidArgument(f"{path}: {len(bad)} row(s) lack a path and a caption (first: row {bad[0] + 1}); "
                              "each row is path,caption")
    return [(r[0].strip(), r[1].strip()) for r in rows]


def _csv_pairs(coll: "Collection", path: Path) -> _Pairs:
    """Pairs from a CSV, matched to the collection's items by path (relative to the CSV's folder)."""
    ids, hashes, captions, missing = [], [], [], []
    for rel, caption in _csv_rows(path):
        target = rel if "://" in rel else os.path.join(path.parent, os.path.expanduser(rel))
        item = coll.item_at(target)
        if item is None or item.status != "ok" or item.hash is None:
            missing.append(rel)
            continue
        ids.append(item.id)
        hashes.append(item.hash)
        captions.append(caption)
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise InvalidArgument(f"{path}: {len(missing)} of its {len(missing) + len(ids)} paths are not embedded "
                              f"items of the collection {coll.path} ({shown}). Paths are matched against the "
                              "collection's items, relative ones from the CSV's folder: index those images "
                              "first (lookalike index), or fix or drop those rows.")
    return _Pairs(ids, hashes, captions, 0)


def _filename_pairs(coll: "Collection") -> _Pairs:
    ids, _ = coll.embeddings()
    ids_, hashes, captions, skipped = [], [], [], 0
    for item in coll.items([int(i) for i in ids]):
        caption = filename_caption(item.path)
        if not caption or item.hash is None:
            skipped += 1  # e.g. IMG_0001.jpg: nothing but digits once the camera prefix is gone
            continue
        ids_.append(item.id)
        hashes.append(item.hash)
        captions.append(caption)
    return _Pairs(ids_, hashes, captions, skipped)


def _parts(hashes: Sequence[str], seed: int, held_out: float, val: float) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
    """Row indices of the fitting, validation and held-out parts, from (seed, content hash):
    copies of one image share a part, and the split does not depend on the pairs' order."""
    unique = sorted(set(hashes), key=lambda h: hashlib.blake2b(f"{seed}:{h}".encode(), digest_size=8).digest())
    n_held = max(1, round(held_out * len(unique)))
    n_val = max(1, round(val * len(unique)))
    part = {h: 2 if i < n_held else 1 if i < n_held + n_val else 0 for i, h in enumerate(unique)}
    codes = np.array([part[h] for h in hashes])
    return np.flatnonzero(codes == 0), np.flatnonzero(codes == 1), np.flatnonzero(codes == 2)


def _open(collection: "Collection | str | os.PathLike[str]", device: str | None) -> tuple["Collection", bool]:
    from ..store.collection import Collection

    if isinstance(collection, Collection):
        return collection, False
    return Collection.open(collection, device=device), True


def align_text(collection: "Collection | str | os.PathLike[str]", *, captions: "str | os.PathLike[str] | None" = None,
               from_filenames: bool = False, out: "str | os.PathLike[str]", seed: int = 0, held_out: float = 0.2,
               val: float = 0.15, settings: ContrastiveSettings | None = None, device: str | None = None,
               progress: ProgressCallback | None = None) -> AlignReport:
    """Fit a ``text`` head from caption pairs of ``collection``'s images and save it to ``out``.

    Give ``captions`` (a CSV of ``path,caption``; relative paths from the CSV's folder) or
    ``from_filenames=True``. ``held_out`` and ``val`` are the fractions of images held out
    for the report and for validation. ``device`` is where a collection given by path loads
    its model (for the caption features).

    Raises:
        InvalidArgument: neither or both caption sources; CSV paths that are not embedded items
            (count and examples); fewer than :data:`MIN_PAIRS` pairs; a bad ``out``.
        UnsupportedModality: the collection's model has no text tower.
    """
    if (captions is None) == (not from_filenames):
        raise InvalidArgument("give captions (a CSV of path,caption) or from_filenames=True, one of the two "
                              "(--captions CSV or --captions-from-filenames)")
    if not 0 < held_out < 1 or not 0 < val < 1 or held_out + val >= 1:
        raise InvalidArgument(f"held_out ({held_out}) and val ({val}) are fractions that leave pairs to fit on")
    start = time.perf_counter()
    out_dir = Path(user_path(out))
    check_head_out(out_dir)
    coll, opened = _open(collection, device)
    try:
        check_no_head(coll.manifest.model_id, "collection's model")
        pairs = _filename_pairs(coll) if from_filenames else _csv_pairs(coll, Path(user_path(captions or "")))
        source = "file names" if from_filenames else str(Path(user_path(captions or "")))
        if len(set(pairs.hashes)) < MIN_PAIRS:
            raise InvalidArgument(f"only {len(set(pairs.hashes))} captioned images in {coll.path} (from {source}); "
                                  f"aligning needs at least {MIN_PAIRS}, and a few hundred to help")
        report = _align(coll, pairs, source, out_dir, seed, held_out, val, settings or ContrastiveSettings(), progress)
    finally:
        if opened:
            coll.close()
    return _with_time(report, time.perf_counter() - start)


def _with_time(report: AlignReport, seconds: float) -> AlignReport:
    from dataclasses import replace

    return replace(report, seconds=seconds)


def _text_features(model: Any, captions: list[str],
                   progress: ProgressCallback | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct caption once: its text features and the model's own text vector;
    and each pair's caption id."""
    distinct = sorted(set(captions))
    index = {c: i for i, c in enumerate(distinct)}
    if not model.supports_text:
        raise UnsupportedModality(f"the collection's model '{model.model_id}' has no text tower, so there is no "
                                  "text side to align; use a collection indexed with a model that has one "
                                  "(lite, openclip:...)")

    def step(done: int) -> None:
        if progress is not None:
            progress(ProgressEvent("embed", done=done, total=2 * len(distinct), reason="caption features"))

    step(0)
    feats = np.asarray(model.text_features(distinct), dtype=np.float32)
    step(len(distinct))
    own = np.asarray(model.encode_text(distinct), dtype=np.float32)
    step(2 * len(distinct))
    return feats, own, np.array([index[c] for c in captions], dtype=np.int64)


def _align(coll: "Collection", pairs: _Pairs, source: str, out_dir: Path, seed: int, held_out: float, val: float,
           settings: ContrastiveSettings, progress: ProgressCallback | None) -> AlignReport:
    import torch

    from ..models.head import HeadConfig, ProjectionHead, save_head

    feats, own_vectors, caption_ids = _text_features(coll.model, pairs.captions, progress)
    images = coll.get_vectors(pairs.ids)
    fit_rows, val_rows, held_rows = _parts(pairs.hashes, seed, held_out, val)

    def part(rows: np.ndarray) -> PairSet:
        return PairSet(feats[caption_ids[rows]], images[rows], caption_ids[rows])

    fit, valid, held = part(fit_rows), part(val_rows), part(held_rows)
    w, b, strength, tried = fit_ridge(fit, valid, prior=tower_prior(feats, own_vectors, fit))
    # An int8 collection's image vectors are within cosine ~0.99 of its model's fp32 ones, and a
    # head model runs on the fp32 base: record that base, so the head loads as MODEL+head:DIR.
    fingerprint = coll.manifest.model.get("fp32_fingerprint") or coll.manifest.fingerprint
    config = HeadConfig(kind="text", arch="linear", in_dim=feats.shape[1], out_dim=coll.manifest.dim,
                        base=coll.manifest.model_id, base_fingerprint=fingerprint,
                        name=out_dir.name or "captions")
    ridge_head = ProjectionHead(config)
    with torch.no_grad():
        ridge_head.net[0].weight.copy_(torch.from_numpy(w.T.copy()))
        ridge_head.net[0].bias.copy_(torch.from_numpy(b))
    trained = ProjectionHead(config)
    trained.load_state_dict(ridge_head.state_dict())
    trained, epoch, _ = fit_contrastive(trained, fit, valid, settings, seed=seed, progress=progress)
    with torch.no_grad():
        ridge_scores = caption_retrieval(ridge_head(torch.from_numpy(held.text)).numpy(), held)
        trained_scores = caption_retrieval(trained(torch.from_numpy(held.text)).numpy(), held)
    own = caption_retrieval(own_vectors[caption_ids[held_rows]], held)
    kept = "contrastive" if trained_scores.map > ridge_scores.map else "ridge"
    report = AlignReport(
        out=out_dir, base=config.base, base_fingerprint=config.base_fingerprint, captions=source,
        pairs=len(pairs.ids), counts={"fit": len(fit_rows), "val": len(val_rows), "held_out": len(held_rows)},
        ridge_strength=strength, ridge_tried=tried, contrastive_epoch=epoch, ridge=ridge_scores,
        contrastive=trained_scores, model=own, kept=kept, seconds=0.0, skipped=pairs.skipped,
        settings={"seed": seed, "held_out": held_out, "val": val, **vars(settings)})
    fitted = [pairs.hashes[i] for i in np.concatenate([fit_rows, val_rows])]
    save_head(out_dir, trained if kept == "contrastive" else ridge_head, config, report=report.to_dict(),
              train_hashes=fitted)
    return report
