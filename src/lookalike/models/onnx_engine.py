"""ONNX Runtime engine: an exported graph on the CPU execution provider, or CUDA where present.

Imported only when the onnx runtime is chosen; ``onnxruntime`` itself is imported lazily
with an install hint, so a broken install degrades to the torch runtime's error message.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingExtra, ModelLoadError
from .engine import as_numpy

__all__ = ["OnnxEngine", "import_onnxruntime", "cpu_cores", "model_threads"]


def import_onnxruntime() -> Any:
    """``onnxruntime``, or MissingExtra naming the package (a core dependency)."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingExtra("onnxruntime", None, "the onnx runtime (--runtime onnx)") from exc
    return onnxruntime


def model_threads() -> int:
    """The threads a model's forward pass may use: torch's setting when torch is loaded (the
    pipeline and the Ray actors set it to share the CPUs with decoding), else the CPUs."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return max(1, int(torch.get_num_threads()))
    return cpu_cores()


def cpu_cores() -> int:
    """The CPUs this process may run on (its affinity), which is what a thread pool should use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


class OnnxEngine:
    """An ONNX graph in an ``onnxruntime.InferenceSession``.

    Image towers take one input (``pixels``); text towers take named token arrays
    (:meth:`run_inputs`). Outputs are float32 features, not normalised.
    """

    runtime = "onnx"

    def __init__(self, path: Path, device: Any = None, *, threads: int | None = None) -> None:
        ort = import_onnxruntime()
        self.path = Path(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or model_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the library never prints
        # Idle threads must sleep, not spin: the decode workers need those cores between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if getattr(device, "type", str(device)) == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelLoadError(
                f"{self.path}: onnxruntime cannot load this graph ({type(exc).__name__}: {exc}). Delete the file "
                "to export it again, or use another runtime: --runtime torch"
            ) from exc
        self.providers = self.session.get_providers()
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, pixels: Any) -> np.ndarray:
        """(B,3,H,W) float32 preprocessed -> (B, dim) float32 features, not normalised, in order."""
        return self.run_inputs({self.input_names[0]: as_numpy(pixels)})

    def run_inputs(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Named inputs (those the graph does not take are dropped) -> the first output as float32."""
        feed = {name: inputs[name] for name in self.input_names}
        out = self.session.run(None, feed)[0]
        return np.asarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        return f"OnnxEngine({self.path.name}, providers={self.providers})"
