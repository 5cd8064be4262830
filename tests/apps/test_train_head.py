"""Training a projection head: the leak test, determinism, early stopping, what is saved.

Vectors are synthetic (a fake embedding cache hands them out by content hash), so these
tests judge the training code, not a model; the tiny timm model supplies a real base
(its name, dim and fingerprint). The real-lite run on clip art is marked slow.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lookalike.apps.head_fit as head_fit
from lookalike.apps.embed_cache import Embedded
from lookalike.apps.head_fit import FitSettings, LabelledVectors, fit_head
from lookalike.apps.labelled import LabelledImage, LabelledSet
from lookalike.apps.splits import SplitSettings, split_labelled
from lookalike.apps.train_head import train_head
from lookalike.errors import InvalidArgument
from lookalike.models.head import HeadConfig, ProjectionHead, load_head

DIM = 64  # the tiny timm model's


class FakeCache:
    """Hands out fixed vectors by content hash; ``poison`` hashes get NaN rows instead."""

    def __init__(self, table: dict[str, np.ndarray], poison: frozenset[str] = frozenset()) -> None:
        self.table, self.poison, self.calls = table, poison, 0

    def embed(self, model: Any, images: LabelledSet, *, progress: Any = None, **_: Any) -> Embedded:
        self.calls += 1
        rows = [np.full(DIM, np.nan, np.float32) if im.hash in self.poison else self.table[im.hash]
                for im in images.images]
        return Embedded(np.stack(rows), len(rows), 0.0, None, None)


def synthetic(labels: int = 8, per_label: int = 12, seed: int = 0) -> tuple[LabelledSet, dict[str, np.ndarray]]:
    """Labels told apart by a weak signal in 8 dims, buried in strong noise in the other 56:
    a linear head that drops the noise dims retrieves far better than the raw vectors."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(labels, 8))
    images, table = [], {}
    for c in range(labels):
        for i in range(per_label):
            v = np.concatenate([centres[c] + 0.3 * rng.normal(size=8), 1.5 * rng.normal(size=DIM - 8)])
            h = f"{c:02d}{i:02d}" + "0" * 28
            images.append(LabelledImage(Path(f"/nowhere/l{c}/{i}.png"), f"l{c}", h))
            table[h] = (v / np.linalg.norm(v)).astype(np.float32)
    return LabelledSet(tuple(images), "synthetic"), table


FAST = FitSettings(epochs=12, patience=4, lr=3e-3, labels_per_batch=4, per_label=4)


class StubModel:
    """What train_head asks of a base model when the cache supplies the vectors."""

    model_id, dim = "stub:base", DIM

    def fingerprint(self) -> str:
        return "stubfingerprint0"


@pytest.fixture(scope="module")
def data() -> tuple[LabelledSet, dict[str, np.ndarray]]:
    return synthetic()


def _train(out: Path, data: Any, cache: FakeCache | None = None, base: Any = None, **kw: Any) -> Any:
    kw.setdefault("settings", FAST)
    return train_head(data[0], base=base or StubModel(), out=out, cache=cache or FakeCache(data[1]),
                      epochs=kw["settings"].epochs, patience=kw["settings"].patience, device="cpu", **kw)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, data: Any) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("train") / "clean"
    return out, _train(out, data)


def test_leak_test_held_out_vectors_never_reach_training(tmp_path: Path, data: Any, clean: Any) -> None:
    labelled, table = data
    parts = split_labelled(labelled, SplitSettings())
    held = frozenset(labelled.images[i].hash for i in parts.held_out)
    assert parts.test and parts.unseen
    poisoned = _train(tmp_path / "poisoned", data, FakeCache(table, poison=held))
    # NaN anywhere in training would have raised or spread into the weights: they are identical.
    assert (clean[0] / "head.safetensors").read_bytes() == (tmp_path / "poisoned/head.safetensors").read_bytes()
    assert clean[1].history == poisoned.history
    trained_on = load_head(clean[0]).train_hashes()
    assert trained_on == {labelled.images[i].hash for i in parts.train + parts.val}
    assert not trained_on & held


def test_training_function_is_given_train_and_val_rows_only(tmp_path: Path, data: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import lookalike.apps.train_head as th

    seen: list[int] = []
    real = th.fit_head

    def spy(module: Any, train: LabelledVectors, val: LabelledVectors, *a: Any, **kw: Any) -> Any:
        seen.extend([len(train.vectors), len(val.vectors)])
        return real(module, train, val, *a, **kw)

    monkeypatch.setattr(th, "fit_head", spy)
    report = _train(tmp_path / "h", data, settings=replace(FAST, epochs=1))
    assert seen == [report.counts["train"], report.counts["val"]]


def test_same_seed_same_head_other_seed_other_head(tmp_path: Path, data: Any) -> None:
    short = replace(FAST, epochs=2)
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        _train(tmp_path / name, data, arch="mlp", hidden=16, seed=seed, settings=short)
    weights = {n: (tmp_path / n / "head.safetensors").read_bytes() for n in "abc"}
    assert weights["a"] == weights["b"] != weights["c"]


def test_head_is_saved_with_config_base_fingerprint_and_report(clean: Any) -> None:
    out, report = clean
    head = load_head(out)
    assert head.config.kind == "projection" and head.config.arch == "linear"
    assert (head.config.in_dim, head.config.out_dim) == (DIM, DIM)
    assert head.config.base == "stub:base" and head.config.base_fingerprint == "stubfingerprint0"
    assert head.config.name == "clean"
    stored = json.loads((out / "head.json").read_text())["report"]
    assert stored["test"]["after"]["knn1"] == report.test.after.knn1
    assert set(stored["counts"]) == {"train", "val", "test", "unseen"}
    assert stored["history"][0]["loss"] is None and len(stored["history"]) == report.epochs_run + 1
    # the synthetic labels hide in 8 of 64 dims: a head finds them, on held-out images of seen labels
    assert report.test.after.map > report.test.before.map
    assert report.unseen is not None and report.unseen.before.n == report.counts["unseen"]


def test_a_base_name_is_loaded_and_recorded_canonically(tmp_path: Path, tiny_timm_dir: Path, data: Any) -> None:
    import lookalike

    report = _train(tmp_path / "small", data, base=f"timm:{tiny_timm_dir}/", dim=16,
                    settings=replace(FAST, epochs=1))
    head = load_head(tmp_path / "small")
    assert head.config.base == f"timm:{tiny_timm_dir}" == report.base
    assert head.config.base_fingerprint == lookalike.load_model(head.config.base, device="cpu").fingerprint()
    assert head.config.out_dim == 16


def test_out_holding_other_files_is_refused_before_any_embedding(tmp_path: Path, data: Any) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/notes.txt").write_text("mine")
    cache = FakeCache(data[1])
    with pytest.raises(InvalidArgument, match="notes.txt"):
        _train(tmp_path / "busy", data, cache)
    with pytest.raises(InvalidArgument, match="arch"):
        _train(tmp_path / "x", data, cache, arch="resnet")
    assert cache.calls == 0


def test_early_stopping_restores_the_best_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    labelled, table = synthetic(labels=4, per_label=6)
    vecs = np.stack([table[im.hash] for im in labelled.images])
    train = LabelledVectors(vecs[::2], tuple(labelled.label_of_each[::2]))
    val = LabelledVectors(vecs[1::2], tuple(labelled.label_of_each[1::2]))
    config = HeadConfig(kind="projection", arch="linear", in_dim=DIM, out_dim=DIM, base="b", base_fingerprint="f",
                        name="n")
    scripted = iter([(0.1, 0.1), (0.2, 0.2), (0.5, 0.5), (0.4, 0.4), (0.3, 0.3), (0.2, 0.2), (0.9, 0.9)])
    monkeypatch.setattr(head_fit, "validation_scores", lambda *a: next(scripted))
    settings = replace(FAST, epochs=10, patience=3)
    result = fit_head(ProjectionHead(config), train, val, settings)
    assert result.best_epoch == 2 and [r.epoch for r in result.history] == [0, 1, 2, 3, 4, 5]
    assert result.stopped_early
    rising = iter([(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)])
    monkeypatch.setattr(head_fit, "validation_scores", lambda *a: next(rising))
    two = fit_head(ProjectionHead(config), train, val, replace(settings, epochs=2))
    for k, v in two.module.state_dict().items():  # the same weights as a run that stopped at epoch 2
        assert np.array_equal(v.numpy(), result.module.state_dict()[k].numpy())


def test_fit_refuses_nan_vectors_and_labels_without_pairs() -> None:
    config = HeadConfig(kind="projection", arch="linear", in_dim=4, out_dim=4, base="b", base_fingerprint="f",
                        name="n")
    ok = LabelledVectors(np.eye(4, dtype=np.float32), ("a", "a", "b", "b"))
    bad = LabelledVectors(np.full((2, 4), np.nan, np.float32), ("a", "b"))
    with pytest.raises(InvalidArgument, match="NaN"):
        fit_head(ProjectionHead(config), ok, bad, FAST)
    lonely = LabelledVectors(np.eye(4, dtype=np.float32), ("a", "b", "c", "d"))
    with pytest.raises(InvalidArgument, match="two training images"):
        fit_head(ProjectionHead(config), lonely, ok, FAST)


@pytest.mark.slow
def test_real_lite_head_on_clip_art_ranks_seen_labels_better(tmp_path: Path, clipart_labelled: dict) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{label}\n" for label, ps in clipart_labelled.items() for p in ps))
    report = train_head(csv, base="lite", out=tmp_path / "head", device="cpu")
    # mAP, not kNN@1: with two test images per label, kNN@1 moves in steps too coarse to judge
    assert report.test is not None and report.test.after.map > report.test.before.map


def test_a_base_that_already_has_a_head_is_refused_before_any_work(tmp_path) -> None:
    """A head sits on a plain model only: fitting one on a head model could never load."""
    from lookalike.apps.train_head import check_no_head, train_head
    from lookalike.errors import InvalidArgument

    class HeadModelStub:
        model_id = "lite+head:logos-1234abcd"

        def fingerprint(self) -> str:  # pragma: no cover - must not be reached
            raise AssertionError("the model was used before the refusal")

    with pytest.raises(InvalidArgument, match="already has a head.*'lite'"):
        train_head(tmp_path / "no-such-folder", base=HeadModelStub(), out=tmp_path / "h")
    check_no_head("lite", "base")  # a plain model passes
