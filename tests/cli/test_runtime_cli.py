"""`lookalike index --runtime/--precision/--calibration` and what `info` shows of them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lookalike.cli.app import app
from support import make_image

pytestmark = pytest.mark.usefixtures("cli_env")


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("runtime-cli") / "pics"
    for i in range(16):
        make_image(base / f"p{i:02d}.png", seed=700 + i)
    return base


def test_index_int8_end_to_end_then_refuse_fp32(tmp_path: Path, folder: Path, tiny_timm_dir: Path) -> None:
    coll = tmp_path / "c.lkl"
    result = run("index", folder, "-c", coll, "--model", f"timm:{tiny_timm_dir}", "--runtime", "onnx",
                 "--precision", "int8")
    assert result.exit_code == 0, result.output
    assert "onnx, int8" in result.stderr and "16 added" in result.stderr.replace("\n", " ")
    info = run("info", "-c", coll).stdout
    assert re.search(r"runtime\s+built with onnx, int8", info), info
    search = run("search", folder / "p03.png", "-c", coll, "-k", "1", "--json")
    assert search.exit_code == 0 and "p03.png" in search.stdout

    refused = run("index", folder, "-c", coll, "--precision", "fp32")
    assert refused.exit_code != 0 and "precision int8" in refused.stderr
    again = run("index", folder, "-c", coll, "--calibration", folder)
    assert again.exit_code != 0 and "--calibration applies when an int8 collection is created" in again.stderr


def test_unknown_runtime_names_the_choices(tmp_path: Path, folder: Path) -> None:
    result = run("index", folder, "-c", tmp_path / "c.lkl", "--runtime", "tensorrt")
    assert result.exit_code == 2, result.output
    assert "tensorrt" in result.stderr and "openvino" in result.stderr
    assert not (tmp_path / "c.lkl" / "manifest.json").exists()


def test_models_shows_what_auto_measured_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`models` reads this machine's measurements from the cache, without loading a model; one
    made under another machine key (another CPU, other library versions) is not shown."""
    import json
    import time

    from lookalike.models.autotune import RuntimeMeasurement, machine_key

    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path))
    (tmp_path / "autotune").mkdir()
    here = RuntimeMeasurement("openvino", {"torch": 41.0, "onnx": 128.0, "openvino": 180.0}, 16, 2, "cpu",
                              time.time(), "fp32", {}, "lite", machine_key())
    elsewhere = RuntimeMeasurement("onnx", {"onnx": 999.0}, 16, 2, "cpu", time.time(), "int8", {}, "lite", "other")
    for name, m in (("a", here), ("b", elsewhere)):
        (tmp_path / "autotune" / f"{name}.json").write_text(json.dumps(m.to_dict()))
    result = run("models")
    lite_line = next(ln for ln in result.stdout.splitlines() if ln.split()[:1] == ["lite"])
    assert "fp32: openvino (torch 41, onnx 128, openvino 180 img/s)" in lite_line and "999" not in result.stdout
    data = json.loads(run("models", "--json").stdout)
    assert [m["choice"] for m in next(d for d in data if d["name"] == "lite")["measured"]] == ["openvino"]


def test_a_new_collection_is_int8_by_default_where_the_library_says_so(
        tmp_path: Path, folder: Path, tiny_timm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No --precision: int8 for a model measured to gain from it and enough images (lite from
    1,000; here the tiny model from 10), said on stderr; --precision fp32 or --runtime torch keep fp32."""
    from lookalike.models.names import parse_model_name
    from lookalike.store import calibration

    name = f"timm:{tiny_timm_dir}"
    monkeypatch.setattr(calibration, "INT8_DEFAULT_FROM", 10)
    monkeypatch.setattr(calibration, "INT8_DEFAULT_MODELS", (parse_model_name(name).canonical,))
    monkeypatch.delenv("LOOKALIKE_RUNTIME")
    result = run("index", folder, "-c", tmp_path / "a.lkl", "--model", name, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "precision int8 (the default" in result.stderr and "calibrated on 16" in result.stderr
    assert re.search(r"runtime\s+built with \w+, int8", run("info", "-c", tmp_path / "a.lkl").stdout)
    for extra in (["--precision", "fp32"], ["--runtime", "torch"]):
        coll = tmp_path / f"b{len(extra[1])}.lkl"
        result = run("index", folder, "-c", coll, "--model", name, *extra)
        assert result.exit_code == 0 and "precision int8" not in result.stderr, result.output
        assert re.search(r"runtime\s+built with \w+, fp32", run("info", "-c", coll).stdout)
