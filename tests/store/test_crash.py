"""Crash safety: an indexer killed with SIGKILL at any moment leaves a collection that the next run repairs.

The main test runs the real indexer in child processes and kills them at chosen moments (as
soon as the vector file grows, mid-run, after a random delay, during compaction), checking the
committed state after each kill and the completed state after re-running. The smaller tests
stop the indexer at exact points in-process by making one step raise, which is what a crash at
that point leaves behind.

The model is a tiny random timm network saved to a local folder (``tiny_timm_dir`` in
tests/conftest.py), not ``lite``: crash safety is about files, rows and commits, and any
deterministic model checks that each stored vector is its own file's embedding. It keeps
the children cheap (no 1280-d EfficientNet passes) and the vector rows small.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from support import TINY_TIMM_DIM, make_image
from lookalike.store import batch, indexer
from lookalike.store.collection import Collection
from lookalike.store.metadata import MetadataDB

DIM = TINY_TIMM_DIM
ROW_BYTES = DIM * 4
N_IMAGES = 150
ATOL = 1e-5

#: The children are forked from multiprocessing's fork server, which imports these once (this
#: module too, for ``_index_in_child``), where four fresh interpreters each spent seconds
#: importing torch and timm. The server runs no torch operation before forking (each child
#: loads the model itself), so every child starts with clean thread pools. The server stays
#: up, idle, until the test session ends.
PRELOAD = ["torch", "timm", "lookalike.models.timm", "lookalike.store.collection", __name__]


def _index_in_child(coll_path: str, folder: str, model_name: str, commit_every: int, compact_min_rows: int,
                    log: str, ready: Any, go: Any) -> None:
    """Body of an indexer child: load the model, say ready, wait for go, index the folder."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 2)  # a traceback lands in the log that Worker.stderr() shows
    import lookalike

    batch.COMMIT_EVERY_FILES = commit_every
    indexer.COMPACT_MIN_ROWS = compact_min_rows
    model = lookalike.load_model(model_name, device="cpu")
    ready.set()
    go.wait()  # so that the model load is not part of the timing
    with Collection.open(coll_path, model=model) as coll:
        coll.add([folder], batch_size=16, workers=2)


class Worker:
    """An indexer in a child process that loads the model, then waits for go()."""

    def __init__(self, coll: Path, folder: Path, log: Path, model: str, *, commit_every: int = 10,
                 compact_min_rows: int = 1000) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)  # takes effect when the server starts (first use)
        self.log = log
        self._ready, self._go = context.Event(), context.Event()
        self.proc = context.Process(
            target=_index_in_child, daemon=True,
            args=(str(coll), str(folder), model, commit_every, compact_min_rows, str(log), self._ready, self._go),
        )
        self.proc.start()

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def go(self, timeout: float = 180.0) -> None:
        """Wait until the model is loaded, then let the child start indexing."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if not self.proc.is_alive() or time.monotonic() > deadline:
                raise AssertionError(f"worker never became ready (exit code {self.proc.exitcode}):\n{self.stderr()}")
        self._go.set()

    def kill_when(self, condition: Callable[[], bool], timeout: float = 180.0) -> bool:
        """SIGKILL the child as soon as ``condition()`` holds; False if it finished first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                self.proc.kill()
                self.proc.join()
                return True
            if not self.proc.is_alive():
                assert self.proc.exitcode == 0, f"worker failed:\n{self.stderr()}"
                return False
            time.sleep(0.0005)
        self.proc.kill()
        raise AssertionError(f"condition not met within {timeout}s:\n{self.stderr()}")

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()


# --------------------------------------------------------------------------- checks
def _vector_file(coll_path: Path) -> tuple[Path, int]:
    """(current vector file, committed rows) as recorded in SQLite."""
    conn = sqlite3.connect(coll_path / "items.sqlite")
    try:
        state = dict(conn.execute("SELECT key, value FROM state"))
    finally:
        conn.close()
    return coll_path / state["vector_file"], int(state["vector_rows"])


def check_consistent(coll_path: Path, reference: dict[str, np.ndarray], *, complete: bool,
                     expected_paths: set[str] | None = None) -> int:
    """Check the invariants of a collection; returns how many items are embedded.

    Always: every ok item points at a committed row, no two items share a row (the images are
    distinct), paths are unique and known, and every stored vector equals a fresh embedding.
    ``complete`` (after a writer ran to the end): the vector file holds exactly the committed
    rows, there is one vector file, and the items are exactly ``expected_paths``.
    """
    vec_path, committed = _vector_file(coll_path)
    size = vec_path.stat().st_size if vec_path.exists() else 0
    others = sorted(f.name for f in coll_path.glob("vectors-*.f32") if f != vec_path)
    print(f"{vec_path.name}: {committed} committed rows, {size / ROW_BYTES:.2f} rows on disk, other files {others}")
    assert size >= committed * ROW_BYTES, "committed rows are missing from the vector file"
    with Collection.open(coll_path) as coll:
        # White-box: vector rows are the store's own business (as in test_incremental.py).
        rows = list(coll._storage.db.conn.execute("SELECT path, status, vec_row FROM items"))
        paths = [r[0] for r in rows]
        assert len(paths) == len(set(paths)), "duplicate paths"
        assert set(paths) <= set(reference), "an item that is not one of the images"
        ok = [(p, v) for p, s, v in rows if s == "ok"]
        assert all(s == "ok" for _, s, _ in rows), "an image failed to index"
        vec_rows = [v for _, v in ok]
        assert all(v is not None and 0 <= v < committed for v in vec_rows), "an item points past the committed rows"
        assert len(set(vec_rows)) == len(ok), "two distinct images share a vector row"
        assert len(ok) <= committed
        mm = coll._storage.vectors()
        for p, v in ok:
            np.testing.assert_allclose(mm[v], reference[p], atol=ATOL, err_msg=f"wrong vector for {p}")
        if complete:
            assert size == committed * ROW_BYTES, f"vector file has {size - committed * ROW_BYTES} stray bytes"
            assert len(ok) == committed, "garbage rows left behind by a crash"
            assert [f.name for f in coll_path.glob("vectors-*.f32")] == [vec_path.name]
            assert expected_paths is not None and set(paths) == expected_paths
        return len(ok)


@pytest.fixture(scope="module")
def crash_model(tiny_timm_dir: Path) -> Any:
    """The tiny timm model, loaded once for the module; the children load it by name (``.model_id``)."""
    import lookalike

    return lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu")


@pytest.fixture(scope="module")
def crash_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """N_IMAGES distinct small images in three sub-folders."""
    folder = tmp_path_factory.mktemp("crash") / "imgs"
    for i in range(N_IMAGES):
        make_image(folder / f"sub{i % 3}" / f"img_{i:04d}.{'png' if i % 2 else 'jpg'}", seed=10_000 + i)
    return folder


def _image_paths(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- the SIGKILL test
def test_sigkill_at_many_points_then_resume(crash_images: Path, crash_model: Any, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards crash safety end to end: SIGKILLs mid-commit, mid-run, at random and during compaction all resume
    to a collection whose every vector is the right one, with no stray rows, duplicates or lost files."""
    folder = tmp_path / "imgs"
    shutil.copytree(crash_images, folder)
    coll_path = tmp_path / "c.lkl"
    Collection.create(coll_path, model=crash_model).close()
    all_paths = _image_paths(folder)
    assert len(all_paths) == N_IMAGES

    # Start every child now (the first start waits for the fork server's imports): their model
    # loading overlaps the reference embedding below.
    name = crash_model.model_id
    workers = [Worker(coll_path, folder, tmp_path / f"w{i}.log", name) for i in range(3)]
    workers.append(Worker(coll_path, folder, tmp_path / "w3.log", name, compact_min_rows=1))
    try:
        reference = dict(zip(all_paths, crash_model.encode_images(all_paths, batch_size=32)))
        vec0 = coll_path / "vectors-0.f32"

        def size() -> int:
            return vec0.stat().st_size if vec0.exists() else 0

        # 1. The moment the first batch of vectors reaches the file (before or just after its commit).
        workers[0].go()
        assert workers[0].kill_when(lambda: size() > 0), "the run ended before it could be killed"
        n1 = check_consistent(coll_path, reference, complete=False)
        assert n1 < N_IMAGES

        # 2. Mid-run, right as a later batch is appended (the previous kill's tail is repaired first).
        _, committed = _vector_file(coll_path)
        threshold = (committed + 30) * ROW_BYTES
        started = time.monotonic()
        workers[1].go()
        assert workers[1].kill_when(lambda: size() > threshold)
        thirty_rows_s = time.monotonic() - started
        n2 = check_consistent(coll_path, reference, complete=False)
        assert n1 <= n2 < N_IMAGES

        # 3. After a random delay, scaled to this machine: about 100 rows remain, so up to twice
        # what 30 rows took (start-up included) mostly lands inside the run, fast machine or slow.
        # A run that ends first is fine too: then there was nothing to kill.
        delay = float(np.random.default_rng(int(time.time())).uniform(0.0, 2.0 * thirty_rows_s))
        print(f"random kill after {delay:.3f}s (30 rows took {thirty_rows_s:.3f}s)")
        workers[2].go()
        started = time.monotonic()
        workers[2].kill_when(lambda: time.monotonic() - started > delay)
        n3 = check_consistent(coll_path, reference, complete=False)
        assert n2 <= n3, f"items were lost (delay {delay:.2f}s)"

        # Re-run to completion in this process: exactly the missing images are embedded.
        with Collection.open(coll_path, model=crash_model) as coll:
            report = coll.add([folder])
        assert report.added == N_IMAGES - n3 and report.embedded == N_IMAGES - n3 and report.unchanged == n3
        assert report.failed == [] and report.removed == 0
        check_consistent(coll_path, reference, complete=True, expected_paths=set(all_paths))

        # 4. Delete most files, then kill during the compaction that follows the sweep.
        keep = set(all_paths[::4])
        for p in all_paths:
            if p not in keep:
                os.unlink(p)
        workers[3].go()
        workers[3].kill_when(lambda: (coll_path / "vectors-1.f32").exists())
        check_consistent(coll_path, reference, complete=False)
        monkeypatch.setattr(indexer, "COMPACT_MIN_ROWS", 1)
        with Collection.open(coll_path, model=crash_model) as coll:
            report = coll.add([folder])
            assert report.embedded == 0 and coll._storage.vector_rows == len(keep)
        check_consistent(coll_path, reference, complete=True, expected_paths=keep)
        vec_path, committed = _vector_file(coll_path)
        assert vec_path.name != "vectors-0.f32" and committed == len(keep)
        with Collection.open(coll_path) as coll:
            for p in sorted(keep)[:5]:
                item_id = coll.item_at(p).id
                assert coll.search(f"id:{item_id}", k=1)[0].path == p
    finally:
        for w in workers:
            w.close()


# --------------------------------------------------------------------------- exact crash points, in-process
@pytest.fixture
def small(image_folder: Callable[..., Path], crash_model: Any, tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, np.ndarray]]]:
    """(folder of 12 images, collection path, reference vectors)."""
    folder = image_folder(12)
    paths = _image_paths(folder)
    reference = dict(zip(paths, crash_model.encode_images(paths)))
    Collection.create(tmp_path / "c.lkl", model=crash_model).close()
    yield folder, tmp_path / "c.lkl", reference


class Crash(Exception):
    """Stands in for the process dying at this point."""


def test_crash_between_vector_append_and_commit(small: tuple[Path, Path, dict[str, np.ndarray]], crash_model: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the append-then-commit order: rows written but not committed are invisible, then cut and redone."""
    folder, coll_path, reference = small
    monkeypatch.setattr(batch, "COMMIT_EVERY_FILES", 4)
    calls = {"n": 0}
    real_upsert = MetadataDB.upsert

    def upsert(self: MetadataDB, rows: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Crash
        real_upsert(self, rows)

    monkeypatch.setattr(MetadataDB, "upsert", upsert)
    with Collection.open(coll_path, model=crash_model) as coll:
        with pytest.raises(Crash):
            coll.add([folder], batch_size=4)
        assert coll._storage.vector_rows == 4 and len(coll) == 4
        assert coll._storage.vector_file.path.stat().st_size == 8 * ROW_BYTES, "the second batch should be on disk"
        assert len(coll.search("id:1", k=50)) == 4, "uncommitted items must not be searchable"
    check_consistent(coll_path, reference, complete=False)
    monkeypatch.setattr(MetadataDB, "upsert", real_upsert)
    with Collection.open(coll_path, model=crash_model) as coll:
        report = coll.add([folder], batch_size=4)
    assert (report.added, report.embedded, report.unchanged) == (8, 8, 4)
    check_consistent(coll_path, reference, complete=True, expected_paths=set(reference))


def test_torn_tail_is_ignored_by_readers_and_cut_by_writers(small: tuple[Path, Path, dict[str, np.ndarray]],
                                                           crash_model: Any) -> None:
    """Guards a torn write (partial rows past the committed end): readers ignore it, the next writer cuts it."""
    folder, coll_path, reference = small
    with Collection.open(coll_path, model=crash_model) as coll:
        coll.add([folder])
    vec_path, committed = _vector_file(coll_path)
    with open(vec_path, "ab") as f:
        f.write(b"\x7f" * (2 * ROW_BYTES + 100))
    with Collection.open(coll_path) as coll:
        assert len(coll.search("id:1", k=50)) == 12
    with Collection.open(coll_path, model=crash_model) as coll:
        assert coll.add([folder]).unchanged == 12  # nothing to append: the repair alone must cut the tail
    assert vec_path.stat().st_size == committed * ROW_BYTES
    make_image(folder / "late.png", seed=31337)
    reference[str(folder / "late.png")] = crash_model.encode_images([folder / "late.png"])[0]
    with Collection.open(coll_path, model=crash_model) as coll:
        report = coll.add([folder])
    assert report.added == 1 and report.unchanged == 12
    check_consistent(coll_path, reference, complete=True, expected_paths=set(reference))


def test_vector_file_shorter_than_committed(small: tuple[Path, Path, dict[str, np.ndarray]], crash_model: Any) -> None:
    """Guards the lost-write case (an OS crash dropping fsynced rows): affected items are re-embedded, never served garbage."""
    folder, coll_path, reference = small
    with Collection.open(coll_path, model=crash_model) as coll:
        coll.add([folder])
    vec_path, committed = _vector_file(coll_path)
    with open(vec_path, "r+b") as f:
        f.truncate(9 * ROW_BYTES + 17)  # three rows and a torn one gone
    with Collection.open(coll_path, model=crash_model) as coll:
        report = coll.add([folder])
    assert report.added == 3 and report.embedded == 3 and report.unchanged == 9
    check_consistent(coll_path, reference, complete=True, expected_paths=set(reference))


def _delete_most(folder: Path) -> set[str]:
    paths = _image_paths(folder)
    keep = set(paths[::3])
    for p in paths:
        if p not in keep:
            os.unlink(p)
    return keep


def _ready_to_compact(folder: Path, coll_path: Path, crash_model: Any, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Index the folder, delete two thirds of it, and make the next add compact; the kept paths."""
    with Collection.open(coll_path, model=crash_model) as coll:
        coll.add([folder])
    keep = _delete_most(folder)
    monkeypatch.setattr(indexer, "COMPACT_MIN_ROWS", 1)
    return keep


def test_crash_during_compaction_before_commit(small: tuple[Path, Path, dict[str, np.ndarray]], crash_model: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards compaction dying after writing the new generation but before committing: the old one stays current."""
    folder, coll_path, reference = small
    keep = _ready_to_compact(folder, coll_path, crash_model, monkeypatch)

    def remap(self: MetadataDB, mapping: dict[int, int]) -> None:
        raise Crash

    with monkeypatch.context() as mp:
        mp.setattr(MetadataDB, "remap_vec_rows", remap)
        with Collection.open(coll_path, model=crash_model) as coll, pytest.raises(Crash):
            coll.add([folder])
    assert (coll_path / "vectors-1.f32").exists(), "the new generation should have been written"
    vec_path, committed = _vector_file(coll_path)
    assert vec_path.name == "vectors-0.f32" and committed == 12
    check_consistent(coll_path, reference, complete=False)
    with Collection.open(coll_path) as coll:
        assert len(coll.search("id:1", k=50)) == len(keep)
    with Collection.open(coll_path, model=crash_model) as coll:
        coll.add([folder])
    check_consistent(coll_path, reference, complete=True, expected_paths=keep)
    assert _vector_file(coll_path)[1] == len(keep)


def test_crash_during_compaction_after_commit(small: tuple[Path, Path, dict[str, np.ndarray]], crash_model: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards compaction dying after its commit but before deleting the old generation: the leftover is removed."""
    folder, coll_path, reference = small
    keep = _ready_to_compact(folder, coll_path, crash_model, monkeypatch)
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.name == "vectors-0.f32":
            raise Crash
        real_unlink(self, missing_ok=missing_ok)

    with monkeypatch.context() as mp:
        mp.setattr(Path, "unlink", unlink)
        with Collection.open(coll_path, model=crash_model) as coll, pytest.raises(Crash):
            coll.add([folder])
    assert (coll_path / "vectors-0.f32").exists()
    vec_path, committed = _vector_file(coll_path)
    assert vec_path.name == "vectors-1.f32" and committed == len(keep)
    check_consistent(coll_path, reference, complete=False)
    with Collection.open(coll_path, model=crash_model) as coll:
        assert coll.add([folder]).unchanged == len(keep)
    check_consistent(coll_path, reference, complete=True, expected_paths=keep)
