"""Metric-learning losses and a class-balanced batch sampler, for training heads on vectors.

Both losses take a head's outputs, L2-normalise them (retrieval ranks by cosine similarity,
so the loss must see the geometry the index will see) and an integer label per row:

- :func:`supcon_loss`: supervised contrastive loss (Khosla et al. 2020, "L_out"): every
  other image of an anchor's label is a positive, every image of another label a negative.
- :func:`triplet_loss`: triplet loss with batch-hard mining (Hermans et al. 2017): each
  anchor's farthest positive against its nearest negative, in Euclidean distance.

Both need batches holding several images of several labels; :class:`BalancedBatchSampler`
draws them (P labels x K images, seeded), as both papers do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidArgument

__all__ = ["supcon_loss", "triplet_loss", "batch_hard_pairs", "BalancedBatchSampler", "LOSSES"]

LOSSES = ("supcon", "triplet")


def _check(z: torch.Tensor, labels: torch.Tensor) -> None:
    if z.ndim != 2 or labels.ndim != 1 or labels.shape[0] != z.shape[0]:
        raise InvalidArgument(f"a loss needs (B, d) outputs and B labels; got outputs {tuple(z.shape)} and "
                              f"labels {tuple(labels.shape)}")


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss of a batch (mean over anchors that have a positive).

    ``z``: ``(B, d)`` outputs, normalised here; ``labels``: ``(B,)`` integers. An anchor alone
    with its label in the batch has no positive and contributes nothing; a batch with no
    positive pair at all gives 0 (with a gradient, so the training loop needs no special case).
    """
    _check(z, labels)
    if temperature <= 0:
        raise InvalidArgument(f"the SupCon temperature must be > 0, got {temperature}")
    z = F.normalize(z, dim=1)
    n = z.shape[0]
    logits = z @ z.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    # The anchor itself is neither a positive nor in the denominator.
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    counts = positives.sum(dim=1)
    has_pos = counts > 0
    if not bool(has_pos.any()):
        return z.sum() * 0.0
    # -inf on the diagonal times a 0 mask would be NaN: zero those entries first.
    pos_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    return -(pos_log_prob[has_pos] / counts[has_pos]).mean()


def _distances(z: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between normalised rows; the epsilon keeps sqrt's gradient finite at 0."""
    sq = (2.0 - 2.0 * (z @ z.T)).clamp_min(0.0)
    return torch.sqrt(sq + 1e-12)


def batch_hard_pairs(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each anchor, the index of its hardest positive (farthest image of its label) and
    hardest negative (nearest image of another label), and a mask of anchors having both."""
    _check(z, labels)
    z = F.normalize(z, dim=1)
    dist = _distances(z)
    n = z.shape[0]
    same = labels[:, None] == labels[None, :]
    pos_mask = same & ~torch.eye(n, dtype=torch.bool, device=z.device)
    hardest_pos = dist.masked_fill(~pos_mask, float("-inf")).argmax(dim=1)
    hardest_neg = dist.masked_fill(same, float("inf")).argmin(dim=1)
    valid = pos_mask.any(dim=1) & (~same).any(dim=1)
    return hardest_pos, hardest_neg, valid


def triplet_loss(z: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Batch-hard triplet loss: mean over anchors of ``relu(d(a, p_hard) - d(a, n_hard) + margin)``.

    Distances are Euclidean between the normalised outputs (in [0, 2]). Anchors without a
    positive or a negative in the batch are left out; a batch with none left gives 0.
    """
    if margin < 0:
        raise InvalidArgument(f"the triplet margin must be >= 0, got {margin}")
    pos, neg, valid = batch_hard_pairs(z, labels)
    zn = F.normalize(z, dim=1)
    if not bool(valid.any()):
        return zn.sum() * 0.0
    dist = _distances(zn)
    rows = torch.arange(z.shape[0], device=z.device)
    losses = F.relu(dist[rows, pos] - dist[rows, neg] + margin)
    return losses[valid].mean()


class BalancedBatchSampler:
    """Batches of ``labels_per_batch`` labels x ``per_label`` images each, reproducible from ``seed``.

    Each label's images are walked in a shuffled order, reshuffled when used up. Labels are
    drawn with probability proportional to ``size ** label_power``: 0 (the default) draws them
    uniformly, so small labels are not drowned by large ones; 1 in proportion to their images. A label with fewer than ``per_label`` images gives all it has.
    One epoch has about as many images as the data (at least one batch). Iterating the
    sampler again continues the same seeded stream: epoch 2 differs from epoch 1, and two
    samplers built with the same arguments yield the same batches.
    """

    def __init__(self, labels: Sequence[int] | np.ndarray, *, labels_per_batch: int = 16, per_label: int = 4,
                 seed: int = 0, label_power: float = 0.0) -> None:
        codes = np.asarray(labels)
        if codes.ndim != 1 or codes.size == 0:
            raise InvalidArgument("the batch sampler needs a non-empty list of labels, one per image")
        if labels_per_batch < 1 or per_label < 1:
            raise InvalidArgument(f"labels_per_batch and per_label must be >= 1, got {labels_per_batch} "
                                  f"and {per_label}")
        self._rng = np.random.default_rng(seed)
        self._groups = [np.flatnonzero(codes == c) for c in np.unique(codes)]
        self._queues: list[list[int]] = [[] for _ in self._groups]
        weights = np.array([g.size for g in self._groups], dtype=np.float64) ** float(label_power)
        self._p = weights / weights.sum()
        self.labels_per_batch = min(labels_per_batch, len(self._groups))
        self.per_label = per_label
        batch = self.labels_per_batch * per_label
        self.batches_per_epoch = max(1, int(round(codes.size / batch)))

    def _take(self, group: int) -> list[int]:
        members = self._groups[group]
        want = min(self.per_label, members.size)
        queue = self._queues[group]
        taken: list[int] = []
        while len(taken) < want:
            if not queue:
                queue.extend(int(i) for i in self._rng.permutation(members))
            nxt = queue.pop()
            if nxt not in taken:  # a reshuffle must not repeat an image within one batch
                taken.append(nxt)
        return taken

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.batches_per_epoch):
            chosen = self._rng.choice(len(self._groups), size=self.labels_per_batch, replace=False, p=self._p)
            yield [i for g in sorted(int(c) for c in chosen) for i in self._take(g)]

    def __len__(self) -> int:
        return self.batches_per_epoch
