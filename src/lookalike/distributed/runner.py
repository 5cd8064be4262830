"""``lookalike index --ray``: a collection's add with the work spread over a Ray cluster.

Only the wiring is here; the work is :mod:`lookalike.store.remote`'s. Each part of the
source is cut into chunks of one model batch; a chunk is decoded and preprocessed by a CPU
task (:func:`~lookalike.store.remote.prepare_jobs`, spread over the cluster's nodes), whose
pixels go through the object store to an embedding actor (one
:class:`~lookalike.store.remote.PartEmbedder` per GPU, or ``actors`` on CPUs: the model
loads once per actor). The driver writes each part's shard as soon as all its chunks are
in, and merges the shards in order into the collection; an on-disk index is then built
with its chunks encoded as Ray tasks (:func:`~.index_build.ray_map`).

Failures: a task whose worker or node dies is retried (``MAX_RETRIES``), and an actor that
dies is restarted with its calls retried; the lost pixels are recomputed from their task.
Rows are written by the driver only, once per part, so a retry never duplicates one. When
the retries are spent the run stops with the error; the shards done so far are kept and a
rerun (same source, same collection) picks up from them.

Ray is imported inside :func:`index_with_ray`: without it, it raises
:class:`~lookalike.errors.MissingExtra`.
"""

from __future__ import annotations

import os

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import InvalidArgument, LookalikeError
from ..store import remote
from .index_build import import_ray, ray_map

if TYPE_CHECKING:
    from ..progress import ProgressCallback
    from ..sources import Source
    from ..sources.download import DownloadSettings
    from ..store.ann import IndexSettings
    from ..store.collection import Collection
    from ..store.indexer import AddReport
    from ..store.plan import Job
    from ..store.shards import Record

__all__ = ["index_with_ray", "RayExecutor", "connect", "disconnect", "MAX_RETRIES"]

#: Attempts again for a task whose worker or node died, and restarts of a dead actor (each
#: with its unfinished calls retried). Preparing a chunk has no side effects, so it is safe.
MAX_RETRIES = 4


def _import_ray() -> Any:
    return import_ray("Indexing on a Ray cluster (--ray)")


def connect(address: str = "auto") -> bool:
    """Connect this process to Ray; True when this call did (and so should disconnect).

    ``"auto"``: the cluster this machine is part of ($RAY_ADDRESS, or the one ``ray start``
    last started here), else a new local one; ``"local"``: always a new local one; else an
    address such as ``"ray://head:10001"`` (Ray Client) or ``"head:6379"``. Already
    connected: that connection is used as it is.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return False
    if address.startswith("ray://"):
        ray.init(address=address)  # Ray Client: the cluster's own settings apply
        return True
    # ray.init(address="auto") raises when no cluster runs; no address means "join one, else start one".
    # Workers' output stays in the cluster's logs: the library never prints.
    ray.init(address=None if address == "auto" else address, log_to_driver=False, configure_logging=False)
    return True


class RayExecutor:
    """A :class:`~lookalike.store.remote.PartExecutor` over Ray tasks and an actor pool."""

    def __init__(self, ray: Any, embedder: dict[str, Any], preprocess: dict[str, Any], *, actors: int,
                 gpus_per_actor: float, cpus_per_actor: float, batch_size: int, in_flight: int,
                 download: "DownloadSettings | None" = None) -> None:
        self.ray = ray
        self.batch_size = batch_size
        self.in_flight = in_flight
        self.preprocess, self.download = preprocess, download
        self._prepare = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, num_returns=2,
                                   scheduling_strategy="SPREAD")(remote.prepare_jobs)
        self._actor_class = ray.remote(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor, max_restarts=MAX_RETRIES,
                                       max_task_retries=MAX_RETRIES, scheduling_strategy="SPREAD")(remote.PartEmbedder)
        self._embedder = dict(embedder, batch_size=batch_size)
        self.n_actors = actors
        self.actors: list[Any] = []  # started at the first part: a run with nothing new loads no model
        self._load = [0] * actors  # calls waiting at each actor
        self._parts: dict[int, list[tuple[Any, Any]]] = {}  # index -> (records ref, vectors ref) per chunk
        self._waiting: dict[Any, tuple[int, int]] = {}  # vectors ref -> (part index, actor)
        self._left: dict[int, int] = {}  # part index -> chunks not done yet

    @property
    def pending(self) -> int:
        return len(self._parts)

    def busy(self) -> bool:
        # Counted in chunks, not parts: a part's chunks overlap the next part's, so the actors
        # never wait for a whole part to be merged before they get more work.
        return len(self._waiting) >= self.in_flight

    def submit(self, index: int, jobs: Sequence["Job"]) -> None:
        if not self.actors:
            self.actors = [self._actor_class.remote(**self._embedder) for _ in range(self.n_actors)]
        chunks = []
        for start in range(0, len(jobs), self.batch_size):
            records, pixels = self._prepare.remote(list(jobs[start:start + self.batch_size]), self.preprocess,
                                                   self.download)
            actor = min(range(len(self.actors)), key=self._load.__getitem__)
            vectors = self.actors[actor].embed.remote(pixels)
            self._load[actor] += 1
            self._waiting[vectors] = (index, actor)
            chunks.append((records, vectors))
        self._parts[index] = chunks
        self._left[index] = len(chunks)

    def wait(self) -> list[tuple[int, list["Record"], np.ndarray]]:
        ready, _ = self.ray.wait(list(self._waiting), num_returns=1)
        finished = []
        for ref in ready:
            index, actor = self._waiting.pop(ref)
            self._load[actor] -= 1
            self._left[index] -= 1
            if not self._left[index]:
                finished.append(self._collect(index))
        return finished

    def _collect(self, index: int) -> tuple[int, list["Record"], np.ndarray]:
        chunks = self._parts.pop(index)
        del self._left[index]
        try:
            records = [r for chunk in self.ray.get([c[0] for c in chunks]) for r in chunk]
            vectors = self.ray.get([c[1] for c in chunks])
        except self.ray.exceptions.RayError as exc:
            raise LookalikeError(f"part {index} failed on the Ray cluster after {MAX_RETRIES} retries: {exc}. "
                                 "The parts finished so far are kept: run the same command again to resume") from exc
        return index, records, np.concatenate(vectors)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


def _resources(ray: Any, actors: int | None, gpus_per_actor: float | None) -> tuple[int, float, float]:
    """``(actors, gpus each, cpus each)``: one per GPU where the cluster has GPUs, else one CPU
    actor per 4 CPUs (at least one); the rest of the CPUs decode."""
    total = ray.cluster_resources()
    gpus, cpus = float(total.get("GPU", 0)), float(total.get("CPU", 1))
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if gpus >= 1 else 0.0
    if gpus_per_actor < 0 or (actors is not None and actors < 1):
        raise InvalidArgument("--ray needs at least one actor and a non-negative GPU share per actor")
    if actors is None:
        actors = int(gpus // gpus_per_actor) if gpus_per_actor else max(1, int(cpus) // 4)
        if actors < 1:
            raise InvalidArgument(f"the Ray cluster has {gpus:g} GPUs, not enough for one actor with "
                                  f"{gpus_per_actor:g}; pass gpus_per_actor=0 to embed on CPUs")
    # A GPU actor needs a CPU only to feed the GPU; a CPU actor needs one to compute on.
    return actors, gpus_per_actor, (1.0 if not gpus_per_actor else 0.5)


def _threads(ray: Any, actors: int) -> int:
    """Torch threads of a CPU actor: its node's CPUs shared among the actors there (nodes
    assumed alike). It reserves one CPU only, so that decode tasks run beside it."""
    nodes = [n for n in ray.nodes() if n.get("Alive")] or [{"Resources": ray.cluster_resources()}]
    per_node = sum(float(n["Resources"].get("CPU", 0)) for n in nodes) / len(nodes)
    return max(1, int(per_node // -(-actors // len(nodes))))


#: Pixels waiting in the object store for the actors, at most (a chunk is batch x 3 x size^2 floats).
MAX_PIXEL_BYTES = 8 * 1024**3


def _in_flight(cpus: int, actors: int, batch_size: int, preprocess: dict[str, Any]) -> int:
    """Chunks in flight: every CPU busy and one more queued per CPU and actor, within MAX_PIXEL_BYTES."""
    chunk = batch_size * 3 * int(preprocess.get("size", 224)) ** 2 * 4
    return max(2 * actors, min(2 * (cpus + actors), MAX_PIXEL_BYTES // chunk))


def disconnect() -> None:
    """Undo a :func:`connect` that returned True (a local cluster it started stops)."""
    _import_ray().shutdown()


def index_with_ray(collection: "Collection", source: "Source | Sequence[str]", *, address: str = "auto",
                   actors: int | None = None, gpus_per_actor: float | None = None, batch_size: int | None = None,
                   retry_failed: bool = False, progress: "ProgressCallback | None" = None,
                   index: "IndexSettings | None" = None, download: "DownloadSettings | None" = None,
                   in_flight: int | None = None) -> "AddReport":
    """:meth:`Collection.add` with decoding and embedding on a Ray cluster.

    Args:
        collection: the collection to add to (on storage this process writes).
        source: a :class:`~lookalike.sources.Source`, or folders/files as for ``add``. Every
            node must be able to read the files (shared storage); tar members and URLs are
            read by the driver and the workers respectively.
        address: ``"auto"`` (this machine's cluster, else a new local one), ``"local"``, or a
            cluster address such as ``"ray://head:10001"``.
        actors, gpus_per_actor: the embedding actors; by default one per GPU, or one per
            4 CPUs on a cluster without GPUs.
        batch_size: items per task and per model call (32 on CPUs, 128 on GPUs).
        in_flight: chunks submitted and not yet embedded, at most (memory stays flat).

    Raises:
        MissingExtra: Ray or pyarrow is not installed (``pip install 'lookalike[ray]'``).
        LookalikeError: a part failed after its retries; a rerun resumes from the finished parts.
    """
    from ..sources.folder import FolderSource
    from ..store.indexer import default_download, require_roots

    if isinstance(source, (str, os.PathLike)):
        source = [source]  # one folder given bare (a Path has a `parts` attribute of its own)
    if not callable(getattr(source, "parts", None)):
        source = FolderSource(require_roots(source))  # type: ignore[arg-type]
    download = download or default_download(collection.path)
    ray = _import_ray()
    connected = connect(address)
    try:
        n_actors, gpus, cpus = _resources(ray, actors, gpus_per_actor)
        batch_size = batch_size or (128 if gpus else 32)
        cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
        manifest = collection.manifest
        embedder = {"model": manifest.model, "owner": str(collection.path), "device": "cuda" if gpus else "cpu",
                    "threads": None if gpus else _threads(ray, n_actors)}
        executor = RayExecutor(ray, embedder, manifest.model["preprocess"], actors=n_actors, gpus_per_actor=gpus,
                               cpus_per_actor=cpus, batch_size=batch_size,
                               in_flight=in_flight or _in_flight(cluster_cpus, n_actors, batch_size,
                                                                 manifest.model["preprocess"]),
                               download=download)
        try:
            return remote.add_remote(collection, source, executor, retry_failed=retry_failed,  # type: ignore[arg-type]
                                     progress=progress, index=index, download=download, map_fn=ray_map)
        finally:
            executor.close()
    finally:
        if connected:
            ray.shutdown()
