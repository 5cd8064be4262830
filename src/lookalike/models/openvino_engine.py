"""OpenVINO engine: the exported ONNX graph compiled for the CPU.

fp32 is compiled with ``INFERENCE_PRECISION_HINT=f32``: OpenVINO's default on CPUs with
bf16 support is bf16, which moved lite's vectors to cosine 0.9997 of torch's, outside the
0.9999 that makes fp32 vectors interchangeable between runtimes.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingExtra, ModelLoadError
from .engine import as_numpy
from .onnx_engine import model_threads

__all__ = ["OpenVinoEngine", "import_openvino"]


def import_openvino() -> Any:
    """``openvino``, or MissingExtra naming the package (a core dependency)."""
    try:
        import openvino
    except ImportError as exc:
        raise MissingExtra("openvino", None, "the openvino runtime (--runtime openvino)") from exc
    return openvino


class OpenVinoEngine:
    """An ONNX graph compiled by OpenVINO for the CPU, with a dynamic batch axis.

    One infer request per thread: a request is not safe to share between threads.
    """

    runtime = "openvino"

    def __init__(self, path: Path, *, precision: str = "fp32", threads: int | None = None) -> None:
        ov = import_openvino()
        self.path = Path(path)
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": int(threads or model_threads()),
            "PERFORMANCE_HINT": "LATENCY",  # one request uses every core: batches come one at a time
        }
        try:
            core = ov.Core()
            self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError and its own types
            raise ModelLoadError(
                f"{self.path}: OpenVINO cannot compile this graph ({type(exc).__name__}: {exc}). "
                "Use another runtime: --runtime onnx or --runtime torch"
            ) from exc
        self.precision = precision
        self.input_names = [next(iter(p.get_names())) for p in self.compiled.inputs]
        self._local = threading.local()

    def _request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def run(self, pixels: Any) -> np.ndarray:
        """(B,3,H,W) float32 preprocessed -> (B, dim) float32 features, not normalised, in order."""
        return self.run_inputs({self.input_names[0]: as_numpy(pixels)})

    def run_inputs(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Named inputs (those the graph does not take are dropped) -> the first output as float32."""
        feed = {name: inputs[name] for name in self.input_names}
        result = self._request().infer(feed)
        out = result[self.compiled.outputs[0]]
        return np.array(out, dtype=np.float32)  # a copy: the request reuses its output buffer

    def __repr__(self) -> str:
        return f"OpenVinoEngine({self.path.name}, precision={self.precision})"
