"""Runtimes: ONNX export against torch (lite, tiny open_clip, tiny timm; image and text towers)
on ONNX Runtime and OpenVINO, the export cache, ``auto``'s cached measurement, the runtime
and precision vocabulary, the fingerprint rules and a collection refusing another precision.

Cheap by design: lite is the session's model (its towers are exported once into the user
cache and reused); the tiny models export into a temporary cache in well under a second.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

import lookalike
from lookalike import CollectionMismatch, InvalidArgument, UnsupportedModality
from lookalike.models import autotune, export
from lookalike.models.engine import build_image_engine, build_text_engine
from lookalike.models.export import MIN_COSINE, image_probe
from lookalike.models.lazy import LazyModel
from lookalike.models.runtime import check_precision, check_runtime, default_runtime

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

RUNTIMES = ["onnx", "openvino"]
TEXTS = ["a photo of a cat", "a small red bicycle leaning on a brick wall", "tree"]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def tmp_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One temporary cache for the module's tiny models (exports shared between tests)."""
    return tmp_path_factory.mktemp("runtime-cache")


@pytest.fixture
def cache(tmp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_cache))
    return tmp_cache


# --------------------------------------------------------------------------- vocabulary
def test_runtime_and_precision_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the strict vocabulary: spellings, defaults, $LOOKALIKE_RUNTIME, and errors naming the fix."""
    monkeypatch.delenv("LOOKALIKE_RUNTIME", raising=False)
    assert default_runtime() == "auto" and check_runtime(None) == "auto"
    assert check_runtime(" ONNX ") == "onnx" and check_precision(None) == "fp32" and check_precision("INT8") == "int8"
    monkeypatch.setenv("LOOKALIKE_RUNTIME", "openvino")
    assert check_runtime(None) == "openvino"
    monkeypatch.setenv("LOOKALIKE_RUNTIME", "onxx")
    with pytest.raises(InvalidArgument, match=r"\$LOOKALIKE_RUNTIME.*Did you mean 'onnx'"):
        check_runtime(None)
    with pytest.raises(InvalidArgument, match="use one of: torch, onnx, openvino, auto. Did you mean 'openvino'"):
        check_runtime("openvno")
    with pytest.raises(InvalidArgument, match="unknown precision 'fp16'.*fp32, int8"):
        check_precision("fp16")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"runtime": "tensorrt"}, "unknown runtime"),
    ({"precision": "int4"}, "unknown precision"),
    ({"precision": "int8", "runtime": "torch", "calibration": ["a.jpg"]}, "int8 runs on the onnx or openvino"),
    ({"precision": "int8", "runtime": "onnx"}, "int8 needs calibration images"),
    ({"precision": "int8", "runtime": "onnx", "calibration": []}, "int8 needs calibration images"),
    ({"runtime": "onnx", "compile": True}, "compile applies to the torch runtime"),
    ({"runtime": "onnx", "calibration": ["a.jpg"]}, "only apply to precision int8"),
])
def test_bad_settings_refused_before_loading(kwargs: dict, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards that settings that do not go together are InvalidArgument, raised before any weights load."""
    from lookalike.models import registry

    monkeypatch.setattr(registry, "_loader", lambda backend: pytest.fail("loaded weights before checking"))
    with pytest.raises(InvalidArgument, match=message):
        lookalike.load_model("lite", device="cpu", **kwargs)


# --------------------------------------------------------------------------- export against torch
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_lite_towers_match_torch(lite_model, runtime: str) -> None:
    """Guards lite's exported image tower and text tower (MiniLM + pooling + bridge) on each runtime:
    every vector within cosine 0.9999 of torch's."""
    pixels = image_probe(lite_model, 3, seed=7).numpy()
    torch_feats = lite_model.engine.run(pixels) if lite_model.runtime == "torch" else None
    if torch_feats is None:
        torch_feats = build_image_engine(lite_model, "torch").run(pixels)
    got = build_image_engine(lite_model, runtime).run(pixels)
    assert got.shape == torch_feats.shape and np.all(_cos(got, torch_feats) >= MIN_COSINE)
    want = lite_model._forward_text(TEXTS).numpy()
    text = build_text_engine(lite_model, runtime).run_inputs(lite_model.tokenize_text(TEXTS))
    assert np.all(_cos(text, want) >= MIN_COSINE)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_tiny_clip_towers_match_torch(tiny_clip_dir: Path, cache: Path, runtime: str) -> None:
    """Guards open_clip's exported image tower and encode_text through load_model(runtime=...):
    encode_images and encode_text agree with torch, and the fp32 fingerprint is torch's."""
    name = f"openclip:{tiny_clip_dir}"
    ref = lookalike.load_model(name, device="cpu", runtime="torch")
    model = lookalike.load_model(name, device="cpu", runtime=runtime)
    assert (model.runtime, model.precision) == (runtime, "fp32")
    pixels = image_probe(ref, 5, seed=3).numpy()
    assert np.all(_cos(model.embed_pixels(pixels), ref.embed_pixels(pixels)) >= MIN_COSINE)
    assert np.all(_cos(model.encode_text(TEXTS), ref.encode_text(TEXTS)) >= MIN_COSINE)
    assert model.fingerprint() == ref.fingerprint() == model.fp32_fingerprint()
    info = model.info()
    assert (info["runtime"], info["precision"], info["fingerprint"]) == (runtime, "fp32", ref.fingerprint())
    assert (Path(cache) / "onnx" / ref.fingerprint() / "text-fp32.onnx").is_file()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_tiny_timm_matches_torch_and_has_no_text(tiny_timm_dir: Path, cache: Path, runtime: str,
                                                 make_image, tmp_path: Path) -> None:
    """Guards a timm conv net on each runtime: encode_images agrees with torch (real decode path),
    and a text query still explains that the model is image-only."""
    name = f"timm:{tiny_timm_dir}"
    ref = lookalike.load_model(name, device="cpu", runtime="torch")
    model = lookalike.load_model(name, device="cpu", runtime=runtime)
    paths = [make_image(tmp_path / f"{i}.png", seed=i) for i in range(5)]
    assert np.all(_cos(model.encode_images(paths, batch_size=2), ref.encode_images(paths)) >= MIN_COSINE)
    assert model.fingerprint() == ref.fingerprint()
    with pytest.raises(UnsupportedModality, match="images only"):
        model.encode_text("a dog")


def test_export_is_cached_and_a_bad_export_is_refused(tiny_timm_dir: Path, cache: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the export cache (a second load exports nothing) and the torch check: a graph whose
    vectors differ is refused with the fix, and leaves no file behind."""
    name = f"timm:{tiny_timm_dir}"
    first = lookalike.load_model(name, device="cpu", runtime="onnx")
    path = export.onnx_dir(first) / "image-fp32.onnx"
    assert path.is_file()
    calls = []
    real = export._run_exporter
    monkeypatch.setattr(export, "_run_exporter", lambda *a, **k: calls.append(a) or real(*a, **k))
    lookalike.load_model(name, device="cpu", runtime="openvino")
    assert calls == []
    path.unlink()
    monkeypatch.setattr(export, "_run_graph", lambda graph, inputs: np.ones((len(inputs["pixels"]), first.dim),
                                                                            dtype=np.float32))
    with pytest.raises(lookalike.ModelLoadError, match=r"does not reproduce torch.*--runtime torch"):
        lookalike.load_model(name, device="cpu", runtime="onnx")
    assert calls and not path.exists()
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_commit_gathers_a_large_exports_tensor_files(tiny_timm_dir: Path, cache: Path, tmp_path: Path) -> None:
    """Guards the path for graphs over 2 GB, where the exporter writes one file per tensor: they
    are gathered into one data file next to the graph, which still runs and gives the same features."""
    import onnx

    model = lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu", runtime="onnx")
    source = export.onnx_dir(model) / "image-fp32.onnx"
    work = tmp_path / "work"
    work.mkdir()
    onnx.save_model(onnx.load(str(source)), str(work / "image-fp32.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=False, size_threshold=0)
    assert len(list(work.iterdir())) > 3
    final = tmp_path / "out" / "image-fp32.onnx"
    final.parent.mkdir()
    export._commit(work, final)
    assert sorted(p.name for p in final.parent.iterdir()) == ["image-fp32.onnx", "image-fp32.onnx.data"]
    from lookalike.models.onnx_engine import OnnxEngine

    pixels = image_probe(model, 2, seed=4).numpy()
    assert np.allclose(OnnxEngine(final, "cpu").run(pixels), OnnxEngine(source, "cpu").run(pixels), atol=1e-5)


# --------------------------------------------------------------------------- auto
def test_auto_measures_once_and_reuses_the_measurement(tiny_timm_dir: Path, cache: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards auto: it times every runtime for real, picks the fastest, caches the JSON, and the
    next load reuses it without measuring."""
    monkeypatch.setattr(autotune, "MEASURE_SECONDS", 0.02)
    model = lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu", runtime="auto")
    found = model.measurement
    assert set(found.rates) == {"torch", "onnx", "openvino"} and all(r > 0 for r in found.rates.values())
    assert found.errors == {} and found.batch == autotune.MEASURE_BATCH and found.machine == autotune.machine_name()
    assert model.runtime == found.choice == max(found.rates, key=found.rates.get)
    assert model.info()["runtime"] == found.choice and found.summary().startswith(f"{found.choice} (")
    assert autotune.cached_measurement(model.fp32_fingerprint(), "fp32") == found
    files = list((cache / "autotune").glob(f"{model.fp32_fingerprint()}-fp32-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["choice"] == found.choice

    monkeypatch.setattr(autotune, "_rate", lambda engine, pixels: pytest.fail("measured again"))
    again = lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu", runtime="auto")
    assert again.runtime == found.choice and again.measurement == found
    files[0].write_text("{not json")  # a damaged cache is measured again, not an error
    fake = {"torch": 10.0, "onnx": 30.0, "openvino": 20.0}
    monkeypatch.setattr(autotune, "_rate", lambda engine, pixels: fake[engine.runtime])
    third = lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu", runtime="auto")
    assert third.runtime == "onnx" and third.measurement.summary() == "onnx (torch 10, openvino 20, onnx 30 img/s)"


def test_lite_tokenizer_alone_matches_sentence_transformers(lite_model) -> None:
    """Guards the lite text tower's tokenizer loaded without MiniLM's weights (what the onnx
    runtime uses) against sentence-transformers' own: same ids, same cut at 256 tokens."""
    from lookalike.models.lite_bridge import load_minilm_tokenizer

    texts = ["Hello, World!", "a RED apple " * 200, "naïve café – ünïcode ☃", ""]
    tokenizer, max_length = load_minilm_tokenizer()
    alone = tokenizer(texts, padding=True, truncation="longest_first", max_length=max_length, return_tensors="np")
    encoder = lite_model.text_encoder
    st = encoder.tokenizer(texts, padding=True, truncation="longest_first", max_length=encoder.max_seq_length,
                           return_tensors="np")
    assert max_length == encoder.max_seq_length == alone["input_ids"].shape[1]
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert np.array_equal(alone[key], st[key]), key


# --------------------------------------------------------------------------- fingerprints and collections
def _as_int8(model, runtime: str = "openvino", calibration: str = "abc123", recipe: int = 1):
    """A copy of ``model`` that describes itself as an int8 model (what quantization sets)."""
    other = copy.copy(model)
    other.precision, other.runtime, other.calibration, other.recipe = "int8", runtime, calibration, recipe
    return other


def test_fingerprint_rules(lite_model) -> None:
    """Guards the rules: fp32 is the same on every runtime (and unchanged from before runtimes
    existed); int8 differs from fp32 and by runtime, calibration and recipe."""
    fp32 = lite_model.fingerprint()
    assert fp32 == lite_model.fp32_fingerprint()
    for runtime in ("torch", "onnx", "openvino"):
        other = copy.copy(lite_model)
        other.runtime = runtime
        assert other.fingerprint() == fp32
    int8 = _as_int8(lite_model)
    prints = {int8.fingerprint(), _as_int8(lite_model, runtime="onnx").fingerprint(),
              _as_int8(lite_model, calibration="def456").fingerprint(), _as_int8(lite_model, recipe=2).fingerprint()}
    assert len(prints) == 4 and fp32 not in prints
    assert int8.fp32_fingerprint() == fp32
    assert int8.info()["calibration"] == "abc123" and "calibration" not in lite_model.info()


def test_lazy_model_refuses_another_precision_or_runtime(lite_model) -> None:
    """Guards a collection's refusal of a model at another precision/runtime/calibration, saying
    exactly what differs and how to fix it."""
    int8 = _as_int8(lite_model)
    built_int8 = LazyModel("lite", int8.fingerprint(), owner="/c.lkl", runtime="openvino", precision="int8",
                           calibration="/c.lkl/image-int8-openvino-abc123.onnx")
    with pytest.raises(CollectionMismatch) as info:
        built_int8.use(lite_model)
    message = str(info.value)
    assert "built at precision int8 with runtime openvino, calibration abc123" in message
    assert f"the model given runs precision fp32 with runtime {lite_model.runtime}" in message
    assert "lookalike index FOLDER --collection NEW.lkl" in message
    with pytest.raises(CollectionMismatch, match="runs precision int8 with runtime onnx, calibration abc123"):
        built_int8.use(_as_int8(lite_model, runtime="onnx"))
    built_int8.use(int8)
    assert built_int8.loaded is int8

    built_fp32 = LazyModel("lite", lite_model.fingerprint(), owner="/d.lkl")
    with pytest.raises(CollectionMismatch, match=r"built at precision fp32; the model given runs precision int8 "
                                                 r"with runtime openvino, calibration abc123.*precision='fp32'"):
        built_fp32.use(int8)
    built_fp32.use(lite_model)  # fp32 on any runtime is the same model


# --------------------------------------------------------------------------- int8 through load_model
def test_int8_through_load_model(tiny_timm_dir: Path, cache: Path, make_image, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards int8 wiring: load_model quantizes from calibration images, the model says what it is
    (runtime, calibration digest, graph, fingerprint unlike fp32's), reloads from the int8 graph a
    collection keeps, refuses that graph on another runtime, and a LazyModel built from it loads.
    The quantization step itself is stubbed (the fp32 graph stands in): tests/models/test_quantize.py
    covers it, and it costs seconds."""
    from lookalike.models import quantize

    import onnx

    monkeypatch.setattr(quantize, "_quantize", lambda fp32, work, model, images, progress: onnx.load(str(fp32)))
    name = f"timm:{tiny_timm_dir}"
    images = [make_image(tmp_path / f"c{i}.png", seed=100 + i) for i in range(quantize.MIN_CALIBRATION_IMAGES)]
    model = lookalike.load_model(name, device="cpu", runtime="onnx", precision="int8", calibration=images)
    digest = quantize.calibration_digest(images)
    assert (model.runtime, model.precision, model.calibration, model.recipe) == \
        ("onnx", "int8", digest, quantize.RECIPE)
    assert model.int8_path.is_file() and model.int8_path.parent == export.onnx_dir(model)
    assert model.fingerprint() != model.fp32_fingerprint()
    assert model.info()["calibration"] == digest and model.info()["precision"] == "int8"
    vectors = model.encode_images(images[:3])
    fp32_model = lookalike.load_model(name, device="cpu", runtime="torch")
    assert np.all(np.sum(vectors * fp32_model.encode_images(images[:3]), axis=1) > 0.9999)  # the stand-in

    again = lookalike.load_model(name, device="cpu", runtime="auto", precision="int8", calibration=model.int8_path)
    assert again.runtime == "onnx" and again.fingerprint() == model.fingerprint()
    assert np.allclose(again.encode_images(images[:3]), vectors, atol=1e-5)
    with pytest.raises(InvalidArgument, match="made for the onnx runtime.*--runtime onnx"):
        lookalike.load_model(name, device="cpu", runtime="openvino", precision="int8", calibration=model.int8_path)
    lazy = LazyModel(name, model.fingerprint(), owner="c.lkl", runtime="onnx", precision="int8",
                     calibration=str(model.int8_path))
    assert lazy.get().fingerprint() == model.fingerprint()
    kept = tmp_path / "c.lkl" / "models" / "image-int8-kept.onnx"  # a collection's copy, named its own way
    kept.parent.mkdir(parents=True)
    kept.write_bytes(model.int8_path.read_bytes())
    with pytest.raises(CollectionMismatch, match=f"built at precision int8 with runtime onnx, calibration {digest}"):
        LazyModel(name, model.fingerprint(), owner="c.lkl", runtime="onnx", precision="int8",
                  calibration=kept).use(fp32_model)


    proto = onnx.load(str(model.int8_path))
    for prop in proto.metadata_props:
        if prop.key == "lookalike.base":
            prop.value = "0123456789abcdef"
    foreign = tmp_path / "image-int8-onnx-x.onnx"
    onnx.save(proto, str(foreign))
    with pytest.raises(lookalike.ModelLoadError, match="quantized from another model"):
        lookalike.load_model(name, device="cpu", precision="int8", calibration=foreign)


def test_auto_measures_again_once_a_busy_machine_is_quiet(tiny_timm_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a measurement made under load (torch 3 img/s against 19 for the others, for
    lite) was kept for good. It is now marked busy, used, and replaced once the machine is quiet."""
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path))  # nothing measured before
    load = [2.0 * autotune.cpu_cores()]
    monkeypatch.setattr(autotune.os, "getloadavg", lambda: (load[0], 0.0, 0.0))
    fake = {"torch": 3.0, "onnx": 19.0, "openvino": 18.0}
    monkeypatch.setattr(autotune, "_rate", lambda engine, pixels: fake[engine.runtime])
    busy = lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu", runtime="auto").measurement
    assert busy.busy and busy.choice == "onnx"
    fake.update(torch=50.0)
    assert lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu", runtime="auto").measurement == busy
    load[0] = 0.0
    quiet = lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu", runtime="auto").measurement
    assert not quiet.busy and quiet.choice == "torch"
    model = lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu", runtime="torch")
    assert autotune.cached_measurement(model.fp32_fingerprint(), "fp32") == quiet
