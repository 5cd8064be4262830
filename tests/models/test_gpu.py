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


# ------------------------------------------------------------------------------ TorchEngine, pinned batches, gpu_decode
def _jpegs(tmp_path, n: int = 12) -> list:
    """Photo-like JPEGs (smooth, with EXIF orientation on some) of varied sizes."""
    from PIL import Image

    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        img = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(
            (300 + 37 * i, 200 + 23 * i), Image.Resampling.BICUBIC)
        exif = img.getexif()
        exif[0x0112] = (1, 6, 3, 8)[i % 4]
        path = tmp_path / f"{i}.jpg"
        img.save(path, quality=90, exif=exif.tobytes())
        paths.append(path)
    return paths


def test_torch_engine_on_cuda_uses_reduced_precision_and_matches_cpu() -> None:
    from lookalike.models.torch_engine import TorchEngine

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten()).eval()
    pixels = torch.randn(8, 3, 32, 32)
    cpu = TorchEngine(net, torch.device("cpu"), channels_last=False).run(pixels)
    cuda_net = net.to("cuda").to(memory_format=torch.channels_last)
    engine = TorchEngine(cuda_net, torch.device("cuda"), channels_last=True)
    assert engine.amp_dtype in (torch.bfloat16, torch.float16) and torch.backends.cudnn.benchmark
    for batch in (pixels, pixels.pin_memory(), pixels.numpy(), pixels.cuda()):
        out = engine.run(batch)
        assert out.dtype == np.float32
        cos = np.sum(out * cpu, axis=1) / np.linalg.norm(out, axis=1) / np.linalg.norm(cpu, axis=1)
        assert (cos > 0.999).all(), cos


def test_cuda_batches_come_from_pinned_memory(tmp_path, make_image, monkeypatch) -> None:
    model = lookalike.load_model("lite", device="cuda")
    seen = []
    real = model.embed_pixels

    def spy(pixels, **kw):
        seen.append(isinstance(pixels, torch.Tensor) and pixels.is_pinned())
        return real(pixels, **kw)

    monkeypatch.setattr(model, "embed_pixels", spy)
    paths = [make_image(tmp_path / f"{i}.png", seed=i) for i in range(10)]
    model.encode_images(paths, batch_size=4)
    assert seen == [True, True, True]


def test_gpu_decode_on_cuda_matches_the_cpu_path(tmp_path) -> None:
    from PIL import Image

    from lookalike.errors import UnreadableImage
    from lookalike.pipeline.gpu_decode import DeviceDecoder

    model = lookalike.load_model("lite", device="cuda")
    paths = _jpegs(tmp_path)
    png = tmp_path / "x.png"
    Image.open(paths[0]).save(png)
    sources = [paths[0], png, *paths[1:], paths[0].read_bytes()[:300]]  # a cut-short JPEG last
    cpu = model.encode_images(sources[:-1], batch_size=5)
    gpu = model.encode_images(sources[:-1], batch_size=5, gpu_decode=True)
    cos = np.sum(cpu * gpu, axis=1)
    assert cos.min() > 0.99 and cos.mean() > 0.995, cos
    with pytest.raises(UnreadableImage):
        model.encode_images(sources, gpu_decode=True)
    decoder = DeviceDecoder(model.preprocess, model.device, model.image_transform, 0)
    errors, pixels = decoder.decode_batch([decoder.stage(p) for p in paths])
    assert decoder.on_device == len(paths) and pixels.device.type == "cuda" and errors == [None] * len(paths)


def test_compiled_model_on_cuda_matches_eager(tmp_path, make_image) -> None:
    """Last in the file: compiling takes a minute."""
    paths = [make_image(tmp_path / f"{i}.png", seed=i, size=(120, 90)) for i in range(8)]
    eager = lookalike.load_model("lite", device="cuda").encode_images(paths)
    compiled = lookalike.load_model("lite", device="cuda", compile=True).encode_images(paths)
    assert np.all(np.sum(eager * compiled, axis=1) > 0.999)
