"""Distillation: a head that puts a fast student model's vectors into a slow teacher's space.

``distill(teacher, images, student=..., out=...)`` fits a ``student`` head (see
:mod:`lookalike.models.head`) on the frozen student model: its input is the student's
normalised image vector, its target the teacher's normalised vector of the same pixels, its
loss ``1 - cos``. Once saved, ``STUDENT+head:OUT`` embeds images at the student's speed into
the teacher's space, and answers text queries with the teacher's text tower (only a text
forward), so a collection indexed with it is searched as if the teacher had indexed it.

In order:

1. the images (a folder, discovered as the indexer does, or a list of files) are hashed;
   copies of one file count once; a seeded hash of each image's content puts ~20 % of them in
   validation (independent of file names and order);
2. the teacher's and the student's vectors of every clean image come from the
   :class:`~lookalike.apps.embed_cache.EmbeddingCache` (a re-run, or another head on the same
   images, embeds nothing again);
3. ``views`` augmented views of every training image (:mod:`.augment`, seeded by content
   hash) are embedded by the student and, with ``teacher_views`` (the default), by the
   teacher, whose vector of the view is then the view's target; without it the target is the
   teacher's vector of the clean image;
4. the head is trained on the training rows (clean + views) and stopped early on the mean
   cosine to the teacher over the clean validation images; the best epoch's weights are kept
   (``arch="auto"``: a linear and an MLP head are both trained, the closer one kept);
5. the head is saved with its config (teacher, both fingerprints), its report, and the hashes
   of every image it was fitted or validated on.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import InvalidArgument
from ..progress import ProgressCallback, ProgressEvent
from .train_head import check_no_head

if TYPE_CHECKING:
    from ..models.base import EmbeddingModel
    from .embed_cache import EmbeddingCache

__all__ = ["DistillReport", "DistillSettings", "distill", "distill_images", "image_pairs", "check_out_dir", "model_name",
           "validation_mask"]

#: The fraction of images held back to stop training (by content hash, seeded).
VAL_FRACTION = 0.2


@dataclass(frozen=True)
class DistillSettings:
    """Training settings. ``hidden`` is the MLP's width (default: twice the larger of the
    student's and teacher's dims, at most 2048)."""

    epochs: int = 100
    patience: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    hidden: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise InvalidArgument(f"epochs ({self.epochs}), patience ({self.patience}) and batch size "
                                  f"({self.batch_size}) must each be at least 1")
        if not self.lr > 0 or self.weight_decay < 0:
            raise InvalidArgument(f"the learning rate ({self.lr}) must be > 0 and weight decay ({self.weight_decay}) >= 0")


@dataclass(frozen=True)
class DistillReport:
    """What :func:`distill` fitted, and how close the student came to the teacher.

    Cosines are means over images of ``cos(student vector, teacher vector)`` on clean images:
    ``*_before`` without a head (None when the two spaces differ in dim, where they cannot be
    compared), ``val_cos_untrained`` through the freshly initialised head, ``*_after`` through
    the trained one.
    """

    teacher: str
    student: str
    out: Path
    head_id: str
    arch: str
    val_cos_by_arch: dict[str, float]
    images: int
    skipped: int
    train_images: int
    val_images: int
    views: int
    teacher_views: bool
    epochs: int
    best_epoch: int
    train_cos_before: float | None
    val_cos_before: float | None
    val_cos_untrained: float
    train_cos_after: float
    val_cos_after: float
    seconds: float
    embed_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (also stored as the head's report)."""
        return {**asdict(self), "out": str(self.out)}

    def __str__(self) -> str:
        def cos(v: float | None) -> str:
            return "n/a (dims differ)" if v is None else f"{v:.4f}"

        return "\n".join([
            f"student {self.student} + head -> teacher {self.teacher}: {self.out} ({self.head_id}, {self.arch}"
            + (", chosen on validation: " + ", ".join(f"{a} {c:.4f}" for a, c in self.val_cos_by_arch.items())
               if len(self.val_cos_by_arch) > 1 else "") + ")",
            f"images {self.images} (train {self.train_images}, val {self.val_images}"
            + (f"; {self.skipped} unreadable, left out" if self.skipped else "") + f"), views {self.views} "
            f"({'teacher embeds the views' if self.teacher_views else 'views target the clean image'})",
            f"cosine to the teacher  train: {cos(self.train_cos_before)} -> {self.train_cos_after:.4f}   "
            f"val: {cos(self.val_cos_before)} -> {self.val_cos_after:.4f} (untrained head {self.val_cos_untrained:.4f})",
            f"epochs {self.epochs} (best {self.best_epoch}), {self.seconds:.1f} s ({self.embed_seconds:.1f} s embedding)",
        ])


def validation_mask(hashes: Sequence[str], seed: int = 0, fraction: float = VAL_FRACTION) -> np.ndarray:
    """Which images validate: the ``round(fraction * n)`` (at least one) whose seeded content
    hash ranks lowest. Depends only on the seed and the set of hashes, not their order."""
    if len(hashes) < 2:
        raise InvalidArgument(f"distillation needs at least 2 different images (one to train on, one to "
                              f"validate), got {len(hashes)}; give a folder with more images")
    ranks = [hashlib.blake2b(f"{seed}:{h}".encode(), digest_size=8).hexdigest() for h in hashes]
    n_val = min(len(hashes) - 1, max(1, round(fraction * len(hashes))))
    mask = np.zeros(len(hashes), dtype=bool)
    mask[np.argsort(ranks, kind="stable")[:n_val]] = True
    return mask


def image_pairs(images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 progress: ProgressCallback | None) -> list[tuple[Path, str]]:
    """``(path, content hash)`` of each distinct image, in discovery (or list) order."""
    from ..images.discover import discover
    from ..store.plan import file_hash

    if isinstance(images, (str, os.PathLike)):
        root = Path(images).expanduser()
        if not root.exists():
            raise InvalidArgument(f"image folder {root} does not exist; give the folder of images to distil on")
        paths = [Path(f.path) for f in discover([root])] if root.is_dir() else [root]
    else:
        paths = [Path(p).expanduser() for p in images]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise InvalidArgument(f"{len(missing)} image files do not exist (first: {', '.join(missing[:3])}); "
                                  "give existing files")
    pairs: dict[str, Path] = {}
    for i, path in enumerate(paths):
        try:
            pairs.setdefault(file_hash(str(path)), path)
        except OSError as exc:
            raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}; fix its permissions or leave it out") from exc
        if progress is not None:
            progress(ProgressEvent("scan", done=i + 1, reason="hashing images"))
    return [(path, h) for h, path in pairs.items()]


def _mean_cos(a: np.ndarray, b: np.ndarray) -> float:
    """Mean row cosine of two arrays of normalised rows."""
    return float(np.mean(np.sum(a * b, axis=1))) if len(a) else float("nan")


def distill(teacher: str, images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, student: str = "lite",
            out: str | os.PathLike[str], views: int = 2, teacher_views: bool = True, arch: str = "auto",
            epochs: int = 100, patience: int = 10, seed: int = 0, cache: "EmbeddingCache | None" = None,
            batch_size: int = 32, device: str | None = None, name: str | None = None,
            progress: ProgressCallback | None = None) -> DistillReport:
    """Fit a ``student`` head on model ``student`` towards model ``teacher`` and save it to ``out``.

    Args:
        teacher: the model name whose space the student learns (e.g. ``lite:448``, ``openclip:...``).
        images: a folder (walked as ``lookalike index`` does) or a list of image files.
        student: the frozen base model name; the result loads as ``f"{student}+head:{out}"``.
        out: a new (or empty, or head) folder for the head.
        views: augmented views per training image, besides the clean image (0: clean only).
        teacher_views: the teacher embeds each view too (the view's target is then its own
            teacher vector); else a view targets the teacher's vector of the clean image.
        arch: ``linear``, ``mlp``, or ``auto`` (default): fit both, keep the one closer to the
            teacher on the validation images. (Measured on clip art, lite -> lite:448: the
            identity-initialised linear head reached validation cosine 0.850, the MLP 0.806.)
        epochs, patience: at most ``epochs`` passes; stop after ``patience`` without a better
            validation cosine.
        seed: the split, the views and the head's initialisation.
        cache: where the clean images' vectors are cached (default: the user's cache).
        batch_size: images per forward pass.
        device: the models' device (default: the best available).
        name: the head's short name (default: the ``out`` folder's name).

    Raises:
        InvalidArgument: bad settings, fewer than 2 distinct images, an unusable ``out``.
        UnknownModel, ModelLoadError, MissingExtra: a model cannot be loaded.

    An image that cannot be decoded is left out (a ``skip`` progress event) and counted in
    the report's ``skipped``.
    """
    from ..models.head import HEAD_ARCHS
    from ..models.names import parse_model_name
    from ..models.registry import load_model

    settings = DistillSettings(epochs=epochs, patience=patience)
    if views < 0:
        raise InvalidArgument(f"views must be 0 or more, not {views}")
    if arch not in (*HEAD_ARCHS, "auto"):
        raise InvalidArgument(f"head arch '{arch}' is not one of {', '.join(HEAD_ARCHS)} or auto")
    parse_model_name(teacher)  # a typo fails before any image is read
    check_no_head(parse_model_name(student).model_id, "student")
    check_out_dir(out)
    pairs = image_pairs(images, progress)
    validation_mask([h for _, h in pairs], seed)  # fewer than 2 images fail before any model loads
    teacher_model = load_model(teacher, device=device)
    student_model = load_model(student, device=device)
    return distill_images(teacher_model, student_model, pairs, out=out, views=views, teacher_views=teacher_views,
                          arch=arch, settings=settings, seed=seed, cache=cache, batch_size=batch_size, name=name,
                          progress=progress)


def distill_images(teacher: "EmbeddingModel", student: "EmbeddingModel", pairs: Sequence[tuple[Path, str]], *,
                   out: str | os.PathLike[str], views: int = 2, teacher_views: bool = True, arch: str = "auto",
                   settings: DistillSettings = DistillSettings(), seed: int = 0, cache: "EmbeddingCache | None" = None,
                   batch_size: int = 32, name: str | None = None,
                   progress: ProgressCallback | None = None) -> DistillReport:
    """:func:`distill` with loaded models and ``(path, content hash)`` pairs of distinct images."""
    from ..models.head import HEAD_ARCHS, HeadConfig, load_head, save_head
    from .distill_fit import fit_head, head_cosines
    from .embed_cache import EmbeddingCache

    started = time.perf_counter()
    out_dir = check_out_dir(out)
    cache = cache if cache is not None else EmbeddingCache()
    pairs, t_clean, s_clean, skipped = _clean_vectors(teacher, student, pairs, cache, batch_size, progress)
    hashes = [h for _, h in pairs]
    val = validation_mask(hashes, seed)
    configs = [HeadConfig(kind="student", arch=a, in_dim=student.dim, out_dim=teacher.dim,
                          base=model_name(student), base_fingerprint=student.fingerprint(),
                          name=name or out_dir.name, hidden=_hidden(a, student.dim, teacher.dim, settings),
                          teacher=model_name(teacher),
                          teacher_fingerprint=teacher.fingerprint())
               for a in (HEAD_ARCHS if arch == "auto" else (arch,))]
    x_train, y_train = _training_rows(teacher, student, pairs, val, t_clean, s_clean, views=views,
                                      teacher_views=teacher_views, seed=seed, batch_size=batch_size, cache=cache,
                                      progress=progress)
    embed_seconds = time.perf_counter() - started
    fits = [fit_head(c, x_train, y_train, s_clean[val], t_clean[val], settings=settings, seed=seed,
                     progress=progress) for c in configs]
    fit = max(fits, key=lambda f: f.best_val_cos)  # ties: the first, the linear head
    config = fit.module.config
    after_train, after_val = head_cosines(fit.module, s_clean, t_clean, val)
    same_dim = student.dim == teacher.dim
    report = DistillReport(
        teacher=config.teacher or "", student=config.base, out=out_dir, head_id="", arch=config.arch,
        val_cos_by_arch={f.module.config.arch: f.best_val_cos for f in fits}, images=len(pairs), skipped=skipped,
        train_images=int((~val).sum()), val_images=int(val.sum()), views=views, teacher_views=teacher_views,
        epochs=fit.epochs, best_epoch=fit.best_epoch,
        train_cos_before=_mean_cos(s_clean[~val], t_clean[~val]) if same_dim else None,
        val_cos_before=_mean_cos(s_clean[val], t_clean[val]) if same_dim else None,
        val_cos_untrained=fit.untrained_val_cos, train_cos_after=after_train, val_cos_after=after_val,
        seconds=0.0, embed_seconds=embed_seconds)
    saved = save_head(out_dir, fit.module, config, report=_stored_report(report), train_hashes=hashes)
    return _finish(report, load_head(saved).id, started, progress)


def model_name(model: "EmbeddingModel") -> str:
    """The name that loads ``model`` again: its canonical name, or for a head model (a
    teacher may be one) ``BASE+head:<its folder>``."""
    from ..models.head import LoadedHead
    from ..models.names import parse_model_name

    head = getattr(model, "head", None)
    if isinstance(head, LoadedHead):
        return f"{model_name(model.base)}+head:{head.path}"  # type: ignore[attr-defined]
    return parse_model_name(model.model_id).canonical


def _clean_vectors(teacher: "EmbeddingModel", student: "EmbeddingModel", pairs: Sequence[tuple[Path, str]],
                   cache: "EmbeddingCache", batch_size: int, progress: ProgressCallback | None,
                   ) -> tuple[list[tuple[Path, str]], np.ndarray, np.ndarray, int]:
    """``(pairs kept, teacher vectors, student vectors, images skipped)`` of the clean images.

    An image that cannot be decoded is left out (the cache reports it as a ``skip`` event), as
    ``index`` does.
    """
    t = cache.embed(teacher, pairs, batch_size=batch_size, progress=progress)
    s = cache.embed(student, pairs, batch_size=batch_size, progress=progress)
    ok = t.ok & s.ok
    kept = [p for p, keep in zip(pairs, ok) if keep]
    return kept, t.vectors[ok], s.vectors[ok], len(pairs) - len(kept)


def _training_rows(teacher: "EmbeddingModel", student: "EmbeddingModel", pairs: Sequence[tuple[Path, str]],
                   val: np.ndarray, t_clean: np.ndarray, s_clean: np.ndarray, *, views: int, teacher_views: bool,
                   seed: int, batch_size: int, cache: "EmbeddingCache",
                   progress: ProgressCallback | None) -> tuple[np.ndarray, np.ndarray]:
    """``(student rows, teacher targets)``: each training image clean, then its views."""
    from .distill_fit import embed_views

    train_pairs = [p for p, v in zip(pairs, val) if not v]
    s_views = embed_views(student, train_pairs, views=views, seed=seed, batch_size=batch_size, cache=cache,
                          progress=progress)
    if teacher_views:
        t_views = embed_views(teacher, train_pairs, views=views, seed=seed, batch_size=batch_size, cache=cache,
                              progress=progress)
    else:  # each view targets its clean image's teacher vector
        t_views = np.repeat(t_clean[~val], views, axis=0)
    return np.concatenate([s_clean[~val], s_views]), np.concatenate([t_clean[~val], t_views])


def check_out_dir(out: str | os.PathLike[str]) -> Path:
    """``out`` as an absolute path, refused before any work when :func:`save_head` would refuse it."""
    from ..models.head import check_out_dir as check

    return check(out)


def _finish(report: DistillReport, head_id: str, started: float, progress: ProgressCallback | None) -> DistillReport:
    from dataclasses import replace

    if progress is not None:
        progress(ProgressEvent("done", done=report.images, total=report.images))
    return replace(report, head_id=head_id, seconds=time.perf_counter() - started)


def _stored_report(report: DistillReport) -> dict[str, Any]:
    """The report as the head keeps it: not its folder or id (the folder is both), nor timings."""
    d = report.to_dict()
    for key in ("out", "head_id", "seconds", "embed_seconds"):
        d.pop(key)
    return d


def _hidden(arch: str, in_dim: int, out_dim: int, settings: DistillSettings) -> int | None:
    if arch != "mlp":
        return None
    return settings.hidden or min(2048, 2 * max(in_dim, out_dim))
