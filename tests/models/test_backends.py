"""The openclip: and timm: backends, exercised offline with tiny random models saved to local folders.

Everything goes through the public path (``lookalike.load_model(NAME)``, ``Collection``), so
these tests cover name parsing, the libraries' local-dir loaders, preprocessing taken from the
model's own config, encoding, indexing, search and the fingerprint check.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

import lookalike
from lookalike import Collection, CollectionMismatch, ModelLoadError, UnsupportedModality
from lookalike.models.openclip import OpenClipModel, preprocess_from_openclip, save_local
from lookalike.models.timm import TimmModel, preprocess_from_timm

OPENCLIP_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
#: Deliberately unlike open_clip's defaults, so a test can tell they were read from the folder.
OPENCLIP_PREPROCESS: dict[str, Any] = {
    "resize_mode": "longest", "interpolation": "bilinear", "fill_color": 255,
    "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
}
TIMM_ARCH = "test_convnext"  # ~200k parameters, 64 features
TIMM_PRETRAINED_CFG: dict[str, Any] = {
    "input_size": [3, 64, 64], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
    "crop_pct": 0.9, "interpolation": "bilinear", "crop_mode": "center", "num_classes": 0,
}
N_IMAGES = 12


# --------------------------------------------------------------------------- builders
def build_openclip(folder: Path, seed: int = 0, preprocess_cfg: dict[str, Any] | None = None) -> Path:
    """Save a tiny random CLIP (32-d, 32 px) in open_clip's local-dir layout."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.CLIP(**json.loads(json.dumps(OPENCLIP_CFG)))
    return save_local(model, OPENCLIP_CFG, folder, OPENCLIP_PREPROCESS if preprocess_cfg is None else preprocess_cfg)


def build_timm(folder: Path, seed: int = 0, arch: str = TIMM_ARCH, weights: str = "model.safetensors") -> Path:
    """Save a tiny random timm model in the hub layout: config.json + weights."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    net = timm.create_model(arch, pretrained=False, num_classes=0)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"architecture": arch, "num_classes": 0, "num_features": net.num_features,
              "pretrained_cfg": TIMM_PRETRAINED_CFG}
    (folder / "config.json").write_text(json.dumps(config))
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    if weights.endswith(".safetensors"):
        save_file(state, str(folder / weights))
    else:
        torch.save(state, folder / weights)
    return folder


@pytest.fixture(scope="module")
def openclip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny open_clip model folder, shared by the module (tests must not modify it)."""
    return build_openclip(tmp_path_factory.mktemp("oc") / "tiny-clip")


@pytest.fixture(scope="module")
def timm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny timm model folder, shared by the module (tests must not modify it)."""
    return build_timm(tmp_path_factory.mktemp("tm") / "tiny-timm")


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory, make_image: Callable[..., Path]) -> Path:
    """A folder of distinct small PNG/JPEG images in two subfolders, of varied aspect ratios."""
    folder = tmp_path_factory.mktemp("images")
    for i in range(N_IMAGES):
        make_image(folder / f"d{i % 2}" / f"img{i:02d}.{'png' if i % 3 else 'jpg'}", seed=100 + i,
                   size=(96 + 8 * i, 80))
    return folder


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _index(tmp_path: Path, model: str, images: Path) -> Collection:
    coll = Collection.create(tmp_path / "c.lkl", model=model, device="cpu")
    report = coll.add([images])
    assert report.added == N_IMAGES and not report.failed
    return coll


def _assert_searches_by_image_and_id(coll: Collection, images: Path) -> None:
    """Every indexed image finds itself first with score ~1, by path and by id."""
    for path in _images(images)[:4]:
        hits = coll.search(str(path), k=3)
        assert hits[0].path == str(path) and hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert hits[1].score < hits[0].score
        by_id = coll.search(f"id:{hits[0].id}", k=N_IMAGES)
        assert by_id[0].id == hits[0].id and by_id[0].score == pytest.approx(1.0, abs=1e-4)
        assert len(by_id) == N_IMAGES
        assert [h.score for h in by_id] == sorted((h.score for h in by_id), reverse=True)


# --------------------------------------------------------------------------- open_clip
def test_openclip_local_model_loads_with_its_own_preprocessing(openclip_dir: Path) -> None:
    """Guards openclip:/dir offline: 32-d, and size/mode/mean/fill come from open_clip_config.json."""
    model = lookalike.load_model(f"openclip:{openclip_dir}", device="cpu")
    assert isinstance(model, OpenClipModel)
    assert model.model_id == f"openclip:{openclip_dir}" and model.dim == 32
    assert model.modalities == frozenset({"image", "text"})
    p = model.preprocess
    assert (p.size, p.resize_mode, p.interpolation, p.crop_pct) == (32, "letterbox", "bilinear", 1.0)
    assert p.mean == (0.5, 0.5, 0.5) and p.std == (0.25, 0.25, 0.25) and p.fill == (255, 255, 255)
    assert model.info()["preprocess"]["resize_mode"] == "letterbox"


def test_openclip_local_model_name_forms_agree(openclip_dir: Path) -> None:
    """Guards that openclip:/dir, openclip:local-dir:/dir and the bare folder load the same model."""
    names = [f"openclip:{openclip_dir}", f"openclip:local-dir:{openclip_dir}", str(openclip_dir)]
    prints = {lookalike.load_model(n, device="cpu").fingerprint() for n in names}
    assert len(prints) == 1


def test_openclip_encodes_images_and_text(openclip_dir: Path, image_dir: Path) -> None:
    """Guards the tiny CLIP's encoders: unit float32 rows, order kept, text truncated to its context."""
    model = lookalike.load_model(f"openclip:{openclip_dir}", device="cpu")
    paths = _images(image_dir)
    vecs = model.encode_images(paths)
    assert vecs.shape == (N_IMAGES, 32) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(model.encode_images(paths[::-1]), vecs[::-1], atol=1e-5)
    long_text = " ".join(["a photo of a very small dog"] * 20)  # far past the 16-token context
    text = model.encode_text(["a dog", "a cat", long_text])
    assert text.shape == (3, 32) and text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(text[0], text[1])
    assert model.encode_text([]).shape == (0, 32)


def test_openclip_collection_end_to_end(openclip_dir: Path, image_dir: Path, tmp_path: Path) -> None:
    """Guards indexing and text/image/id search with an openclip model, and that scores are the model's."""
    name = f"openclip:{openclip_dir}"
    coll = _index(tmp_path, name, image_dir)
    assert coll.manifest.model_id == name and coll.manifest.dim == 32
    _assert_searches_by_image_and_id(coll, image_dir)

    hits = coll.search("a photo of a dog", k=5)
    assert len(hits) == 5 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    model = coll.model
    query = model.encode_text("a photo of a dog")[0]
    expected = model.encode_images([hits[0].path, hits[-1].path]) @ query
    assert hits[0].score == pytest.approx(float(expected[0]), abs=1e-4)
    assert hits[-1].score == pytest.approx(float(expected[1]), abs=1e-4)
    coll.close()

    reopened = Collection.open(tmp_path / "c.lkl")  # loads the model lazily from the manifest's name
    assert reopened.search("a photo of a dog", k=5) == hits
    reopened.close()


def test_openclip_save_local_keeps_the_models_preprocessing(tmp_path: Path) -> None:
    """Regression: save_local without preprocess_cfg dropped the model's own (e.g. SigLIP-style) config."""
    import open_clip
    from open_clip.model import set_model_preprocess_cfg

    model = open_clip.CLIP(**json.loads(json.dumps(OPENCLIP_CFG)))
    own = {"size": 32, "mode": "RGB", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
           "interpolation": "bilinear", "resize_mode": "squash", "fill_color": 0}
    set_model_preprocess_cfg(model, own)
    save_local(model, OPENCLIP_CFG, tmp_path / "m")
    loaded = lookalike.load_model(f"openclip:{tmp_path / 'm'}", device="cpu")
    p = loaded.preprocess
    assert (p.resize_mode, p.interpolation, p.mean, p.std) == ("squash", "bilinear", (0.5,) * 3, (0.5,) * 3)


def test_openclip_broken_folder_is_a_load_error(tmp_path: Path) -> None:
    """Guards that weights not matching the config raise ModelLoadError naming the model."""
    folder = build_openclip(tmp_path / "m")
    cfg = json.loads((folder / "open_clip_config.json").read_text())
    cfg["model_cfg"]["embed_dim"] = 48
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=f"openclip:{folder}"):
        lookalike.load_model(f"openclip:{folder}", device="cpu")


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({"size": 224}, ("crop", 224, 1.0, None)),
        ({"size": (256, 256), "resize_mode": "shortest"}, ("crop", 256, 1.0, None)),
        ({"size": 64, "resize_mode": "longest", "fill_color": 7}, ("letterbox", 64, 1.0, (7, 7, 7))),
        ({"size": [96, 96], "resize_mode": "squash"}, ("squash", 96, 1.0, None)),
    ],
)
def test_preprocess_from_openclip(cfg: dict[str, Any], expected: tuple[Any, ...]) -> None:
    """Guards the translation of open_clip resize modes: shortest->crop, longest->letterbox, squash."""
    p = preprocess_from_openclip(cfg)
    assert (p.resize_mode, p.size, p.crop_pct, p.fill) == expected


def test_preprocess_from_openclip_rejects_non_square() -> None:
    """Guards that a non-square open_clip input is refused rather than silently squared."""
    with pytest.raises(ModelLoadError, match="non-square"):
        preprocess_from_openclip({"size": (224, 160)})


# --------------------------------------------------------------------------- timm
def test_timm_local_model_loads_with_pretrained_cfg(timm_dir: Path) -> None:
    """Guards timm:/dir offline: pooled features, preprocessing from config.json's pretrained_cfg."""
    model = lookalike.load_model(f"timm:{timm_dir}", device="cpu")
    assert isinstance(model, TimmModel)
    assert model.model_id == f"timm:{timm_dir}" and model.dim == 64
    assert model.modalities == frozenset({"image"}) and not model.supports_text
    p = model.preprocess
    assert (p.size, p.resize_mode, p.crop_pct, p.interpolation) == (64, "crop", 0.9, "bilinear")
    assert p.mean == (0.5, 0.5, 0.5) and p.std == (0.25, 0.25, 0.25)
    assert lookalike.load_model(str(timm_dir), device="cpu").fingerprint() == model.fingerprint()


def test_timm_collection_end_to_end(timm_dir: Path, image_dir: Path, tmp_path: Path) -> None:
    """Guards indexing and image/id search with a timm model."""
    coll = _index(tmp_path, f"timm:{timm_dir}", image_dir)
    assert coll.manifest.dim == 64
    vecs = coll.model.encode_images(_images(image_dir))
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    _assert_searches_by_image_and_id(coll, image_dir)
    coll.close()


def test_timm_text_query_explains_what_to_do(timm_dir: Path, image_dir: Path, tmp_path: Path) -> None:
    """Guards that text on an image-only model raises UnsupportedModality suggesting image search or a text model."""
    model = lookalike.load_model(f"timm:{timm_dir}", device="cpu")
    with pytest.raises(UnsupportedModality) as direct:
        model.encode_text("a dog")
    with pytest.raises(UnsupportedModality) as empty:
        model.encode_text([])
    coll = _index(tmp_path, f"timm:{timm_dir}", image_dir)
    with pytest.raises(UnsupportedModality) as searched:
        coll.search("a dog")
    coll.close()
    for info in (direct, empty, searched):
        message = str(info.value)
        assert f"timm:{timm_dir}" in message
        assert "example image or id" in message
        assert "'lite'" in message and "openclip:" in message


def test_timm_channels_last_follows_the_architecture(tmp_path: Path, timm_dir: Path) -> None:
    """Regression: channels_last was chosen from the name, which for local-dir: never says 'vit'."""
    transformer = build_timm(tmp_path / "tx", arch="test_vit")
    assert lookalike.load_model(f"timm:{transformer}", device="cpu").channels_last is False
    assert lookalike.load_model(f"timm:{timm_dir}", device="cpu").channels_last is True


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({"input_size": (3, 224, 224), "crop_pct": 0.875}, ("crop", 224, 0.875)),
        ({"input_size": (3, 518, 518), "crop_pct": 1.0, "crop_mode": "squash"}, ("squash", 518, 1.0)),
        ({"input_size": (3, 256, 256), "crop_pct": 1.05, "crop_mode": "border"}, ("letterbox", 256, 1.0)),
    ],
)
def test_preprocess_from_timm(cfg: dict[str, Any], expected: tuple[Any, ...]) -> None:
    """Guards the translation of timm's crop modes and the clamp of crop_pct > 1."""
    p = preprocess_from_timm(cfg)
    assert (p.resize_mode, p.size, p.crop_pct) == expected


# --------------------------------------------------------------------------- fingerprint check
def _swap_weights(folder: Path, builder: Callable[[Path, int], Path], weight_file: str) -> None:
    """Overwrite ``folder``'s weights with a differently seeded model of the same shapes."""
    fresh = builder(folder.parent / "fresh", 1)
    old_size = (folder / weight_file).stat().st_size
    shutil.copyfile(next(p for p in fresh.iterdir() if p.suffix in (".safetensors", ".pth")), folder / weight_file)
    assert (folder / weight_file).stat().st_size == old_size  # only the values changed


@pytest.mark.parametrize(
    ("backend", "weight_file"),
    [
        ("openclip", "open_clip_model.safetensors"),
        ("openclip", "model.safetensors"),  # regression: open_clip loads it, the fingerprint ignored it
        ("timm", "model.safetensors"),
        ("timm", "model.pth"),  # regression: timm loads it, the fingerprint ignored it
    ],
)
def test_changed_weights_make_the_collection_refuse_the_model(
    tmp_path: Path, image_dir: Path, backend: str, weight_file: str
) -> None:
    """Guards the fingerprint check: after the folder's weights change, the collection refuses the model."""
    folder = tmp_path / "model"
    if backend == "openclip":
        build_openclip(folder)
        if weight_file != "open_clip_model.safetensors":
            (folder / "open_clip_model.safetensors").rename(folder / weight_file)

        def builder(path: Path, seed: int) -> Path:
            return build_openclip(path, seed)
    else:
        build_timm(folder, weights=weight_file)

        def builder(path: Path, seed: int) -> Path:
            return build_timm(path, seed, weights=weight_file)

    name = f"{backend}:{folder}"
    coll = _index(tmp_path, name, image_dir)
    before = coll.model.fingerprint()
    coll.close()

    _swap_weights(folder, builder, weight_file)
    reloaded = lookalike.load_model(name, device="cpu")
    assert reloaded.fingerprint() != before
    reopened = Collection.open(tmp_path / "c.lkl")
    with pytest.raises(CollectionMismatch, match="weights or preprocessing changed"):
        _ = reopened.model
    with pytest.raises(CollectionMismatch):
        Collection.open(tmp_path / "c.lkl", model=reloaded)
    with pytest.raises(CollectionMismatch):
        reopened.search(str(_images(image_dir)[0]))
    reopened.close()


def test_encode_images_takes_one_image_as_a_list_of_one(timm_dir: Path, image_dir: Path) -> None:
    """Regression: encode_images("a.jpg") iterated the string and failed with "a: file not found".
    One path (str or Path), bytes or PIL image is now a list of one, as encode_text takes one string."""
    from PIL import Image

    model = lookalike.load_model(f"timm:{timm_dir}", device="cpu")
    path = _images(image_dir)[0]
    want = model.encode_images([path])
    for one in (str(path), path, path.read_bytes(), Image.open(path)):
        got = model.encode_images(one)
        assert got.shape == (1, model.dim) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5)
