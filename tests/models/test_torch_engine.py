"""TorchEngine mechanics on the CPU: same features as the plain forward, the compile flag's
plumbing and refusals, the pinned-copy guard. The CUDA side is in test_gpu.py (marked gpu)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lookalike.errors import ModelLoadError
from lookalike.models import torch_engine
from lookalike.models.torch_engine import TorchEngine, compile_problem


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    ).eval()


def _pixels(n: int = 4, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, size, size)).astype(np.float32)


@pytest.mark.parametrize("channels_last", [False, True])
def test_run_matches_the_plain_forward(channels_last: bool) -> None:
    net = _net()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    engine = TorchEngine(net, torch.device("cpu"), channels_last=channels_last)
    assert engine.runtime == "torch" and engine.amp_dtype is None  # fp32 on the CPU
    pixels = _pixels()
    out = engine.run(pixels)
    with torch.no_grad():
        want = net(torch.from_numpy(pixels)).numpy()
    assert out.dtype == np.float32 and out.shape == (4, 8)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    # A tensor input (what GPU decoding hands over) gives the same, and order is kept.
    np.testing.assert_allclose(engine.run(torch.from_numpy(pixels[::-1].copy())), want[::-1], rtol=1e-5, atol=1e-6)


def test_forward_runs_under_inference_mode() -> None:
    seen = []

    def forward(batch: torch.Tensor) -> torch.Tensor:
        seen.append((torch.is_inference_mode_enabled(), batch.is_contiguous(memory_format=torch.channels_last)))
        return batch.mean(dim=(2, 3))

    TorchEngine(forward, torch.device("cpu"), channels_last=True).run(_pixels())
    assert seen == [(True, True)]


def test_compile_flag_wraps_the_forward_once(monkeypatch) -> None:
    calls = []

    shapes = []

    def fake_compile(fn, dynamic=None):
        calls.append((fn, dynamic))

        def compiled(batch):
            shapes.append(batch.shape[0])
            return fn(batch) * 2  # visibly "compiled"
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    net = _net()
    engine = TorchEngine(net, torch.device("cpu"), channels_last=False, compile=True)
    assert calls == [(net, False)] and engine.compiled
    pixels = _pixels()
    eager = TorchEngine(net, torch.device("cpu"), channels_last=False)
    np.testing.assert_allclose(engine.run(pixels), 2 * eager.run(pixels), rtol=1e-5)
    # A short (last) batch is padded to the compiled shape and cut back: same vectors, no new shape.
    short = engine.run(pixels[:3])
    assert short.shape == (3, 8)
    np.testing.assert_allclose(short, 2 * eager.run(pixels[:3]), rtol=1e-5, atol=1e-6)
    assert len(calls) == 1 and shapes == [4, 4]
    assert not TorchEngine(net, torch.device("cpu"), channels_last=False).compiled


def test_compile_without_a_cpp_compiler_is_refused_with_the_fix(monkeypatch) -> None:
    monkeypatch.setattr(torch_engine.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    assert "C++ compiler" in (compile_problem(torch.device("cpu")) or "")
    with pytest.raises(ModelLoadError, match="C\\+\\+ compiler.*drop --compile"):
        TorchEngine(_net(), torch.device("cpu"), channels_last=False, compile=True)


def test_a_compilation_that_fails_on_the_first_batch_names_the_fix(monkeypatch) -> None:
    def broken(batch: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("inductor exploded\nlong trace")

    monkeypatch.setattr(torch, "compile", lambda fn, dynamic=None: broken)
    engine = TorchEngine(_net(), torch.device("cpu"), channels_last=False, compile=True)
    with pytest.raises(ModelLoadError, match="torch.compile failed.*inductor exploded.*compile=False"):
        engine.run(_pixels())


def test_pinned_copies_are_only_asked_for_on_cuda(monkeypatch) -> None:
    """On the CPU the batch is used in place: no copy, no pin_memory (which needs CUDA)."""
    engine = TorchEngine(_net(), torch.device("cpu"), channels_last=False)
    batch = torch.from_numpy(_pixels())
    assert engine.to_device(batch).data_ptr() == batch.data_ptr()


@pytest.mark.slow
def test_real_compile_on_the_cpu_matches_eager() -> None:
    """torch.compile really runs on the CPU (inductor + the C++ compiler): tens of seconds."""
    if compile_problem(torch.device("cpu")):
        pytest.skip(compile_problem(torch.device("cpu")))
    net = _net()
    pixels = _pixels()
    eager = TorchEngine(net, torch.device("cpu"), channels_last=False).run(pixels)
    compiled = TorchEngine(net, torch.device("cpu"), channels_last=False, compile=True).run(pixels)
    np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-5)
