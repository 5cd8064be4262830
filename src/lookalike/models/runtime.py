"""The runtime and precision vocabulary, checked strictly; no heavy imports.

A *runtime* is what runs a model's forward pass: ``torch`` (the model itself), ``onnx``
(ONNX Runtime on an exported graph) or ``openvino`` (the same graph through OpenVINO);
``auto`` measures them on this machine once and keeps the fastest (see :mod:`.autotune`).
A *precision* is ``fp32`` (vectors interchangeable across runtimes) or ``int8`` (a
statically quantized image tower, see :mod:`.quantize`).
"""

from __future__ import annotations

import difflib
import os

from ..errors import InvalidArgument

__all__ = ["RUNTIMES", "PRECISIONS", "default_runtime", "check_runtime", "check_precision"]

RUNTIMES = ("torch", "onnx", "openvino")
PRECISIONS = ("fp32", "int8")
#: What ``runtime=None`` means when ``$LOOKALIKE_RUNTIME`` is not set.
DEFAULT_RUNTIME = "auto"
ENV_RUNTIME = "LOOKALIKE_RUNTIME"


def default_runtime() -> str:
    """``$LOOKALIKE_RUNTIME`` if set (checked like an argument), else ``"auto"``."""
    value = os.environ.get(ENV_RUNTIME, "").strip()
    if not value:
        return DEFAULT_RUNTIME
    return _check(value, (*RUNTIMES, "auto"), "runtime", f"${ENV_RUNTIME}")


def check_runtime(runtime: str | None) -> str:
    """``runtime`` in its one spelling (``torch|onnx|openvino|auto``); None means :func:`default_runtime`.

    Raises:
        InvalidArgument: an unknown name, with the valid ones and the nearest spelling.
    """
    if runtime is None:
        return default_runtime()
    return _check(runtime, (*RUNTIMES, "auto"), "runtime", "runtime")


def check_precision(precision: str | None) -> str:
    """``precision`` in its one spelling (``fp32|int8``); None means ``fp32``.

    Raises:
        InvalidArgument: an unknown name, with the valid ones and the nearest spelling.
    """
    if precision is None:
        return "fp32"
    return _check(precision, PRECISIONS, "precision", "precision")


def _check(value: object, valid: tuple[str, ...], what: str, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{where} must be a string, one of {', '.join(valid)}; got {value!r}")
    name = value.strip().lower()
    if name in valid:
        return name
    near = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f" Did you mean '{near[0]}'?" if near else ""
    raise InvalidArgument(f"unknown {what} {value!r} (from {where}); use one of: {', '.join(valid)}.{hint}")
