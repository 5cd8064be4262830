"""The ``auto`` runtime: measure torch, ONNX Runtime and OpenVINO for one model on this
machine, once, and keep the fastest.

Each installed runtime runs the model's image tower on a synthetic batch for about a
second after a warm-up batch, in two rounds that take turns; the rate is images per second
at the fastest batch, since other processes only ever slow a batch down. A measurement made
while the machine was busy is used, and made again the next time the machine is quiet.
The result is cached as JSON under ``cache_dir()/autotune/``, keyed by the model's fp32
fingerprint, the precision, the calibration digest (int8) and the machine (CPU model,
cores, library versions), so a new library version or another machine measures again.
On a GPU ``auto`` is torch, without measuring: its CUDA path (autocast, channels_last) is
the one built for GPUs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import LookalikeError
from ..fsutil import atomic_writer
from .cache import cache_dir
from .onnx_engine import cpu_cores, model_threads

if TYPE_CHECKING:
    from .base import EmbeddingModel
    from .engine import ImageEngine

__all__ = ["RuntimeMeasurement", "measure", "cached_measurement", "measurements_for", "machine_key", "machine_name",
           "MEASURE_BATCH", "MEASURE_SECONDS"]

log = logging.getLogger("lookalike")

#: The batch each runtime is timed on (the indexer's default is 32; rates differ little from 16 up).
MEASURE_BATCH = 16
#: How long each runtime is timed for, after one warm-up batch (at least 3 batches are timed).
MEASURE_SECONDS = 1.0
#: Rounds in which the runtimes take turns; each keeps its best rate.
MEASURE_ROUNDS = 2
#: Load average per core above which a measurement counts as made on a busy machine, and below
#: which the machine counts as quiet enough to measure such a result again.
BUSY_LOAD = 1.0
QUIET_LOAD = 0.5
#: Bump when the way of measuring changes, so old results are not reused.
MEASURE_VERSION = 2

EngineFactory = Callable[[], "ImageEngine"]


@dataclass
class RuntimeMeasurement:
    """What ``auto`` measured: images per second per runtime, and the one it chose.

    ``errors`` holds why a runtime could not be measured (not installed, export refused).
    """

    choice: str
    rates: dict[str, float]
    batch: int
    threads: int
    machine: str
    measured_at: float
    precision: str = "fp32"
    errors: dict[str, str] = field(default_factory=dict)
    #: The model measured and the :func:`machine_key` it was measured under, so that
    #: ``lookalike models`` can list this machine's measurements without loading any model.
    model_id: str = ""
    key: str = ""
    #: The machine was busy (load average above one per core) while measuring, so the ranking
    #: may be off: it is used, and measured again once the machine is quiet.
    busy: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RuntimeMeasurement":
        return cls(choice=str(data["choice"]), rates={str(k): float(v) for k, v in data["rates"].items()},
                   batch=int(data["batch"]), threads=int(data["threads"]), machine=str(data["machine"]),
                   measured_at=float(data["measured_at"]), precision=str(data.get("precision", "fp32")),
                   errors={str(k): str(v) for k, v in (data.get("errors") or {}).items()},
                   model_id=str(data.get("model_id", "")), key=str(data.get("key", "")),
                   busy=bool(data.get("busy", False)))

    def summary(self) -> str:
        """One line for ``lookalike models`` and ``info``: ``openvino (torch 41, onnx 128, openvino 180 img/s)``."""
        rates = ", ".join(f"{name} {rate:.0f}" for name, rate in sorted(self.rates.items(), key=lambda kv: kv[1]))
        return f"{self.choice} ({rates} img/s)" if rates else self.choice


def machine_name() -> str:
    """The CPU model and the cores this process may use, e.g. ``AMD EPYC x2``."""
    return f"{_cpu_model()} x{cpu_cores()}"


def machine_key() -> str:
    """What makes a measurement valid: the CPU, the cores and threads, the OS and the runtime libraries' versions."""
    versions = ",".join(f"{pkg}={_version(pkg)}" for pkg in ("torch", "onnxruntime", "openvino", "lookalike"))
    # The threads too: a Ray actor limited to one thread ranks the runtimes differently.
    return (f"{machine_name()}|threads={model_threads()}|{platform.system()}-{platform.machine()}|{versions}"
            f"|v{MEASURE_VERSION}")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def _path(fingerprint: str, precision: str, calibration: str | None) -> Path:
    key = hashlib.sha256(f"{fingerprint}|{precision}|{calibration or ''}|{machine_key()}".encode()).hexdigest()[:16]
    return cache_dir() / "autotune" / f"{fingerprint}-{precision}-{key}.json"


def cached_measurement(fingerprint: str, precision: str = "fp32",
                       calibration: str | None = None) -> RuntimeMeasurement | None:
    """The measurement made on this machine for the model with this fp32 ``fingerprint``, if any."""
    path = _path(fingerprint, precision, calibration)
    try:
        return RuntimeMeasurement.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing or damaged: measure again
        return None


def measurements_for(model_id: str) -> list[RuntimeMeasurement]:
    """This machine's cached measurements of the model named ``model_id`` (any weights,
    precision or calibration), newest first."""
    key = machine_key()
    found = []
    for path in (cache_dir() / "autotune").glob("*.json"):
        try:
            m = RuntimeMeasurement.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if m.model_id == model_id and m.key == key:
            found.append(m)
    return sorted(found, key=lambda m: -m.measured_at)


def measure(model: "EmbeddingModel", precision: str = "fp32", *, calibration: str | None = None,
            factories: dict[str, EngineFactory] | None = None, refresh: bool = False) -> RuntimeMeasurement:
    """Time every runtime in ``factories`` (default: torch, onnx, openvino at fp32) on ``model``'s
    image tower and return (and cache) the measurement; a cached one is returned as it is
    unless ``refresh``. On a GPU the answer is torch, unmeasured and uncached.

    A runtime that cannot run (not installed, export refused) is recorded in ``errors``;
    torch at fp32 always can, so there is always a choice.
    """
    if model.device.type != "cpu":
        return RuntimeMeasurement("torch", {}, 0, 0, str(model.device), time.time(), precision)
    fingerprint = model.fp32_fingerprint()
    if not refresh:
        cached = cached_measurement(fingerprint, precision, calibration)
        if cached is not None and not (cached.busy and _load_per_core() < QUIET_LOAD):
            return cached
    factories = factories if factories is not None else fp32_factories(model)
    from .export import image_probe

    pixels = image_probe(model, MEASURE_BATCH, seed=2).numpy()
    busy = _load_per_core() > BUSY_LOAD
    rates, errors = _interleaved_rates(factories, pixels)
    busy = busy or _load_per_core() > BUSY_LOAD
    result = RuntimeMeasurement(max(rates, key=rates.__getitem__), rates, MEASURE_BATCH, model_threads(),
                                machine_name(), time.time(), precision, errors, model.model_id, machine_key(),
                                busy)
    _save(_path(fingerprint, precision, calibration), result)
    return result


def fp32_factories(model: "EmbeddingModel") -> dict[str, EngineFactory]:
    """Builders of the fp32 engines ``auto`` chooses between (each imports its runtime lazily)."""
    from .engine import build_image_engine

    return {name: (lambda name=name: build_image_engine(model, name)) for name in ("torch", "onnx", "openvino")}


def _interleaved_rates(factories: dict[str, EngineFactory], pixels: Any) -> tuple[dict[str, float], dict[str, str]]:
    """Each runtime's best rate over :data:`MEASURE_ROUNDS` rounds that take turns, so that
    load coming and going during the measurement falls on every runtime alike."""
    engines: dict[str, "ImageEngine"] = {}
    errors: dict[str, str] = {}
    for name, factory in factories.items():
        try:
            engines[name] = factory()
        except (LookalikeError, ImportError, RuntimeError) as exc:  # that runtime is out; the others stand
            errors[name] = f"{type(exc).__name__}: {exc}"
    rates: dict[str, float] = {}
    for _ in range(MEASURE_ROUNDS):
        for name, engine in list(engines.items()):
            try:
                rates[name] = max(rates.get(name, 0.0), _rate(engine, pixels))
            except (LookalikeError, RuntimeError) as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                engines.pop(name)
                rates.pop(name, None)
    if not rates:
        raise next(iter(_errors_as_exceptions(errors)))
    return rates, errors


def _rate(engine: "ImageEngine", pixels: Any) -> float:
    """Images per second at the fastest batch: other processes only ever slow a batch down."""
    engine.run(pixels)  # warm-up: first-run allocations, OpenVINO/ORT kernel selection
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < MEASURE_SECONDS / MEASURE_ROUNDS and len(times) < 50):
        t0 = time.perf_counter()
        engine.run(pixels)
        times.append(time.perf_counter() - t0)
    return len(pixels) / min(times)


def _load_per_core() -> float:
    """The 1-minute load average per core (0 where the OS does not say)."""
    try:
        return os.getloadavg()[0] / cpu_cores()
    except (OSError, AttributeError):
        return 0.0


def _errors_as_exceptions(errors: dict[str, str]) -> list[Exception]:
    from ..errors import ModelLoadError

    detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
    return [ModelLoadError(f"no runtime could run this model ({detail}); check the installation")]


def _save(path: Path, result: RuntimeMeasurement) -> None:
    try:
        with atomic_writer(path, durable=False) as f:
            f.write(json.dumps(result.to_dict(), indent=1, sort_keys=True).encode())
    except OSError as exc:  # a read-only cache costs a new measurement next time, not the load
        log.warning("cannot cache the runtime measurement at %s (%s)", path, os.strerror(exc.errno or 0))
