"""`lookalike train` and `lookalike align` on tiny models: the tables, the saved heads, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lookalike.cli.app import app
from support import make_image


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_train_prints_before_after_and_saves_a_head(private_cache: Path, tmp_path: Path, tiny_timm_dir: Path) -> None:
    for label in range(8):
        for i in range(6):
            make_image(tmp_path / "set" / f"colour-{label}" / f"{i}.png", seed=label * 50 + i, size=(24, 24))
    result = run("train", tmp_path / "set", "--base", f"timm:{tiny_timm_dir}", "--out", tmp_path / "head",
                 "--epochs", "2", "--dim", "16", "-q")
    assert result.exit_code == 0, result.output
    assert "seen labels, new images" in result.stdout and "held-out labels (2)" in result.stdout
    assert "kNN@1" in result.stdout and "->" in result.stdout
    meta = json.loads((tmp_path / "head/head.json").read_text())
    assert meta["config"]["kind"] == "projection" and meta["config"]["out_dim"] == 16
    assert meta["report"]["settings"]["epochs"] == 2
    busy = run("train", tmp_path / "set", "--base", f"timm:{tiny_timm_dir}", "--out", tmp_path / "set", "-q")
    assert busy.exit_code == 2 and "not a head folder" in busy.output


def test_align_prints_the_three_text_sides(private_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lookalike.apps import align
    from lookalike.apps.align_fit import CaptionScores

    def scores(m: float) -> CaptionScores:
        return CaptionScores(m, {1: m, 5: m, 10: m}, 6, 12)

    calls: list[dict[str, Any]] = []

    def fake(collection: Any, **kw: Any) -> align.AlignReport:  # the pipeline is tested in tests/apps/test_align.py
        calls.append({"collection": collection, **kw})
        return align.AlignReport(out=tmp_path / "words", base="lite", base_fingerprint="f", captions="file names",
                                 pairs=60, counts={"fit": 39, "val": 9, "held_out": 12}, ridge_strength=0.1,
                                 ridge_tried=[], contrastive_epoch=3, ridge=scores(0.41), contrastive=scores(0.52),
                                 model=scores(0.23), kept="contrastive", seconds=1.0, skipped=2)

    monkeypatch.setattr(align, "align_text", fake)
    result = run("align", "--collection", tmp_path / "c.lkl", "--captions-from-filenames", "--out",
                 tmp_path / "words", "--seed", "4", "-q")
    assert result.exit_code == 0, result.output
    assert calls[0]["from_filenames"] and calls[0]["captions"] is None and calls[0]["seed"] == 4
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 2}
    assert "0.230" in lines["model's own text tower"] and "0.410" in lines["ridge"]
    assert "0.520" in lines["contrastive"] and "yes" in lines["contrastive"] and "yes" not in lines["ridge"]
    assert "2 images without a usable name skipped" in result.output
    assert "would not improve" not in result.output
    neither = run("align", "--collection", tmp_path / "c.lkl", "--out", tmp_path / "x")
    assert neither.exit_code == 2 and "one of the two" in neither.output and len(calls) == 1
