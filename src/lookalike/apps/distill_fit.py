"""Distillation's two working parts: embedding augmented views, and fitting the head.

Kept apart from :mod:`.distill` (the orchestration and the report) so that each stays short.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..progress import ProgressCallback, ProgressEvent
from .augment import AugmentSettings, augmented_view

if TYPE_CHECKING:
    import torch

    from ..models.base import EmbeddingModel
    from ..models.head import HeadConfig, ProjectionHead
    from .distill import DistillSettings
    from .embed_cache import EmbeddingCache

__all__ = ["FitResult", "embed_views", "fit_head", "head_cosines", "VIEW_MIN_SIDE"]

#: Images are decoded with their short side kept at least this big before views are cut from
#: them: enough for a 448 px teacher after a crop of half the area, and it bounds the memory
#: a batch of large photos takes.
VIEW_MIN_SIDE = 640
#: Bump when :mod:`.augment` draws different views for the same settings (keys the view cache).
AUGMENT_RECIPE = 1


def embed_views(model: "EmbeddingModel", pairs: Sequence[tuple[Path, str]], *, views: int, seed: int,
                batch_size: int, cache: "EmbeddingCache",
                progress: ProgressCallback | None = None) -> np.ndarray:
    """``model``'s vectors of ``views`` augmented views of each image: ``(len(pairs) * views,
    dim)``, image-major (all views of the first image, then the next).

    Each view number is cached as its own "model" in ``cache``, keyed by the model's
    fingerprint, the seed and the augmentation recipe, so a re-run (another arch, more
    epochs) embeds no view again, and ``--views 4`` after ``--views 2`` embeds only two more.
    """
    from ..images.decode import decode_image

    out = np.empty((len(pairs), views, model.dim), dtype=np.float32)
    key_of = {str(path): h for path, h in pairs}
    recipe = hashlib.blake2b(f"{AUGMENT_RECIPE}:{AugmentSettings()}:{VIEW_MIN_SIDE}:{seed}".encode(),
                             digest_size=6).hexdigest()
    for view in range(views):
        def fn(paths: list[Path], view: int = view) -> np.ndarray:
            images = [augmented_view(decode_image(str(p), min_side=VIEW_MIN_SIDE).image, key=key_of[str(p)],
                                     view=view, seed=seed) for p in paths]
            return model.encode_images(images, batch_size=batch_size)

        out[:, view] = cache.embed_with(f"{model.fingerprint()}-view{view}-{recipe}", fn, pairs, dim=model.dim,
                                        progress=progress, name=f"{model.model_id} view {view}").vectors
    return out.reshape(len(pairs) * views, model.dim)


@dataclass
class FitResult:
    """The trained head (best validation epoch) and how training went."""

    module: "ProjectionHead"
    epochs: int
    best_epoch: int
    best_val_cos: float
    untrained_val_cos: float


def _cos(module: "torch.nn.Module", x: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
    """Row cosines of ``module(x)`` and ``y`` (``y`` is normalised)."""
    import torch

    return torch.sum(torch.nn.functional.normalize(module(x), dim=-1) * y, dim=-1)


def _val_cos(module: "torch.nn.Module", x: "torch.Tensor", y: "torch.Tensor") -> float:
    import torch

    with torch.no_grad():
        return float(_cos(module, x, y).mean())


def fit_head(config: "HeadConfig", x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
             *, settings: "DistillSettings", seed: int = 0, progress: ProgressCallback | None = None) -> FitResult:
    """Train a :class:`ProjectionHead` from ``config`` with the cosine loss ``1 - cos(head(x), y)``.

    Rows of ``x`` are normalised student vectors, of ``y`` normalised teacher vectors. AdamW,
    seeded shuffles; after each epoch the mean cosine on the validation rows decides whether
    to keep the weights; training stops after ``settings.patience`` epochs without a gain,
    and the best weights are restored.
    """
    import torch

    from ..models.head import ProjectionHead

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = ProjectionHead(config)
    from .head_fit import one_thread

    with one_thread():
        return _train(module, x_train, y_train, x_val, y_val, settings, seed, progress)


def _train(module: "ProjectionHead", x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
           settings: "DistillSettings", seed: int, progress: ProgressCallback | None) -> FitResult:
    import torch

    gen = torch.Generator().manual_seed(seed)
    xt, yt = _tensor(x_train), _tensor(y_train)
    xv, yv = _tensor(x_val), _tensor(y_val)
    opt = torch.optim.AdamW(module.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    untrained = best = _val_cos(module, xv, yv)
    best_state = {k: v.clone() for k, v in module.state_dict().items()}
    best_epoch = stale = epoch = 0
    for epoch in range(1, settings.epochs + 1):
        module.train()
        for rows in torch.randperm(len(xt), generator=gen).split(settings.batch_size):
            loss = (1.0 - _cos(module, xt[rows], yt[rows])).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        module.eval()
        score = _val_cos(module, xv, yv)
        if score > best + 1e-5:
            best, best_epoch, stale = score, epoch, 0
            best_state = {k: v.clone() for k, v in module.state_dict().items()}
        else:
            stale += 1
        if progress is not None:
            progress(ProgressEvent("train", done=epoch, total=settings.epochs, reason=f"val cosine {score:.4f}"))
        if stale >= settings.patience:
            break
    module.load_state_dict(best_state)
    module.eval()
    return FitResult(module, epoch, best_epoch, best, untrained)


def head_cosines(module: "ProjectionHead", student: np.ndarray, teacher: np.ndarray,
                 val: np.ndarray) -> tuple[float, float]:
    """Mean cosine of the head's output to the teacher on the training and the validation images."""
    from ..models.head import apply_head

    cos = np.sum(apply_head(module, student) * teacher, axis=1)
    return float(cos[~val].mean()), float(cos[val].mean())


def _tensor(a: np.ndarray) -> "torch.Tensor":
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
