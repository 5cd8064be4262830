"""evaluate(): tiny models and the histogram baseline on synthetic labelled images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lookalike.apps.embed_cache import EmbeddingCache
from lookalike.apps.eval_report import write_json
from lookalike.apps.evaluation import _fitted_on, evaluate, parse_models
from lookalike.apps.labelled import LabelledSet, load_labelled
from lookalike.apps.splits import SplitSettings, split_labelled
from lookalike.errors import InvalidArgument, UnknownModel
from lookalike.models.head import HeadConfig, ProjectionHead, save_head
from support import make_image


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 labels x 10 small images: the seeded split holds out 18 (one label, two per other label)."""
    root = tmp_path_factory.mktemp("labelled") / "lab"
    for label in range(5):
        for i in range(10):
            make_image(root / f"kind_{label}" / f"{i}.png", seed=label * 100 + i, size=(32, 32))
    return root


def test_models_are_checked_before_anything_loads() -> None:
    assert parse_models(" histogram , lite") == ["histogram", "lite"]
    with pytest.raises(UnknownModel):
        parse_models("histogram,nosuch:model")
    with pytest.raises(InvalidArgument, match="twice"):
        parse_models(["lite", "lite"])
    with pytest.raises(InvalidArgument, match="no model"):
        parse_models(" , ")


def test_evaluate_caches_and_a_rerun_embeds_only_the_new_model(labelled: Path, tiny_timm_dir: Path,
                                                               tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    timm = f"timm:{tiny_timm_dir}"
    first = evaluate(labelled, f"histogram,{timm}", cache=cache, on="all")
    assert [r.name for r in first.results] == ["histogram", timm] and first.images == 50
    for r in first.results:
        assert r.n == 50 and r.embedded == 50 and r.cached == 0 and r.text_map is None and r.fitted_on == 0
        assert 0.0 <= r.knn1 <= r.recall5 <= r.recall10 <= 1.0 and 0.0 < r.map <= 1.0
        assert r.images_per_second is not None and r.images_per_second > 0
    assert first.results[0].dim == 512 and first.results[1].dim == 64 and not first.warnings
    conf = first.confusion
    assert conf is not None and conf.model == first.best.name  # type: ignore[union-attr]
    assert conf.counts.shape == (5, 5) and int(conf.counts.sum()) == 50
    assert np.trace(conf.counts) / 50 == pytest.approx([r for r in first.results if r.name == conf.model][0].knn1)

    # One more model, a head on the timm base fitted on the split's train + val images.
    data = load_labelled(labelled)
    split = split_labelled(data, SplitSettings(seed=0))
    config = HeadConfig(kind="projection", arch="linear", in_dim=64, out_dim=64, base=timm,
                        base_fingerprint=first.results[1].fingerprint, name="h")
    head = save_head(tmp_path / "head", ProjectionHead(config), config,
                     train_hashes=[data.images[i].hash for i in split.fitted])
    with_head = f"{timm}+head:{head}"
    events: list = []
    again = evaluate(data, ["histogram", timm, with_head], cache=cache, on="all", progress=events.append)
    # The head model takes its base's cached vectors through the head: nothing is decoded again.
    assert [(r.embedded, r.cached) for r in again.results] == [(0, 50), (0, 50), (0, 50)]
    assert [r.map for r in again.results[:2]] == [r.map for r in first.results]
    assert not [e for e in events if e.kind == "embed"]
    assert again.results[2].fitted_on == len(split.fitted)  # scored on images its head was fitted on
    assert any("used to fit its head" in w for w in again.warnings)
    held_out = LabelledSet(tuple(data.images[i] for i in split.held_out), data.source)
    assert _fitted_on(with_head, held_out) == 0  # the same seed never leaks
    data_json = json.loads(write_json(again, tmp_path / "r.json").read_text())
    assert data_json["best"] in (r.name for r in again.results) and len(data_json["results"]) == 3
    assert data_json["confusion"]["labels"] == list(again.labels) and data_json["images"] == 50


def test_held_out_by_default(labelled: Path, tmp_path: Path) -> None:
    report = evaluate(labelled, "histogram", cache=EmbeddingCache(tmp_path / "c"))
    assert report.on == "held-out" and report.images == 18 and len(report.held_out_labels) == 1
    assert report.split == {"train": 28, "val": 4, "test": 8, "unseen": 10}
    assert report.results[0].n == 18 and report.confusion is not None and report.confusion.counts.sum() == 18


def test_text_map_for_models_with_text(labelled: Path, tiny_clip_dir: Path, tmp_path: Path) -> None:
    report = evaluate(labelled, f"openclip:{tiny_clip_dir}", cache=EmbeddingCache(tmp_path / "c"))
    result = report.results[0]
    assert result.text_map is not None and 0.0 < result.text_map <= 1.0


def test_too_few_held_out_images_is_a_clear_error(tmp_path: Path) -> None:
    for label in range(4):
        for i in range(3):
            make_image(tmp_path / "small" / f"l{label}" / f"{i}.png", seed=label * 10 + i, size=(16, 16))
    with pytest.raises(InvalidArgument, match="--on all"):
        evaluate(tmp_path / "small", "histogram", seed=0, cache=EmbeddingCache(tmp_path / "c"))
    report = evaluate(tmp_path / "small", "histogram", on="all", cache=EmbeddingCache(tmp_path / "c"))
    assert report.images == 12
    with pytest.raises(InvalidArgument, match="--on"):
        evaluate(tmp_path / "small", "histogram", on="train")


@pytest.mark.slow
def test_lite_beats_the_histogram_on_real_clip_art(clipart_labelled: dict[str, list[Path]], tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    rows = [f"{path},{label}" for label, paths in sorted(clipart_labelled.items()) for path in paths]
    csv.write_text("path,label\n" + "\n".join(rows) + "\n")
    cache = EmbeddingCache(tmp_path / "cache")
    report = evaluate(csv, "histogram,lite", cache=cache, device="cpu")
    hist, lite = report.results
    assert lite.map > hist.map + 0.05 and lite.knn1 > hist.knn1
    assert lite.text_map is not None and lite.text_map > 0.1
    assert lite.peak_memory_mb is not None and lite.images_per_second is not None
    assert report.best is lite and report.confusion is not None and report.confusion.model == "lite"
    again = evaluate(csv, "histogram,lite", cache=cache, device="cpu")
    assert [r.embedded for r in again.results] == [0, 0] and again.results[1].map == lite.map


def test_public_wrapper_writes_json(labelled: Path, tmp_path: Path) -> None:
    import lookalike

    report = lookalike.evaluate(labelled, "histogram", cache=EmbeddingCache(tmp_path / "c"), json=tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["name"] == "histogram"
    assert "histogram: kNN@1" in str(report) and "18 held-out images of 5 labels" in str(report)


def test_report_paths_are_checked_before_any_work(tmp_path) -> None:
    """Regression: lookalike.evaluate checked its html/json paths only after embedding everything."""
    import lookalike
    from lookalike.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="no such folder"):
        lookalike.evaluate(tmp_path / "not-labelled-yet", ["histogram"], json=tmp_path / "missing" / "r.json")


def test_an_unreadable_image_is_left_out_with_a_warning(tmp_path: Path) -> None:
    """Regression: one corrupt file ended the whole evaluation."""
    root = tmp_path / "lab"
    for label in range(2):
        for i in range(4):
            make_image(root / f"kind_{label}" / f"{i}.png", seed=label * 10 + i, size=(32, 32))
    (root / "kind_0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    report = evaluate(root, ["histogram"], on="all", cache=EmbeddingCache(tmp_path / "cache"))
    assert report.results[0].n == 8
    assert any("could not be read" in w and "broken.png" in w for w in report.warnings)
