"""``BASE+head:DIR`` models (models/head_model.py) on the tiny local models: image vectors are
the head applied to the base's, text follows the head's kind, a changed base is refused, and
the exported (ONNX) graph of the composed model agrees with torch. Also ``lite:SIZE``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import lookalike
from lookalike.errors import ModelLoadError, UnsupportedModality
from lookalike.models.head import HeadConfig, ProjectionHead, apply_head, load_head, save_head
from lookalike.models.head_model import HeadModel, check_teacher, name_has_text
from lookalike.models.lite import LITE_PREPROCESS, LiteModel
from support import make_image


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("head-images")
    return [make_image(folder / f"{i}.png", seed=i, size=(40, 30)) for i in range(3)]


@pytest.fixture(scope="module")
def timm_base(tiny_timm_dir: Path):
    return lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu")


@pytest.fixture(scope="module")
def clip_base(tiny_clip_dir: Path):
    return lookalike.load_model(f"openclip:{tiny_clip_dir}", device="cpu")


def _head(folder: Path, base, *, kind: str = "projection", in_dim: int | None = None, out_dim: int = 16,
          seed: int = 0, **extra) -> Path:
    config = HeadConfig(kind=kind, arch="mlp" if kind == "projection" else "linear", in_dim=in_dim or base.dim,
                        out_dim=out_dim, base=base.model_id, base_fingerprint=base.fingerprint(), name=folder.name,
                        hidden=24 if kind == "projection" else None, **extra)
    torch.manual_seed(seed)
    module = ProjectionHead(config)
    with torch.no_grad():  # not the identity: a head that changes nothing would prove nothing
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return save_head(folder, module, config)


def test_image_vectors_are_the_head_applied_to_the_base(tmp_path: Path, tiny_timm_dir: Path, timm_base,
                                                        images: list[Path]) -> None:
    path = _head(tmp_path / "logos", timm_base)
    model = lookalike.load_model(f"timm:{tiny_timm_dir}+head:{path}", device="cpu")
    head = load_head(path)
    assert isinstance(model, HeadModel) and model.dim == 16 and model.preprocess == timm_base.preprocess
    assert model.model_id == f"timm:{tiny_timm_dir}+head:{head.id}"
    got = model.encode_images(images)
    assert np.allclose(got, apply_head(head, timm_base.encode_images(images)), atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert model.fingerprint() != timm_base.fingerprint()
    assert model.info()["head"]["id"] == head.id
    assert not model.supports_text and not name_has_text(f"timm:{tiny_timm_dir}+head:{path}")
    with pytest.raises(UnsupportedModality):
        model.encode_text("a cat")
    retrained = HeadModel(timm_base, load_head(_head(tmp_path / "other", timm_base, seed=1)))
    assert retrained.fingerprint() != model.fingerprint()  # the head's weights are in the fingerprint


def test_onnx_runtime_runs_the_composed_graph(tmp_path: Path, tiny_timm_dir: Path, timm_base, images: list[Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    path = _head(tmp_path / "h", timm_base)
    name = f"timm:{tiny_timm_dir}+head:{path}"
    on_torch = lookalike.load_model(name, device="cpu", runtime="torch")
    on_onnx = lookalike.load_model(name, device="cpu", runtime="onnx")
    assert on_onnx.runtime == "onnx" and on_onnx.fingerprint() == on_torch.fingerprint()
    assert np.allclose(on_onnx.encode_images(images), on_torch.encode_images(images), atol=1e-4)


def test_a_head_on_changed_base_weights_is_refused(tmp_path: Path, tiny_timm_dir: Path, timm_base) -> None:
    config = HeadConfig(kind="projection", arch="linear", in_dim=timm_base.dim, out_dim=8, base=timm_base.model_id,
                        base_fingerprint="0" * 16, name="stale")
    path = save_head(tmp_path / "stale", ProjectionHead(config), config)
    with pytest.raises(ModelLoadError, match="retrain the head"):
        lookalike.load_model(f"timm:{tiny_timm_dir}+head:{path}", device="cpu")
    with pytest.raises(ModelLoadError, match="fingerprint"):
        HeadModel(timm_base, load_head(path))


def test_projection_head_maps_text_too(tmp_path: Path, tiny_clip_dir: Path, clip_base, images: list[Path]) -> None:
    path = _head(tmp_path / "p", clip_base, out_dim=8)
    model = lookalike.load_model(f"openclip:{tiny_clip_dir}+head:{path}", device="cpu")
    head = load_head(path)
    texts = ["a cat", "a red car"]
    assert model.supports_text
    assert np.allclose(model.encode_text(texts), apply_head(head, clip_base.encode_text(texts)), atol=1e-5)
    assert np.allclose(model.encode_images(images), apply_head(head, clip_base.encode_images(images)), atol=1e-5)
    assert model.encode_text([]).shape == (0, 8)


def test_text_head_maps_text_and_leaves_images_alone(tmp_path: Path, tiny_clip_dir: Path, clip_base,
                                                     images: list[Path]) -> None:
    path = _head(tmp_path / "t", clip_base, kind="text", in_dim=clip_base.text_dim, out_dim=clip_base.dim)
    model = lookalike.load_model(f"openclip:{tiny_clip_dir}+head:{path}", device="cpu")
    assert model.dim == clip_base.dim and model.text_dim == clip_base.text_dim
    assert np.allclose(model.encode_images(images), clip_base.encode_images(images), atol=1e-6)
    texts = ["a cat", "a red car"]
    expected = apply_head(load_head(path), clip_base.text_features(texts))
    assert np.allclose(model.encode_text(texts), expected, atol=1e-5)
    assert np.allclose(model.text_features(texts), clip_base.text_features(texts), atol=1e-6)


def test_student_answers_text_with_its_teacher(tmp_path: Path, tiny_timm_dir: Path, tiny_clip_dir: Path, timm_base,
                                               clip_base, images: list[Path]) -> None:
    teacher = f"openclip:{tiny_clip_dir}"
    path = _head(tmp_path / "s", timm_base, kind="student", out_dim=clip_base.dim, teacher=teacher,
                 teacher_fingerprint=clip_base.fingerprint())
    model = lookalike.load_model(f"timm:{tiny_timm_dir}+head:{path}", device="cpu")
    assert model.supports_text and model._teacher is None  # image work never loads the teacher
    assert np.allclose(model.encode_images(images), apply_head(load_head(path), timm_base.encode_images(images)),
                       atol=1e-5)
    assert model._teacher is None
    assert np.allclose(model.encode_text(["a cat"]), clip_base.encode_text(["a cat"]), atol=1e-6)
    stale = _head(tmp_path / "stale", timm_base, kind="student", out_dim=clip_base.dim, teacher=teacher,
                  teacher_fingerprint="0" * 16)
    with pytest.raises(ModelLoadError, match="distill the student again"):
        check_teacher(load_head(stale), clip_base)  # what the first text query does with the teacher it loads
    gone = HeadModel(timm_base, load_head(_head(tmp_path / "gone", timm_base, kind="student", out_dim=clip_base.dim,
                                                 teacher=f"openclip:{tmp_path / 'moved'}", teacher_fingerprint="0")))
    assert gone.supports_text  # images still embed; the text query explains
    with pytest.raises(ModelLoadError, match="Make the teacher available again"):
        gone.encode_text("a cat")


def test_lite_is_unchanged_and_lite_size_changes_only_the_letterbox(lite_model: LiteModel) -> None:
    # The fingerprint every lite collection made before issue 13 recorded (for this weights package).
    assert lite_model.model_id == "lite" and lite_model.preprocess is LITE_PREPROCESS
    assert lite_model.fingerprint() == "1e930a1c4afe67f7"
    big = LiteModel("cpu", size=448)
    assert big.model_id == "lite:448" and big.preprocess.size == 448
    assert big.preprocess.resize_mode == "letterbox" and LiteModel.preprocess.size == 224
    assert big.fingerprint() != lite_model.fingerprint()


@pytest.mark.slow
def test_lite_text_features_are_minilm_before_the_bridge(lite_model: LiteModel) -> None:
    feats = lite_model.text_features(["a tabby cat", "a fire engine"])
    assert feats.shape == (2, 384) == (2, lite_model.text_dim)
    assert np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
    bridged = feats @ lite_model.bridge.cpu().numpy()
    bridged /= np.linalg.norm(bridged, axis=1, keepdims=True)
    assert np.allclose(bridged, lite_model.encode_text(["a tabby cat", "a fire engine"]), atol=1e-4)
