"""The model's preprocessing (:class:`PreprocessConfig`) on decoded image tensors, on their device.

Used by :mod:`.gpu_decode` after the device decoded a batch of JPEGs. It mirrors
:func:`lookalike.images.transforms.build_transform` as exactly as torch allows: the same output
sizes, offsets, fill and normalisation, and PIL's resampling (torch's ``antialias=True`` kernels
are PIL's; the horizontal pass is rounded to 8 bits before the vertical one, as PIL does), so on
the same decoded pixels the two differ by a small fraction of an 8-bit level on average.
``lanczos`` has no torch kernel and is done as bicubic.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..images.transforms import PreprocessConfig

__all__ = ["DevicePreprocess", "orient"]

_MODES = {"bicubic": "bicubic", "bilinear": "bilinear", "lanczos": "bicubic", "nearest": "nearest-exact"}


class DevicePreprocess:
    """``PreprocessConfig`` applied to decoded ``(3, H, W)`` uint8 tensors on their device.

    Mirrors :func:`lookalike.images.transforms.build_transform`: same output sizes, offsets,
    fill and normalisation; resampled values are rounded and clipped to 0..255 as PIL's
    8-bit output is.
    """

    def __init__(self, cfg: PreprocessConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.mode = _MODES[cfg.interpolation]
        fill = cfg.fill if cfg.fill is not None else tuple(int(round(m * 255)) for m in cfg.mean)
        mean = torch.tensor(cfg.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0
        # (x - mean) / std as one multiply-add: x * inv_std + bias
        self.inv_std = 1.0 / (torch.tensor(cfg.std, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0)
        self.bias = -mean * self.inv_std
        self.fill_norm = (torch.tensor(fill, dtype=torch.float32, device=device).view(1, 3, 1, 1) - mean) * self.inv_std

    def _resize(self, x: torch.Tensor, h: int, w: int, scale: float | None = None) -> torch.Tensor:
        """Resample float ``(n, 3, H, W)`` to ``(h, w)``; with ``scale``, map pixels at exactly that
        scale (the output is then ``floor(side * scale)``), as PIL does inside a crop box.

        Like PIL: horizontal pass, rounded to 8 bits, then vertical pass, rounded again. The
        intermediate rounding is what brings the result from within 1 level to nearly exact.
        """
        if scale is None and (h, w) == tuple(x.shape[-2:]):
            return x
        interpolate = torch.nn.functional.interpolate
        if self.mode == "nearest-exact":  # no filter, so no intermediate rounding to mimic
            if scale is None:
                return interpolate(x, size=(h, w), mode=self.mode)
            return interpolate(x, scale_factor=(scale, scale), mode=self.mode, recompute_scale_factor=False)
        kw: dict[str, Any] = {"mode": self.mode, "antialias": True, "align_corners": False}
        if scale is None:
            if w != x.shape[-1]:
                x = interpolate(x, size=(x.shape[-2], w), **kw).round_().clamp_(0, 255)
            if h != x.shape[-2]:
                x = interpolate(x, size=(h, w), **kw).round_().clamp_(0, 255)
            return x
        x = interpolate(x, scale_factor=(1.0, scale), recompute_scale_factor=False, **kw).round_().clamp_(0, 255)
        return interpolate(x, scale_factor=(scale, 1.0), recompute_scale_factor=False, **kw).round_().clamp_(0, 255)

    def _geometry(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Float ``(n, 3, H, W)`` images of one size -> the resampled 0..255 pixels and the
        ``(top, left)`` where they go in the ``size x size`` input."""
        size, cfg = self.cfg.size, self.cfg
        h, w = x.shape[-2:]
        if cfg.resize_mode == "squash":
            return self._resize(x, size, size), 0, 0
        if cfg.resize_mode == "letterbox":
            scale = size / max(w, h)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            return self._resize(x, nh, nw), (size - nh) // 2, (size - nw) // 2
        # The CPU path resizes the crop box straight to size x size at this scale; resizing the
        # whole image at exactly that scale and cutting the box out samples the same source
        # positions (src = (dst + 0.5) / scale).
        scale = size / cfg.crop_pct / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        left, top = (nw - size) // 2, (nh - size) // 2
        return self._resize(x, nh, nw, scale)[:, :, top : top + size, left : left + size], 0, 0

    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decoded ``(3, H, W)`` uint8 images (any sizes) -> ``(n, 3, size, size)`` float32, in order.

        Images of one size are resampled together; each result is normalised straight into its
        place in the output (one fused multiply-add), so an image costs a handful of kernels.
        """
        size = self.cfg.size
        out = torch.empty((len(images), 3, size, size), dtype=torch.float32, device=self.device)
        if self.cfg.resize_mode == "letterbox":
            out.copy_(self.fill_norm.expand_as(out))
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(tuple(img.shape[-2:]), []).append(i)
        for idx in groups.values():
            batch = torch.stack([images[i] for i in idx]) if len(idx) > 1 else images[idx[0]][None]
            pixels, top, left = self._geometry(batch.float())
            h, w = pixels.shape[-2:]
            if len(idx) == 1:
                i = idx[0]
                torch.addcmul(self.bias, pixels, self.inv_std, out=out[i : i + 1, :, top : top + h, left : left + w])
            else:
                rows = torch.tensor(idx, device=self.device)
                out[rows, :, top : top + h, left : left + w] = torch.addcmul(self.bias, pixels, self.inv_std)
        return out


def orient(img: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1-8) to a ``(C, H, W)`` tensor, as PIL's ``exif_transpose``."""
    if orientation == 2:
        return img.flip(2)
    if orientation == 3:
        return img.flip(1, 2)
    if orientation == 4:
        return img.flip(1)
    if orientation == 5:
        return img.transpose(1, 2)
    if orientation == 6:
        return img.rot90(-1, (1, 2))
    if orientation == 7:
        return img.transpose(1, 2).flip(1, 2)
    if orientation == 8:
        return img.rot90(1, (1, 2))
    return img
