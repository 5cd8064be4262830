"""Incremental indexing: what Collection.add does on first and later runs as folders change."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from support import make_image
from lookalike.errors import (CollectionError, CollectionExists, CollectionMismatch, CollectionNotFound,
                              InvalidArgument, QueryError)
from lookalike.pipeline import embed as embed_mod
from lookalike.store import indexer, plan
from lookalike.store.collection import Collection

N = 20


class _MemoEmbed:
    """Memoises ``embed_pixels`` per preprocessed image, so identical generated images are embedded
    once per module; the vectors are the model's own output, only recomputation is skipped."""

    def __init__(self, original: Callable[..., np.ndarray]) -> None:
        self.original = original
        self.cache: dict[bytes, np.ndarray] = {}

    def __call__(self, pixels: Any, *, normalize: bool = True) -> np.ndarray:
        arr = np.ascontiguousarray(np.asarray(pixels))
        keys = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() + bytes([normalize]) for row in arr]
        missing = [i for i, key in enumerate(keys) if key not in self.cache]
        if missing:
            for i, vec in zip(missing, self.original(arr[missing], normalize=normalize)):
                self.cache[keys[i]] = vec
        return np.stack([self.cache[key] for key in keys])


@pytest.fixture(scope="module")
def model(lite_model: Any) -> Iterator[Any]:
    """The session lite model with memoised image embedding (restored after the module)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lite_model, "embed_pixels", _MemoEmbed(lite_model.embed_pixels))
        yield lite_model


@pytest.fixture
def no_model_calls(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any image embedding during the test fail loudly."""

    def boom(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the model was asked to embed images")

    monkeypatch.setattr(model, "embed_pixels", boom)


@pytest.fixture
def indexed(image_folder: Callable[..., Path], model: Any, tmp_path: Path) -> Iterator[tuple[Collection, Path]]:
    """A collection holding a freshly indexed folder of N images."""
    folder = image_folder(N)
    coll = Collection.create(tmp_path / "c.lkl", model=model)
    report = coll.add([folder])
    assert report.added == N
    yield coll, folder
    coll.close()


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".png", ".jpg"))


def _row(coll: Collection, path: Path) -> Any:
    """The storage row (white-box: vector rows are the store's own business)."""
    return coll._storage.db.get_by_path(str(path))


def _vector(coll: Collection, path: Path) -> np.ndarray:
    row = _row(coll, path)
    assert row is not None and row.vec_row is not None, f"{path} is not embedded"
    return np.array(coll._storage.vectors()[row.vec_row])


def _fresh(model: Any, path: Path) -> np.ndarray:
    """A fresh embedding of the file with the unmemoised model."""
    memo = model.embed_pixels
    original = memo.original if isinstance(memo, _MemoEmbed) else memo
    from lookalike.pipeline.embed import prepare_image

    prepared = prepare_image(path, str(path), model.image_transform, min_side=model.preprocess.min_decode_side)
    assert prepared.pixels is not None
    return original(prepared.pixels[None])[0]


def _bump_mtime(path: Path, seconds: int = 10) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def _all_paths(coll: Collection) -> list[str]:
    return [item.path for item in coll.items()]


def _hit_paths(coll: Collection, query: Any, k: int = 100) -> list[str]:
    return [h.path for h in coll.search(query, k=k)]


# --------------------------------------------------------------------------- first add
def test_first_add(image_folder: Callable[..., Path], model: Any, tmp_path: Path) -> None:
    """Guards the first run: every file embedded once, counted as added, stored unit-norm, info() agrees."""
    folder = image_folder(N)
    with Collection.create(tmp_path / "c.lkl", model=model) as coll:
        report = coll.add([folder])
        assert (report.added, report.embedded, report.updated, report.renamed, report.copied,
                report.unchanged, report.removed) == (N, N, 0, 0, 0, 0, 0)
        assert report.failed == [] and report.skipped == [] and report.total_seen == N
        assert len(coll) == N
        paths = sorted(_all_paths(coll))
        assert paths == sorted(str(p) for p in _images(folder))
        ids = [item.id for item in coll.items()]
        vecs = coll.get_vectors(ids)
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
        assert len({v.tobytes() for v in vecs}) == N, "distinct images got identical vectors"
        first = _images(folder)[0]
        np.testing.assert_allclose(_vector(coll, first), _fresh(model, first), atol=1e-5)
        info = coll.info()
        assert (info.model_id, info.dim, info.items, info.failed, info.vector_rows) == ("lite", 1280, N, 0, N)
        assert info.fingerprint == model.fingerprint()
        assert info.errors == [] and info.path == str(tmp_path / "c.lkl")
        assert info.bytes_on_disk >= N * 1280 * 4
        assert (tmp_path / "c.lkl" / "vectors-0.f32").stat().st_size == N * 1280 * 4


def test_rows_record_stat_hash_and_size(indexed: tuple[Collection, Path]) -> None:
    """Guards the stored metadata: size, mtime, content hash and image dimensions of each file."""
    coll, folder = indexed
    img = _images(folder)[3]
    row = _row(coll, img)
    st = img.stat()
    assert (row.size, row.mtime_ns, row.status, row.error) == (st.st_size, st.st_mtime_ns, "ok", None)
    assert row.hash == plan.file_hash(str(img))
    assert (row.width, row.height) == (96, 80)


# --------------------------------------------------------------------------- re-runs
def test_unchanged_rerun_embeds_nothing(indexed: tuple[Collection, Path], no_model_calls: None) -> None:
    """Guards the fast path: an unchanged folder is all 'unchanged' and never reaches the model."""
    coll, folder = indexed
    report = coll.add([folder])
    assert (report.unchanged, report.embedded, report.added, report.updated, report.removed) == (N, 0, 0, 0, 0)
    assert report.failed == [] and len(coll) == N


def test_unchanged_rerun_does_not_load_the_model(indexed: tuple[Collection, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards that a collection opened without a model does not load one for an unchanged re-run."""
    from lookalike.models import registry

    coll, folder = indexed

    def no_loading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model was loaded although nothing needed embedding")

    monkeypatch.setattr(registry, "load_model", no_loading)
    with Collection.open(coll.path) as again:
        report = again.add([folder])
        assert report.unchanged == N and report.embedded == 0


def test_rename_reuses_vector(indexed: tuple[Collection, Path], no_model_calls: None) -> None:
    """Guards renames: no embedding, the new path carries the old vector and is searchable, the old path is gone."""
    coll, folder = indexed
    old = _images(folder)[0]
    old_vec = _vector(coll, old)
    new = folder / "elsewhere" / "renamed.jpg"
    new.parent.mkdir()
    os.rename(old, new)
    report = coll.add([folder])
    assert (report.renamed, report.removed, report.embedded, report.added, report.copied) == (1, 1, 0, 0, 0)
    assert report.unchanged == N - 1 and len(coll) == N
    assert _row(coll, old) is None and str(old) not in _all_paths(coll)
    np.testing.assert_array_equal(_vector(coll, new), old_vec)
    new_id = _row(coll, new).id
    hits = coll.search(f"id:{new_id}", k=N)
    assert hits[0].path == str(new) and str(old) not in [h.path for h in hits]


def test_copy_reuses_vector(indexed: tuple[Collection, Path], no_model_calls: None) -> None:
    """Guards copies: counted as copied, no embedding, both paths share one vector row."""
    coll, folder = indexed
    src = _images(folder)[5]
    dst = folder / "copy_of_5.png" if src.suffix == ".png" else folder / "copy_of_5.jpg"
    shutil.copy(src, dst)
    report = coll.add([folder])
    assert (report.copied, report.embedded, report.added, report.removed) == (1, 0, 0, 0)
    assert len(coll) == N + 1
    assert _row(coll, dst).vec_row == _row(coll, src).vec_row
    assert coll._storage.vector_rows == N, "a copy must not append a vector"
    top2 = coll.search(f"id:{_row(coll, src).id}", k=2)
    assert {h.path for h in top2} == {str(src), str(dst)}
    assert all(h.score == pytest.approx(1.0, abs=1e-5) for h in top2)


def test_copies_within_one_run_are_embedded_once(image_folder: Callable[..., Path], model: Any,
                                                 tmp_path: Path) -> None:
    """Regression: copies met in the same run as their original (e.g. 'a.jpg' and 'a (1).jpg' side by side)
    were embedded again because workers decode ahead of the hash registry; they must reuse the row."""
    folder = image_folder(6)
    images = _images(folder)
    copies = [folder / "sub0" / "img_0000 (1).jpg", folder / "sub2" / "zz_copy.png", folder / "sub2" / "zz_copy2.png"]
    shutil.copy(images[0], copies[0])
    shutil.copy(images[1], copies[1])
    shutil.copy(images[1], copies[2])
    with Collection.create(tmp_path / "c.lkl", model=model) as coll:
        report = coll.add([folder])
        assert (report.added, report.copied, report.embedded) == (6, 3, 6)
        assert coll._storage.vector_rows == 6 and len(coll) == 9
        assert _row(coll, copies[0]).vec_row == _row(coll, images[0]).vec_row
        assert _row(coll, copies[1]).vec_row == _row(coll, copies[2]).vec_row == _row(coll, images[1]).vec_row


def test_deleted_file_leaves_search(indexed: tuple[Collection, Path], no_model_calls: None) -> None:
    """Guards deletions: the row is removed, its id is unknown, and it no longer appears in results."""
    coll, folder = indexed
    victim = _images(folder)[7]
    victim_id = _row(coll, victim).id
    assert str(victim) in _hit_paths(coll, f"id:{victim_id}")
    neighbour_id = _row(coll, _images(folder)[8]).id
    victim.unlink()
    report = coll.add([folder])
    assert (report.removed, report.unchanged, report.embedded) == (1, N - 1, 0)
    assert len(coll) == N - 1
    hits = _hit_paths(coll, f"id:{neighbour_id}")
    assert len(hits) == N - 1 and str(victim) not in hits
    with pytest.raises(QueryError, match=f"no item with id {victim_id}"):
        coll.search(f"id:{victim_id}")


def test_modified_file_is_reembedded(indexed: tuple[Collection, Path], model: Any) -> None:
    """Guards edits: new content is re-embedded under the same id, and the vector matches the new content."""
    coll, folder = indexed
    target = _images(folder)[4]
    before = _row(coll, target)
    old_vec = _vector(coll, target)
    make_image(target, seed=999)
    _bump_mtime(target)
    report = coll.add([folder])
    assert (report.updated, report.embedded, report.added, report.removed, report.unchanged) == (1, 1, 0, 0, N - 1)
    after = _row(coll, target)
    assert after.id == before.id and after.hash != before.hash and after.vec_row != before.vec_row
    new_vec = _vector(coll, target)
    np.testing.assert_allclose(new_vec, _fresh(model, target), atol=1e-5)
    assert not np.allclose(new_vec, old_vec, atol=1e-3)
    assert coll.search(f"id:{after.id}", k=1)[0].path == str(target)


def test_modified_to_known_content_reuses_vector(indexed: tuple[Collection, Path], no_model_calls: None) -> None:
    """Guards an edit that makes a file a copy of another: 'updated' by reusing that vector, no embedding."""
    coll, folder = indexed
    a, b = _images(folder)[1], _images(folder)[3]  # both PNG
    shutil.copyfile(b, a)
    _bump_mtime(a)
    report = coll.add([folder])
    assert (report.updated, report.embedded) == (1, 0)
    assert _row(coll, a).vec_row == _row(coll, b).vec_row


def test_touch_is_not_reembedded(indexed: tuple[Collection, Path], no_model_calls: None) -> None:
    """Guards mtime-only changes: the file is hashed, found identical, and only its stat is updated."""
    coll, folder = indexed
    target = _images(folder)[2]
    before = _row(coll, target)
    _bump_mtime(target)
    report = coll.add([folder])
    assert (report.unchanged, report.embedded, report.updated) == (N, 0, 0)
    after = _row(coll, target)
    assert after.mtime_ns == target.stat().st_mtime_ns != before.mtime_ns
    assert (after.id, after.vec_row, after.hash) == (before.id, before.vec_row, before.hash)
    again = coll.add([folder])
    assert again.unchanged == N and again.embedded == 0


def test_failed_file_recorded_not_retried_then_fixed(indexed: tuple[Collection, Path], model: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards failures: recorded with a reason, skipped while unchanged (unless retry_failed), re-embedded once fixed."""
    coll, folder = indexed
    bad = folder / "bad.png"
    bad.write_bytes(b"this is not a png at all")
    report = coll.add([folder])
    assert [p for p, _ in report.failed] == [str(bad)] and report.embedded == 0
    assert "not an image" in report.failed[0][1]
    info = coll.info()
    assert info.failed == 1 and info.items == N and info.errors[0][0] == str(bad)
    failed_id = _row(coll, bad).id

    decoded: list[str] = []
    real_decode = embed_mod.decode_image

    def spy_decode(data: Any, **kw: Any) -> Any:
        decoded.append(kw.get("name", ""))
        return real_decode(data, **kw)

    monkeypatch.setattr(embed_mod, "decode_image", spy_decode)
    quiet = coll.add([folder])
    assert quiet.failed == [] and quiet.unchanged == N + 1 and decoded == []

    retried = coll.add([folder], retry_failed=True)
    assert [p for p, _ in retried.failed] == [str(bad)] and decoded == [str(bad)]

    make_image(bad, seed=4242, fmt="PNG")
    _bump_mtime(bad)
    fixed = coll.add([folder])
    assert fixed.failed == [] and (fixed.updated, fixed.embedded) == (1, 1)
    row = _row(coll, bad)
    assert (row.id, row.status, row.error) == (failed_id, "ok", None)
    np.testing.assert_allclose(_vector(coll, bad), _fresh(model, bad), atol=1e-5)
    assert coll.info().failed == 0 and len(coll) == N + 1


def test_deleted_root_does_not_sweep(image_folder: Callable[..., Path], model: Any, tmp_path: Path) -> None:
    """Guards an unreadable root (deleted or unmounted folder): its items stay, nothing is removed."""
    a = image_folder(4, name="a")
    b = tmp_path / "b"
    for i in range(3):
        make_image(b / f"b{i}.png", seed=300 + i)
    with Collection.create(tmp_path / "c.lkl", model=model) as coll:
        first = coll.add([a, b])
        assert first.added == 7 and len(coll) == 7
        shutil.rmtree(a)
        report = coll.add([a, b])
        assert report.removed == 0 and len(coll) == 7
        assert any(p == str(a) and "cannot access" in reason for p, reason in report.skipped)
        # Alone, a missing root is an error rather than an empty scan (issue 8: a mistyped or
        # unmounted folder must not look like success); nothing is removed either way.
        with pytest.raises(InvalidArgument, match="no such folder"):
            coll.add([a])
        assert len(coll) == 7


def test_unlistable_subfolder_does_not_sweep(indexed: tuple[Collection, Path], monkeypatch: pytest.MonkeyPatch,
                                             no_model_calls: None) -> None:
    """Regression: a sub-folder that cannot be listed (permissions, flaky mount) must not lose its items."""
    coll, folder = indexed
    locked = folder / "sub1"
    n_locked = len(_images(locked))
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    (folder / "sub0" / "img_0000.jpg").unlink()  # a real deletion elsewhere is still noticed
    report = coll.add([folder])
    assert any(p == str(locked) and "cannot list" in reason for p, reason in report.skipped)
    assert report.removed == 1, "only the file really deleted may be removed"
    assert len(coll) == N - 1
    assert len([p for p in _all_paths(coll) if p.startswith(str(locked) + os.sep)]) == n_locked


def test_overlapping_roots_still_sweep(indexed: tuple[Collection, Path], no_model_calls: None) -> None:
    """Guards the sweep when a root is visited twice (skipped as 'already visited'): deletions are still removed."""
    coll, folder = indexed
    victim = folder / "sub0" / "img_0003.png"
    victim.unlink()
    report = coll.add([folder, folder / "sub0"])
    assert report.removed == 1 and _row(coll, victim) is None


def test_search_sees_changes_made_through_same_object(indexed: tuple[Collection, Path],
                                                      image_folder: Callable[..., Path]) -> None:
    """Guards the search cache: changes committed by this collection object, or another one, show up."""
    coll, folder = indexed
    probe = _row(coll, _images(folder)[0]).id
    assert len(coll.search(f"id:{probe}", k=100)) == N
    make_image(folder / "new" / "n.png", seed=777)
    coll.add([folder])
    assert len(coll.search(f"id:{probe}", k=100)) == N + 1
    with Collection.open(coll.path) as other:
        (folder / "new" / "n.png").unlink()
        other.add([folder])
    assert len(coll.search(f"id:{probe}", k=100)) == N


# --------------------------------------------------------------------------- identity and lifecycle
def test_model_mismatch_and_exists(indexed: tuple[Collection, Path], model: Any,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards mixing models: another model (by name or fingerprint) is refused with how to make a new collection."""
    coll, _ = indexed
    with pytest.raises(CollectionMismatch) as info:
        Collection.open(coll.path, model="openclip:ViT-B-32/laion2b_s34b_b79k")
    msg = str(info.value)
    assert "lite" in msg and "new collection" in msg and "lookalike index" in msg and "--collection" in msg
    assert "--model openclip:ViT-B-32/laion2b_s34b_b79k" in msg
    with Collection.open(coll.path, model="lite") as same:
        assert same.manifest.model_id == "lite"
    monkeypatch.setattr(model, "fingerprint", lambda: "0123456789abcdef")
    with pytest.raises(CollectionMismatch, match="fingerprint"):
        Collection.open(coll.path, model=model)
    monkeypatch.undo()
    with pytest.raises(CollectionExists, match="already exists"):
        Collection.create(coll.path, model=model)
    with Collection.create(coll.path, model=model, exist_ok=True) as reopened:
        assert len(reopened) == N


def test_open_missing_and_create_in_non_empty_folder(tmp_path: Path, model: Any) -> None:
    """Guards lifecycle errors: a missing collection says how to create one; a foreign folder is not taken over."""
    with pytest.raises(CollectionNotFound, match="lookalike index"):
        Collection.open(tmp_path / "nothing.lkl")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CollectionError, match="not empty"):
        Collection.create(foreign, model=model)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_compaction_shrinks_and_keeps_vectors(indexed: tuple[Collection, Path],
                                              monkeypatch: pytest.MonkeyPatch, no_model_calls: None) -> None:
    """Guards compaction: garbage rows dropped into a new generation file, survivors' vectors and ids unchanged."""
    coll, folder = indexed
    monkeypatch.setattr(indexer, "COMPACT_MIN_ROWS", 5)
    images = _images(folder)
    keep = images[::4]  # 5 survivors
    before = {p: (_row(coll, p).id, _vector(coll, p)) for p in keep}
    old_file = coll.path / "vectors-0.f32"
    assert old_file.stat().st_size == N * 1280 * 4
    for p in images:
        if p not in keep:
            p.unlink()
    report = coll.add([folder])
    assert report.removed == N - len(keep)
    assert coll._storage.vector_file.path.name == "vectors-1.f32" and not old_file.exists()
    assert coll._storage.vector_rows == len(keep)
    assert coll._storage.vector_file.path.stat().st_size == len(keep) * 1280 * 4
    assert sorted(f.name for f in coll.path.glob("vectors-*.f32")) == ["vectors-1.f32"]
    for p, (item_id, vec) in before.items():
        row = _row(coll, p)
        assert row.id == item_id and row.vec_row < len(keep)
        np.testing.assert_array_equal(_vector(coll, p), vec)
        assert coll.search(f"id:{item_id}", k=1)[0].path == str(p)
    # Survives reopening: the new generation is what the database points at.
    with Collection.open(coll.path) as again:
        assert again._storage.vector_file.path.name == "vectors-1.f32" and len(again) == len(keep)


def test_search_racing_a_compaction_stays_consistent(indexed: tuple[Collection, Path], model: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a search whose row list was read just before another writer compacted must not pair
    old row numbers with the renumbered vector file (wrong hits or an IndexError)."""
    coll, folder = indexed
    monkeypatch.setattr(indexer, "COMPACT_MIN_ROWS", 1)
    images = _images(folder)
    keep = images[::5]
    keep_vecs = {str(p): _vector(coll, p) for p in keep}
    for p in images:
        if p not in keep:
            p.unlink()
    reader = Collection.open(coll.path)
    real = reader._storage.db.searchable
    raced = []

    def searchable_then_compact(flt: Any = None) -> Any:
        result = real(flt)
        if not raced:  # another writer sweeps and compacts right after the reader listed the rows
            raced.append(coll.add([folder]))
        return result

    monkeypatch.setattr(reader._storage.db, "searchable", searchable_then_compact)
    try:
        probe = keep_vecs[str(keep[1])]
        hits = reader.search(probe, k=N)
        assert raced and raced[0].removed == N - len(keep)
        assert coll._storage.vector_file.path.name == "vectors-1.f32"
        assert sorted(h.path for h in hits) == sorted(keep_vecs)
        assert hits[0].path == str(keep[1]) and hits[0].score == pytest.approx(1.0, abs=1e-5)
        for p, vec in keep_vecs.items():
            np.testing.assert_array_equal(reader.get_vectors([_row(reader, Path(p)).id])[0], vec)
    finally:
        reader.close()


def test_no_compaction_below_threshold(indexed: tuple[Collection, Path], no_model_calls: None) -> None:
    """Guards the compaction threshold: a little garbage is left in place (no rewrite on every run)."""
    coll, folder = indexed
    _images(folder)[0].unlink()
    coll.add([folder])
    assert coll._storage.vector_file.path.name == "vectors-0.f32" and coll._storage.vector_rows == N


def test_second_writer_is_refused(indexed: tuple[Collection, Path], no_model_calls: None) -> None:
    """Guards the writer lock: a second add while the lock is held raises CollectionError; after release it works."""
    coll, folder = indexed
    with Collection.open(coll.path) as other:
        with coll._storage.write_lock():
            with pytest.raises(CollectionError, match="another process"):
                other.add([folder])
        # Held by an unrelated open file description, as another process would.
        fd = os.open(coll.path / ".lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with pytest.raises(CollectionError, match="another process"):
                coll.add([folder])
        finally:
            os.close(fd)
        assert other.add([folder]).unchanged == N
