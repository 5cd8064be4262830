"""ONNX export of a model's towers, on first use, cached and checked against torch.

The graphs live under ``cache_dir()/onnx/<fp32 fingerprint>/`` (``image-fp32.onnx``,
``text-fp32.onnx``): the fingerprint changes with the weights and preprocessing, so a stale
export is never reused. Each export runs torch's TorchScript-based exporter (a second or
so for ``lite``; the dynamo exporter was slower and fussier), with a dynamic batch axis,
then is run on a probe batch that differs from the one it was traced with and compared to
torch: any vector below cosine 0.9999 refuses the export, so an fp32 runtime never
silently changes a collection's vectors. Files are written to a temporary folder and
renamed into place, so a crash or a second process never leaves half a graph behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from ..errors import MissingExtra, ModelLoadError
from .cache import cache_dir

if TYPE_CHECKING:
    from .base import EmbeddingModel

__all__ = ["export_image_onnx", "export_text_onnx", "onnx_dir", "MIN_COSINE", "OPSET", "image_probe",
           "PROBE_TEXTS"]

#: fp32 vectors from an exported graph must stay this close to torch's (cosine, every vector).
MIN_COSINE = 0.9999
OPSET = 17
#: Texts an exported text tower is traced with (the first two) and checked on (all of them):
#: different batch sizes and lengths, so the dynamic axes are exercised too.
PROBE_TEXTS = ("a photo of a dog", "a red apple on a wooden table in the morning sun", "bicycle",
               "a snowy mountain landscape with a lake")
_FIX = "use the torch runtime instead (--runtime torch, or runtime='torch')"


def onnx_dir(model: "EmbeddingModel") -> Path:
    """The folder holding ``model``'s exported graphs (keyed by its fp32 fingerprint)."""
    return cache_dir() / "onnx" / model.fp32_fingerprint()


def image_probe(model: "EmbeddingModel", batch: int, seed: int = 0) -> torch.Tensor:
    """A deterministic preprocessed batch that looks like images (smooth colour blocks plus
    a little noise), normalised with the model's own mean and std."""
    size = model.preprocess.size
    rng = np.random.default_rng(seed)
    blocks = torch.from_numpy(rng.random((batch, 3, 8, 8), dtype=np.float32))
    img = torch.nn.functional.interpolate(blocks, size=(size, size), mode="bilinear", align_corners=False)
    img = (img + torch.from_numpy(rng.normal(0, 0.03, img.shape).astype(np.float32))).clamp(0, 1)
    mean = torch.tensor(model.preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.preprocess.std).view(1, 3, 1, 1)
    return ((img - mean) / std).contiguous()


def export_image_onnx(model: "EmbeddingModel") -> Path:
    """The fp32 image tower of ``model`` as ONNX (``pixels`` -> ``features``), exported now if needed.

    Raises:
        ModelLoadError: the export failed or its vectors are not within cosine 0.9999 of torch's.
        MissingExtra: neither onnxruntime nor openvino is installed to check the export.
    """
    path = onnx_dir(model) / "image-fp32.onnx"
    if _cached(path):
        return path
    module = model.image_module()
    device = model.device
    trace = (image_probe(model, 2, seed=0).to(device),)
    check = image_probe(model, 3, seed=1)

    def reference() -> np.ndarray:
        batch = check.to(device)
        if model.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return module(batch).float().cpu().numpy()

    _export(module, trace, path, ["pixels"], {"pixels": {0: "batch"}}, model.model_id, "image",
            reference, {"pixels": check.numpy()})
    return path


def export_text_onnx(model: "EmbeddingModel") -> Path:
    """The fp32 text tower of ``model`` as ONNX (token arrays -> ``features``), exported now if needed.

    Tokenisation stays in Python (:meth:`EmbeddingModel.tokenize_text`); the graph takes its
    arrays by name.

    Raises:
        UnsupportedModality: the model has no text tower.
        ModelLoadError, MissingExtra: as :func:`export_image_onnx`.
    """
    path = onnx_dir(model) / "text-fp32.onnx"
    if _cached(path):
        return path
    module = model.text_module()
    traced_inputs = model.tokenize_text(list(PROBE_TEXTS[:2]))
    names = list(traced_inputs)
    axes = {n: ({0: "batch", 1: "tokens"} if model.text_dynamic_length else {0: "batch"}) for n in names}
    trace = tuple(torch.from_numpy(traced_inputs[n]).to(model.device) for n in names)

    def reference() -> np.ndarray:
        return model._forward_text(list(PROBE_TEXTS)).float().cpu().numpy()

    _export(module, trace, path, names, axes, model.model_id, "text", reference,
            model.tokenize_text(list(PROBE_TEXTS)))
    return path


def _cached(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
            axes: dict[str, dict[int, str]], model_id: str, tower: str, reference: Callable[[], np.ndarray],
            check_inputs: dict[str, np.ndarray]) -> None:
    """Export into a temporary folder next to ``path``, check it, then rename it into place."""
    module.eval()  # the exporter restores the mode it found, recursively: it must find eval
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.stem}."))
    try:
        graph = tmp / path.name
        try:
            _run_exporter(module, args, graph, input_names, {**axes, "features": {0: "batch"}})
        except Exception as exc:  # noqa: BLE001 - the exporter raises anything from any op
            raise ModelLoadError(
                f"model '{model_id}': its {tower} tower could not be exported to ONNX "
                f"({type(exc).__name__}: {_first_line(exc)}); {_FIX}") from exc
        if tower == "image" and len(list(tmp.iterdir())) == 1:  # one file: no external weights to carry
            _fold_shapes(graph)
        with torch.inference_mode():
            expected = reference()
        got = _run_graph(graph, check_inputs)
        cos = _cosines(expected, got)
        if got.shape != expected.shape or not np.all(cos >= MIN_COSINE):
            worst = float(cos.min()) if cos.size else float("nan")
            raise ModelLoadError(
                f"model '{model_id}': the ONNX export of its {tower} tower does not reproduce torch's vectors "
                f"(shape {got.shape} vs {expected.shape}, worst cosine {worst:.6f} < {MIN_COSINE}); {_FIX}")
        _commit(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fold_shapes(graph: Path) -> None:
    """Shape arithmetic fixed by the image size becomes constants (see :mod:`.onnx_shapes`):
    the same vectors, and ONNX Runtime then merges lite's TF-style pads into its convolutions
    (fp32 about 1.35x faster)."""
    try:
        import onnx

        from .onnx_shapes import fold_static_shapes

        folded, count = fold_static_shapes(graph)
    except ImportError:  # folding runs the graph on ONNX Runtime: without it the graph stays as exported
        return
    if count:
        onnx.save(folded, str(graph))


def _run_exporter(module: torch.nn.Module, args: tuple[torch.Tensor, ...], graph: Path,
                  input_names: list[str], axes: dict[str, dict[int, str]]) -> None:
    # The library never prints: the exporter warns (deprecation, tracer) and may print.
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
            _mha_fastpath_off():
        warnings.simplefilter("ignore")
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(module, args, str(graph), dynamo=False, input_names=input_names,
                              output_names=["features"], dynamic_axes=axes, opset_version=OPSET,
                              do_constant_folding=True)


@contextlib.contextmanager
def _mha_fastpath_off() -> Any:
    """nn.MultiheadAttention's inference fast path is one fused op ONNX has no export for
    (open_clip's towers use it); the ordinary path exports as plain matmuls and softmax."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    was = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(was)


def _run_graph(graph: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Run ``graph`` on the CPU with whichever runtime is installed (onnxruntime first)."""
    try:
        from .onnx_engine import OnnxEngine, import_onnxruntime

        import_onnxruntime()
        engine: Any = OnnxEngine(graph, "cpu")
    except MissingExtra:
        from .openvino_engine import OpenVinoEngine

        try:
            engine = OpenVinoEngine(graph)
        except MissingExtra as exc:
            raise MissingExtra("onnxruntime", None, "checking an ONNX export") from exc
    return engine.run_inputs(inputs)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.shape != b.shape:
        return np.zeros(0)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    den = np.maximum(np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1), 1e-30)
    return (a64 * b64).sum(axis=1) / den


def _commit(tmp: Path, path: Path) -> None:
    """Move the checked export into place: external data files first, the graph last (its
    presence is what makes the export count as done)."""
    graph = tmp / path.name
    others = [f for f in tmp.iterdir() if f != graph]
    if others:  # a graph over 2 GB: the exporter wrote one file per tensor; gather them into one
        import onnx

        proto = onnx.load(str(graph))
        packed = tmp / "packed"
        packed.mkdir()
        onnx.save_model(proto, str(packed / path.name), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=f"{path.name}.data")
        os.replace(packed / f"{path.name}.data", path.parent / f"{path.name}.data")
        graph = packed / path.name
    os.replace(graph, path)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else "no message"
