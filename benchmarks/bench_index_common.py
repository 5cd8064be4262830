"""Shared pieces of ``bench_index.py`` (issue 12): model variants, data, calibration, tables.

A *variant* is a (runtime, precision) pair of one model, loaded through the public API
(``lookalike.load_model(name, runtime=, precision=, calibration=)``). A variant this checkout
cannot load (the runtime is not installed, the API is older) is reported as unavailable with
the reason, never silently replaced by another.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The repository root, for tools/ (helper modules that are not part of the installed package).
sys.path.insert(0, str(ROOT))

from tools import bench_data, samples  # noqa: E402

import lookalike  # noqa: E402
from lookalike.images.decode import decode_image  # noqa: E402
from lookalike.pipeline.loader import ordered_map  # noqa: E402

#: Images in an int8 calibration sample: what a collection takes from its own images.
CALIBRATION_IMAGES = 300


class Unavailable(Exception):
    """A variant or decoder this checkout cannot run here; the message says why."""


@dataclass(frozen=True)
class Variant:
    """One way to run the model: a runtime and a precision ("default" = the library's choice)."""

    runtime: str
    precision: str = "fp32"

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.precision}"

    @classmethod
    def parse(cls, text: str) -> "Variant":
        runtime, _, precision = text.strip().partition("/")
        return cls(runtime, precision or "fp32")


@dataclass
class Loaded:
    """A loaded variant, with what the library resolved it to."""

    variant: Variant
    model: Any
    load_s: float
    runtime: str  # resolved (auto -> its choice)
    notes: list[str] = field(default_factory=list)


def set_threads(threads: int) -> None:
    """Torch's intra-op threads (ONNX Runtime and OpenVINO take theirs from the library's defaults)."""
    import torch

    torch.set_num_threads(threads)


def load_variant(name: str, device: str, variant: Variant, calibration: Sequence[Any] | None) -> Loaded:
    """Load ``name`` as ``variant``; int8 is calibrated on ``calibration`` (cached by the library).

    Raises:
        Unavailable: the runtime or precision cannot be loaded here (the reason is kept).
    """
    kwargs: dict[str, Any] = {}
    if variant.runtime != "default":
        kwargs["runtime"] = variant.runtime
    if variant.precision != "default":
        kwargs["precision"] = variant.precision
    if variant.precision == "int8":
        kwargs["calibration"] = list(calibration or [])
    t0 = time.perf_counter()
    try:
        model = lookalike.load_model(name, device=device, **kwargs)
    except TypeError as exc:
        if "unexpected keyword" not in str(exc):
            raise
        if variant.runtime not in ("torch", "default") or variant.precision not in ("fp32", "default"):
            raise Unavailable(f"load_model() takes no runtime=/precision= in this checkout ({exc})") from exc
        model = lookalike.load_model(name, device=device)  # today's API: torch fp32 is all there is
    except (lookalike.LookalikeError, ImportError, OSError, RuntimeError) as exc:
        raise Unavailable(f"{type(exc).__name__}: {exc}") from exc
    loaded = Loaded(variant, model, time.perf_counter() - t0, str(getattr(model, "runtime", "torch")))
    precision = str(getattr(model, "precision", "fp32"))
    if variant.precision not in ("default", precision):
        raise Unavailable(f"asked for {variant.precision}, the library loaded {precision}")
    measurement = getattr(model, "measurement", None)
    if measurement is not None:
        rates = ", ".join(f"{k} {v:.0f}" for k, v in sorted(getattr(measurement, "rates", {}).items()))
        loaded.notes.append(f"auto measured {rates} img/s -> {getattr(measurement, 'choice', '?')}")
    return loaded


def decoder_supported() -> bool:
    """Whether ``decode_image`` takes ``decoder=`` (libvips decoding landed)."""
    return "decoder" in inspect.signature(decode_image).parameters


def check_decoder(decoder: str) -> None:
    """Raise :class:`Unavailable` unless ``decoder`` ("pillow", "vips" or "default") works here."""
    if decoder == "default":
        return
    if not decoder_supported():
        if decoder == "pillow":
            return  # today's decode_image is Pillow
        raise Unavailable("decode_image() takes no decoder= in this checkout (libvips decoding not landed)")
    probe = samples.clipart_files()[0].read_bytes()
    try:
        decode_image(probe, decoder=decoder)
    except (lookalike.LookalikeError, ImportError, OSError) as exc:
        raise Unavailable(f"decoder {decoder}: {type(exc).__name__}: {exc}") from exc


def decode_kwargs(decoder: str) -> dict[str, str]:
    """``decode_image`` keyword arguments that select ``decoder``."""
    return {"decoder": decoder} if decoder != "default" and decoder_supported() else {}


# --------------------------------------------------------------------------- data
def photo_folder(args: Any) -> list[Path]:
    """The benchmark's camera-size JPEGs (built and cached by tools/bench_data.py)."""
    return sorted(bench_data.make_photo_folder(args.data / f"photos-{args.photos}", n=args.photos))


def clipart_folder(args: Any) -> list[Path]:
    """The benchmark's clip-art PNGs (copied and cached by tools/bench_data.py)."""
    return sorted(bench_data.make_clipart_folder(args.data / f"clipart-{args.clipart}", n=args.clipart))


def folder_root(files: Sequence[Path]) -> Path:
    """The folder that holds all of ``files``."""
    return Path(os.path.commonpath([str(f) for f in files]))


def labelled_clipart(per_class: int, seed: int = 0) -> tuple[list[Path], list[str]]:
    """The labelled clip art of ``bench_quality.py`` (35 categories of >= 20): paths and labels.

    A smaller ``per_class`` keeps the same categories (for quick checks)."""
    data = samples.clipart_labelled(per_class=per_class, min_class_size=max(20, per_class), seed=seed)
    return [p for ps in data.values() for p in ps], [lab for lab, ps in data.items() for _ in ps]


def spread(files: Sequence[Path], n: int = CALIBRATION_IMAGES) -> list[Path]:
    """``n`` of ``files`` evenly spread over their sorted order (deterministic)."""
    files = sorted(files)
    if len(files) <= n:
        return list(files)
    step = len(files) / n
    return [files[int(i * step)] for i in range(n)]


def digest(paths: Sequence[Path]) -> str:
    """A short name for a list of files (to say which calibration sample was used)."""
    return hashlib.blake2b("\n".join(map(str, paths)).encode(), digest_size=4).hexdigest()


def warm_page_cache(files: Sequence[Path]) -> float:
    """Read every file once, so no timed run pays for the disk; returns MB read."""
    return sum(len(f.read_bytes()) for f in files) / 1e6


def prepare_pixels(model: Any, files: Sequence[Path], workers: int, decoder: str = "pillow") -> np.ndarray:
    """Decode and preprocess ``files`` as the pipeline does; ``(N, 3, H, W)`` float32."""
    transform, min_side = model.image_transform, model.preprocess.min_decode_side
    kwargs = decode_kwargs(decoder)

    def prepare(path: Path) -> np.ndarray:
        return transform(decode_image(path, min_side=min_side, name=str(path), **kwargs).image)

    return np.stack(list(ordered_map(prepare, list(files), workers=workers, prefetch=64)))


def embed_all(model: Any, pixels: np.ndarray, batch: int) -> np.ndarray:
    """L2-normalised vectors of preprocessed ``pixels``, in batches."""
    return np.concatenate([model.embed_pixels(pixels[i : i + batch]) for i in range(0, len(pixels), batch)])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (N, d) arrays."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def abba(items: Sequence[Any], rounds: int) -> list[Any]:
    """Run order over ``rounds``: forwards, then backwards, ... (drifting load hits every item)."""
    order: list[Any] = []
    for r in range(rounds):
        order.extend(items if r % 2 == 0 else list(reversed(items)))
    return order


# --------------------------------------------------------------------------- output
def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (the format docs/benchmarks.md uses)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(value: float | None, target: float, *, at_most: bool = False) -> str:
    """'met' / 'NOT met' / 'n/a' for a figure against its target."""
    if value is None or not np.isfinite(value):
        return "n/a"
    ok = value <= target if at_most else value >= target
    return "met" if ok else "NOT met"


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing."""
    return None if a is None or b is None or b == 0 else a / b


def fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def save_json(path: Path | None, part: str, result: dict[str, Any]) -> None:
    """Merge ``result`` under ``part`` into the JSON file at ``path`` (figures for the docs)."""
    if path is None:
        return
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[part] = result
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out
