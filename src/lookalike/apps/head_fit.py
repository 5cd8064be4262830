"""The training loop of a projection head, on vectors only.

:func:`fit_head` takes two labelled sets of base vectors, the training part and the
validation part, and nothing else: it cannot see a test image because it is never given
one (``apps/train_head.py`` splits first and passes only these two). It fits on the
training part with a metric-learning loss (:mod:`.losses`) and keeps the epoch whose head
retrieves best on the validation part (the mAP of each validation image querying training +
validation, ties broken by kNN@1; or kNN@1 first, with ``select="knn1"``), stopping after ``patience`` epochs without improvement.
Epoch 0 is the head before any step, so a head that training cannot improve is returned
as it started (the identity, for a linear head of the base's dim).

Everything random (the head's initial weights, the batches) comes from ``seed``, and the
loop runs on the CPU on one thread (:func:`one_thread`: a head's matrices are too small to
split, a busy machine makes a parallel op wait for a core, and a fixed reduction order keeps
results equal across machines), so the same inputs and settings give the same weights bit
for bit.
"""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidArgument
from ..progress import ProgressCallback, ProgressEvent
from .evaluate import average_precision
from .losses import LOSSES, BalancedBatchSampler, supcon_loss, triplet_loss

__all__ = ["one_thread", "FitSettings", "LabelledVectors", "EpochRecord", "FitResult", "fit_head", "validation_scores"]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside the block, restoring the caller's setting after.

    A head's matrices are too small for a second thread to pay: on a busy 2-core machine each
    parallel op waits for the other core (measured, 1280-d lite vectors: linear head 401 -> 32 ms
    an epoch of 96 rows; MLP 1440 -> 383 ms of 650 rows). One thread also gives the same
    weights on any machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class FitSettings:
    """How a head is trained.

    The defaults were chosen with ``lite`` on real labelled clip art (3,000 images, 22
    top-level categories, split seed 0), on the validation part and on 3-fold
    cross-validation inside train + validation (about 570 images per fold), never on the
    test part or the held-out labels. Cross-validated leave-one-out kNN@1 / mAP, base
    0.639 / 0.351: linear SupCon at lr 3e-4 for up to 150 epochs (patience 10; the best
    epochs were 84-117) 0.684 / 0.550; lr 1e-3 (60 epochs, patience 8) 0.665 / 0.545; lr 1e-4
    (200 epochs, still improving) 0.681 / 0.549; batch-hard triplet (lr 1e-3) 0.663 / 0.551;
    labels drawn by size 0.669 / 0.547; early stopping on kNN@1 instead of mAP 0.654 / 0.434.
    On the 214-image validation part alone (leave-one-out, base 0.579 / 0.349), at lr 1e-3:
    temperature 0.1 0.668 / 0.563 (0.05: 0.631, 0.2: 0.664), weight decay 0.05 0.673,
    output dim 256 0.668, a 2-layer MLP 0.603-0.636, 8 x 8 batches 0.636-0.654: no change
    beat the linear head at the base's dim with 16 labels x 4 images and temperature 0.1.
    """

    loss: str = "supcon"
    epochs: int = 150
    patience: int = 10
    lr: float = 3e-4
    weight_decay: float = 1e-4
    temperature: float = 0.1
    margin: float = 0.2
    labels_per_batch: int = 16
    per_label: int = 4
    #: Labels are drawn for a batch in proportion to ``images ** label_power`` (0: uniformly).
    label_power: float = 0.0
    seed: int = 0
    #: The validation score early stopping keeps the best epoch by: "map" (ties broken by kNN@1)
    #: or "knn1" (ties broken by mAP). mAP moves smoothly where kNN@1 of a few hundred images jumps.
    select: str = "map"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InvalidArgument(f"unknown loss '{self.loss}': choose one of {', '.join(LOSSES)}")
        if self.select not in ("map", "knn1"):
            raise InvalidArgument(f"unknown validation score '{self.select}': choose map or knn1")
        if self.epochs < 1 or self.patience < 1:
            raise InvalidArgument(f"epochs and patience must be >= 1, got {self.epochs} and {self.patience}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise InvalidArgument(f"lr must be > 0 and weight decay >= 0, got {self.lr} and {self.weight_decay}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LabelledVectors:
    """Base vectors (normalised float32 rows) and one label per row."""

    vectors: np.ndarray
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.labels) != self.vectors.shape[0]:
            raise InvalidArgument(f"{self.vectors.shape} vectors with {len(self.labels)} labels: one label per row")


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: mean training loss (None for epoch 0) and the validation scores after it."""

    epoch: int
    loss: float | None
    val_knn1: float
    val_map: float


@dataclass
class FitResult:
    """The trained head (restored to its best epoch) and how training went."""

    module: torch.nn.Module
    best_epoch: int
    history: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def stopped_early(self) -> bool:
        return self.history[-1].epoch - self.best_epoch > 0 and len(self.history) > 1


def _embed(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return F.normalize(module(x), dim=1)


def validation_scores(val: np.ndarray, val_codes: np.ndarray, train: np.ndarray,
                      train_codes: np.ndarray) -> tuple[float, float]:
    """kNN@1 and mAP of each validation row querying training + validation rows (itself left out)."""
    if len(val) == 0:
        return 0.0, 0.0
    gallery = np.concatenate([train, val])
    codes = np.concatenate([train_codes, val_codes])
    sims = val @ gallery.T
    sims[np.arange(len(val)), len(train) + np.arange(len(val))] = -np.inf  # a query never finds itself
    order = np.argsort(-sims, axis=1, kind="stable")[:, :-1]
    relevant = codes[order] == val_codes[:, None]
    return float(relevant[:, 0].mean()), float(np.mean([average_precision(r) for r in relevant]))


def _codes(train: LabelledVectors, val: LabelledVectors) -> tuple[np.ndarray, np.ndarray]:
    names = {label: i for i, label in enumerate(sorted(set(train.labels) | set(val.labels)))}
    return (np.array([names[x] for x in train.labels], dtype=np.int64),
            np.array([names[x] for x in val.labels], dtype=np.int64))


def _epoch(module: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
           sampler: BalancedBatchSampler, settings: FitSettings) -> float:
    module.train()
    losses = []
    for batch in sampler:
        idx = torch.as_tensor(batch)
        z = module(x[idx])
        if settings.loss == "supcon":
            loss = supcon_loss(z, y[idx], temperature=settings.temperature)
        else:
            loss = triplet_loss(z, y[idx], margin=settings.margin)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    module.eval()
    return float(np.mean(losses))


def fit_head(module: torch.nn.Module, train: LabelledVectors, val: LabelledVectors, settings: FitSettings, *,
             progress: ProgressCallback | None = None) -> FitResult:
    """Train ``module`` (built by the caller under :func:`torch.random.fork_rng` with the seed)
    on ``train``, early-stopping on ``val``; returns it restored to its best epoch.

    Raises:
        InvalidArgument: no label with two training images (nothing to learn from), or the
            vectors contain NaN or infinity.
    """
    for name, part in (("training", train), ("validation", val)):
        if not np.isfinite(part.vectors).all():
            raise InvalidArgument(f"the {name} vectors hold NaN or infinity; re-embed the images "
                                  "(delete the embedding cache entry) and train again")
    train_codes, val_codes = _codes(train, val)
    if np.bincount(train_codes).max(initial=0) < 2:
        raise InvalidArgument("no label has two training images, so there is nothing to learn: give each label "
                              "more images (at least 5 each is a sensible minimum)")
    with one_thread():
        return _fit(module, train, val, train_codes, val_codes, settings, progress)


def _fit(module: torch.nn.Module, train: LabelledVectors, val: LabelledVectors, train_codes: np.ndarray,
         val_codes: np.ndarray, settings: FitSettings, progress: ProgressCallback | None) -> FitResult:
    start = time.perf_counter()
    x_train = torch.from_numpy(np.ascontiguousarray(train.vectors, dtype=np.float32))
    x_val = torch.from_numpy(np.ascontiguousarray(val.vectors, dtype=np.float32))
    y_train = torch.from_numpy(train_codes)
    sampler = BalancedBatchSampler(train_codes, labels_per_batch=settings.labels_per_batch,
                                   per_label=settings.per_label, seed=settings.seed,
                                   label_power=settings.label_power)
    opt = torch.optim.AdamW(module.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)

    def score() -> tuple[float, float]:
        return validation_scores(_embed(module, x_val).numpy(), val_codes, _embed(module, x_train).numpy(),
                                 train_codes)

    def key(knn1: float, mean_ap: float) -> tuple[float, float]:
        return (mean_ap, knn1) if settings.select == "map" else (knn1, mean_ap)

    module.eval()
    knn1, mean_ap = score()
    history = [EpochRecord(0, None, knn1, mean_ap)]
    best, best_epoch, best_state = key(knn1, mean_ap), 0, copy.deepcopy(module.state_dict())
    for epoch in range(1, settings.epochs + 1):
        loss = _epoch(module, opt, x_train, y_train, sampler, settings)
        knn1, mean_ap = score()
        history.append(EpochRecord(epoch, loss, knn1, mean_ap))
        if progress is not None:
            progress(ProgressEvent("train", done=epoch, total=settings.epochs,
                                   reason=f"loss {loss:.4f}, validation kNN@1 {knn1:.3f} mAP {mean_ap:.3f}"))
        if key(knn1, mean_ap) > best:
            best, best_epoch, best_state = key(knn1, mean_ap), epoch, copy.deepcopy(module.state_dict())
        elif epoch - best_epoch >= settings.patience:
            break
    module.load_state_dict(best_state)
    module.eval()
    return FitResult(module, best_epoch, history, time.perf_counter() - start)
