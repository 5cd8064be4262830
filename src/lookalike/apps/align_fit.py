"""Fitting a text head on (caption features, image vector) pairs: arrays in, a head out.

Two fits, both linear maps from the text encoder's space to the image space:

- :func:`fit_ridge`: closed-form ridge regression of the image vectors on the caption
  features, shrunk towards the model's own text tower (:func:`tower_prior`) rather than
  towards zero, with its strength chosen by caption->image retrieval on a validation part;
- :func:`fit_contrastive`: a linear head trained with InfoNCE (captions against the images of
  a batch, LiT-style: the image side is frozen), initialised from the ridge solution and
  early-stopped on the same validation part.

Retrieval (:func:`caption_retrieval`) ranks images for each distinct caption; an image is
relevant when its own caption is that caption (file-name captions repeat: ``flask-01.png``
and ``flask-02.png`` both answer "flask").
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..progress import ProgressCallback, ProgressEvent
from .evaluate import average_precision
from .head_fit import one_thread

__all__ = ["CaptionScores", "caption_retrieval", "ridge_solution", "tower_prior", "fit_ridge", "fit_contrastive", "RIDGE_STRENGTHS",
           "PairSet"]

#: Ridge strengths tried, relative to the number of fitting pairs (features are normalised, so
#: that is the trace of X^T X). With a prior, the large ones give the model's own text tower
#: back, so the validation pairs decide how far to move from it.
RIDGE_STRENGTHS = (1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)


@dataclass(frozen=True)
class PairSet:
    """Caption features, image vectors and caption ids (equal ids: equal captions), row by row."""

    text: np.ndarray
    images: np.ndarray
    captions: np.ndarray


@dataclass(frozen=True)
class CaptionScores:
    """Caption->image retrieval among a part's images: mAP and recall@k over distinct captions."""

    map: float
    recall_at: dict[int, float]
    queries: int
    images: int

    def to_dict(self) -> dict[str, object]:
        return {"map": self.map, "recall_at": {str(k): v for k, v in sorted(self.recall_at.items())},
                "queries": self.queries, "images": self.images}


def caption_retrieval(query_vectors: np.ndarray, part: PairSet, ks: Sequence[int] = (1, 5, 10)) -> CaptionScores:
    """Rank ``part``'s images for each distinct caption; ``query_vectors`` holds one vector per
    row of ``part`` (rows sharing a caption share a vector, so the first of each is used)."""
    ids, first = np.unique(part.captions, return_index=True)
    queries = np.asarray(query_vectors, dtype=np.float32)[first]
    sims = queries @ np.asarray(part.images, dtype=np.float32).T
    order = np.argsort(-sims, axis=1, kind="stable")
    relevant = part.captions[order] == ids[:, None]
    recall = {k: float(relevant[:, :k].any(axis=1).mean()) for k in ks}
    aps = [average_precision(row) for row in relevant]
    return CaptionScores(float(np.mean(aps)) if aps else 0.0, recall, len(ids), len(part.images))


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def ridge_solution(x: np.ndarray, y: np.ndarray, strength: float,
                   prior: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)``: ``W`` (``(in_dim, out_dim)``) minimises ``|xc W - yc|^2 + strength |W - prior|^2``
    on centred ``x`` and ``y`` (``prior`` defaults to zero), and ``b = -mean(x) W``, so a query
    predicts an image vector minus the mean image. The mean image is left out on purpose: it is
    the same for every query, and added to one it only ranks "typical" images first (on clip
    art's validation pairs, caption->image mAP 0.266 without it, 0.230 with it)."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    mx, my = x64.mean(axis=0), y64.mean(axis=0)
    xc, yc = x64 - mx, y64 - my
    p = np.zeros((x.shape[1], y.shape[1])) if prior is None else prior.astype(np.float64)
    gram = xc.T @ xc + strength * np.eye(x.shape[1])
    w = p + np.linalg.solve(gram, xc.T @ (yc - xc @ p))
    return w.astype(np.float32), (-mx @ w).astype(np.float32)


def tower_prior(features: np.ndarray, tower: np.ndarray, fit: PairSet) -> np.ndarray:
    """The model's own text tower as a linear map from its text features: the least-squares
    ``W0`` with ``features @ W0 ~ tower`` (exact for a linear tower such as lite's bridge, the
    identity for a CLIP model), scaled to the fitting pairs' image vectors, so that ridge
    shrinks towards what the model already knows instead of towards nothing."""
    w0 = np.linalg.lstsq(features.astype(np.float64), tower.astype(np.float64), rcond=None)[0]
    pred = fit.text.astype(np.float64) @ w0
    pred -= pred.mean(axis=0)
    target = fit.images.astype(np.float64) - fit.images.mean(axis=0)
    scale = float(np.sum(pred * target) / max(float(np.sum(pred * pred)), 1e-12))
    return (w0 * max(scale, 0.0)).astype(np.float32)


def fit_ridge(fit: PairSet, val: PairSet, prior: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float,
                                                                                    list[dict[str, float]]]:
    """The ridge map (shrunk towards ``prior``, if given) whose predictions retrieve ``val``'s
    images best (mAP); returns ``(W, b, strength, tried)`` with ``tried`` the validation mAP of
    every strength."""
    scale = float(len(fit.text))  # normalised rows: trace(X^T X) = n
    best: tuple[float, np.ndarray, np.ndarray, float] | None = None
    tried = []
    for rel in RIDGE_STRENGTHS:
        w, b = ridge_solution(fit.text, fit.images, rel * scale, prior)
        score = caption_retrieval(_normalise(val.text @ w + b), val).map
        tried.append({"strength": rel, "val_map": score})
        if best is None or score > best[0]:
            best = (score, w, b, rel)
    assert best is not None
    return best[1], best[2], best[3], tried


def _info_nce(pred: torch.Tensor, images: torch.Tensor, captions: torch.Tensor, temperature: float) -> torch.Tensor:
    """Caption->image InfoNCE in a batch; every image with the same caption is a positive."""
    logits = F.normalize(pred, dim=1) @ images.T / temperature
    positives = (captions[:, None] == captions[None, :]).float()
    target = positives / positives.sum(dim=1, keepdim=True)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@dataclass(frozen=True)
class ContrastiveSettings:
    """The contrastive fit's hyperparameters (chosen on clip art's validation pairs)."""

    epochs: int = 40
    patience: int = 5
    lr: float = 1e-4
    weight_decay: float = 0.0
    temperature: float = 0.05
    batch_size: int = 256


def fit_contrastive(module: torch.nn.Module, fit: PairSet, val: PairSet, settings: ContrastiveSettings, *,
                    seed: int = 0, progress: ProgressCallback | None = None) -> tuple[torch.nn.Module, int, float]:
    """Train ``module`` (already holding the ridge solution) with InfoNCE on ``fit``; returns it
    restored to the epoch with the best validation mAP (0: the ridge solution itself), that
    epoch, and its validation mAP."""
    with one_thread():
        return _fit_contrastive(module, fit, val, settings, seed, progress)


def _fit_contrastive(module: torch.nn.Module, fit: PairSet, val: PairSet, settings: ContrastiveSettings, seed: int,
                     progress: ProgressCallback | None) -> tuple[torch.nn.Module, int, float]:
    x = torch.from_numpy(np.ascontiguousarray(fit.text, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(fit.images, dtype=np.float32))
    c = torch.from_numpy(np.asarray(fit.captions, dtype=np.int64))
    x_val = torch.from_numpy(np.ascontiguousarray(val.text, dtype=np.float32))
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(module.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)

    def score() -> float:
        with torch.no_grad():
            return caption_retrieval(module(x_val).numpy(), val).map

    module.eval()
    best, best_epoch, best_state = score(), 0, copy.deepcopy(module.state_dict())
    for epoch in range(1, settings.epochs + 1):
        module.train()
        order = rng.permutation(len(x))
        for start in range(0, len(order), settings.batch_size):
            idx = torch.from_numpy(order[start:start + settings.batch_size])
            loss = _info_nce(module(x[idx]), y[idx], c[idx], settings.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        module.eval()
        current = score()
        if progress is not None:
            progress(ProgressEvent("train", done=epoch, total=settings.epochs,
                                   reason=f"contrastive: validation caption->image mAP {current:.3f}"))
        if current > best:
            best, best_epoch, best_state = current, epoch, copy.deepcopy(module.state_dict())
        elif epoch - best_epoch >= settings.patience:
            break
    module.load_state_dict(best_state)
    module.eval()
    return module, best_epoch, best
