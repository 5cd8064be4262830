"""Preprocessing, built from the config a model carries.

A model owns one :class:`PreprocessConfig`; indexing and query time both build their
transform from it with :func:`build_transform`, so the two can never drift apart. The
config is also part of the model fingerprint stored in a collection's manifest.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from numbers import Integral, Real
from typing import Any, Callable, Literal

import numpy as np
from PIL import Image

from ..errors import InvalidArgument

__all__ = ["PreprocessConfig", "build_transform", "ResizeMode", "Interpolation"]

ResizeMode = Literal["letterbox", "crop", "squash"]
Interpolation = Literal["bicubic", "bilinear", "lanczos", "nearest"]

_PIL_FILTERS: dict[str, Image.Resampling] = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class PreprocessConfig:
    """How an RGB image becomes the model's input tensor.

    Attributes:
        size: side of the square input, in pixels.
        resize_mode: ``"letterbox"`` scales the long side to ``size`` and pads the rest (nothing
            is cropped away); ``"crop"`` scales the short side to ``size / crop_pct`` and takes
            the centre square; ``"squash"`` resizes to ``size x size`` ignoring aspect ratio.
        crop_pct: fraction of the short side kept by ``"crop"``.
        interpolation: resampling filter.
        mean, std: per-channel normalisation applied to pixels scaled to [0, 1].
        fill: RGB padding colour for ``"letterbox"``; ``None`` pads with the mean colour, which
            normalises to zero.
    """

    size: int = 224
    resize_mode: ResizeMode = "crop"
    crop_pct: float = 0.875
    interpolation: Interpolation = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    fill: tuple[int, int, int] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.resize_mode not in ("letterbox", "crop", "squash"):
            raise InvalidArgument(f"resize_mode must be letterbox, crop or squash, not {self.resize_mode!r}")
        if self.interpolation not in _PIL_FILTERS:
            raise InvalidArgument(f"interpolation must be one of {sorted(_PIL_FILTERS)}, not {self.interpolation!r}")
        if not isinstance(self.crop_pct, Real) or not 0.0 < self.crop_pct <= 1.0:
            raise InvalidArgument(f"crop_pct must be in (0, 1], not {self.crop_pct}")
        if not isinstance(self.size, Integral) or isinstance(self.size, bool) or self.size < 1:
            raise InvalidArgument(f"size must be a positive integer, not {self.size!r}")
        object.__setattr__(self, "size", int(self.size))  # numpy integers do not serialise to JSON
        # Lists (from JSON, or written by hand) become tuples, so configs compare equal after a
        # round trip and stay hashable; the values themselves are kept as given.
        for name in ("mean", "std"):
            value = _triple(name, getattr(self, name), Real)
            if not all(math.isfinite(v) for v in value):
                raise InvalidArgument(f"{name} must be finite, not {value}")
            object.__setattr__(self, name, value)
        if any(v <= 0 for v in self.std):
            raise InvalidArgument(f"std must be positive, not {self.std}")
        if self.fill is not None:
            fill = _triple("fill", self.fill, Integral)
            if not all(0 <= v <= 255 for v in fill):
                raise InvalidArgument(f"fill must be RGB values in 0..255, not {fill}")
            object.__setattr__(self, "fill", fill)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form, stored in collection manifests."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessConfig":
        """Inverse of :meth:`to_dict`."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise InvalidArgument(f"unknown preprocessing settings: {sorted(unknown)}")
        return cls(**data)

    @property
    def min_decode_side(self) -> int:
        """The smallest short side a decoder may reduce an image to without losing detail.

        JPEG draft mode uses this to decode large photos at 1/2, 1/4 or 1/8 scale.
        """
        if self.resize_mode == "crop":
            return int(np.ceil(self.size / self.crop_pct))
        return self.size


def _triple(name: str, value: Any, kind: type) -> tuple[Any, Any, Any]:
    """``value`` as a 3-tuple of ``kind`` numbers (bools refused), else InvalidArgument."""
    try:
        items = tuple(value)
    except TypeError:
        raise InvalidArgument(f"{name} must be 3 numbers, not {value!r}") from None
    if len(items) != 3 or not all(isinstance(v, kind) and not isinstance(v, bool) for v in items):
        raise InvalidArgument(f"{name} must be 3 {'integers' if kind is Integral else 'numbers'}, not {value!r}")
    return items  # type: ignore[return-value]


def build_transform(cfg: PreprocessConfig) -> Callable[[Image.Image], np.ndarray]:
    """Return a function mapping an RGB PIL image to a float32 ``(3, size, size)`` array."""
    resample = _PIL_FILTERS[cfg.interpolation]
    size = cfg.size
    mean = np.asarray(cfg.mean, dtype=np.float32).reshape(3, 1, 1) * 255.0
    inv_std = 1.0 / (np.asarray(cfg.std, dtype=np.float32).reshape(3, 1, 1) * 255.0)
    fill = cfg.fill if cfg.fill is not None else tuple(int(round(m * 255)) for m in cfg.mean)

    def resize(img: Image.Image) -> Image.Image:
        w, h = img.size
        if cfg.resize_mode == "squash":
            return img.resize((size, size), resample)
        if cfg.resize_mode == "letterbox":
            scale = size / max(w, h)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            canvas = Image.new("RGB", (size, size), fill)
            canvas.paste(img.resize((nw, nh), resample), ((size - nw) // 2, (size - nh) // 2))
            return canvas
        scaled = size / cfg.crop_pct
        scale = scaled / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        left, top = (nw - size) // 2, (nh - size) // 2
        # Resizing straight into the crop box saves resampling pixels that would be thrown away.
        box = (left / scale, top / scale, (left + size) / scale, (top + size) / scale)
        return img.resize((size, size), resample, box=box)

    def transform(img: Image.Image) -> np.ndarray:
        if img.mode != "RGB":
            img = img.convert("RGB")
        arr = np.asarray(resize(img), dtype=np.float32).transpose(2, 0, 1)
        return (arr - mean) * inv_std

    return transform
