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


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))  # the embedding cache stays in the test
    monkeypatch.setenv("COLUMNS", "300")


def test_train_prints_before_after_and_saves_a_head(env: None, tmp_path: Path, tiny_timm_dir: Path) -> None:
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


def test_align_prints_the_three_text_sides(env: None, tmp_path: Path, tiny_clip_dir: Path) -> None:
    import lookalike

    words = ["red_apple", "blue_car", "green_tree", "old_house"]
    for i in range(16):
        make_image(tmp_path / "imgs" / f"{words[i % 4]}-{i:02d}.png", seed=i, size=(40, 32))
    with lookalike.Collection.create(tmp_path / "c.lkl", model=f"openclip:{tiny_clip_dir}", device="cpu") as coll:
        coll.add([tmp_path / "imgs"])
    result = run("align", "--collection", tmp_path / "c.lkl", "--captions-from-filenames", "--out",
                 tmp_path / "words", "-q")
    assert result.exit_code == 0, result.output
    for row in ("model's own text tower", "ridge", "contrastive", "yes"):
        assert row in result.stdout
    assert json.loads((tmp_path / "words/head.json").read_text())["config"]["kind"] == "text"
    neither = run("align", "--collection", tmp_path / "c.lkl", "--out", tmp_path / "x")
    assert neither.exit_code == 2 and "one of the two" in neither.output
