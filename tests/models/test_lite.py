"""The bundled ``lite`` model: weight mapping, preprocessing verified on real photos, encoding, text bridge."""

from __future__ import annotations

import copy
import hashlib
import io
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image

from lookalike import ModelLoadError, UnreadableImage
from lookalike.images.decode import decode_image
from lookalike.images.transforms import PreprocessConfig, build_transform
from lookalike.models import lite_bridge
from lookalike.models.lite import LITE_PREPROCESS, LiteModel, lite_weights_path, map_lukemelas_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def lukemelas_state() -> dict[str, torch.Tensor]:
    """The packaged EfficientNet-Lite0 state dict, in lukemelas' naming."""
    return torch.load(lite_weights_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def tf_lite0() -> torch.nn.Module:
    """An untrained timm tf_efficientnet_lite0, the mapping target."""
    import timm

    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)


@pytest.fixture(scope="module")
def imagenet_index() -> Callable[[str], int]:
    """``imagenet_index("ladybug")``: the ImageNet-1k class whose first synonym is that name."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    first = {info.index_to_description(i).split(",")[0].strip(): i for i in range(info.num_classes())}
    return first.__getitem__


def _pixels(path: Path, cfg: PreprocessConfig) -> np.ndarray:
    """One photo decoded as the pipeline does and preprocessed with ``cfg``: a (1, 3, S, S) batch."""
    decoded = decode_image(path, min_side=cfg.min_decode_side)
    return build_transform(cfg)(decoded.image)[None]


def _probs(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()[0]


# --------------------------------------------------------------------------- weight mapping
def test_map_covers_every_tensor_with_matching_shapes(
    lukemelas_state: dict[str, torch.Tensor], tf_lite0: torch.nn.Module
) -> None:
    """Guards that all 296 packaged tensors land on timm's names, each with the target's shape."""
    assert len(lukemelas_state) == 296
    mapped = map_lukemelas_state_dict(lukemelas_state, tf_lite0)
    target = tf_lite0.state_dict()
    assert len(mapped) == 296 and set(mapped) == set(target)
    assert all(tuple(mapped[k].shape) == tuple(target[k].shape) for k in target)
    # Spot-check the renaming itself, not only the key sets: first block is dw-then-pw, later ones expand.
    pairs = {
        "conv_stem.weight": "_conv_stem.weight",
        "bn2.running_var": "_bn1.running_var",
        "blocks.0.0.conv_dw.weight": "_blocks.0._depthwise_conv.weight",
        "blocks.0.0.conv_pw.weight": "_blocks.0._project_conv.weight",
        "blocks.1.0.conv_pw.weight": "_blocks.1._expand_conv.weight",
        "blocks.1.0.conv_pwl.weight": "_blocks.1._project_conv.weight",
        "blocks.6.0.bn3.bias": "_blocks.15._bn2.bias",
        "classifier.weight": "_fc.weight",
    }
    for new, old in pairs.items():
        assert mapped[new] is lukemelas_state[old], new


@pytest.mark.parametrize(
    ("mutate", "complaint"),
    [
        (lambda sd: sd.__setitem__("_blocks.3._se_reduce.weight", torch.zeros(1)), "unexpected tensor"),
        (lambda sd: sd.__setitem__("_blocks.16._depthwise_conv.weight", torch.zeros(1)), "unexpected tensor"),
        (lambda sd: sd.__setitem__("_extra.weight", torch.zeros(1)), "unexpected tensor"),
        (lambda sd: sd.pop("_bn1.running_var"), "missing ['bn2.running_var']"),
        (lambda sd: sd.pop("_blocks.4._expand_conv.weight"), "unexpected tensor '_blocks.4._bn0."),
        (lambda sd: sd.__setitem__("_conv_stem.weight", sd["_conv_stem.weight"].transpose(0, 1)), "wrong shape"),
    ],
    ids=["unknown-layer", "block-out-of-range", "unknown-top-level", "missing-bn", "missing-expand", "shape"],
)
def test_map_rejects_unexpected_or_missing_tensors(
    lukemelas_state: dict[str, torch.Tensor], tf_lite0: torch.nn.Module, mutate: Callable[[dict], Any],
    complaint: str,
) -> None:
    """Guards that any layout drift in the weights package fails loudly instead of loading garbage."""
    state = dict(lukemelas_state)
    mutate(state)
    with pytest.raises(ModelLoadError, match="EfficientNet-Lite0") as info:
        map_lukemelas_state_dict(state, tf_lite0)
    assert complaint in str(info.value)
    assert len(lukemelas_state) == 296  # the fixture's dict was copied, not mutated


# --------------------------------------------------------------------------- ImageNet on real photos
@pytest.mark.parametrize(("photo_name", "label"), [("LadyBird.jpg", "ladybug"), ("YellowFlower.jpg", "daisy")])
def test_imagenet_top1_on_real_photos(
    lite_model: LiteModel, photo: Callable[[str], Path], imagenet_index: Callable[[str], int],
    photo_name: str, label: str,
) -> None:
    """Guards the weights + [-1, 1] preprocessing end to end: real photos get their ImageNet class."""
    pixels = _pixels(photo(photo_name), lite_model.preprocess)
    probs = _probs(lite_model.classify(pixels))
    assert int(probs.argmax()) == imagenet_index(label)
    assert probs[imagenet_index(label)] > 0.5


def test_tf_preprocessing_beats_the_naive_alternatives(
    lite_model: LiteModel, lukemelas_state: dict[str, torch.Tensor], photo: Callable[[str], Path],
    imagenet_index: Callable[[str], int],
) -> None:
    """Documents why lite is tf_efficientnet_lite0 fed [-1, 1] inputs rather than the obvious choices.

    The weights come from Google's TF release: (a) the same TF graph fed ImageNet mean/std, or
    (b) timm's PyTorch-style ``efficientnet_lite0`` (symmetric padding, BN eps 1e-5) with
    ImageNet mean/std, both give the ladybug photo a much lower ladybug probability.
    """
    import timm

    ladybug = imagenet_index("ladybug")
    path = photo("LadyBird.jpg")
    ours = _probs(lite_model.classify(_pixels(path, LITE_PREPROCESS)))[ladybug]

    imagenet_cfg = replace(LITE_PREPROCESS, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    imagenet_pixels = _pixels(path, imagenet_cfg)
    tf_with_imagenet_stats = _probs(lite_model.classify(imagenet_pixels))[ladybug]

    naive = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    naive.load_state_dict(map_lukemelas_state_dict(lukemelas_state, naive), strict=True)
    with torch.inference_mode():
        naive_logits = naive.eval()(torch.from_numpy(imagenet_pixels)).numpy()
    pytorch_arch_with_imagenet_stats = _probs(naive_logits)[ladybug]

    assert ours > 0.5
    assert tf_with_imagenet_stats < ours / 2
    assert pytorch_arch_with_imagenet_stats < ours / 2


def test_lite_preprocess_is_tf_style() -> None:
    """Guards the constants the photo tests depend on: 224 px, letterbox, inputs scaled to [-1, 1]."""
    assert (LITE_PREPROCESS.size, LITE_PREPROCESS.resize_mode) == (224, "letterbox")
    black = np.zeros((10, 10, 3), np.uint8)
    white = np.full((10, 10, 3), 255, np.uint8)
    transform = build_transform(LITE_PREPROCESS)
    assert np.allclose(transform(Image.fromarray(black))[:, 112, 112], -1.0)
    assert np.allclose(transform(Image.fromarray(white))[:, 112, 112], 1.0)


# --------------------------------------------------------------------------- encode_images / encode_text
def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def mixed_sources(tmp_path: Path, make_image: Callable[..., Path]) -> list[Any]:
    """Six distinct images as paths (str and Path, PNG and JPEG), a PIL image, and encoded bytes."""
    paths = [make_image(tmp_path / f"img{i}.{'png' if i % 2 else 'jpg'}", seed=i) for i in range(4)]
    pil = Image.open(make_image(tmp_path / "pil.png", seed=10)).convert("RGB")
    raw = _png_bytes(Image.open(make_image(tmp_path / "raw.png", seed=11, size=(50, 120))))
    return [str(paths[0]), paths[1], pil, str(paths[2]), raw, paths[3]]


def test_encode_images_mixed_sources(lite_model: LiteModel, mixed_sources: list[Any]) -> None:
    """Guards encode_images' contract: float32 (N, 1280), unit rows, distinct rows for distinct images."""
    vecs = lite_model.encode_images(mixed_sources, batch_size=4, workers=2)
    assert vecs.dtype == np.float32 and vecs.shape == (6, 1280)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sims = vecs @ vecs.T
    assert (sims[~np.eye(6, dtype=bool)] < 0.999).all()


def test_encode_images_order_and_batching(lite_model: LiteModel, mixed_sources: list[Any]) -> None:
    """Guards that output rows follow input order through parallel decoding, and batching changes nothing."""
    base = lite_model.encode_images(mixed_sources, batch_size=4, workers=2)
    perm = np.random.default_rng(0).permutation(len(mixed_sources))
    shuffled = lite_model.encode_images([mixed_sources[i] for i in perm], batch_size=4, workers=2)
    np.testing.assert_allclose(shuffled, base[perm], atol=1e-5)
    singles = np.concatenate([lite_model.encode_images([s]) for s in mixed_sources])
    np.testing.assert_allclose(singles, base, atol=1e-5)
    raw = lite_model.encode_images(mixed_sources[:2], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), base[:2], atol=1e-5)


@pytest.mark.parametrize("content", [b"this is not an image", None], ids=["garbage", "missing"])
def test_encode_images_unreadable_names_the_file(
    lite_model: LiteModel, tmp_path: Path, make_image: Callable[..., Path], content: bytes | None
) -> None:
    """Guards that one bad input fails the call with UnreadableImage naming that file."""
    good = make_image(tmp_path / "good.png", seed=1)
    bad = tmp_path / "bad.jpg"
    if content is not None:
        bad.write_bytes(content)
    with pytest.raises(UnreadableImage) as info:
        lite_model.encode_images([good, bad, good])
    assert info.value.path == str(bad)
    assert str(bad) in str(info.value)


def test_encode_text_shapes(lite_model: LiteModel) -> None:
    """Guards encode_text: (N, 1280) unit rows, a str is one text, an empty list gives (0, 1280)."""
    vecs = lite_model.encode_text(["a ladybug", "a yellow flower", "a red sports car"])
    assert vecs.dtype == np.float32 and vecs.shape == (3, 1280)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    one = lite_model.encode_text("a ladybug")
    assert one.shape == (1, 1280)
    np.testing.assert_allclose(one[0], vecs[0], atol=1e-5)
    empty = lite_model.encode_text([])
    assert empty.shape == (0, 1280) and empty.dtype == np.float32


def test_text_bridge_finds_the_right_photo(lite_model: LiteModel, photo: Callable[[str], Path]) -> None:
    """Guards that text and image vectors share a space: each caption prefers its own real photo."""
    images = lite_model.encode_images([photo("LadyBird.jpg"), photo("YellowFlower.jpg")])
    texts = lite_model.encode_text(["a ladybug", "a daisy flower"])
    sims = texts @ images.T
    assert sims[0, 0] > sims[0, 1]
    assert sims[1, 1] > sims[1, 0]


def test_fingerprint_stable_and_sensitive_to_preprocess(lite_model: LiteModel) -> None:
    """Guards the fingerprint: equal across loads, different once the preprocessing differs."""
    again = LiteModel(device="cpu")
    assert again.fingerprint() == lite_model.fingerprint()
    assert len(lite_model.fingerprint()) == 16
    changed = copy.copy(again)
    changed.preprocess = replace(LITE_PREPROCESS, resize_mode="crop", crop_pct=0.875)
    assert changed.fingerprint() != lite_model.fingerprint()
    resized = copy.copy(again)
    resized.preprocess = replace(LITE_PREPROCESS, size=256)
    assert resized.fingerprint() not in (lite_model.fingerprint(), changed.fingerprint())
    assert lite_model.info()["fingerprint"] == lite_model.fingerprint()


# --------------------------------------------------------------------------- the text bridge
class FakeEncoder:
    """A stand-in for MiniLM: deterministic unit vectors per text, counting calls."""

    def __init__(self, dim: int = 16) -> None:
        self.dim = dim
        self.calls = 0

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        self.calls += 1
        seeds = [int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little") for t in texts]
        rows = [np.random.default_rng(seed).standard_normal(self.dim) for seed in seeds]
        out = np.asarray(rows, dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def classifier() -> np.ndarray:
    """A random stand-in for the 1000 x 24 ImageNet classifier."""
    return np.random.default_rng(0).standard_normal((1000, 24)).astype(np.float32)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$LOOKALIKE_CACHE pointed at an empty temporary folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("LOOKALIKE_CACHE", str(folder))
    return folder


def test_fit_bridge_is_deterministic_and_recovers_a_linear_map() -> None:
    """Guards fit_bridge: same input, same bytes; with no ridge it recovers an exact (rotation) map."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rotation, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    y = (x @ rotation) * rng.uniform(0.5, 3.0, size=(300, 1))  # rows are rescaled: the fit normalises them
    first = lite_bridge.fit_bridge(x, y, ridge=0.0)
    assert first.dtype == np.float32 and first.shape == (16, 16)
    np.testing.assert_array_equal(first, lite_bridge.fit_bridge(x, y, ridge=0.0))
    np.testing.assert_allclose(first, rotation, atol=1e-5)
    shrunk = lite_bridge.fit_bridge(x, y)  # the default ridge pulls the map towards zero
    assert np.linalg.norm(shrunk) < np.linalg.norm(first)


def test_bridge_cache_written_and_reused(cache: Path, classifier: np.ndarray) -> None:
    """Guards that the bridge is cached under $LOOKALIKE_CACHE and a second call does not re-encode."""
    first_encoder = FakeEncoder()
    matrix = lite_bridge.load_or_fit_bridge(classifier, first_encoder, weights_digest="w1")
    assert first_encoder.calls == 1 and matrix.shape == (16, 24) and matrix.dtype == np.float32
    files = list(cache.glob("lite-bridge-*.npy"))
    assert len(files) == 1
    np.testing.assert_array_equal(np.load(files[0]), matrix)

    second_encoder = FakeEncoder()
    again = lite_bridge.load_or_fit_bridge(classifier, second_encoder, weights_digest="w1")
    assert second_encoder.calls == 0
    np.testing.assert_array_equal(again, matrix)

    other_weights = FakeEncoder()
    lite_bridge.load_or_fit_bridge(classifier, other_weights, weights_digest="w2")
    assert other_weights.calls == 1 and len(list(cache.glob("lite-bridge-*.npy"))) == 2


def _truncated_npy(path: Path) -> None:
    np.save(path, np.ones((16, 24), np.float32))
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(b"definitely not numpy"),
        _truncated_npy,
        lambda p: np.save(p, np.ones((2, 2), np.float32)),
        lambda p: np.save(p, np.full((16, 24), np.nan, np.float32)),
        lambda p: np.save(p, np.ones((16, 24), np.float64)),
    ],
    ids=["empty", "garbage", "truncated", "wrong-shape", "nan", "wrong-dtype"],
)
def test_corrupt_bridge_cache_is_refitted(
    cache: Path, classifier: np.ndarray, damage: Callable[[Path], None]
) -> None:
    """Regression: an empty cache file raised EOFError, and a wrong-shape one was returned as is."""
    good = lite_bridge.load_or_fit_bridge(classifier, FakeEncoder(), weights_digest="w")
    (path,) = cache.glob("lite-bridge-*.npy")
    damage(path)
    encoder = FakeEncoder()
    refit = lite_bridge.load_or_fit_bridge(classifier, encoder, weights_digest="w")
    assert encoder.calls == 1
    np.testing.assert_array_equal(refit, good)
    np.testing.assert_array_equal(np.load(path), good)  # the damaged file was replaced


def test_unwritable_bridge_cache_still_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, classifier: np.ndarray
) -> None:
    """Regression: a cache location that cannot be created made every lite text query fail."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("LOOKALIKE_CACHE", str(blocker))
    encoder = FakeEncoder()
    matrix = lite_bridge.load_or_fit_bridge(classifier, encoder, weights_digest="w")
    assert encoder.calls == 1 and matrix.shape == (16, 24)


def test_class_prompts_name_imagenet_classes() -> None:
    """Guards the bridge's training texts: 1000 prompts of up to three synonyms each."""
    prompts = lite_bridge.class_prompts()
    assert len(prompts) == 1000
    assert any(p.startswith("ladybug") for p in prompts)
    assert all(p.strip() and p.count(",") <= 2 for p in prompts)  # one to three synonyms
