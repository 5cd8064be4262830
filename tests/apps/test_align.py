"""Text alignment: captions from file names, ridge recovering a planted map, the kept head
being the held-out winner, and the CSV's errors. The pipeline runs on a collection of small
synthetic images indexed with the tiny random CLIP (its rankings mean nothing: these tests
judge the plumbing; the planted-map tests judge the fitting)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support import make_image

from lookalike.apps.align import align_text, filename_caption
from lookalike.apps.align_fit import (
    ContrastiveSettings,
    PairSet,
    caption_retrieval,
    fit_contrastive,
    fit_ridge,
    ridge_solution,
    tower_prior,
)
from lookalike.errors import InvalidArgument
from lookalike.models.head import HeadConfig, ProjectionHead, load_head

WORDS = ["red apple", "blue car", "green tree", "old house", "black cat", "white dog"]


@pytest.mark.parametrize("name,caption", [
    ("red_apple-01.png", "red apple"),
    ("chemistry_flask_matthew__02.png", "chemistry flask matthew"),
    ("RedApple2.jpg", "red apple"),
    ("HTTPServer.logo.svg", "http server logo"),
    ("/photos/2021/IMG_0001.JPG", "img"),
    ("0001.png", ""),
    ("shard.tar#inner/blue-car 7.webp", "blue car"),
])
def test_filename_captions(name: str, caption: str) -> None:
    assert filename_caption(name) == caption


def _planted(n: int, seed: int) -> tuple[PairSet, np.ndarray]:
    """Caption features in 16-d, image vectors = normalise(features @ M) + a little noise."""
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(16, 24)).astype(np.float32)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = x @ m + 0.01 * rng.normal(size=(n, 24)).astype(np.float32)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return PairSet(x, y, np.arange(n)), m


def test_ridge_recovers_a_planted_linear_map() -> None:
    fit, m = _planted(300, 0)
    val, _ = _planted(60, 0)  # same map, other rows: a new generator run draws the same M first
    w, b, strength, tried = fit_ridge(fit, val)
    assert len(tried) > 3 and strength in [t["strength"] for t in tried]
    pred = fit.text @ w + b
    cos = np.sum(pred * fit.images, axis=1) / np.linalg.norm(pred, axis=1)
    assert cos.min() > 0.97
    assert caption_retrieval(val.text @ w + b, val).map > 0.95
    # exact on noise-free data with almost no penalty
    w0, b0 = ridge_solution(fit.text, fit.text @ m, 1e-6)
    assert np.allclose(w0, m, atol=1e-2)
    assert np.allclose(b0, -fit.text.mean(axis=0) @ w0, atol=1e-5)  # the mean image is left out of queries


def test_ridge_shrinks_towards_the_models_own_tower() -> None:
    fit, m = _planted(200, 2)
    val, _ = _planted(50, 2)
    rng = np.random.default_rng(5)
    bridge = rng.normal(size=(16, 24)).astype(np.float32)  # a linear text tower, unrelated to the data
    feats = rng.normal(size=(100, 16)).astype(np.float32)
    prior = tower_prior(feats, feats @ bridge, fit)
    cos = np.sum(prior * bridge) / np.linalg.norm(prior) / np.linalg.norm(bridge)
    assert cos > 0.999  # the tower recovered (up to the scale of the image vectors)
    far, _ = ridge_solution(fit.text, fit.images, 1e9, prior)
    near, _ = ridge_solution(fit.text, fit.images, 1e-6, prior)
    assert np.allclose(far, prior, atol=1e-4)  # all penalty: the model's own tower
    w, b, _, tried = fit_ridge(fit, val, prior=prior)
    assert caption_retrieval(val.text @ w + b, val).map > 0.95 and len(tried) > 3
    assert not np.allclose(near, prior, atol=1e-2)


def test_caption_retrieval_counts_every_image_of_a_caption_as_relevant() -> None:
    images = np.eye(4, dtype=np.float32)
    part = PairSet(np.zeros((4, 4), np.float32), images, np.array([0, 0, 1, 1]))
    queries = np.array([[1, 0.9, 0, 0], [1, 0.9, 0, 0], [0, 0, 0.5, 1], [0, 0, 0.5, 1]], np.float32)
    s = caption_retrieval(queries, part)
    assert s.queries == 2 and s.map == 1.0 and s.recall_at[1] == 1.0
    wrong = caption_retrieval(queries[::-1].copy(), part)
    assert wrong.map < 0.5


def test_contrastive_starts_from_ridge_and_keeps_its_best_validation_epoch() -> None:
    fit, _ = _planted(200, 1)
    val, _ = _planted(50, 1)
    config = HeadConfig(kind="text", arch="linear", in_dim=16, out_dim=24, base="b", base_fingerprint="f", name="t")
    w, b, _, _ = fit_ridge(fit, val)
    head = ProjectionHead(config)
    with torch.no_grad():
        head.net[0].weight.copy_(torch.from_numpy(w.T.copy()))
        head.net[0].bias.copy_(torch.from_numpy(b))
    start = caption_retrieval(val.text @ w + b, val).map
    module, epoch, best = fit_contrastive(head, fit, val, ContrastiveSettings(epochs=3, patience=2))
    assert best >= start and 0 <= epoch <= 3
    with torch.no_grad():
        assert caption_retrieval(module(torch.from_numpy(val.text)).numpy(), val).map == pytest.approx(best)


@pytest.fixture(scope="module")
def captioned(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Path:
    """A tiny-CLIP collection of 24 images named after 6 captions (4 each)."""
    import lookalike

    root = tmp_path_factory.mktemp("align")
    folder = root / "imgs"
    for i in range(24):
        make_image(folder / f"{WORDS[i % 6].replace(' ', '_')}-{i:02d}.png", seed=i, size=(40, 32))
    with lookalike.Collection.create(root / "c.lkl", model=f"openclip:{tiny_clip_dir}", device="cpu") as coll:
        coll.add([folder])
    return root


def test_align_from_file_names_saves_the_held_out_winner(captioned: Path, tmp_path: Path) -> None:
    import lookalike

    report = align_text(captioned / "c.lkl", from_filenames=True, out=tmp_path / "words", seed=3,
                        settings=ContrastiveSettings(epochs=2, patience=1))
    head = load_head(tmp_path / "words")
    coll = lookalike.Collection.open(captioned / "c.lkl")
    assert head.config.kind == "text" and (head.config.in_dim, head.config.out_dim) == (32, 32)
    assert head.config.base == coll.manifest.model_id and head.config.base_fingerprint == coll.manifest.fingerprint
    assert report.pairs == 24 and sum(report.counts.values()) == 24 and report.model is not None
    want = "contrastive" if report.contrastive.map > report.ridge.map else "ridge"
    assert report.kept == want
    stored = json.loads((tmp_path / "words/head.json").read_text())["report"]
    assert stored["kept"] == want and stored["counts"] == report.counts
    assert len(head.train_hashes()) == report.counts["fit"] + report.counts["val"]
    coll.close()


def test_captions_csv_with_missing_paths_names_count_and_examples(captioned: Path, tmp_path: Path) -> None:
    csv = captioned / "captions.csv"
    rows = [f"imgs/{WORDS[i % 6].replace(' ', '_')}-{i:02d}.png,{WORDS[i % 6]}" for i in range(24)]
    csv.write_text("path,caption\n" + "\n".join(rows + ["imgs/gone-1.png,gone", "imgs/gone-2.png,gone"]) + "\n")
    with pytest.raises(InvalidArgument, match=r"2 of its 26 paths.*gone-1\.png"):
        align_text(captioned / "c.lkl", captions=csv, out=tmp_path / "h")
    csv.write_text("path,caption\n" + "\n".join(rows) + "\n")
    report = align_text(captioned / "c.lkl", captions=csv, out=tmp_path / "h",
                        settings=ContrastiveSettings(epochs=1, patience=1))
    assert report.pairs == 24 and report.captions == str(csv)


def test_caption_source_must_be_exactly_one(captioned: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="one of the two"):
        align_text(captioned / "c.lkl", out=tmp_path / "h")
    with pytest.raises(InvalidArgument, match="one of the two"):
        align_text(captioned / "c.lkl", captions="x.csv", from_filenames=True, out=tmp_path / "h")
