"""``lookalike train``: fit a projection head on the user's labelled images, and report it.

The order of work is what keeps the report honest:

1. the labelled set is split (:func:`.splits.split_labelled`: seeded, by content hash) into
   train, validation, test (held-out images of seen labels) and unseen (held-out labels);
2. every image gets its base vector through the :class:`.embed_cache.EmbeddingCache`, so a
   set already scored by ``lookalike evaluate`` costs no embedding;
3. :func:`.head_fit.fit_head` receives the train and validation vectors only, and no other;
4. the test and unseen parts are scored before (base vectors) and after (head vectors),
   each leave-one-out within itself (:func:`.evaluate.image_retrieval`);
5. the head is saved with its config, the base's fingerprint, the report, and the content
   hashes of the train and validation images (``train_items.txt``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import InvalidArgument
from ..fsutil import user_path
from ..progress import ProgressCallback
from .evaluate import RetrievalScores, image_retrieval
from .head_fit import FitResult, FitSettings, LabelledVectors, fit_head
from .labelled import LabelledSet, load_labelled
from .splits import Split, SplitSettings, split_labelled

if TYPE_CHECKING:
    from ..models.base import EmbeddingModel
    from .embed_cache import Embedded, EmbeddingCache

__all__ = ["TrainReport", "PartScores", "train_head", "check_head_out", "DEFAULT_EPOCHS", "DEFAULT_PATIENCE"]

DEFAULT_EPOCHS = FitSettings.epochs
DEFAULT_PATIENCE = FitSettings.patience
ARCHS = ("linear", "mlp")


@dataclass(frozen=True)
class PartScores:
    """One held-out part scored with the base vectors and with the head's."""

    before: RetrievalScores
    after: RetrievalScores

    def to_dict(self) -> dict[str, Any]:
        return {"before": _scores_dict(self.before), "after": _scores_dict(self.after)}


def _scores_dict(s: RetrievalScores) -> dict[str, Any]:
    return {"knn1": s.knn1, "recall_at": {str(k): v for k, v in sorted(s.recall_at.items())}, "map": s.map, "n": s.n}


@dataclass(frozen=True)
class TrainReport:
    """What ``train_head`` did, and how the head scores against its base on held-out images.

    ``test``: held-out images of labels the head was trained on; ``unseen``: images of labels
    held out entirely (None when the split holds out no label). The gap between the two
    tells whether the head generalises to new labels or only learned the given ones.
    """

    out: Path
    base: str
    base_fingerprint: str
    arch: str
    loss: str
    in_dim: int
    out_dim: int
    settings: FitSettings
    counts: dict[str, int]
    held_out_labels: tuple[str, ...]
    best_epoch: int
    epochs_run: int
    history: list[dict[str, Any]]
    test: PartScores | None
    unseen: PartScores | None
    embedded: int
    embed_seconds: float
    train_seconds: float
    source: str = ""
    split: dict[str, Any] = field(default_factory=dict)
    #: Images that could not be read, ``(path, reason)``: left out of training and the scores.
    skipped: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (stored in the head's ``head.json`` as its report)."""
        return {
            "source": self.source, "out": str(self.out), "base": self.base, "base_fingerprint": self.base_fingerprint,
            "arch": self.arch, "loss": self.loss, "in_dim": self.in_dim, "out_dim": self.out_dim,
            "settings": self.settings.to_dict(), "split": self.split, "counts": dict(self.counts),
            "held_out_labels": list(self.held_out_labels), "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run, "history": self.history,
            "test": self.test.to_dict() if self.test else None,
            "unseen": self.unseen.to_dict() if self.unseen else None,
            "embedded": self.embedded, "embed_seconds": self.embed_seconds, "train_seconds": self.train_seconds,
            "skipped": [list(x) for x in self.skipped],
        }


def train_head(source: "str | os.PathLike[str] | LabelledSet", *, base: "str | EmbeddingModel" = "lite", out: "str | os.PathLike[str]",
               arch: str = "linear", loss: str = "supcon", dim: int | None = None, hidden: int | None = None,
               epochs: int = DEFAULT_EPOCHS, patience: int = DEFAULT_PATIENCE, seed: int = 0,
               split: SplitSettings = SplitSettings(), depth: int = 1, cache: "EmbeddingCache | None" = None,
               settings: FitSettings | None = None, device: str | None = None,
               progress: ProgressCallback | None = None) -> TrainReport:
    """Train a projection head on ``base``'s vectors of a labelled set and save it to ``out``.

    ``source`` is a folder (labels = sub-folder names at ``depth``), a CSV (path,label) or a
    :class:`LabelledSet`; ``base`` a model name or a loaded model. ``dim`` is the head's output dim (default: the base's); ``hidden``
    the MLP's hidden width (default: the base's dim). ``settings`` overrides the training
    hyperparameters (its ``loss``, ``epochs``, ``patience`` and ``seed`` are replaced by the
    arguments). The split's seed is ``split.seed``, independent of the training ``seed``.

    Raises:
        InvalidArgument: a bad arch, loss, dim; a labelled set too small to split; an ``out``
            that holds something other than a head (checked before any embedding).
        UnknownModel, ModelLoadError, MissingExtra: ``base`` cannot be loaded.
    """
    from ..models.head import HeadConfig, save_head
    from ..models.registry import load_model, parse_model_name

    if arch not in ARCHS:
        raise InvalidArgument(f"unknown head arch '{arch}': choose one of {', '.join(ARCHS)}")
    if dim is not None and dim < 1 or hidden is not None and hidden < 1:
        raise InvalidArgument(f"--dim and --hidden must be positive, got {dim} and {hidden}")
    fit = _fit_settings(settings, loss=loss, epochs=epochs, patience=patience, seed=seed)
    out_dir = Path(user_path(out))
    check_head_out(out_dir)
    check_no_head(parse_model_name(base).model_id if isinstance(base, str) else base.model_id, "base")
    data = source if isinstance(source, LabelledSet) else load_labelled(source, depth=depth, progress=progress)
    _check_split(split_labelled(data, split), data)  # before the model loads
    if isinstance(base, str):
        model, base_name = load_model(base, device=device), parse_model_name(base).canonical
    else:  # a loaded model: a plain model's id is its canonical name
        model, base_name = base, base.model_id
    embedded = _cache(cache).embed(model, data, progress=progress)
    # An unreadable image is left out (reported in the progress and the report), never fatal;
    # the split is made without it, as evaluate's is.
    data, vectors = _readable(data, embedded)
    parts = split_labelled(data, split)
    _check_split(parts, data)
    config = HeadConfig(kind="projection", arch=arch, in_dim=model.dim, out_dim=dim or model.dim, base=base_name,
                        base_fingerprint=model.fingerprint(), name=out_dir.name or "head",
                        hidden=(hidden or model.dim) if arch == "mlp" else None)
    labels = data.label_of_each
    # The only vectors training is given: the train and validation parts, nothing held out.
    result = _train(config, _take(vectors, labels, parts.train), _take(vectors, labels, parts.val), fit, progress)
    report = _report(model, config, data, parts, vectors, result, fit, embedded, out_dir)
    if embedded.failed:
        from dataclasses import replace

        report = replace(report, skipped=tuple((str(p), r) for p, r in embedded.failed))
    hashes = [data.images[i].hash for i in parts.fitted]
    save_head(out_dir, result.module, config, report=report.to_dict(), train_hashes=hashes)
    return report


def _readable(data: LabelledSet, embedded: "Embedded") -> tuple[LabelledSet, np.ndarray]:
    """``data`` and its vectors without the images that could not be read."""
    ok = embedded.ok
    vectors = np.asarray(embedded.vectors, dtype=np.float32)
    if ok.all():
        return data, vectors
    kept = tuple(im for im, keep in zip(data.images, ok) if keep)
    return LabelledSet(kept, data.source), vectors[ok]


def _fit_settings(settings: FitSettings | None, **overrides: Any) -> FitSettings:
    from dataclasses import replace

    return replace(settings or FitSettings(), **overrides)


def _cache(cache: "EmbeddingCache | None") -> "EmbeddingCache":
    if cache is not None:
        return cache
    from .embed_cache import EmbeddingCache

    return EmbeddingCache()


def check_head_out(out_dir: Path) -> None:
    """Refuse an ``out`` that save_head would refuse, before minutes of embedding or fitting."""
    from ..models.head import check_out_dir

    check_out_dir(out_dir)


def check_no_head(model_id: str, role: str) -> None:
    """Refuse a base that is already a head model, before minutes of embedding or fitting: a head
    sits on a plain model only, so the result could never load (``role``: what the model is for)."""
    from ..models.names import HEAD_MARK

    if HEAD_MARK in model_id:
        base = model_id.split(HEAD_MARK, 1)[0]
        raise InvalidArgument(f"the {role} '{model_id}' already has a head, and a head cannot sit on another; "
                              f"fit on its base model '{base}' instead")


def _check_split(parts: Split, data: LabelledSet) -> None:
    if not parts.train:
        raise InvalidArgument(f"{data.source}: the split left no training images; give more images per label")
    if not parts.val:
        raise InvalidArgument(f"{data.source}: the split left no validation images (early stopping needs some); "
                              "give each label more images (10 or more)")


def _take(vectors: np.ndarray, labels: Sequence[str], rows: Sequence[int]) -> LabelledVectors:
    idx = np.asarray(rows, dtype=np.int64)
    return LabelledVectors(np.ascontiguousarray(vectors[idx]), tuple(labels[i] for i in idx))


def _train(config: Any, train: LabelledVectors, val: LabelledVectors, fit: FitSettings,
           progress: ProgressCallback | None) -> FitResult:
    """Build the head from the seed (without touching the caller's global torch RNG) and fit it."""
    import torch

    from ..models.head import ProjectionHead

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(fit.seed)
        module = ProjectionHead(config)
        return fit_head(module, train, val, fit, progress=progress)


def _score(model: "EmbeddingModel", module: Any, vectors: np.ndarray, labels: Sequence[str],
           rows: Sequence[int]) -> PartScores | None:
    from ..models.head import apply_head

    if len(rows) < 2 or len({labels[i] for i in rows}) < 2:
        return None  # leave-one-out needs two images, and a ranking needs two labels
    base = vectors[np.asarray(rows, dtype=np.int64)]
    part_labels = [labels[i] for i in rows]
    return PartScores(image_retrieval(base, part_labels), image_retrieval(apply_head(module, base), part_labels))


def _report(model: "EmbeddingModel", config: Any, data: LabelledSet, parts: Split, vectors: np.ndarray,
            result: FitResult, fit: FitSettings, embedded: Any, out_dir: Path) -> TrainReport:
    labels = data.label_of_each
    history = [{"epoch": r.epoch, "loss": r.loss, "val_knn1": r.val_knn1, "val_map": r.val_map}
               for r in result.history]
    s = parts.settings
    return TrainReport(
        out=out_dir, base=config.base, base_fingerprint=config.base_fingerprint, arch=config.arch, loss=fit.loss,
        in_dim=config.in_dim, out_dim=config.out_dim, settings=fit,
        counts={"train": len(parts.train), "val": len(parts.val), "test": len(parts.test),
                "unseen": len(parts.unseen)},
        held_out_labels=tuple(parts.held_out_labels), best_epoch=result.best_epoch,
        epochs_run=result.history[-1].epoch, history=history,
        test=_score(model, result.module, vectors, labels, parts.test),
        unseen=_score(model, result.module, vectors, labels, parts.unseen),
        embedded=int(embedded.embedded), embed_seconds=float(embedded.seconds), train_seconds=result.seconds,
        source=str(data.source),
        split={"seed": s.seed, "test": s.test, "val": s.val, "held_out_labels": s.held_out_labels},
    )
