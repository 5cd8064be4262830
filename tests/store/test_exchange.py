"""Export and import of embeddings (store/exchange*.py): parquet and clip-retrieval layouts,
round trips that search identically, and refusal of misaligned or foreign input.

Collections here are synthetic: a manifest for a made-up 32-d model and rows written straight
through Storage, so 10,000 items take a moment and no model ever loads (searches use vectors
and ids, which need none)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from lookalike.errors import CollectionMismatch, InvalidArgument  # noqa: E402
from lookalike.images.traits import ImageTraits  # noqa: E402
from lookalike.store.collection import Collection  # noqa: E402
from lookalike.store.exchange import SIDECAR, export_collection, import_embeddings  # noqa: E402
from lookalike.store.manifest import Manifest  # noqa: E402
from lookalike.store.storage import Storage  # noqa: E402

DIM = 32


def _model(model_id: str = "test:synthetic", fingerprint: str = "f00d", dim: int = DIM) -> dict[str, Any]:
    return {"model_id": model_id, "dim": dim, "modalities": ["image"], "fingerprint": fingerprint,
            "preprocess": {"size": 32, "resize_mode": "letterbox", "crop_pct": 1.0, "interpolation": "bicubic",
                           "mean": [0.5] * 3, "std": [0.5] * 3, "fill": None}}


def empty_collection(path: Path, **model: Any) -> Collection:
    """A collection of the synthetic model, with nothing in it."""
    return Collection(Storage.initialise(path, Manifest(model=_model(**model))))


def synthetic(path: Path, n: int, *, seed: int = 0, copies: int = 0, failed: int = 0) -> Collection:
    """``n`` items with random unit vectors, hashes, traits and metadata (a caption on every
    other item, a numeric and a mixed key); the last ``copies`` items are copies of the first
    ones (same hash, sharing the vector row, as indexing makes them); ``failed`` failed items."""
    coll = empty_collection(path)
    storage = coll._storage
    rng = np.random.default_rng(seed)
    unique = n - copies
    vectors = rng.standard_normal((unique, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows, traits, meta = [], [], []
    for i in range(n):
        src = i if i < unique else i - unique
        path_i = f"/data/{'tars/shard-0.tar#' if i % 7 == 0 else 'img/'}{i:06d}.jpg"
        rows.append((path_i, 1000 + i, 1_700_000_000_000_000_000 + i, f"h{src:08x}", 64 + i % 5, 48, "ok", None,
                     src))
        traits.append((ImageTraits(i * 7919 - 2**62, i, -i, 1.5, None if i % 3 else 1e9, i % 4), path_i))
        m: dict[str, Any] = {"score": i % 11}
        if i % 2:
            m["caption"] = f"a picture number {i}"
        if i % 5 == 0:
            m["mixed"] = i if i % 10 else f"text {i}"
        meta.append((path_i, m))
    for j in range(failed):
        rows.append((f"/data/bad/{j}.jpg", 10, 1, None, None, None, "failed", "not an image", None))

    def write() -> None:
        storage.db.upsert(rows)
        storage.db.set_traits(traits)
        storage.db.meta.set(meta)

    with storage.write_lock():
        storage.commit_vectors(vectors, write)
    return coll


def _queries(coll: Collection, n: int = 50, seed: int = 1) -> list[Any]:
    """Half random vectors, half ``id:N`` queries of items."""
    rng = np.random.default_rng(seed)
    ids = [item.id for item in coll.items() if item.status == "ok"]
    vecs = [v for v in rng.standard_normal((n // 2, DIM)).astype(np.float32)]
    return vecs + [f"id:{i}" for i in rng.choice(ids, n - n // 2, replace=False)]


def _results(coll: Collection, queries: list[Any], k: int = 10) -> list[list[tuple[str, float]]]:
    return [[(h.path, h.score) for h in hits] for hits in coll.search_batch(queries, k)]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Collection:
    """10,000 items (50 of them copies) and 3 failed ones, built once for the module."""
    coll = synthetic(tmp_path_factory.mktemp("big") / "c.lkl", 10_000, copies=50, failed=3)
    yield coll
    coll.close()


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", ["parquet", "clip-retrieval"])
def test_round_trip_float32_searches_identically(big: Collection, tmp_path: Path, fmt: str) -> None:
    report = export_collection(big, tmp_path / "out", format=fmt, dtype="float32", rows_per_file=3000)
    assert report.rows == 10_000  # the failed items have no vector and are not exported
    c2 = empty_collection(tmp_path / "c2.lkl")
    imported = import_embeddings(c2, tmp_path / "out")
    assert (imported.rows, imported.added, imported.updated, imported.shards) == (10_000, 10_000, 0, 4)
    assert imported.model_checked and not imported.warnings and imported.renormalised == 0
    assert imported.reused == 50  # the copies share a vector row again
    assert c2._storage.vector_rows == 9_950
    queries = _queries(big)
    assert _results(c2, queries) == _results(big, queries)
    # every field, trait and metadata value comes back
    for item_id in (1, 2, 15, 5000, 9999):
        a, b = big.item(item_id), c2.item(item_id)
        assert a == b
        assert big._storage.db.meta.get([item_id]) == c2._storage.db.meta.get([item_id])
        assert big._storage.db.traits([item_id]) == c2._storage.db.traits([item_id])
    np.testing.assert_array_equal(big.get_vectors([3, 4, 9999]), c2.get_vectors([3, 4, 9999]))


def test_float16_clip_retrieval_round_trip(big: Collection, tmp_path: Path) -> None:
    """float16 (clip-retrieval's default): scores within 1e-3 of the originals, and the same top hit."""
    export_collection(big, tmp_path / "out", format="clip-retrieval", rows_per_file=4000)
    arr = np.load(tmp_path / "out" / "img_emb" / "img_emb_0.npy")
    assert arr.dtype == np.float16 and arr.shape == (4000, DIM)
    c2 = empty_collection(tmp_path / "c2.lkl")
    report = import_embeddings(c2, tmp_path / "out")
    assert report.renormalised > 8_000 and report.far_from_unit == 0 and not report.warnings
    queries = _queries(big)
    before, after = _results(big, queries), _results(c2, queries)
    assert [r[0][0] for r in after] == [r[0][0] for r in before]
    for b, a in zip(before, after):
        got = dict(a)
        common = [p for p, _ in b if p in got]
        assert len(common) >= 8
        assert max(abs(got[p] - s) for p, s in b if p in got) < 1e-3


def test_reimport_is_idempotent(tmp_path: Path) -> None:
    coll = synthetic(tmp_path / "c.lkl", 300)
    events: list[Any] = []
    export_collection(coll, tmp_path / "out", format="clip-retrieval", dtype="float32", rows_per_file=100,
                      progress=events.append)
    c2 = empty_collection(tmp_path / "c2.lkl")
    import_embeddings(c2, tmp_path / "out", progress=events.append)
    # progress: rows exported, verified and imported, each counting up to the total
    for kind in ("export", "verify", "import"):
        last = [e for e in events if e.kind == kind][-1]
        assert (last.done, last.total) == (300, 300), kind
    rows, n = c2._storage.vector_rows, len(c2)
    again = import_embeddings(c2, tmp_path / "out")
    assert (again.added, again.updated, again.reused) == (0, 300, 300)
    assert (c2._storage.vector_rows, len(c2)) == (rows, n)


# --------------------------------------------------------------------------- file layouts
def test_parquet_layout_schema_and_sidecar(tmp_path: Path) -> None:
    coll = synthetic(tmp_path / "c.lkl", 250)
    report = export_collection(coll, tmp_path / "out", rows_per_file=100, dtype="float16")
    assert report.files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet", SIDECAR]
    table = pq.read_table(tmp_path / "out" / "part-00001.parquet")
    assert table.num_rows == 100
    assert table.schema.field("vector").type == pa.list_(pa.float16(), DIM)
    assert table.schema.names[:3] == ["id", "path", "vector"]
    assert {"width", "height", "size", "mtime_ns", "hash", "caption", "score", "mixed"} <= set(table.schema.names)
    assert table.schema.field("score").type == pa.int64()
    assert table.schema.field("mixed").type == pa.string()  # ints and texts: text
    assert table.column("id").to_pylist() == list(range(101, 201))
    side = json.loads((tmp_path / "out" / SIDECAR).read_text())
    assert side["rows"] == 250 and side["dtype"] == "float16" and side["model"]["fingerprint"] == "f00d"
    assert [s["rows"] for s in side["shards"]] == [100, 100, 50]
    c2 = empty_collection(tmp_path / "c2.lkl")
    assert import_embeddings(c2, tmp_path / "out").renormalised > 200
    np.testing.assert_allclose(c2.get_vectors(list(range(1, 251))), coll.get_vectors(list(range(1, 251))), atol=2e-3)


def test_an_interrupted_export_is_refused_and_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lookalike.store import exchange_export

    coll = synthetic(tmp_path / "c.lkl", 300)
    real, calls = exchange_export._Shape.table, []

    def crash_on_third(self: Any, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(exchange_export._Shape, "table", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        export_collection(coll, tmp_path / "out", rows_per_file=100)
    monkeypatch.undo()
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["lookalike-export.json", "part-00000.parquet",
                                                      "part-00001.parquet"]  # no temporary file left
    c2 = empty_collection(tmp_path / "c2.lkl")
    with pytest.raises(InvalidArgument, match="interrupted"):
        import_embeddings(c2, out)
    export_collection(coll, out, rows_per_file=100, overwrite=True)
    assert import_embeddings(c2, out).rows == 300


def test_clip_retrieval_layout_as_clip_retrieval_writes_it(tmp_path: Path) -> None:
    coll = synthetic(tmp_path / "c.lkl", 250)
    export_collection(coll, tmp_path / "out", format="clip-retrieval", rows_per_file=25)
    out = tmp_path / "out"
    # ten partitions: numbered with the digits of the count, as clip-retrieval pads them
    assert sorted(p.name for p in (out / "img_emb").iterdir())[:2] == ["img_emb_00.npy", "img_emb_01.npy"]
    meta = pq.read_table(out / "metadata" / "metadata_03.parquet")
    assert meta.schema.names[:2] == ["image_path", "caption"]
    assert meta.column("image_path").to_pylist()[0] == coll.item(76).path
    emb = np.load(out / "img_emb" / "img_emb_03.npy")
    np.testing.assert_allclose(emb[0].astype(np.float32), coll.get_vectors([76])[0], atol=1e-3)


def test_export_refuses_a_folder_with_other_files_and_overwrites_its_own(tmp_path: Path) -> None:
    coll = synthetic(tmp_path / "c.lkl", 50)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidArgument, match="not empty"):
        export_collection(coll, tmp_path / "busy")
    export_collection(coll, tmp_path / "out", rows_per_file=10)
    with pytest.raises(InvalidArgument, match="--overwrite"):
        export_collection(coll, tmp_path / "out")
    export_collection(coll, tmp_path / "out", format="clip-retrieval", rows_per_file=25, overwrite=True)
    assert not list((tmp_path / "out").glob("*.parquet"))  # the old parts are gone
    assert import_embeddings(empty_collection(tmp_path / "c2.lkl"), tmp_path / "out").rows == 50


# --------------------------------------------------------------------------- refusals
def _clip_output(tmp_path: Path, n: int = 300, per: int = 100) -> Path:
    """clip-retrieval output as its inference writes it (no sidecar): float16, image_path, caption."""
    out = tmp_path / "clip"
    (out / "img_emb").mkdir(parents=True)
    (out / "metadata").mkdir()
    rng = np.random.default_rng(5)
    for s in range(n // per):
        v = rng.standard_normal((per, DIM)).astype(np.float32)
        np.save(out / "img_emb" / f"img_emb_{s}.npy", (v / np.linalg.norm(v, axis=1, keepdims=True)).astype("f2"))
        pq.write_table(pa.table({"image_path": [f"http://x.test/{s}/{i}.jpg" for i in range(per)],
                                 "caption": [f"cap {s} {i}" for i in range(per)],
                                 "width": [256] * per}), out / "metadata" / f"metadata_{s}.parquet")
    return out


def _drop_last_row(path: Path) -> None:
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1), path)


def test_foreign_clip_retrieval_output_imports_with_a_warning(tmp_path: Path) -> None:
    c2 = empty_collection(tmp_path / "c2.lkl")
    report = import_embeddings(c2, _clip_output(tmp_path))
    assert report.rows == report.added == 300 and not report.model_checked
    assert "does not record the model" in report.warnings[0]
    row = c2._storage.db.get_by_path("http://x.test/1/7.jpg")  # (item_at makes any text a local path)
    assert row is not None
    item = row.public()
    assert (item.size, item.mtime_ns, item.hash) == (0, -1, None)
    assert c2._storage.db.meta.get([item.id])[item.id] == {"caption": "cap 1 7", "width": 256}
    hits = c2.search(c2.get_vectors([item.id])[0], k=1)
    assert hits[0].path == item.path and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_misaligned_clip_retrieval_output_is_refused(tmp_path: Path) -> None:
    out = _clip_output(tmp_path)
    _drop_last_row(out / "metadata" / "metadata_1.parquet")
    c2 = empty_collection(tmp_path / "c2.lkl")
    with pytest.raises(InvalidArgument) as exc:
        import_embeddings(c2, out)
    msg = str(exc.value)
    assert "metadata/metadata_1.parquet has 99 rows but img_emb/img_emb_1.npy has 100" in msg
    assert "out of line" in msg and "re-export shard 1" in msg and "nothing was imported" in msg
    assert len(c2) == 0 and c2._storage.vector_rows == 0


def test_misaligned_lookalike_export_is_refused(big: Collection, tmp_path: Path) -> None:
    """A metadata file rewritten one row short, in an export with a sidecar: named, nothing imported."""
    export_collection(big, tmp_path / "out", format="clip-retrieval", rows_per_file=4000)
    _drop_last_row(tmp_path / "out" / "metadata" / "metadata_1.parquet")
    c2 = empty_collection(tmp_path / "c2.lkl")
    with pytest.raises(InvalidArgument, match=r"metadata/metadata_1\.parquet has 3999 rows but "
                                              r"img_emb/img_emb_1\.npy has 4000.*re-export shard 1"):
        import_embeddings(c2, tmp_path / "out")
    assert len(c2) == 0


@pytest.mark.parametrize("damage, message", [
    ("missing-partner", r"img_emb/img_emb_2\.npy has no metadata/metadata_2\.parquet"),
    ("shuffled", r"metadata/metadata_0\.parquet does not hold the items"),
    ("extra", r"img_emb/img_emb_9\.npy is not part of the export"),
    ("same-count-other-rows", r"metadata/metadata_1\.parquet does not hold the items"),
    ("swapped-vectors", r"img_emb/img_emb_1\.npy does not hold the vectors .* for shard 1"),
    ("not-parquet", r"metadata/metadata_1\.parquet is not a readable parquet file"),
    ("malformed-sidecar", r"lookalike-export\.json is malformed"),
])
def test_damaged_exports_are_refused(tmp_path: Path, damage: str, message: str) -> None:
    coll = synthetic(tmp_path / "c.lkl", 300)
    export_collection(coll, tmp_path / "out", format="clip-retrieval", rows_per_file=100)
    out = tmp_path / "out"
    if damage == "missing-partner":
        (out / "metadata" / "metadata_2.parquet").unlink()
        (out / SIDECAR).unlink()  # as clip-retrieval output from elsewhere
    elif damage == "shuffled":
        table = pq.read_table(out / "metadata" / "metadata_0.parquet")
        pq.write_table(table.take(list(range(1, 100)) + [0]), out / "metadata" / "metadata_0.parquet")
    elif damage == "extra":
        np.save(out / "img_emb" / "img_emb_9.npy", np.zeros((1, DIM), "f2"))
    elif damage == "not-parquet":
        (out / "metadata" / "metadata_1.parquet").write_bytes(b"PAR1 but not really")
    elif damage == "malformed-sidecar":
        side = json.loads((out / SIDECAR).read_text())
        del side["shards"][1]["rows"]
        (out / SIDECAR).write_text(json.dumps(side))
    elif damage == "swapped-vectors":  # two shards' embeddings exchanged: every count still agrees
        (out / "img_emb" / "img_emb_1.npy").rename(out / "img_emb" / "tmp.npy")
        (out / "img_emb" / "img_emb_2.npy").rename(out / "img_emb" / "img_emb_1.npy")
        (out / "img_emb" / "tmp.npy").rename(out / "img_emb" / "img_emb_2.npy")
    else:  # one row dropped at the end of shard 1, one from shard 2 appended: counts still agree
        t1, t2 = pq.read_table(out / "metadata" / "metadata_1.parquet"), pq.read_table(
            out / "metadata" / "metadata_2.parquet")
        pq.write_table(pa.concat_tables([t1.slice(1), t2.slice(0, 1)]), out / "metadata" / "metadata_1.parquet")
    c2 = empty_collection(tmp_path / "c2.lkl")
    with pytest.raises(InvalidArgument, match=message):
        import_embeddings(c2, out)
    assert len(c2) == 0


def test_duplicate_paths_and_bad_vectors_are_refused(tmp_path: Path) -> None:
    out = _clip_output(tmp_path)
    table = pq.read_table(out / "metadata" / "metadata_2.parquet")
    paths = table.column("image_path").to_pylist()
    paths[40] = "http://x.test/0/3.jpg"
    pq.write_table(table.set_column(0, "image_path", pa.array(paths)), out / "metadata" / "metadata_2.parquet")
    c2 = empty_collection(tmp_path / "c2.lkl")
    with pytest.raises(InvalidArgument, match=r"http://x\.test/0/3\.jpg appears twice: metadata/metadata_0\.parquet "
                                              r"row 3 and metadata/metadata_2\.parquet row 40"):
        import_embeddings(c2, out)
    paths[40] = "http://x.test/2/40.jpg"
    pq.write_table(table.set_column(0, "image_path", pa.array(paths)), out / "metadata" / "metadata_2.parquet")
    vecs = np.load(out / "img_emb" / "img_emb_1.npy")
    vecs[17, 3] = np.nan
    np.save(out / "img_emb" / "img_emb_1.npy", vecs)
    with pytest.raises(InvalidArgument, match=r"img_emb/img_emb_1\.npy row 17: the vector is not finite"):
        import_embeddings(c2, out)
    assert len(c2) == 0


def test_other_model_or_dimension_is_refused(tmp_path: Path) -> None:
    coll = synthetic(tmp_path / "c.lkl", 20)
    export_collection(coll, tmp_path / "out")
    other = empty_collection(tmp_path / "other.lkl", model_id="test:other", fingerprint="beef")
    with pytest.raises(CollectionMismatch, match=r"exported with model 'test:synthetic'.*uses 'test:other'"):
        import_embeddings(other, tmp_path / "out")
    wide = empty_collection(tmp_path / "wide.lkl", dim=64)
    with pytest.raises(CollectionMismatch, match=r"32-d.*64-d"):
        import_embeddings(wide, _clip_output(tmp_path))
    assert len(other) == len(wide) == 0


def test_a_single_foreign_parquet_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    v = rng.standard_normal((10, DIM)).astype(np.float32) * 3  # not normalised
    path = tmp_path / "emb.parquet"
    pq.write_table(pa.table({"path": [f"/p/{i}.png" for i in range(10)], "embedding": list(v),
                             "license": ["cc-by"] * 10}), path)
    c2 = empty_collection(tmp_path / "c2.lkl")
    report = import_embeddings(c2, path)
    assert report.rows == 10 and report.far_from_unit == 10 and "not unit length" in report.warnings[-1]
    got = c2.get_vectors([c2.item_at("/p/4.png").id])[0]
    np.testing.assert_allclose(got, v[4] / np.linalg.norm(v[4]), rtol=1e-6)
    assert c2._storage.db.meta.keys() == ["license"]


def test_identity_column_of_data_from_elsewhere(tmp_path: Path) -> None:
    """clip-retrieval's webdataset mode writes sample keys as image_path: imported with a warning,
    or named by their URL with ``identity="url"``."""
    out = tmp_path / "clip"
    (out / "img_emb").mkdir(parents=True)
    (out / "metadata").mkdir()
    v = np.random.default_rng(3).standard_normal((4, DIM)).astype(np.float32)
    np.save(out / "img_emb" / "img_emb_0.npy", v)
    pq.write_table(pa.table({"image_path": [f"{i:09d}" for i in range(4)],
                             "url": [f"https://cdn.test/{i}.jpg" for i in range(4)]}),
                   out / "metadata" / "metadata_0.parquet")
    keys = empty_collection(tmp_path / "keys.lkl")
    report = import_embeddings(keys, out)
    assert any("'000000000'" in w and "neither absolute paths nor URLs" in w for w in report.warnings)
    urls = empty_collection(tmp_path / "urls.lkl")
    report = import_embeddings(urls, out, identity="url")
    assert not any("neither" in w for w in report.warnings)
    row = urls._storage.db.get_by_path("https://cdn.test/2.jpg")
    assert row is not None and urls._storage.db.meta.get([row.id])[row.id] == {"image_path": "000000002"}
    with pytest.raises(InvalidArgument, match="no identity column .one of caption.; its columns are image_path, url"):
        import_embeddings(urls, out, identity="caption")


def test_import_into_a_collection_with_items_keeps_free_ids_only(tmp_path: Path) -> None:
    a = synthetic(tmp_path / "a.lkl", 30)
    export_collection(a, tmp_path / "out", format="parquet")
    b = empty_collection(tmp_path / "b.lkl")
    storage = b._storage
    with storage.write_lock():
        storage.commit_vectors(np.eye(DIM, dtype=np.float32)[:1], lambda: storage.db.upsert(
            [("/elsewhere/x.jpg", 1, 1, None, 8, 8, "ok", None, 0)]))
    report = import_embeddings(b, tmp_path / "out")
    assert (report.added, len(b)) == (30, 31)
    assert b.item(1).path == "/elsewhere/x.jpg"  # its id stays its own
    first = storage.db.get_by_path(a.item(1).path)
    assert first is not None and first.id not in (1, 2, 3)  # a new id, after every taken one
    assert [b.item(i).path for i in range(2, 31)] == [a.item(i).path for i in range(2, 31)]  # free ids kept
