"""Metric-learning losses on tiny hand-made batches, and the balanced batch sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lookalike.apps.losses import BalancedBatchSampler, batch_hard_pairs, supcon_loss, triplet_loss
from lookalike.errors import InvalidArgument


def _unit(*angles: float) -> torch.Tensor:
    return torch.tensor([[math.cos(a), math.sin(a)] for a in angles], dtype=torch.float32)


def test_supcon_matches_the_formula_on_three_points() -> None:
    z = _unit(0.0, 0.3, 2.0)
    labels = torch.tensor([0, 0, 1])
    t = 0.5
    got = supcon_loss(z, labels, temperature=t)
    s = z @ z.T / t
    # anchors 0 and 1 each have one positive (the other); anchor 2 has none and is left out
    l0 = -(s[0, 1] - torch.logsumexp(s[0, [1, 2]], 0))
    l1 = -(s[1, 0] - torch.logsumexp(s[1, [0, 2]], 0))
    assert got.item() == pytest.approx(((l0 + l1) / 2).item(), rel=1e-5)


def test_supcon_gradient_pulls_positives_together_and_pushes_negatives_apart() -> None:
    z = torch.eye(3).requires_grad_(True)  # three orthogonal points: no direction is favoured but by labels
    labels = torch.tensor([0, 0, 1])
    supcon_loss(z, labels).backward()
    step = z.detach() - 0.01 * z.grad
    before = z.detach()
    cos = lambda a, b: torch.nn.functional.cosine_similarity(a, b, dim=0).item()  # noqa: E731
    assert cos(step[0], step[1]) > cos(before[0], before[1])  # positives closer
    assert cos(step[0], step[2]) < cos(before[0], before[2])  # negative farther


def test_supcon_is_lower_when_labels_cluster() -> None:
    z = _unit(0.0, 0.1, 3.0, 3.1)
    good = supcon_loss(z, torch.tensor([0, 0, 1, 1]))
    bad = supcon_loss(z, torch.tensor([0, 1, 0, 1]))
    assert good < bad


def test_losses_without_positives_are_zero_with_a_gradient() -> None:
    z = _unit(0.0, 1.0).requires_grad_(True)
    for loss in (supcon_loss(z, torch.tensor([0, 1])), triplet_loss(z, torch.tensor([0, 1]))):
        assert loss.item() == 0.0 and loss.requires_grad


def test_batch_hard_picks_the_farthest_positive_and_the_nearest_negative() -> None:
    # label 0 at angles 0, 0.2, 1.0; label 1 at 0.5 and 2.5
    z = _unit(0.0, 0.2, 1.0, 0.5, 2.5)
    labels = torch.tensor([0, 0, 0, 1, 1])
    pos, neg, valid = batch_hard_pairs(z, labels)
    assert valid.all()
    assert pos[0].item() == 2 and neg[0].item() == 3  # farthest same-label, nearest other-label
    assert pos[2].item() == 0 and neg[2].item() == 3
    assert pos[3].item() == 4 and neg[3].item() in (1, 2)
    assert neg[3].item() == 1  # 0.5 is 0.3 from 0.2 and 0.5 from 1.0


def test_triplet_value_and_gradient_direction() -> None:
    z = _unit(0.0, 1.0, 0.5).requires_grad_(True)
    labels = torch.tensor([0, 0, 1])
    loss = triplet_loss(z, labels, margin=0.2)
    d = lambda a, b: 2 * math.sin(abs(a - b) / 2)  # noqa: E731  chord length between unit vectors
    want = (max(0, d(0, 1) - d(0, 0.5) + 0.2) + max(0, d(1, 0) - d(1, 0.5) + 0.2)
            + max(0, 0 - 0 + 0.2) * 0) / 2  # anchor 2 has no positive: left out
    assert loss.item() == pytest.approx(want, rel=1e-4)
    loss.backward()
    step = z.detach() - 0.01 * z.grad
    assert (step[0] @ step[1]) / step[0].norm() / step[1].norm() > math.cos(1.0)


def test_triplet_is_zero_past_the_margin() -> None:
    z = _unit(0.0, 0.05, 3.0, 3.05)
    assert triplet_loss(z, torch.tensor([0, 0, 1, 1]), margin=0.2).item() == 0.0


def test_bad_settings_are_refused() -> None:
    z = _unit(0.0, 1.0)
    with pytest.raises(InvalidArgument):
        supcon_loss(z, torch.tensor([0, 1]), temperature=0)
    with pytest.raises(InvalidArgument):
        triplet_loss(z, torch.tensor([0]), margin=0.2)
    with pytest.raises(InvalidArgument):
        BalancedBatchSampler([], labels_per_batch=2, per_label=2)


def test_sampler_is_balanced_seeded_and_never_repeats_within_a_batch() -> None:
    labels = np.array([0] * 30 + [1] * 5 + [2] * 3 + [3] * 12)
    a = list(BalancedBatchSampler(labels, labels_per_batch=3, per_label=4, seed=7))
    b = list(BalancedBatchSampler(labels, labels_per_batch=3, per_label=4, seed=7))
    c = list(BalancedBatchSampler(labels, labels_per_batch=3, per_label=4, seed=8))
    assert a == b and a != c
    assert len(a) == round(labels.size / 12)
    for batch in a:
        assert len(set(batch)) == len(batch)
        per = np.bincount(labels[batch], minlength=4)
        assert (per[per > 0] == np.minimum(4, np.bincount(labels)[per > 0])).all()
        assert (per > 0).sum() == 3


def test_sampler_epochs_continue_the_stream_and_cover_every_image() -> None:
    labels = np.repeat(np.arange(4), 6)
    sampler = BalancedBatchSampler(labels, labels_per_batch=4, per_label=3, seed=0)
    e1, e2 = list(sampler), list(sampler)
    assert e1 != e2
    assert set(i for b in e1 + e2 for i in b) == set(range(labels.size))


def test_sampler_label_power_draws_large_labels_more_often() -> None:
    labels = np.array([0] * 90 + [1] * 10 + [2] * 10)
    counts = {}
    for power in (0.0, 1.0):
        sampler = BalancedBatchSampler(labels, labels_per_batch=1, per_label=2, seed=0, label_power=power)
        drawn = [labels[b[0]] for _ in range(20) for b in sampler]
        counts[power] = np.bincount(drawn, minlength=3) / len(drawn)
    assert counts[1.0][0] > 0.7 and counts[0.0][0] < 0.5
