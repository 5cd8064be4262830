"""One indexing run in a fresh process, for ``bench_index.py e2e`` and ``decode``.

    python benchmarks/bench_index_child.py CONFIG.json

CONFIG holds: folder, collection, model, device, runtime, precision, decoder ("default" leaves
the library's choice), calibration (paths or null), batch_size, workers, threads, vectors (an
.npz path or null). It creates a fresh collection, times ``Collection.add([folder])`` and prints
one line ``RESULT {json}``: seconds, counts, the resolved runtime and decoder, the RSS after the
model loaded and the peak RSS while adding (the kernel's high-water mark, reset after loading).
A fresh process per run keeps one run's memory, caches and thread pools out of the next.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def _rss_mb(field: str) -> float | None:
    """VmRSS / VmHWM of this process in MB, from /proc (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the peak-RSS mark, so it measures the add alone (Linux >= 4.0: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _set_env(name: str, value: str) -> None:
    """Pin one library default for this process; "default" leaves the library's own choice."""
    if value == "default":
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _create(cfg: dict[str, Any]) -> Any:
    """A fresh collection for the configuration (keyword arguments only where they are set)."""
    import lookalike

    kwargs = {k: cfg[k] for k in ("runtime", "precision") if cfg[k] != "default"}
    if cfg.get("calibration"):
        kwargs["calibration"] = cfg["calibration"]
    try:
        return lookalike.Collection.create(cfg["collection"], model=cfg["model"], device=cfg["device"], **kwargs)
    except TypeError as exc:
        # An older checkout: only today's torch fp32 exists, and the env var is all we can say.
        if "unexpected keyword" not in str(exc) or cfg["precision"] == "int8" or cfg["runtime"] not in (
                "torch", "default"):
            raise
        return lookalike.Collection.create(cfg["collection"], model=cfg["model"], device=cfg["device"])


def _resolved(coll: Any) -> dict[str, Any]:
    """What the library actually ran: runtime, precision, decoder."""
    out: dict[str, Any] = {}
    model = coll.model
    out["runtime"] = str(getattr(model, "runtime", "torch"))
    out["precision"] = str(getattr(model, "precision", "fp32"))
    try:
        from lookalike.images.decode import default_decoder  # type: ignore[attr-defined]

        out["decoder"] = default_decoder()
    except ImportError:
        out["decoder"] = "pillow"
    return out


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    _set_env("LOOKALIKE_RUNTIME", cfg["runtime"])
    _set_env("LOOKALIKE_DECODER", cfg["decoder"])
    import numpy as np
    import torch

    torch.set_num_threads(cfg["threads"])
    t0 = time.perf_counter()
    coll = _create(cfg)
    coll.model  # the model loads lazily in some versions: load it before the timed add
    load_s = time.perf_counter() - t0
    rss_loaded = _rss_mb("VmRSS")
    peak_reset = _reset_peak()
    t0 = time.perf_counter()
    report = coll.add([cfg["folder"]], batch_size=cfg["batch_size"], workers=cfg["workers"])
    seconds = time.perf_counter() - t0
    peak = _rss_mb("VmHWM") if peak_reset else None
    result = {
        "seconds": seconds, "load_s": load_s, "embedded": report.embedded, "copied": report.copied,
        "failed": len(report.failed), "failures": [f"{Path(p).name}: {r}"[:200] for p, r in report.failed[:5]],
        "rss_loaded_mb": rss_loaded, "peak_rss_add_mb": peak,
        "peak_rss_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **_resolved(coll),
    }
    if cfg.get("vectors"):
        ids, vectors = coll.embeddings()
        paths = [str(item.path) for item in coll.items([int(i) for i in ids])]
        np.savez(cfg["vectors"], paths=np.asarray(paths), vectors=vectors)
    coll.close()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
