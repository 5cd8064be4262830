"""Model names: every documented form parses strictly, round-trips, and bad names explain the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lookalike
from lookalike import UnknownModel
from lookalike.models import names
from lookalike.models.names import KNOWN_MODELS, ModelSpec, list_models, parse_model_name


# --------------------------------------------------------------------------- helpers
def _openclip_dir(path: Path) -> Path:
    """A folder that looks like a local open_clip model (parsing only checks the files)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "open_clip_config.json").write_text('{"model_cfg": {}}')
    (path / "open_clip_model.safetensors").write_bytes(b"")
    return path


def _timm_dir(path: Path, weights: str = "model.safetensors") -> Path:
    """A folder that looks like a local timm model."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"architecture": "resnet18"}')
    (path / weights).write_bytes(b"")
    return path


def _error(name: str) -> str:
    """The message of the UnknownModel that parsing ``name`` raises."""
    with pytest.raises(UnknownModel) as info:
        parse_model_name(name)
    return str(info.value)


# --------------------------------------------------------------------------- the forms
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lite", ModelSpec("lite", "builtin", "lite")),
        ("  lite\n", ModelSpec("lite", "builtin", "lite")),
        ("LITE", ModelSpec("lite", "builtin", "lite")),
        ("openclip:ViT-B-32/laion2b_s34b_b79k", ModelSpec("openclip", "pretrained", "ViT-B-32", "laion2b_s34b_b79k")),
        ("OpenClip:ViT-L-14/openai", ModelSpec("openclip", "pretrained", "ViT-L-14", "openai")),
        ("openclip:hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
         ModelSpec("openclip", "hf-hub", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K")),
        ("timm:convnext_tiny", ModelSpec("timm", "pretrained", "convnext_tiny", None)),
        ("timm:vit_small_patch14_dinov2.lvd142m",
         ModelSpec("timm", "pretrained", "vit_small_patch14_dinov2", "lvd142m")),
        ("timm:hf-hub:timm/vit_small_patch14_dinov2.lvd142m",
         ModelSpec("timm", "hf-hub", "timm/vit_small_patch14_dinov2.lvd142m")),
    ],
)
def test_parse_named_forms(name: str, expected: ModelSpec) -> None:
    """Guards the exact ModelSpec each non-local documented form parses to."""
    assert parse_model_name(name) == expected


def test_parse_openclip_local_dir_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards that openclip:/abs, openclip:local-dir:REL and ~ paths all resolve to one absolute folder."""
    folder = _openclip_dir(tmp_path / "clipmodel")
    expected = ModelSpec("openclip", "local", str(folder))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in (f"openclip:{folder}", f"openclip:{folder}/", f"openclip:local-dir:{folder}",
                 "openclip:local-dir:clipmodel", "openclip:./clipmodel", "openclip:~/clipmodel"):
        assert parse_model_name(name) == expected, name


def test_parse_timm_local_dir_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards timm:/abs and timm:local-dir:PATH for a folder in timm's hub layout."""
    folder = _timm_dir(tmp_path / "timmmodel")
    expected = ModelSpec("timm", "local", str(folder))
    monkeypatch.chdir(tmp_path)
    for name in (f"timm:{folder}", f"timm:local-dir:{folder}", "timm:local-dir:timmmodel", "timm:./timmmodel"):
        assert parse_model_name(name) == expected, name


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin", "model.pth"])
def test_bare_folder_detected_as_timm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights: str) -> None:
    """Guards backend detection of a bare timm folder (config.json + any weight file timm loads)."""
    folder = _timm_dir(tmp_path / "m", weights)
    monkeypatch.chdir(tmp_path)
    assert parse_model_name(str(folder)) == ModelSpec("timm", "local", str(folder))
    assert parse_model_name("m") == ModelSpec("timm", "local", str(folder))  # relative, no ./ prefix


def test_bare_folder_detected_as_openclip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards backend detection of a bare open_clip folder, also via ~ and a relative path."""
    folder = _openclip_dir(tmp_path / "clip")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for name in (str(folder), "~/clip", "./clip", "clip"):
        assert parse_model_name(name) == ModelSpec("openclip", "local", str(folder)), name


def test_canonical_round_trip(tmp_path: Path) -> None:
    """Guards that every spec's canonical name parses back to the same spec (manifests rely on it)."""
    clip_dir, timm_dir = _openclip_dir(tmp_path / "c"), _timm_dir(tmp_path / "t")
    names = [m.name for m in KNOWN_MODELS] + [
        "LITE",
        "OPENCLIP:ViT-B-32/openai",
        "openclip:hf-hub:org/repo",
        f"openclip:local-dir:{clip_dir}",
        f"openclip:{clip_dir}/",
        str(clip_dir),
        "timm:resnet50",
        "timm:resnet50.a1_in1k",
        "timm:hf-hub:timm/resnet50.a1_in1k",
        f"timm:local-dir:{timm_dir}",
        str(timm_dir),
    ]
    for name in names:
        spec = parse_model_name(name)
        assert parse_model_name(spec.canonical) == spec, name
        assert parse_model_name(spec.canonical).canonical == spec.canonical, name
    assert parse_model_name(str(clip_dir)).canonical == f"openclip:{clip_dir}"
    assert parse_model_name("timm:resnet50.a1_in1k").canonical == "timm:resnet50.a1_in1k"
    assert parse_model_name("OpenClip:ViT-B-32/openai").canonical == "openclip:ViT-B-32/openai"


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", ["", "   ", "\n"])
def test_empty_name(name: str) -> None:
    """Guards that an empty name is refused with a pointer to 'lite'."""
    message = _error(name)
    assert "empty" in message and "lite" in message


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("clip:ViT-B-32/openai", "'openclip:ViT-B-32/openai'"),
        ("open_clip:ViT-B-32/openai", "'openclip:ViT-B-32/openai'"),
        ("siglip:ViT-B-16-SigLIP/webli", "'openclip:ViT-B-16-SigLIP/webli'"),
        ("opencilp:ViT-B-32/openai", "'openclip:ViT-B-32/openai'"),
        ("tim:resnet50", "'timm:resnet50'"),
        ("dinov2:vit_small_patch14_dinov2.lvd142m", "'timm:vit_small_patch14_dinov2.lvd142m'"),
    ],
)
def test_unknown_backend_suggests_the_right_one(name: str, suggestion: str) -> None:
    """Guards the hint for a wrong backend prefix: the corrected full name, not a generic list."""
    message = _error(name)
    assert "unknown model backend" in message
    assert f"Did you mean {suggestion}?" in message


def test_hub_name_without_backend_shows_both_spellings() -> None:
    """Guards that 'hf-hub:ORG/REPO' alone says which backend prefixes make it valid."""
    message = _error("hf-hub:laion/x")
    assert "'openclip:hf-hub:laion/x'" in message and "'timm:hf-hub:laion/x'" in message


def test_unknown_backend_without_a_near_miss_has_no_guess() -> None:
    """Guards that an unrelated prefix is refused without an invented suggestion."""
    message = _error("xyzzy:foo")
    assert "unknown model backend 'xyzzy'" in message and "Did you mean" not in message


@pytest.mark.parametrize("name", ["openclip:ViT-B-32", "openclip:ViT-B-32/"])
def test_openclip_without_tag_lists_valid_tags(name: str) -> None:
    """Guards that a missing open_clip tag is refused and the architecture's real tags are listed."""
    message = _error(name)
    assert "pretrained tag" in message
    assert "Tags for ViT-B-32:" in message
    assert "laion2b_s34b_b79k" in message and "openai" in message


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("lte", "'lite'"),
        ("openclip-ViT-B-32/laion2b_s34b_b79k", "'openclip:ViT-B-32/laion2b_s34b_b79k'"),
        ("vit_small_patch14_dinov2.lvd142m", "'timm:vit_small_patch14_dinov2.lvd142m'"),
    ],
)
def test_bare_typo_suggests_known_name(name: str, suggestion: str) -> None:
    """Guards that a misspelt or prefix-less known name suggests the tested spelling."""
    assert f"Did you mean {suggestion}" in _error(name)


def test_openclip_tag_typo_suggests_the_tag() -> None:
    """Guards that a near-miss open_clip tag names the right full model first (offline check)."""
    with pytest.raises(UnknownModel) as info:
        lookalike.load_model("openclip:ViT-B-32/laion2b_s34b_b79", device="cpu")
    assert "Did you mean 'openclip:ViT-B-32/laion2b_s34b_b79k'?" in str(info.value)


def test_openclip_architecture_typo_suggests_the_architecture() -> None:
    """Guards that an unknown open_clip architecture suggests the closest real ones."""
    with pytest.raises(UnknownModel) as info:
        lookalike.load_model("openclip:ViT-B-3/openai", device="cpu")
    assert "no architecture 'ViT-B-3'" in str(info.value) and "ViT-B-32" in str(info.value)


def test_timm_architecture_typo_suggests_the_architecture() -> None:
    """Guards that a misspelt timm architecture suggests the real one (no network needed)."""
    with pytest.raises(UnknownModel) as info:
        lookalike.load_model("timm:vit_smal_patch14_dinov2.lvd142m", device="cpu")
    assert "no model 'vit_smal_patch14_dinov2'" in str(info.value)
    assert "vit_small_patch14_dinov2" in str(info.value).split("Did you mean", 1)[1]


def test_timm_tag_typo_is_unknown_model_with_suggestion() -> None:
    """Guards that a misspelt timm tag is an UnknownModel naming the right tag, not a load error."""
    with pytest.raises(UnknownModel) as info:
        lookalike.load_model("timm:vit_small_patch14_dinov2.lvd142", device="cpu")
    message = str(info.value)
    assert "Did you mean 'timm:vit_small_patch14_dinov2.lvd142m'?" in message
    assert "Tags for vit_small_patch14_dinov2:" in message


@pytest.mark.parametrize(
    "name",
    [
        "openclip:hf-hub:laion",
        "openclip:hf-hub:",
        "openclip:hf-hub:a/b/c",
        "openclip:hf-hub:/repo",
        "timm:hf-hub:org/",
        "timm:hf-hub:timm",
    ],
)
def test_bad_hub_repo_form(name: str) -> None:
    """Guards that a hub name that is not exactly ORG/REPO is refused with the right form."""
    assert "hf-hub:ORG/REPO" in _error(name)


@pytest.mark.parametrize("name", ["openclip:", "timm:"])
def test_backend_without_model(name: str) -> None:
    """Guards that a bare backend prefix is refused with an example."""
    assert "no model" in _error(name)


@pytest.mark.parametrize("name", ["timm:.lvd142m", "timm:resnet50."])
def test_timm_empty_name_or_tag(name: str) -> None:
    """Guards that timm names with an empty architecture or tag are refused."""
    assert "NAME.TAG" in _error(name)


def test_nonexistent_local_dirs(tmp_path: Path) -> None:
    """Guards that a missing folder is refused, naming the files a model folder must hold."""
    missing = tmp_path / "nope"
    for name, needs in [
        (f"openclip:{missing}", "open_clip_config.json"),
        (f"openclip:local-dir:{missing}", "open_clip_config.json"),
        (f"timm:{missing}", "config.json"),
        (f"timm:local-dir:{missing}", "config.json"),
    ]:
        message = _error(name)
        assert "is not a directory" in message and needs in message, name
    assert "unknown model" in _error(str(missing))


def test_local_dir_without_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: 'openclip:local-dir:' used to resolve silently to the current directory."""
    _openclip_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert "needs a folder" in _error("openclip:local-dir:")
    assert "needs a folder" in _error("timm:local-dir:  ")


def test_local_dir_without_model_files(tmp_path: Path) -> None:
    """Regression: an explicit local folder lacking the backend's config was accepted at parse time."""
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds neither" in _error(str(empty))
    assert "has no open_clip_config.json" in _error(f"openclip:{empty}")
    assert "has no config.json" in _error(f"timm:{empty}")
    clip_dir = _openclip_dir(tmp_path / "clip")
    assert f"use 'openclip:{clip_dir}'" in _error(f"timm:{clip_dir}")


def test_load_model_rejects_before_loading() -> None:
    """Guards that load_model raises the parser's UnknownModel (also a ValueError) for bad names."""
    with pytest.raises(ValueError, match="unknown model backend"):
        lookalike.load_model("clip:ViT-B-32/openai")


# --------------------------------------------------------------------------- list_models
def test_list_models_lite_is_offline_and_hub_models_follow_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards list_models: lite always offline; a hub model is offline iff its repo is in the HF cache."""
    import huggingface_hub

    cache = tmp_path / "hub"
    repo = cache / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir()
    (repo / "blobs" / "abc").write_text("{}")
    (repo / "snapshots" / commit).mkdir(parents=True)
    os.symlink(repo / "blobs" / "abc", repo / "snapshots" / commit / "open_clip_config.json")
    real_scan = huggingface_hub.scan_cache_dir
    monkeypatch.setattr(huggingface_hub, "scan_cache_dir", lambda cache_dir=None: real_scan(cache))

    models = {m.name: m for m in list_models()}
    assert [m.name for m in KNOWN_MODELS] == list(models)
    lite = models["lite"]
    assert (lite.offline, lite.dim, lite.backend, set(lite.modalities)) == (True, 1280, "lite", {"image", "text"})
    assert models["openclip:ViT-B-32/laion2b_s34b_b79k"].offline is True
    assert models["openclip:ViT-B-32/laion2b_s34b_b79k"].backend == "openclip"
    assert models["timm:vit_small_patch14_dinov2.lvd142m"].offline is False
    assert models["timm:vit_small_patch14_dinov2.lvd142m"].modalities == ("image",)
    for name, info in models.items():
        assert parse_model_name(name).canonical == name  # every listed name is canonical


def test_list_models_without_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards that a missing HF cache makes hub models not-offline instead of raising."""
    import huggingface_hub

    real_scan = huggingface_hub.scan_cache_dir
    monkeypatch.setattr(huggingface_hub, "scan_cache_dir", lambda cache_dir=None: real_scan(tmp_path / "absent"))
    offline = {m.name: m.offline for m in lookalike.list_models()}
    assert offline["lite"] is True
    assert not any(v for k, v in offline.items() if k != "lite")
    assert names._hub_cached(None) is True


def test_opening_a_collection_by_model_name_never_imports_torch(tmp_path: Path) -> None:
    """Regression: Collection.open(path, model="lite") imported torch (the name parser lived
    next to the model loader). Model names now parse in lookalike.models.names, torch-free."""
    import json
    import subprocess
    import sys

    from lookalike.store.manifest import Manifest

    coll = tmp_path / "c.lkl"
    coll.mkdir()
    info = {"model_id": "lite", "dim": 4, "modalities": ["image", "text"], "preprocess": {}, "fingerprint": "x"}
    Manifest(model=info).save(coll / "manifest.json")
    code = ("import sys, lookalike\n"
            f"c = lookalike.Collection.open({str(coll)!r}, model='lite')\n"
            "print(len(c), c.index_settings.mode, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "auto", "False"], out
    with pytest.raises(lookalike.CollectionMismatch):
        lookalike.Collection.open(coll, model="timm:vit_small_patch14_dinov2.lvd142m")
    assert json.loads((coll / "manifest.json").read_text())["model"]["model_id"] == "lite"
