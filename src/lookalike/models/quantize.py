"""Static int8 quantization of a model's image tower, calibrated on real images, cached.

The fp32 graph from :func:`.export.export_image_onnx` is quantized with ONNX Runtime's static
quantizer in QDQ form (QuantizeLinear/DequantizeLinear pairs around each quantized operator),
which both ONNX Runtime and OpenVINO compile into int8 kernels. The recipe (see :data:`RECIPE`
and ``docs/benchmarks.md`` for the figures behind each choice):

* activations uint8, asymmetric, each range the mean over the calibration batches of the
  batch's min and max;
  weights int8, symmetric, **per output channel** (per-tensor weights wreck depthwise
  convolutions after batch-norm folding: cosine to fp32 fell to 0.73 on ``lite``);
* shape arithmetic (:mod:`.onnx_shapes`) is folded into constants where the input size is
  fixed, and whatever is left of it stays float. TF-style "SAME" padding (``lite``'s
  EfficientNet) computes its pad widths from the input shape with float arithmetic; quantized,
  those widths come out wrong and the feature maps shift (cosine to fp32 0.92 instead of 0.98);
  folded, the runtimes plan static layouts (``lite`` int8 about 2x faster on ONNX Runtime and OpenVINO);
* each Conv's bias absorbs the mean shift its weight rounding causes (:mod:`.int8_bias`):
  mean cosine to fp32 0.982 -> 0.994 on ``lite``.

The result is deterministic: the same fp32 graph, calibration images (by content, in order)
and recipe give the same bytes. It is cached next to the fp32 export as
``image-int8-<runtime>-<digest>.onnx`` and carries its provenance in the ONNX metadata
(:func:`read_int8_metadata`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..errors import InvalidArgument, MissingExtra, ModelLoadError
from ..fsutil import atomic_writer
from ..images.decode import ImageSource
from ..pipeline.embed import Prepared, prepare_image
from ..pipeline.loader import ordered_map
from ..progress import ProgressCallback, ProgressEvent
from .onnx_shapes import fold_static_shapes, shape_only_nodes

if TYPE_CHECKING:
    from .base import EmbeddingModel
    from .int8_bias import ConvInputMeans

__all__ = ["RECIPE", "INT8_RUNTIMES", "MIN_CALIBRATION_IMAGES", "calibration_digest", "quantize_image_tower",
           "read_int8_metadata", "int8_path", "shape_only_nodes"]

#: Bump whenever the quantization recipe changes: it is part of an int8 model's fingerprint, and a
#: cached graph made with another recipe is quantized again.
RECIPE = 5
INT8_RUNTIMES = ("onnx", "openvino")
#: Fewer images than this give activation ranges too noisy to trust.
MIN_CALIBRATION_IMAGES = 16
#: Images per calibration batch. ONNX Runtime's calibrator runs the graph unoptimised, holding
#: every activation: lite with 300 images peaked at 3.7 GB of RSS in batches of 16, 1.6 GB in
#: batches of 4 (20% slower).
_BATCH = 4
#: ONNX Runtime calibrator options. An activation's range is the mean of its per-batch ranges
#: rather than the extremes over all images: the same mean cosine to fp32 on lite, and a better
#: worst image (0.84 -> 0.92). Not CalibMaxIntermediateOutputs: in onnxruntime <= 1.32 it throws
#: away every full group of batches instead of merging it (microsoft/onnxruntime#20226), so only
#: the last few images set the ranges; the per-batch results it would bound are a few numbers
#: per tensor anyway.
_CALIBRATION_OPTIONS: dict[str, Any] = {"CalibMovingAverage": True}
_META_PREFIX = "lookalike."
_HOW = ("int8 needs calibration images: a few hundred typical images of the collection "
        "(calibration=[paths], or --calibration FOLDER)")


# --------------------------------------------------------------------------- digest
def calibration_digest(images: Sequence[ImageSource]) -> str:
    """A short digest of the calibration images' contents, in order.

    Paths are hashed by their bytes, not their names, so a renamed or copied folder gives the
    same digest; the order counts (it is the order the images are fed to the calibrator).

    Raises:
        InvalidArgument: an image file cannot be read, or an item is not an image source.
    """
    h = hashlib.sha256(b"lookalike-calibration-1")
    for source in images:
        h.update(_source_digest(source))
    return h.hexdigest()[:16]


def _source_digest(source: ImageSource) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return hashlib.sha256(b"b" + bytes(source)).digest()
    if isinstance(source, (str, os.PathLike)):
        h = hashlib.sha256(b"b")  # a file hashes as its bytes would: same content, same digest
        try:
            with open(source, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as exc:
            raise InvalidArgument(f"{os.fspath(source)}: calibration image cannot be read ({exc.strerror or exc}); "
                                  "pass images that exist and are readable") from exc
        return h.digest()
    if hasattr(source, "tobytes") and hasattr(source, "mode"):  # a PIL image: its pixels
        header = f"p{source.mode}:{source.size[0]}x{source.size[1]}:".encode()
        return hashlib.sha256(header + source.tobytes()).digest()
    raise InvalidArgument(f"calibration images must be paths, encoded bytes or PIL images, not "
                          f"{type(source).__name__}")


# --------------------------------------------------------------------------- cache
def int8_path(model: "EmbeddingModel", runtime: str, digest: str) -> Path:
    """Where the int8 graph of ``model`` for ``runtime`` and calibration ``digest`` is cached."""
    from .export import onnx_dir

    return onnx_dir(model) / f"image-int8-{runtime}-{digest}.onnx"


def read_int8_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``lookalike.*`` metadata of an int8 graph: calibration, recipe, base, runtime.

    A graph made elsewhere (no lookalike metadata) gives an empty dict.

    Raises:
        InvalidArgument: no such file.
        ModelLoadError: the file is not an ONNX model.
    """
    onnx = _import("onnx")
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"{path}: no such int8 model file; {_HOW}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own decode errors
        raise ModelLoadError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc}); delete it and "
                             "quantize again from calibration images") from exc
    return {p.key: p.value for p in proto.metadata_props if p.key.startswith(_META_PREFIX)}


def _cache_hit(path: Path, wanted: dict[str, str]) -> bool:
    try:
        meta = read_int8_metadata(path)
    except (InvalidArgument, ModelLoadError):
        return False
    return all(meta.get(k) == v for k, v in wanted.items())


# --------------------------------------------------------------------------- quantize
def quantize_image_tower(model: "EmbeddingModel", images: Sequence[ImageSource], *, runtime: str,
                         progress: ProgressCallback | None = None) -> Path:
    """The int8 image tower of ``model`` for ``runtime``, calibrated on ``images``; quantized now
    unless the cache already holds it.

    ``images`` should be a few hundred typical images of the collection (paths, encoded bytes
    or PIL images); they are decoded and preprocessed with the model's own transform, a batch
    at a time. Images that cannot be decoded are skipped. ``progress`` receives ``"embed"``
    events (``reason="int8 calibration"``) as the images are run.

    Returns the path of the quantized ``.onnx`` (input ``pixels``, output ``features``).

    Raises:
        InvalidArgument: ``runtime`` is not onnx or openvino; fewer than
            :data:`MIN_CALIBRATION_IMAGES` images, or fewer that decode.
        ModelLoadError: the export or the quantization failed.
        MissingExtra: onnxruntime or onnx is not installed.
    """
    if runtime not in INT8_RUNTIMES:
        raise InvalidArgument(f"int8 graphs are made for the onnx or openvino runtime, not {runtime!r}: "
                              "use runtime='onnx' or runtime='openvino'")
    images = list(images)
    if len(images) < MIN_CALIBRATION_IMAGES:
        raise InvalidArgument(f"{len(images)} calibration images are too few for int8 (at least "
                              f"{MIN_CALIBRATION_IMAGES}; a few hundred are best); {_HOW}")
    from .export import export_image_onnx

    digest = calibration_digest(images)
    path = int8_path(model, runtime, digest)
    meta = {"lookalike.calibration": digest, "lookalike.recipe": str(RECIPE),
            "lookalike.base": model.fp32_fingerprint(), "lookalike.runtime": runtime}
    if _cache_hit(path, meta):
        return path
    _import("onnxruntime")
    onnx = _import("onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The graph does not depend on the runtime (only its label does): one quantized for the
    # other runtime from the same images is relabelled rather than calibrated again.
    twin = next((int8_path(model, other, digest) for other in INT8_RUNTIMES if other != runtime
                 and _cache_hit(int8_path(model, other, digest), {**meta, "lookalike.runtime": other})), None)
    work = Path(tempfile.mkdtemp(dir=path.parent, prefix=".int8."))
    try:
        if twin is not None:
            proto = onnx.load(str(twin))
        else:
            proto = _quantize(export_image_onnx(model), work, model, images, progress)
        del proto.metadata_props[:]
        for key, value in sorted(meta.items()):
            proto.metadata_props.add(key=key, value=value)
        with atomic_writer(path, durable=False) as f:
            f.write(proto.SerializeToString())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def _quantize(fp32: Path, work: Path, model: "EmbeddingModel", images: list[ImageSource],
              progress: ProgressCallback | None) -> Any:
    """Pre-process, calibrate, quantize and bias-correct the fp32 graph in ``work``; returns the
    int8 ModelProto."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .int8_bias import ConvInputMeans, correct_conv_biases

    folded, prepared, out = work / "folded.onnx", work / "prepared.onnx", work / "int8.onnx"
    reader: _Calibration | None = None
    try:
        with _quiet():
            # Pad widths and other shape arithmetic become constants where the input size is
            # fixed: the int8 kernels then get static layouts (lite: about 2x faster).
            onnx.save(fold_static_shapes(fp32)[0], str(folded))
            # Folds constants and records shapes: the quantizer then sees the graph it expects.
            quant_pre_process(str(folded), str(prepared), skip_symbolic_shape=True)
            input_name = _input_name(onnx, prepared)
            means = ConvInputMeans(prepared, input_name)
            reader = _Calibration(model, images, input_name, progress, means)
            quantize_static(
                str(prepared), str(out), reader,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=False,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=shape_only_nodes(prepared),
                extra_options=dict(_CALIBRATION_OPTIONS),
            )
            if reader.used < MIN_CALIBRATION_IMAGES:
                raise ValueError("too few images decoded")
            proto = onnx.load(str(out))
            correct_conv_biases(proto, onnx.load(str(prepared)), means.result())
    except Exception as exc:  # noqa: BLE001 - the quantizer raises anything from any op
        if reader is not None and reader.finished and reader.used < MIN_CALIBRATION_IMAGES:
            raise InvalidArgument(f"only {reader.used} of {len(images)} calibration images could be "
                                  f"decoded (at least {MIN_CALIBRATION_IMAGES} are needed); {_HOW}") from exc
        raise ModelLoadError(f"model '{model.model_id}': int8 quantization failed ({type(exc).__name__}: "
                             f"{str(exc).strip()[:300]}); use precision fp32 (--precision fp32)") from exc
    return proto


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over images decoded a batch at a time, in order.

    Decoding runs ahead in the pipeline's worker threads; only a bounded prefetch of
    preprocessed images is held, never the whole set.
    """

    def __init__(self, model: "EmbeddingModel", images: list[ImageSource], input_name: str,
                 progress: ProgressCallback | None, means: "ConvInputMeans"):
        self._model, self.images, self._input, self._progress = model, images, input_name, progress
        self._means = means
        self._batches: Iterator[np.ndarray] | None = None
        self.used = 0
        self.finished = False

    def _iterate(self) -> Iterator[np.ndarray]:
        transform, min_side = self._model.image_transform, self._model.preprocess.min_decode_side

        def prepare(item: tuple[int, ImageSource]) -> Prepared[int]:
            return prepare_image(item[0], item[1], transform, min_side=min_side, name=f"calibration image {item[0]}")

        total, done, batch = len(self.images), 0, []
        self.used, self.finished = 0, False
        self._means.reset()  # a second pass (after rewind) must not count its batches twice
        for p in ordered_map(prepare, enumerate(self.images), prefetch=2 * _BATCH):
            done += 1
            if p.pixels is not None:
                batch.append(p.pixels)
            if len(batch) == _BATCH or (done == total and batch):
                self.used += len(batch)
                pixels = np.stack(batch).astype(np.float32, copy=False)
                self._means.add(pixels)
                yield pixels
                batch = []
                if self._progress is not None:
                    self._progress(ProgressEvent("embed", done=done, total=total, reason="int8 calibration"))
        self.finished = True

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._batches is None:
            self._batches = self._iterate()
        batch = next(self._batches, None)
        return None if batch is None else {self._input: batch}

    def rewind(self) -> None:
        self._batches = None

    def set_range(self, start_index: int, end_index: int) -> None:  # the reader protocol's optional hook
        pass


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The library never prints: the quantizer logs its warnings to the root logger (which an
    application may show) and may print; its records are dropped, no one else's."""
    sink = io.StringIO()
    root = logging.getLogger()
    root.addFilter(_drop_onnxruntime_records)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(_drop_onnxruntime_records)


def _drop_onnxruntime_records(record: logging.LogRecord) -> bool:
    return f"onnxruntime{os.sep}quantization" not in record.pathname


def _input_name(onnx: Any, graph: Path) -> str:
    return onnx.load(str(graph), load_external_data=False).graph.input[0].name


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError as exc:
        raise MissingExtra(name, None, "int8 quantization (--precision int8)") from exc
