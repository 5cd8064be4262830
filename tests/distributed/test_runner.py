"""The Ray runner (``--ray``) against the local indexer: same rows and vectors, resumes after a
crash without redoing finished parts, survives workers that die, records failures per item.

The Ray tests share the session's local cluster (``ray_support.ray_cluster``); the resume
logic is also checked without Ray through :class:`~lookalike.store.remote.LocalExecutor`.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import lookalike
from lookalike.errors import MissingExtra
from lookalike.sources.folder import FolderSource
from lookalike.store import batch, remote
from lookalike.store.shards import WORK_DIR, ShardStore
from ray_support import ray_cluster  # noqa: F401
from support import make_image

pytest.importorskip("pyarrow")

N_IMAGES = 22
PART_SIZE = 4  # six parts: enough to crash in the middle of a run

_COLUMNS = ("id, path, size, mtime_ns, hash, width, height, status, error, vec_row, "
            "phash, dhash, phash_mirror, sharpness, taken, exif_tags")


class Crash(Exception):
    """Stands for the driver being killed."""


@pytest.fixture
def images(image_folder) -> Path:
    """Small distinct images, one corrupt file and one byte-identical copy."""
    folder = image_folder(N_IMAGES)
    (folder / "sub0" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    shutil.copy(folder / "sub1" / "img_0001.png", folder / "sub2" / "copy_of_0001.png")
    return folder


@pytest.fixture
def model_name(tiny_timm_dir: Path) -> str:
    return f"timm:{tiny_timm_dir}"


def _source(folder: Path) -> FolderSource:
    return FolderSource([str(folder)], part_size=PART_SIZE)


def _local(tmp_path: Path, model_name: str, folder: Path) -> lookalike.Collection:
    coll = lookalike.Collection.create(tmp_path / "local.lkl", model_name, device="cpu")
    coll.add(_source(folder))
    return coll


def _rows(coll: lookalike.Collection) -> list[tuple[Any, ...]]:
    return coll._storage.db.conn.execute(f"SELECT {_COLUMNS} FROM items ORDER BY id").fetchall()


def assert_same(local: lookalike.Collection, other: lookalike.Collection) -> None:
    """Same ids, rows (paths, stat fields, hashes, traits, failures) and vectors within 1e-5."""
    assert _rows(other) == _rows(local)
    a, b = local._storage.vectors(), other._storage.vectors()
    assert a.shape == b.shape
    np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)
    assert not (other.path / WORK_DIR).exists(), "the work folder goes after a complete merge"


def _shard_paths(coll: lookalike.Collection) -> set[str]:
    """Paths held by the finished shards of an interrupted run."""
    return {path for part in _shards(coll) for path in part}


def _shards(coll: lookalike.Collection) -> list[set[str]]:
    """The paths of each finished shard of an interrupted run."""
    out = []
    for marker in sorted((coll.path / WORK_DIR).glob("*/part-*.done")):
        store = ShardStore(marker.parent, coll.manifest.dim)
        out.append({row.path for row in store.read(int(marker.stem.split("-")[1]))})
    return out


def _crash_at(path_part: str) -> Any:
    def progress(event: Any) -> None:
        if event.kind == "embed" and event.path and path_part in event.path:
            raise Crash(event.path)
    return progress


def _by_value() -> None:
    """Ship this module's functions and classes to the Ray workers by value (they cannot import it)."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


# --------------------------------------------------------------------------- patched worker steps
def logging_prepare(log: str) -> Any:
    """``prepare_jobs`` that appends the paths it is given to ``log`` (one file for all workers)."""
    real = remote.prepare_jobs

    def prepare(jobs, preprocess, download=None):  # type: ignore[no-untyped-def]
        with open(log, "a") as f:
            f.writelines(job.file.path + "\n" for job in jobs)
        return real(jobs, preprocess, download)
    return prepare


def dying_prepare(marker: str) -> Any:
    """``prepare_jobs`` whose worker process dies the first time it runs (anywhere)."""
    real = remote.prepare_jobs

    def prepare(jobs, preprocess, download=None):  # type: ignore[no-untyped-def]
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return real(jobs, preprocess, download)
        os._exit(1)
    return prepare


class DyingEmbedder(remote.PartEmbedder):
    """An embedder whose actor process dies at its first call; the restarted actor works."""

    marker = ""

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return super().embed(pixels)
        os._exit(1)


# --------------------------------------------------------------------------- tests
def test_same_ids_rows_and_vectors_as_the_local_indexer(ray_cluster, tmp_path, model_name, images) -> None:  # noqa: F811
    from lookalike.distributed.runner import index_with_ray

    local = _local(tmp_path, model_name, images)
    coll = lookalike.Collection.create(tmp_path / "ray.lkl", model_name, device="cpu")
    events: list[Any] = []
    report = index_with_ray(coll, _source(images), progress=events.append, in_flight=2)
    assert_same(local, coll)
    assert report.added == N_IMAGES and report.copied == 1 and report.embedded == N_IMAGES
    broken = str(images / "sub0" / "broken.jpg")
    assert [p for p, _ in report.failed] == [broken]
    assert coll._storage.db.conn.execute("SELECT status, error FROM items WHERE path = ?", (broken,)).fetchone() \
        == ("failed", report.failed[0][1])
    assert sum(e.kind == "embed" for e in events) == N_IMAGES + 2
    # A second run finds everything unchanged and computes nothing.
    again = index_with_ray(coll, _source(images))
    assert again.unchanged == N_IMAGES + 2 and again.embedded == 0


@pytest.mark.slow  # ~12 s; test_a_shard_whose_files_changed_is_recomputed resumes a crashed run in-process
def test_a_rerun_after_a_crash_keeps_the_finished_shards(ray_cluster, tmp_path, model_name, images,  # noqa: F811
                                                         monkeypatch) -> None:
    from lookalike.distributed.runner import index_with_ray

    local = _local(tmp_path, model_name, images)
    coll = lookalike.Collection.create(tmp_path / "ray.lkl", model_name, device="cpu")
    with pytest.raises(Crash):  # killed while merging the fourth part: parts 0-3 are on disk
        index_with_ray(coll, _source(images), progress=_crash_at("img_0013"), in_flight=2)
    finished = _shard_paths(coll)
    assert len(finished) >= 4 * PART_SIZE
    _by_value()
    log = tmp_path / "prepared.txt"
    monkeypatch.setattr(remote, "prepare_jobs", logging_prepare(str(log)))
    index_with_ray(coll, _source(images))
    redone = set(log.read_text().split()) if log.exists() else set()
    assert not redone & finished, "a finished part was computed again"
    all_paths = {row[1] for row in _rows(local)}
    assert redone == all_paths - finished
    assert_same(local, coll)


@pytest.mark.slow  # ~12 s; the two-node test (slow too) loses a whole node mid-job
def test_dead_workers_mean_retries_not_lost_or_duplicated_rows(ray_cluster, tmp_path, model_name, images,  # noqa: F811
                                                                monkeypatch) -> None:
    from lookalike.distributed.runner import index_with_ray

    local = _local(tmp_path, model_name, images)
    _by_value()
    task_marker, actor_marker = tmp_path / "task-died", tmp_path / "actor-died"
    monkeypatch.setattr(remote, "prepare_jobs", dying_prepare(str(task_marker)))
    monkeypatch.setattr(DyingEmbedder, "marker", str(actor_marker))
    monkeypatch.setattr(remote, "PartEmbedder", DyingEmbedder)
    coll = lookalike.Collection.create(tmp_path / "ray.lkl", model_name, device="cpu")
    index_with_ray(coll, _source(images), in_flight=3)
    assert task_marker.exists() and actor_marker.exists(), "a task and the actor died once each"
    assert_same(local, coll)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """``(folder, base URL)``: a folder served over HTTP on 127.0.0.1 (the workers fetch from it)."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_urls_are_fetched_by_the_workers_as_by_the_local_indexer(ray_cluster, tmp_path, model_name, images,  # noqa: F811
                                                                 http_folder) -> None:
    pytest.importorskip("httpx")
    from lookalike.distributed.runner import index_with_ray
    from lookalike.sources.download import DownloadSettings
    from lookalike.sources.filelist import FileListSource
    from lookalike.store.item_bytes import DOWNLOAD_DIR_STATE

    www, base = http_folder
    for i in range(5):  # larger than max_side: stored resized, with the original size recorded
        make_image(www / f"u{i}.jpg", seed=100 + i, size=(200, 150))
    entries = [f"{base}/u{i}.jpg" for i in range(5)] + [f"{base}/missing.png"]
    entries += [str(p) for p in sorted(images.rglob("img_000*"))[:4]]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(entries) + "\n")

    def settings(name: str) -> DownloadSettings:
        return DownloadSettings(cache_dir=tmp_path / name, max_side=64, retries=0, timeout_s=5.0)

    local = lookalike.Collection.create(tmp_path / "local.lkl", model_name, device="cpu")
    local.add(FileListSource(str(listing), part_size=PART_SIZE), download=settings("dl-local"))
    coll = lookalike.Collection.create(tmp_path / "ray.lkl", model_name, device="cpu")
    report = index_with_ray(coll, FileListSource(str(listing), part_size=PART_SIZE), download=settings("dl-ray"))
    assert_same(local, coll)
    assert [p for p, _ in report.failed] == [f"{base}/missing.png"] and "404" in report.failed[0][1]
    assert coll._storage.db.get_state(DOWNLOAD_DIR_STATE) == str(tmp_path / "dl-ray")
    assert len(list((tmp_path / "dl-ray").rglob("*.*"))) >= 5, "the workers cached what they fetched"


# --------------------------------------------------------------------------- without Ray
def _local_executor(coll: lookalike.Collection, log: list[str] | None = None) -> remote.LocalExecutor:
    m = coll.manifest
    executor = remote.LocalExecutor(remote.PartEmbedder(m.model, owner="test", device="cpu"),
                                    m.model["preprocess"])
    if log is not None:
        submit = executor.submit

        def logged(index: int, jobs: Any) -> None:
            log.extend(job.file.path for job in jobs)
            submit(index, jobs)
        executor.submit = logged  # type: ignore[method-assign]
    return executor


def test_a_shard_whose_files_changed_is_recomputed(tmp_path, model_name, images, monkeypatch) -> None:
    monkeypatch.setattr(batch, "COMMIT_EVERY_SECONDS", 1e9)  # the crash comes before any commit
    coll = lookalike.Collection.create(tmp_path / "remote.lkl", model_name, device="cpu")
    with pytest.raises(Crash):
        remote.add_remote(coll, _source(images), _local_executor(coll), progress=_crash_at("img_0012"))
    shards = _shards(coll)
    finished = {path for part in shards for path in part}
    changed = sorted(shards[1])[0]
    make_image(Path(changed), seed=999, size=(90, 70))  # new content, new size and mtime
    log: list[str] = []
    remote.add_remote(coll, _source(images), _local_executor(coll, log))
    # Only the changed file's part and the parts never finished are computed.
    assert set(log) == shards[1] | ({row[1] for row in _rows(coll)} - finished)
    local = _local(tmp_path, model_name, images)
    assert_same(local, coll)


def test_retry_failed_recomputes_a_shard_that_recorded_a_failure(tmp_path, model_name, images, monkeypatch) -> None:
    monkeypatch.setattr(batch, "COMMIT_EVERY_SECONDS", 1e9)  # the crash comes before any commit
    coll = lookalike.Collection.create(tmp_path / "remote.lkl", model_name, device="cpu")
    with pytest.raises(Crash):
        remote.add_remote(coll, _source(images), _local_executor(coll), progress=_crash_at("img_0012"))
    shards = _shards(coll)
    broken = str(images / "sub0" / "broken.jpg")
    assert broken in shards[0] and broken not in shards[1]
    log: list[str] = []
    remote.add_remote(coll, _source(images), _local_executor(coll, log), retry_failed=True)
    finished = {path for part in shards for path in part}
    assert set(log) == shards[0] | ({row[1] for row in _rows(coll)} - finished)


def test_tar_shards_merge_as_locally_and_are_recorded_done(tmp_path, model_name) -> None:
    pytest.importorskip("braceexpand")
    from lookalike.sources.webdataset import WebDatasetSource

    for shard in range(2):
        with tarfile.open(tmp_path / f"shard-{shard}.tar", "w") as tar:
            for i in range(5):
                tar.add(make_image(tmp_path / "src" / f"{shard}-{i}.png", seed=10 * shard + i), f"{i:06d}.png")
    pattern = str(tmp_path / "shard-{0..1}.tar")
    local = lookalike.Collection.create(tmp_path / "local.lkl", model_name, device="cpu")
    local.add(WebDatasetSource([pattern]))
    coll = lookalike.Collection.create(tmp_path / "remote.lkl", model_name, device="cpu")
    remote.add_remote(coll, WebDatasetSource([pattern]), _local_executor(coll))
    assert_same(local, coll)
    log: list[str] = []
    again = remote.add_remote(coll, WebDatasetSource([pattern]), _local_executor(coll, log))
    assert again.unchanged == 10 and not log, "both shards were recorded as done by the merge"


def test_without_ray_the_error_names_the_extra(tmp_path, model_name, images, monkeypatch) -> None:
    from lookalike.distributed.runner import index_with_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    coll = lookalike.Collection.create(tmp_path / "ray.lkl", model_name, device="cpu")
    with pytest.raises(MissingExtra, match=r"lookalike\[ray\]"):
        index_with_ray(coll, _source(images))
