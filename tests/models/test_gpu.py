"""CUDA path: reduced precision and channels_last must not change what the vectors mean.

Marked ``gpu``: skipped by default and on machines without CUDA. Run with ``pytest -m gpu``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_lite_on_cuda_matches_cpu(tmp_path, make_image) -> None:
    """bf16/fp16 + channels_last on CUDA gives vectors within 0.01 cosine of float32 on the CPU."""
    paths = [make_image(tmp_path / f"{i}.png", seed=i, size=(200, 150)) for i in range(24)]
    cpu = lookalike.load_model("lite", device="cpu").encode_images(paths)
    gpu_model = lookalike.load_model("lite", device="cuda")
    assert gpu_model.device.type == "cuda"
    gpu = gpu_model.encode_images(paths)
    assert gpu.dtype == np.float32
    assert np.all(np.sum(cpu * gpu, axis=1) > 0.99)
    text_cpu = lookalike.load_model("lite", device="cpu").encode_text(["a red apple"])
    text_gpu = gpu_model.encode_text(["a red apple"])
    assert float(text_cpu[0] @ text_gpu[0]) > 0.99
