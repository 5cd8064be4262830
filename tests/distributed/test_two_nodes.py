"""The Ray runner on a two-node cluster whose worker node dies mid-job.

A head and a worker node are started on 127.0.0.1 with ``ray start``, each with its own
temp dir (Ray 2.60 honours ``--temp-dir`` per node on one host: each raylet's sockets and
logs are under its own). An index job runs in a driver process; as soon as it starts
merging, the worker node's raylet is killed. The job must still finish with every item
embedded exactly once and the same vectors as the local indexer. Both nodes are stopped
by process id at the end (never ``ray stop``, which would stop every Ray on the machine).

Both nodes get 2 CPUs: the embedding actor takes one, so a lone surviving node still has
one left for the decode tasks (with one CPU on the head, an actor restarted there would
starve the tasks for ever).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import lookalike
from lookalike.sources.folder import FolderSource

from support import free_port, make_image

pytestmark = pytest.mark.slow

N_IMAGES = 1200
PART_SIZE = 16
BATCH = 8

DRIVER = """
import json, sys
from lookalike import Collection
from lookalike.distributed.runner import index_with_ray
from lookalike.sources.folder import FolderSource

def progress(event):
    if event.kind == "embed":
        print("embed", event.done, flush=True)

coll = Collection.open(sys.argv[1])
report = index_with_ray(coll, FolderSource([sys.argv[2]], part_size=int(sys.argv[4])), address=sys.argv[3],
                        batch_size=int(sys.argv[5]), progress=progress)
print("report", json.dumps({"added": report.added, "embedded": report.embedded, "failed": report.failed}), flush=True)
"""


def _ray_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # A token another local cluster left in ~/.ray would be demanded by the head but not sent by
    # the worker node (an explicit address never enables it): this private cluster goes without.
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    return env


def _processes_of(temp_dir: str) -> list[Any]:
    """A node's processes (their command lines name its temp dir) and their children (workers)."""
    import psutil

    own = []
    for p in psutil.process_iter(["cmdline"]):
        if p.pid != os.getpid() and any(temp_dir in arg for arg in (p.info["cmdline"] or [])):
            own.append(p)
    children = []
    for p in own:
        try:
            children.extend(p.children(recursive=True))
        except psutil.Error:
            pass
    return own + children


def _raylet(temp_dir: str) -> Any:
    for p in _processes_of(temp_dir):
        try:
            if p.cmdline() and p.cmdline()[0].endswith("raylet/raylet"):
                return p
        except Exception:
            continue
    raise AssertionError(f"no raylet with temp dir {temp_dir}")


def _stop(temp_dir: str) -> None:
    import psutil

    for p in _processes_of(temp_dir):
        try:
            p.kill()
        except psutil.Error:
            pass


@pytest.fixture
def two_nodes() -> Iterator[tuple[str, str, str]]:
    """``(address, head temp dir, worker temp dir)`` of a fresh two-node cluster."""
    pytest.importorskip("ray")
    pytest.importorskip("psutil")
    ray_cli = str(Path(sys.executable).parent / "ray")
    # Short paths: Ray's Unix sockets live under the temp dir, and socket paths are limited to 107 bytes.
    head_dir, worker_dir = tempfile.mkdtemp(prefix="lk-head-"), tempfile.mkdtemp(prefix="lk-worker-")
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=2", "--disable-usage-stats"]
    # Find a dead node within seconds rather than the default half minute.
    config = json.dumps({"health_check_period_ms": 1000, "health_check_failure_threshold": 3})
    try:
        subprocess.run([ray_cli, "start", "--head", f"--port={port}", f"--temp-dir={head_dir}",
                        "--include-dashboard=false", f"--system-config={config}", *common],
                       env=_ray_env(), check=True, capture_output=True, timeout=120)
        subprocess.run([ray_cli, "start", f"--address={address}", f"--temp-dir={worker_dir}", *common],
                       env=_ray_env(), check=True, capture_output=True, timeout=120)
        yield address, head_dir, worker_dir
    finally:
        _stop(worker_dir)
        _stop(head_dir)
        shutil.rmtree(head_dir, ignore_errors=True)
        shutil.rmtree(worker_dir, ignore_errors=True)


class _Watch(threading.Thread):
    """Records which kinds of Ray work the worker node ran (its raylet's children)."""

    def __init__(self, worker_dir: str) -> None:
        super().__init__(daemon=True)
        self.raylet = _raylet(worker_dir)
        self.seen: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                for child in self.raylet.children(recursive=True):
                    title = " ".join(child.cmdline())
                    if title.startswith("ray::"):
                        self.seen.add(title.split()[0])
            except Exception:  # the raylet is gone (we killed it), or a child exited meanwhile
                pass
            time.sleep(0.1)


def test_a_job_survives_its_worker_node_dying(two_nodes, tmp_path: Path, tiny_timm_dir: Path) -> None:
    address, _, worker_dir = two_nodes
    images = tmp_path / "imgs"
    for i in range(N_IMAGES):
        make_image(images / f"d{i % 5}" / f"im_{i:05d}.jpg", seed=i, size=(800, 600))
    model = f"timm:{tiny_timm_dir}"
    lookalike.Collection.create(tmp_path / "ray.lkl", model, device="cpu").close()

    t0 = time.perf_counter()
    watch = _Watch(worker_dir)
    watch.start()
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path / "ray.lkl"), str(images), address,
                               str(PART_SIZE), str(BATCH)], env=_ray_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    merged_at_kill, report = None, None
    try:
        assert driver.stdout is not None
        for line in driver.stdout:
            word, _, value = line.partition(" ")
            if word == "embed" and merged_at_kill is None:
                merged_at_kill = int(value)
                os.kill(watch.raylet.pid, signal.SIGKILL)  # the worker node dies mid-job
            elif word == "report":
                report = json.loads(value)
        assert driver.wait(timeout=600) == 0
    finally:
        watch.stop.set()
        if driver.poll() is None:
            driver.kill()
    elapsed = time.perf_counter() - t0
    print(f"two-node job: {elapsed:.1f} s; worker node ran {sorted(watch.seen)}; killed after {merged_at_kill} merged")

    assert merged_at_kill is not None and merged_at_kill < N_IMAGES, "the worker node died mid-job"
    assert watch.seen & {"ray::prepare_jobs", "ray::PartEmbedder", "ray::PartEmbedder.embed"}, \
        "work ran on the worker node before it died"
    assert report == {"added": N_IMAGES, "embedded": N_IMAGES, "failed": []}
    coll = lookalike.Collection.open(tmp_path / "ray.lkl")
    rows = coll._storage.db.conn.execute("SELECT path, status, vec_row FROM items ORDER BY id").fetchall()
    assert len(rows) == N_IMAGES and len({r[0] for r in rows}) == N_IMAGES
    assert {r[1] for r in rows} == {"ok"} and len({r[2] for r in rows}) == N_IMAGES
    assert coll._storage.vector_rows == N_IMAGES, "no vector was appended twice"

    local = lookalike.Collection.create(tmp_path / "local.lkl", model, device="cpu")
    local.add(FolderSource([str(images)], part_size=PART_SIZE))
    local_rows = local._storage.db.conn.execute("SELECT path, vec_row FROM items ORDER BY id").fetchall()
    assert [(r[0], r[2]) for r in rows] == local_rows
    np.testing.assert_allclose(coll._storage.vectors(), local._storage.vectors(), atol=1e-5, rtol=0)
