"""Putting a loaded model on its runtime and precision (what ``load_model`` does after loading).

fp32: ``torch`` runs the model itself; ``onnx``/``openvino`` export the image tower (and the
text tower) once and run the graph; ``auto`` measures once per machine (:mod:`.autotune`).
int8: the image tower is quantized (:mod:`.quantize`) for ``onnx`` or ``openvino`` from
calibration images, or taken from an int8 graph made before (what a collection keeps).
The engine is built here, not on the first batch, so a failed export or a missing
package is reported by ``load_model`` itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument, MissingExtra, ModelLoadError
from .runtime import check_precision, check_runtime

if TYPE_CHECKING:
    from ..images.decode import ImageSource
    from .base import EmbeddingModel

__all__ = ["configure", "check_settings"]

_INT8_RUNTIMES = ("onnx", "openvino")
_INT8_HOW = ("int8 needs calibration images: calibration=[image paths] (or a folder of images; "
             "--calibration FOLDER on the command line), or the path of an int8 .onnx made before")


def check_settings(runtime: str | None, precision: str | None, calibration: Any = None,
                   compile: bool = False) -> tuple[str, str]:
    """``(runtime, precision)`` in their one spelling, after refusing settings that do not go
    together; cheap, so ``load_model`` calls it before loading any weights.

    Raises:
        InvalidArgument: an unknown runtime or precision, int8 on torch or without calibration,
            ``compile`` on a runtime other than torch, calibration given for fp32.
    """
    explicit = runtime is not None
    runtime = check_runtime(runtime)
    precision = check_precision(precision)
    if precision == "int8" and runtime == "torch" and not explicit:
        runtime = "auto"  # $LOOKALIKE_RUNTIME=torch is a default; int8 cannot run there, so choose for it
    if compile and runtime in ("onnx", "openvino"):
        raise InvalidArgument(f"compile applies to the torch runtime, not {runtime}: drop --compile "
                              "(compile=False), or use --runtime torch")
    if precision == "int8":
        if runtime == "torch":
            raise InvalidArgument("precision int8 runs on the onnx or openvino runtime, not torch: "
                                  "use --runtime onnx, --runtime openvino or --runtime auto")
        if compile:
            raise InvalidArgument("compile applies to the torch runtime, and int8 runs on onnx or openvino: "
                                  "drop --compile (compile=False)")
        if calibration is None or (not isinstance(calibration, (str, os.PathLike)) and len(calibration) == 0):
            raise InvalidArgument(f"precision {_INT8_HOW}")
    elif calibration is not None:
        raise InvalidArgument("calibration images only apply to precision int8: drop --calibration, "
                              "or add --precision int8")
    return runtime, precision


def configure(model: "EmbeddingModel", *, runtime: str | None = None, precision: str | None = None,
              calibration: Any = None, compile: bool = False) -> "EmbeddingModel":
    """Set ``model``'s runtime and precision and build its engine; returns ``model``.

    Raises:
        InvalidArgument: as :func:`check_settings`.
        MissingExtra: the runtime's package is not installed.
        ModelLoadError: the export failed or does not match torch's vectors.
    """
    runtime, precision = check_settings(runtime, precision, calibration, compile)
    model.compile = bool(compile)
    if precision == "int8":
        return _configure_int8(model, runtime, calibration)
    if runtime == "auto":
        if compile or model.device.type != "cpu":
            runtime = "torch"  # compile is a torch feature; on a GPU torch's CUDA path is the one built for it
        else:
            from .autotune import measure

            model.measurement = measure(model, "fp32")
            runtime = model.measurement.choice
    model.runtime, model.precision = runtime, "fp32"
    model._engine = None
    model.engine  # noqa: B018 - build now: export and import failures belong to load_model
    return model


def _configure_int8(model: "EmbeddingModel", runtime: str, calibration: Any) -> "EmbeddingModel":
    quantize = _import_quantize()
    graph = _int8_graph_path(calibration)
    if graph is not None:
        chosen, path = _existing_int8(model, graph, runtime, quantize)
        paths = {chosen: path}
    else:
        images = _calibration_images(calibration)
        candidates = list(_INT8_RUNTIMES) if runtime == "auto" else [runtime]
        paths: dict[str, Path] = {}
        failures: list[Exception] = []
        for name in candidates:
            try:
                paths[name] = quantize.quantize_image_tower(model, images, runtime=name)
            except (MissingExtra, ModelLoadError) as exc:  # auto: the other runtime may still do
                if runtime != "auto":
                    raise
                failures.append(exc)
        if not paths:
            raise failures[0]
        chosen = next(iter(paths))
        if runtime == "auto" and len(paths) > 1 and model.device.type == "cpu":
            chosen = _measure_int8(model, paths, quantize)
    _set_int8(model, chosen, paths[chosen], quantize)
    return model


def _measure_int8(model: "EmbeddingModel", paths: dict[str, Path], quantize: Any) -> str:
    from .autotune import measure
    from .engine import build_image_engine

    digest = quantize.read_int8_metadata(next(iter(paths.values()))).get("lookalike.calibration")
    factories = {name: (lambda name=name, path=path: build_image_engine(model, name, path=path, precision="int8"))
                 for name, path in paths.items()}
    model.measurement = measure(model, "int8", calibration=digest, factories=factories)
    return model.measurement.choice


def _set_int8(model: "EmbeddingModel", runtime: str, path: Path, quantize: Any) -> None:
    meta = quantize.read_int8_metadata(path)
    model.runtime, model.precision, model.int8_path = runtime, "int8", Path(path)
    model.calibration = meta.get("lookalike.calibration") or None
    recipe = meta.get("lookalike.recipe")
    model.recipe = int(recipe) if recipe not in (None, "") else None
    model._engine = None
    model.engine  # noqa: B018 - build now, as for fp32


def _existing_int8(model: "EmbeddingModel", graph: Path, runtime: str, quantize: Any) -> tuple[str, Path]:
    """Check an int8 graph made before belongs to ``model`` and say which runtime it was made for."""
    if not graph.is_file():
        raise InvalidArgument(f"{graph}: no such int8 model file; {_INT8_HOW}")
    meta = quantize.read_int8_metadata(graph)
    base = meta.get("lookalike.base")
    if base and base != model.fp32_fingerprint():
        raise ModelLoadError(
            f"{graph}: this int8 model was quantized from another model or other weights (fingerprint {base}, "
            f"but '{model.model_id}' now has {model.fp32_fingerprint()}); quantize again from calibration images")
    made_for = meta.get("lookalike.runtime") or _runtime_from_name(graph)
    if made_for is None:
        made_for = runtime if runtime != "auto" else "onnx"
    if runtime not in ("auto", made_for):
        raise InvalidArgument(f"{graph}: this int8 model was made for the {made_for} runtime, and its vectors "
                              f"differ on {runtime}; use --runtime {made_for} (or auto)")
    return made_for, graph


def _runtime_from_name(path: Path) -> str | None:
    m = re.match(r"image-int8-(onnx|openvino)-", path.name)
    return m.group(1) if m else None


def _int8_graph_path(calibration: Any) -> Path | None:
    if isinstance(calibration, (str, os.PathLike)) and str(calibration).lower().endswith(".onnx"):
        return Path(calibration).expanduser()
    return None


def _calibration_images(calibration: Any) -> "list[ImageSource]":
    """Calibration images from a list, or from a folder (its images, sorted, recursively)."""
    if isinstance(calibration, (str, os.PathLike)):
        folder = Path(calibration).expanduser()
        if not folder.is_dir():
            raise InvalidArgument(f"{folder}: calibration must be a folder of images, a list of images or "
                                  f"an int8 .onnx file; {_INT8_HOW}")
        from ..images.discover import is_image_name

        images: list[ImageSource] = sorted(p for p in folder.rglob("*") if is_image_name(p.name) and p.is_file())
    else:
        images = list(calibration)
    if not images:
        raise InvalidArgument(f"no calibration images given; {_INT8_HOW}")
    return images


def _import_quantize() -> Any:
    try:
        from . import quantize
    except ImportError as exc:
        if isinstance(exc, MissingExtra):
            raise
        raise ModelLoadError(f"precision int8 is not available: {exc}; use --precision fp32") from exc
    return quantize
