"""The embedding cache: keyed by model fingerprint and content hash, embeds only misses."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from lookalike.apps.embed_cache import EmbeddingCache, MemoryPeak, rss_mb
from lookalike.apps.labelled import load_labelled
from support import make_image


class CountingModel:
    """Stands in for an EmbeddingModel: counts the images it embeds."""

    def __init__(self, fingerprint: str = "fp-a", dim: int = 4) -> None:
        self._fp, self.dim, self.model_id, self.calls = fingerprint, dim, "counting", []

    def fingerprint(self) -> str:
        return self._fp

    def encode_images(self, paths, *, batch_size: int = 32) -> np.ndarray:
        self.calls.append(len(paths))
        rows = np.array([[len(str(p)) % 7, hash(Path(p).read_bytes()) % 11, 1.0, 0.5] for p in paths], np.float32)
        return rows[:, : self.dim]


@pytest.fixture
def labelled(tmp_path: Path):
    for label in ("a", "b"):
        for i in range(3):
            make_image(tmp_path / "lab" / label / f"{i}.png", seed=ord(label) * 10 + i, size=(8, 8))
    return load_labelled(tmp_path / "lab")


def test_only_misses_embed(tmp_path: Path, labelled) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    model = CountingModel()
    first = cache.embed(model, labelled)  # type: ignore[arg-type]
    assert first.embedded == len(labelled) and first.cached == 0 and sum(model.calls) == len(labelled)
    assert first.vectors.shape == (len(labelled), 4) and first.vectors.dtype == np.float32
    again = cache.embed(model, labelled)  # type: ignore[arg-type]
    assert again.embedded == 0 and sum(model.calls) == len(labelled)
    np.testing.assert_array_equal(again.vectors, first.vectors)
    assert again.images_per_second == first.images_per_second  # the measurement is kept
    other = CountingModel("fp-b")
    assert cache.embed(other, labelled).embedded == len(labelled)  # type: ignore[arg-type]
    pairs = [(im.path, im.hash) for im in reversed(labelled.images)]
    np.testing.assert_array_equal(cache.embed(model, pairs).vectors, first.vectors[::-1])  # type: ignore[arg-type]
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.sqlite")) == ["fp-a.sqlite", "fp-b.sqlite"]


def test_copies_embed_once_and_progress(tmp_path: Path) -> None:
    img = make_image(tmp_path / "one.png", seed=1)
    (tmp_path / "two.png").write_bytes(img.read_bytes())
    from lookalike.store.plan import file_hash

    h = file_hash(str(img))
    model, events = CountingModel(), []
    out = EmbeddingCache(tmp_path / "c").embed(model, [(img, h), (tmp_path / "two.png", h)],  # type: ignore[arg-type]
                                              progress=events.append)
    assert model.calls == [1] and out.embedded == 1 and len(out.vectors) == 2
    assert events[-1].kind == "embed" and events[-1].done == events[-1].total == 1


def test_durable_sqlite_in_wal_mode(tmp_path: Path, labelled) -> None:
    cache = EmbeddingCache(tmp_path / "c")
    cache.embed(CountingModel(), labelled)  # type: ignore[arg-type]
    with sqlite3.connect(cache.path_for("fp-a")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == len(labelled)


def test_baseline_function_and_empty(tmp_path: Path, labelled) -> None:
    cache = EmbeddingCache(tmp_path / "c")
    calls = []

    def fn(paths):
        calls.append(len(paths))
        return np.ones((len(paths), 3), np.float32)

    assert cache.embed_with("histogram-v1", fn, labelled).embedded == len(labelled)
    assert cache.embed_with("histogram-v1", fn, labelled).embedded == 0 and calls == [len(labelled)]
    assert cache.embed_with("histogram-v1", fn, [], dim=3).vectors.shape == (0, 3)


def test_memory_peak_sees_an_allocation() -> None:
    if rss_mb() is None:
        pytest.skip("no way to read this process's memory here")
    with MemoryPeak() as peak:
        block = np.ones(64_000_000 // 8)  # 64 MB, touched
        block += 1
    del block
    assert peak.peak_mb is not None and peak.peak_mb > 40


def test_a_damaged_cache_file_is_replaced(tmp_path: Path, labelled) -> None:
    cache = EmbeddingCache(tmp_path / "c")
    cache.root.mkdir()
    cache.path_for("fp-a").write_bytes(b"not a database at all" * 100)
    model = CountingModel()
    assert cache.embed(model, labelled).embedded == len(labelled)  # type: ignore[arg-type]
    assert cache.embed(model, labelled).embedded == 0  # type: ignore[arg-type]


def test_a_busy_cache_is_reported_and_never_deleted(tmp_path: Path, labelled, monkeypatch) -> None:
    """Regression: "database is locked" is a DatabaseError too, and was taken for a damaged file."""
    from lookalike.apps import embed_cache
    from lookalike.errors import InvalidArgument

    cache = EmbeddingCache(tmp_path / "cache")
    cache.embed(CountingModel(), labelled)
    live = cache.path_for("fp-a")
    before = live.read_bytes()

    def locked(path: Path) -> sqlite3.Connection:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(embed_cache, "_open", locked)
    with pytest.raises(InvalidArgument, match="database is locked"):
        cache.embed(CountingModel(), labelled)
    assert live.read_bytes() == before


def test_an_unreadable_image_is_left_out_reported_and_not_cached(tmp_path: Path, labelled) -> None:
    """Regression: one bad file ended evaluate and train; now it is skipped, as index does."""
    from lookalike.errors import UnreadableImage

    bad_path = labelled.images[1].path

    class OneBad(CountingModel):
        def encode_images(self, paths, *, batch_size: int = 32) -> np.ndarray:
            if any(Path(p) == bad_path for p in paths):
                raise UnreadableImage(str(bad_path), "truncated file")
            return super().encode_images(paths, batch_size=batch_size)

    events = []
    got = EmbeddingCache(tmp_path / "cache").embed(OneBad(), labelled, progress=events.append)
    assert got.failed == ((bad_path, "truncated file"),)
    assert got.ok.tolist() == [i != 1 for i in range(len(labelled.images))]
    assert np.isfinite(got.vectors[got.ok]).all() and got.embedded == len(labelled.images) - 1
    assert [(e.path, e.reason) for e in events if e.kind == "skip"] == [(str(bad_path), "truncated file")]
    again = EmbeddingCache(tmp_path / "cache").embed(OneBad(), labelled)  # the bad one is tried again
    assert again.embedded == 0 and len(again.failed) == 1


def test_a_head_model_reuses_its_base_vectors(tmp_path: Path, labelled, tiny_timm_dir: Path) -> None:
    """A base and its heads decode each image once; the head's vectors are the head applied to them."""
    import lookalike
    from lookalike.models.head import HeadConfig, ProjectionHead, apply_head, load_head, save_head

    base = lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu", runtime="torch")
    config = HeadConfig(kind="projection", arch="mlp", in_dim=base.dim, out_dim=16, hidden=32,
                        base=f"timm:{tiny_timm_dir}", base_fingerprint=base.fingerprint(), name="h")
    folder = save_head(tmp_path / "h", ProjectionHead(config), config)
    cache = EmbeddingCache(tmp_path / "cache")
    base_vectors = cache.embed(base, labelled).vectors
    head_model = lookalike.load_model(f"timm:{tiny_timm_dir}+head:{folder}", device="cpu", runtime="torch")
    got = cache.embed(head_model, labelled)
    assert got.embedded == 0 and got.cached == len(labelled.images)
    np.testing.assert_allclose(got.vectors, apply_head(load_head(folder), base_vectors), atol=1e-6)
    direct = head_model.encode_images([im.path for im in labelled.images])
    assert float(np.min(np.sum(direct * got.vectors, axis=1))) > 0.9999
