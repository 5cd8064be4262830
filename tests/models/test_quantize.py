"""Static int8 quantization: the calibration digest, the int8 cache, determinism, metadata,
typed errors, and int8 vectors of ``lite`` close to its fp32 ones on real clip art.

Mechanics use the tiny random timm model (64 px: quantizing it takes well under a second);
one test quantizes ``lite`` on a few real images.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike import InvalidArgument
from lookalike.models import quantize
from lookalike.models.quantize import (
    MIN_CALIBRATION_IMAGES,
    RECIPE,
    calibration_digest,
    quantize_image_tower,
    read_int8_metadata,
)
from lookalike.models.onnx_shapes import fold_static_shapes, shape_only_nodes

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def calib_images(tmp_path_factory: pytest.TempPathFactory, make_image) -> list[Path]:
    folder = tmp_path_factory.mktemp("calib")
    return [make_image(folder / f"img_{i:03d}.{'png' if i % 2 else 'jpg'}", seed=i)
            for i in range(MIN_CALIBRATION_IMAGES)]


@pytest.fixture(scope="module")
def tiny(tiny_timm_dir: Path):
    return lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu", runtime="torch")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _run(path: Path, pixels: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: pixels})[0]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


# --------------------------------------------------------------------------- digest
def test_digest_follows_content_and_order(calib_images: list[Path], tmp_path: Path) -> None:
    """Guards the cache key: copies and renames keep the digest, bytes hash as their file would,
    and a change of order or content gives another digest."""
    copies = []
    for i, p in enumerate(calib_images[:4]):
        copies.append(tmp_path / f"renamed_{i}{p.suffix}")
        shutil.copy(p, copies[-1])
    four = calib_images[:4]
    d = calibration_digest(four)
    assert len(d) == 16 and d == calibration_digest(copies) == calibration_digest([p.read_bytes() for p in four])
    assert calibration_digest(four[::-1]) != d
    assert calibration_digest(calib_images[:3]) != d
    img = Image.open(four[0]).convert("RGB")
    assert calibration_digest([img]) == calibration_digest([img.copy()]) != calibration_digest([img.rotate(90)])


def test_digest_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"missing\.jpg.*cannot be read.*pass images that exist"):
        calibration_digest([tmp_path / "missing.jpg"])
    with pytest.raises(InvalidArgument, match="paths, encoded bytes or PIL images, not int"):
        calibration_digest([3])  # type: ignore[list-item]


# --------------------------------------------------------------------------- quantize + cache
def test_quantize_caches_with_metadata(tiny, calib_images: list[Path], cache: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the int8 cache: named by fp32 fingerprint, runtime and digest, provenance in the
    metadata, a second call reuses the file, and a new recipe quantizes again."""
    events = []
    path = quantize_image_tower(tiny, calib_images, runtime="onnx", progress=events.append)
    digest = calibration_digest(calib_images)
    assert path == cache / "onnx" / tiny.fp32_fingerprint() / f"image-int8-onnx-{digest}.onnx"
    assert read_int8_metadata(path) == {"lookalike.calibration": digest, "lookalike.recipe": str(RECIPE),
                                        "lookalike.base": tiny.fp32_fingerprint(), "lookalike.runtime": "onnx"}
    assert events[-1].done == events[-1].total == len(calib_images) and events[-1].reason == "int8 calibration"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops

    def fail(*args, **kwargs):
        raise AssertionError("quantized again")

    monkeypatch.setattr(quantize, "_quantize", fail)
    assert quantize_image_tower(tiny, [str(p) for p in calib_images], runtime="onnx") == path
    monkeypatch.setattr(quantize, "RECIPE", RECIPE + 1)
    with pytest.raises(AssertionError, match="quantized again"):
        quantize_image_tower(tiny, calib_images, runtime="onnx")


def test_quantize_is_deterministic(tiny, calib_images: list[Path], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards reproducible int8 vectors: two caches, the same images, the same bytes; and the
    int8 vectors stay near fp32 ones (random weights: a loose bound)."""
    made = []
    for name in ("a", "b"):
        monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / name))
        made.append(quantize_image_tower(tiny, calib_images, runtime="openvino"))
    assert made[0].name == made[1].name and made[0].read_bytes() == made[1].read_bytes()
    pixels = np.stack([tiny.image_transform(Image.open(p).convert("RGB")) for p in calib_images[:4]])
    cos = np.sum(_run(made[0], pixels) * tiny.embed_pixels(pixels), axis=1)
    assert cos.min() > 0.9


def test_quantize_errors(tiny, calib_images: list[Path], cache: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="onnx or openvino runtime, not 'torch'"):
        quantize_image_tower(tiny, calib_images, runtime="torch")
    with pytest.raises(InvalidArgument, match="3 calibration images are too few"):
        quantize_image_tower(tiny, calib_images[:3], runtime="onnx")
    junk = []
    for i in range(MIN_CALIBRATION_IMAGES):
        junk.append(tmp_path / f"junk_{i}.jpg")
        junk[-1].write_bytes(b"not an image %d" % i)
    with pytest.raises(InvalidArgument, match=f"only 1 of {MIN_CALIBRATION_IMAGES + 1} calibration images could be"):
        quantize_image_tower(tiny, junk + calib_images[:1], runtime="onnx")
    assert not list(cache.rglob("image-int8-*"))


def test_read_int8_metadata_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no such int8 model file"):
        read_int8_metadata(tmp_path / "nope.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(lookalike.ModelLoadError, match="not a readable ONNX model.*quantize again"):
        read_int8_metadata(tmp_path / "bad.onnx")


# --------------------------------------------------------------------------- lite on real images
def test_lite_int8_close_to_fp32(lite_model, clipart_labelled: dict[str, list[Path]], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the recipe on the real model: lite's TF 'SAME' padding computes pad widths from
    shapes, which must not be quantized (they shifted the feature maps: cosine 0.92); they are
    folded into constants (int8 ran about 1.7x faster on ONNX Runtime)."""
    # The fp32 export stays in the usual cache (test_runtime shares it); the int8 graph is new each run.
    monkeypatch.setattr(quantize, "int8_path", lambda model, runtime, digest: tmp_path / f"{runtime}-{digest}.onnx")
    paths = [p for ps in clipart_labelled.values() for p in ps]
    path = quantize_image_tower(lite_model, paths[::20][:MIN_CALIBRATION_IMAGES], runtime="onnx")
    assert not shape_only_nodes(path) and "Shape" not in {n.op_type for n in onnx.load(str(path)).graph.node}
    from lookalike.images.decode import decode_image

    held_out = paths[1::25][:8]
    pixels = np.stack([lite_model.image_transform(decode_image(p).image) for p in held_out])
    cos = np.sum(_run(path, pixels) * lite_model.embed_pixels(pixels), axis=1)
    assert cos.mean() > 0.97 and cos.min() > 0.9, cos


@pytest.mark.parametrize("group", [1, 4])
def test_bias_correction_shift_matches_a_convolution(group: int) -> None:
    """Guards the bias correction's arithmetic, grouped and depthwise-style convolutions alike: on
    an input that is constant per channel, a conv with the rounding error as weights outputs the shift."""
    import torch

    from lookalike.models.int8_bias import _output_shift

    rng = np.random.default_rng(0)
    dw = rng.normal(size=(8, 8 // group, 3, 3))
    mean = rng.normal(size=8)
    x = torch.from_numpy(np.broadcast_to(mean.reshape(1, 8, 1, 1), (1, 8, 5, 5)).copy())
    expected = torch.nn.functional.conv2d(x, torch.from_numpy(dw), groups=group)[0, :, 1, 1].numpy()
    assert np.allclose(_output_shift(dw, mean, group), expected)
    assert _output_shift(dw, mean[:4], group) is None  # shapes it does not know: left alone


def _same_pad_graph(tmp_path: Path, dynamic_side: bool) -> Path:
    """A TF-'SAME' strided conv (timm's Conv2dSame computes its pads from the input shape) as ONNX."""
    import timm.layers
    import torch

    torch.manual_seed(0)
    conv = timm.layers.Conv2dSame(3, 4, 3, stride=2).eval()
    axes = {0: "batch", 2: "h", 3: "w"} if dynamic_side else {0: "batch"}
    path = tmp_path / f"same-{dynamic_side}.onnx"
    with torch.no_grad():
        torch.onnx.export(conv, (torch.randn(1, 3, 15, 15),), str(path), dynamo=False, input_names=["pixels"],
                          output_names=["features"], dynamic_axes={"pixels": axes, "features": {0: "batch"}})
    return path


def test_fold_static_shapes(tmp_path: Path) -> None:
    """Guards the folding of shape arithmetic: with a fixed image side the pads become constants and
    the outputs do not change at any batch size; with a dynamic side nothing is folded."""
    import onnxruntime as ort

    static = _same_pad_graph(tmp_path, dynamic_side=False)
    assert shape_only_nodes(static)
    folded, count = fold_static_shapes(static)
    assert count and not shape_only_nodes(folded) and "Shape" not in {n.op_type for n in folded.graph.node}
    x = np.random.default_rng(0).normal(size=(3, 3, 15, 15)).astype(np.float32)
    before = ort.InferenceSession(str(static), providers=["CPUExecutionProvider"]).run(None, {"pixels": x})[0]
    after = ort.InferenceSession(folded.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"pixels": x})[0]
    assert np.array_equal(before, after)
    dynamic = _same_pad_graph(tmp_path, dynamic_side=True)
    assert fold_static_shapes(dynamic)[1] == 0


def test_every_calibration_batch_sets_the_ranges(tiny, calib_images: list[Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards against onnxruntime's CalibMaxIntermediateOutputs, which drops every full group of
    batches (microsoft/onnxruntime#20226): changing only the first images must move the ranges."""
    from onnx import numpy_helper

    def activation_scales(path: Path) -> dict[str, float]:
        graph = onnx.load(str(path)).graph
        values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        return {n.input[0]: float(values[n.input[1]]) for n in graph.node if n.op_type == "QuantizeLinear"}

    many = calib_images * 3  # 48 images: 12 batches, more than a group of 8
    bright = [Image.new("RGB", (64, 64), (255, 255, 255)), Image.new("RGB", (64, 64), (0, 0, 0))] * 2
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    first = activation_scales(quantize_image_tower(tiny, many, runtime="onnx"))
    second = activation_scales(quantize_image_tower(tiny, bright + many[4:], runtime="onnx"))
    assert first.keys() == second.keys() and first != second


def test_the_other_runtime_reuses_the_graph(tiny, calib_images: list[Path], cache: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` asks for both runtimes' int8 graphs; the second is the first relabelled, not
    calibrated and quantized again (that doubled the time of an int8 collection's creation)."""
    first = quantize.quantize_image_tower(tiny, calib_images, runtime="onnx")
    monkeypatch.setattr(quantize, "_quantize", lambda *a: pytest.fail("quantized again"))
    second = quantize.quantize_image_tower(tiny, calib_images, runtime="openvino")
    assert second != first and quantize.read_int8_metadata(second)["lookalike.runtime"] == "openvino"
    assert quantize.read_int8_metadata(first)["lookalike.runtime"] == "onnx"
    pixels = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    assert np.array_equal(_run(first, pixels), _run(second, pixels))
