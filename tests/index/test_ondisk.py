"""The on-disk IVF-PQ: sharded build, merge, memory-mapped search, delta, Ray tasks.

Recall is checked faiss-contrib style against :func:`exact_topk` on the same vectors; the
threshold leaves a margin under the value measured on this data (in the comment).
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from lookalike.errors import CollectionCorrupt, InvalidArgument  # noqa: E402
from lookalike.index.exact import exact_topk  # noqa: E402
from lookalike.index.faiss_index import AnnIndex  # noqa: E402
from lookalike.index.disk_index import DiskAnnIndex, build_disk_index  # noqa: E402
from lookalike.index.ondisk import (RowChunks, build_ondisk, encode_shard, load_ondisk, merge_shards,  # noqa: E402
                                    remove_disk_files, train_ivfpq)
from lookalike.index.spec import IndexSpec  # noqa: E402
from lookalike.index.tune import auto_index  # noqa: E402
from ray_support import ray_cluster  # noqa: E402,F401

K = 10
N, DIM, NQ = 20_000, 32, 200
SPEC = IndexSpec("ivfpq-disk", nlist=64, pq_m=8, pq_bits=8, nprobe=16, rerank=16)


def _clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 100 centres, variance decaying over dimensions (as in embeddings)."""
    rng = np.random.default_rng(seed)
    scales = (0.93 ** np.arange(d)).astype(np.float32)
    centres = rng.standard_normal((100, d)).astype(np.float32) * scales
    x = centres[rng.integers(0, 100, n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32) * scales
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """``(memory map of N + NQ vectors, queries)``: the last NQ rows are never indexed."""
    path = tmp_path_factory.mktemp("vectors") / "x.f32"
    x = _clustered(N + NQ, DIM)
    x.tofile(path)
    return np.memmap(path, dtype=np.float32, mode="r", shape=x.shape), np.array(x[N:])


@pytest.fixture(scope="module")
def built(data, tmp_path_factory: pytest.TempPathFactory) -> DiskAnnIndex:
    vectors, _ = data
    return build_disk_index(SPEC, vectors, np.arange(N), tmp_path_factory.mktemp("disk"), stem="index-t",
                            chunk_bytes=4096 * 4 * DIM)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(f[f >= 0], t)) / len(t) for f, t in zip(found, truth)]))


def _mapped(path: Path) -> bool:
    """Whether this process maps ``path`` (Linux)."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps")
    return str(path) in maps.read_text()


def test_sharded_build_finds_the_exact_neighbours(data, built: DiskAnnIndex) -> None:
    vectors, queries = data
    assert built.ntotal == N and np.array_equal(built.rows, np.arange(N))
    _, truth = exact_topk(vectors, queries, K, rows=np.arange(N))
    scores, found = built.search(vectors, queries, K)
    recall = _recall(found, truth)
    assert recall >= 0.96, f"recall@10 {recall:.3f}"  # measured 0.9925 (in RAM, the same)
    want = np.einsum("qkd,qd->qk", np.asarray(vectors)[found], queries)
    np.testing.assert_allclose(scores, want, atol=1e-5)  # re-ranked: exact scores
    # Effort raises recall, so nprobe is the knob the tuner turns.
    low = _recall(built.with_search_params(nprobe=1, rerank=1).search(vectors, queries, K)[1], truth)
    assert low < recall


def test_search_reads_the_lists_from_a_read_only_memory_map(built: DiskAnnIndex) -> None:
    ivf = faiss.extract_index_ivf(built.index)
    invlists = faiss.downcast_InvertedLists(ivf.invlists)
    assert isinstance(invlists, faiss.OnDiskInvertedLists) and invlists.read_only
    data_file = built.folder / built.files[1]
    assert _mapped(data_file)
    # RAM holds centroids, codebooks and cell offsets: far less than the codes on disk.
    assert data_file.stat().st_size >= N * (SPEC.pq_m + 8)
    assert built.memory_bytes() < 64 * SPEC.nlist * DIM + 16 * N


def test_save_load_and_additions_go_to_the_delta(data, built: DiskAnnIndex) -> None:
    vectors, queries = data
    folder = built.folder
    data_file = folder / built.files[1]
    digest = hashlib.sha256(data_file.read_bytes()).hexdigest()
    built.save(folder / "index.npz")
    loaded = AnnIndex.load(folder / "index.npz")
    assert isinstance(loaded, DiskAnnIndex) and loaded.delta is None
    np.testing.assert_array_equal(loaded.search(vectors, queries, K)[1], built.search(vectors, queries, K)[1])
    new = np.arange(N, N + NQ)  # the query rows themselves: each must now find itself first
    loaded.add(vectors, new)
    assert loaded.ntotal == N + NQ and loaded.delta.ntotal == NQ and loaded.drift() > 0
    assert np.mean(loaded.search(vectors, queries, 5)[1][:, 0] == new) >= 0.95  # measured 0.99 (PQ ranks)
    loaded.save(folder / "index.npz")
    again = AnnIndex.load(folder / "index.npz")
    assert again.ntotal == N + NQ and again.added_since_training == NQ
    assert np.mean(again.search(vectors, queries, 5)[1][:, 0] == new) >= 0.95
    # Filters (and deletions, which ranking passes as allowed rows) reach the delta too.
    allowed = np.arange(0, N + NQ, 2)
    found = again.search(vectors, queries, K, allowed)[1]
    assert np.all(found >= 0) and np.all(found % 2 == 0)
    assert hashlib.sha256(data_file.read_bytes()).hexdigest() == digest, "the mapped file was written"


def test_damaged_or_missing_files_are_reported_not_crashed(data, tmp_path: Path) -> None:
    vectors, _ = data
    index = build_disk_index(SPEC, vectors, np.arange(4000), tmp_path, stem="index-d")
    index.save(tmp_path / "index.npz")
    data_file = tmp_path / index.files[1]
    data_file.write_bytes(data_file.read_bytes()[:1000])  # mapping it would fault past the end
    with pytest.raises(CollectionCorrupt):
        AnnIndex.load(tmp_path / "index.npz")
    data_file.unlink()
    with pytest.raises(CollectionCorrupt):
        AnnIndex.load(tmp_path / "index.npz")
    with pytest.raises(InvalidArgument):
        index.save(tmp_path / "elsewhere" / "index.npz")  # the files are not there


def test_moved_folder_still_loads(data, tmp_path: Path) -> None:
    vectors, queries = data
    index = build_disk_index(SPEC, vectors, np.arange(4000), tmp_path / "a", stem="index-m")
    index.save(tmp_path / "a" / "index.npz")
    before = index.search(vectors, queries[:5], K)[1]
    (tmp_path / "a").rename(tmp_path / "b")
    moved = AnnIndex.load(tmp_path / "b" / "index.npz")
    np.testing.assert_array_equal(moved.search(vectors, queries[:5], K)[1], before)


def test_parts_compose_and_print_nothing_to_stdout(data, tmp_path: Path, capfd) -> None:
    """train -> encode_shard (any order) -> merge_shards -> load_ondisk, by hand."""
    vectors, queries = data
    x = np.asarray(vectors[:6000])
    trained = train_ivfpq(x[:3000], nlist=32, m=8)
    shards = [encode_shard(trained, x[s : s + 2000], np.arange(s, s + 2000), tmp_path / f"s{s}.index")
              for s in (4000, 0, 2000)]
    assert [s.count for s in shards] == [2000] * 3
    path = merge_shards(trained, [s.path for s in shards], tmp_path / "out", stem="m")
    index = load_ondisk(path)
    assert index.ntotal == 6000
    # The same codes as adding everything to one in-RAM index: the same answers.
    in_ram = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
    in_ram.add_with_ids(x, np.arange(6000))
    index.nprobe = in_ram.nprobe = 8
    got, want = index.search(np.asarray(queries), K), in_ram.search(np.asarray(queries), K)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    assert capfd.readouterr().out == "", "FAISS chatter reached stdout"


def test_bad_inputs_are_invalid_arguments(data, tmp_path: Path) -> None:
    vectors, _ = data
    with pytest.raises(InvalidArgument):
        train_ivfpq(np.asarray(vectors[:50]), nlist=64, m=8)  # fewer vectors than cells
    with pytest.raises(InvalidArgument):
        encode_shard(train_ivfpq(np.asarray(vectors[:3000]), nlist=8, m=8), np.asarray(vectors[:10]),
                     np.arange(9), tmp_path / "s.index")
    with pytest.raises(InvalidArgument):
        AnnIndex.build(SPEC, vectors)  # never built in RAM
    with pytest.raises(InvalidArgument):
        IndexSpec("ivfpq-disk", nlist=8, pq_m=8, opq=True)
    with pytest.raises(InvalidArgument):
        build_ondisk(lambda i: (None, None), 0, DIM, tmp_path, nlist=8, m=8)


def test_build_holds_one_chunk_at_a_time(data, tmp_path: Path) -> None:
    """Chunks are read one by one (sampling reads a bounded number of them), and the shard
    folder is gone after the merge."""
    vectors, _ = data
    reads: list[int] = []
    chunks = RowChunks(vectors, np.arange(N), 1000)

    def read_chunk(i: int) -> tuple[np.ndarray, np.ndarray]:
        reads.append(i)
        return chunks(i)

    done: list[tuple[int, int]] = []
    build = build_ondisk(read_chunk, len(chunks), DIM, tmp_path, nlist=32, m=8, train_size=3000,
                         on_shard=lambda d, t: done.append((d, t)))
    assert build.ntotal == N and build.trained_on == 3000
    assert sorted(reads[-len(chunks):]) == list(range(len(chunks)))  # each encoded once
    assert done[-1] == (len(chunks), len(chunks))
    assert set(build.seconds) == {"sample", "train", "encode", "merge"}
    assert not list(tmp_path.glob(".*shards"))
    assert remove_disk_files(tmp_path, "index") and not list(tmp_path.iterdir())


def test_row_chunks_travel_as_a_file_name(data) -> None:
    vectors, _ = data
    chunks = RowChunks(vectors, np.arange(100, 5000), 1000)
    blob = pickle.dumps(chunks)
    assert len(blob) < 100_000, "the vectors were pickled"
    copy = pickle.loads(blob)
    for i in (0, 4):
        np.testing.assert_array_equal(copy(i)[0], chunks(i)[0])
        np.testing.assert_array_equal(copy(i)[1], chunks(i)[1])
    assert copy(4)[1][-1] == 4899  # ids are positions in rows


@pytest.mark.slow  # ~5 s; tests/store/test_ann_ondisk.py covers auto choosing the disk kind
def test_auto_index_tunes_the_disk_build(data, tmp_path: Path) -> None:
    """The tuner measures the on-disk build like any other: held-out queries against exact."""
    vectors, _ = data

    def builder(spec: IndexSpec, rows: np.ndarray) -> AnnIndex:
        return build_disk_index(spec, vectors, rows, tmp_path, stem="index-a")

    result = auto_index(vectors, np.arange(N), recall=0.9, latency_ms=None, n_queries=200,
                        candidates=[SPEC], builder=builder)
    assert isinstance(result.index, DiskAnnIndex) and result.index.ntotal == N
    assert result.met_target and result.confirmed.recall >= 0.9
    assert result.index.delta is not None and result.index.delta.ntotal == 400  # held-out rows, added back


def test_ray_tasks_build_the_same_index(ray_cluster, data, built: DiskAnnIndex, tmp_path: Path) -> None:  # noqa: F811
    from lookalike.distributed.index_build import ray_map

    vectors, queries = data
    via_ray = build_disk_index(SPEC, vectors, np.arange(N), tmp_path, stem="index-r", map_fn=ray_map,
                               chunk_bytes=4096 * 4 * DIM)
    assert via_ray.ntotal == N
    np.testing.assert_array_equal(via_ray.search(vectors, queries, K)[1], built.search(vectors, queries, K)[1])
    assert list(ray_map(abs, [-1, 2, -3])) == [1, 2, 3]
