"""Pinned-memory batches (pipeline.loader.PinnedBatches) and their use by embed_prepared.

Pinning needs CUDA, so the mechanics run here with ordinary buffers (``pin=False``); the
guard that keeps a CPU-only machine off ``pin_memory`` is checked too.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import torch

from lookalike.errors import UnreadableImage
from lookalike.pipeline import embed as embed_mod
from lookalike.pipeline.embed import Prepared, _batches, _embed_batches, embed_prepared, wants_pinned_batches
from lookalike.pipeline.loader import PinnedBatches, pinned_memory_available


def _items(n: int, fail: set[int]) -> list[Prepared[int]]:
    out = []
    for i in range(n):
        if i in fail:
            out.append(Prepared.failed(i, UnreadableImage(f"{i}.jpg", "broken")))
        else:
            out.append(Prepared(i, pixels=np.full((3, 4, 4), i, dtype=np.float32)))
    return out


def test_buffers_are_reused_only_after_release() -> None:
    pool = PinnedBatches(pin=False)
    a = pool.stack([np.ones((3, 2, 2), np.float32)] * 3, capacity=4)
    b = pool.stack([np.zeros((3, 2, 2), np.float32)] * 4, capacity=4)
    assert a.shape == (3, 3, 2, 2) and b.shape == (4, 3, 2, 2)
    assert a._base.data_ptr() != b._base.data_ptr() and pool.allocated == 2
    pool.release(a)
    c = pool.stack([np.full((3, 2, 2), 7, np.float32)] * 2, capacity=4)
    assert c.data_ptr() == a.data_ptr() and pool.allocated == 2  # a's buffer, reused
    assert float(c.sum()) == 7 * 24 and float(b.sum()) == 0  # b untouched


def test_embed_with_pinned_batches_keeps_order_and_failures() -> None:
    seen: list[tuple[str, tuple[int, ...]]] = []

    def embed(pixels):
        seen.append((type(pixels).__name__, tuple(pixels.shape), threading.current_thread().name))
        arr = pixels.numpy() if isinstance(pixels, torch.Tensor) else pixels
        return arr[:, :1, 0, 0].copy()  # the vector is the item's index

    pool = PinnedBatches(pin=False)
    out = list(_embed_batches(embed, _batches(iter(_items(11, {2, 7})), 4), 4, pool))
    assert [p.item for p, _ in out] == list(range(11))
    for p, vec in out:
        if p.item in (2, 7):
            assert vec is None and p.error is not None
        else:
            assert vec[0] == p.item and p.pixels is None
    assert {s[0] for s in seen} == {"Tensor"} and pool.allocated <= 3  # buffers came back
    assert all(s[2] == threading.current_thread().name for s in seen)  # the model runs in the caller


def test_pinning_is_asked_for_only_where_it_exists(monkeypatch) -> None:
    assert pinned_memory_available() == torch.cuda.is_available()
    cpu = SimpleNamespace(device=torch.device("cpu"), runtime="torch")
    cuda = SimpleNamespace(device=torch.device("cuda"), runtime="torch")
    assert not wants_pinned_batches(cpu) and wants_pinned_batches(cuda)
    assert not wants_pinned_batches(SimpleNamespace(device=torch.device("cuda"), runtime="onnx"))
    # Asked for on a machine without CUDA: plain numpy batches, no pin_memory call.
    monkeypatch.setattr(embed_mod, "pinned_memory_available", lambda: False)
    kinds = []
    list(embed_prepared(lambda px: kinds.append(type(px)) or px[:, :1, 0, 0], iter(_items(5, set())),
                        batch_size=2, pin_memory=True))
    assert kinds == [np.ndarray] * 3
