"""``timm:`` models: DINOv2, ConvNeXt, ResNet and every other timm image model.

The embedding is the model's pooled feature (``num_classes=0``). Preprocessing comes from
the model's own pretrained config through timm's ``resolve_data_config``. Image only: a text
query raises :class:`~lookalike.errors.UnsupportedModality`.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError, UnknownModel
from ..images.transforms import PreprocessConfig
from .base import EmbeddingModel, load_failure, local_folder_identity
from .names import ModelSpec

__all__ = ["TimmModel", "preprocess_from_timm"]


#: Every file timm's local-dir loader may take its weights from.
_CHECKPOINT_GLOBS = ("*.safetensors", "*.bin", "*.pth", "*.pth.tar")
#: Architectures (by name) that gain nothing from channels_last.
_TRANSFORMER_MARKERS = ("vit", "deit", "eva", "swin", "dinov2", "beit")


def _unknown_name_message(timm: Any, name: str) -> str:
    """Why ``name`` is not a timm model or pretrained tag, with the closest valid spellings."""
    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        near = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        return f"timm has no model '{arch}'." + (f" Did you mean {', '.join(near)}?" if near else "")
    tags = [t.partition(".")[2] for t in timm.list_pretrained(f"{arch}.*")]
    near = difflib.get_close_matches(tag, tags, n=1, cutoff=0.6)
    return (f"timm has no pretrained tag '{tag}' for {arch}."
            + (f" Did you mean 'timm:{arch}.{near[0]}'?" if near else "")
            + (f" Tags for {arch}: {', '.join(tags)}" if tags else f" {arch} has no pretrained weights."))


def preprocess_from_timm(cfg: dict[str, Any]) -> PreprocessConfig:
    """Translate timm's resolved data config (input_size, crop_pct, crop_mode...) into ours."""
    _, h, w = cfg.get("input_size", (3, 224, 224))
    if h != w:
        raise ModelLoadError(f"non-square timm input size {h}x{w} is not supported")
    crop_mode = cfg.get("crop_mode", "center")
    crop_pct = float(cfg.get("crop_pct", 0.875))
    return PreprocessConfig(
        size=int(h),
        resize_mode="squash" if crop_mode == "squash" else ("letterbox" if crop_mode == "border" else "crop"),
        crop_pct=min(1.0, crop_pct),
        interpolation=cfg.get("interpolation", "bicubic") if cfg.get("interpolation") in
        ("bicubic", "bilinear", "nearest", "lanczos") else "bicubic",
        mean=tuple(float(x) for x in cfg.get("mean", (0.485, 0.456, 0.406))),  # type: ignore[arg-type]
        std=tuple(float(x) for x in cfg.get("std", (0.229, 0.224, 0.225))),  # type: ignore[arg-type]
    )


class TimmModel(EmbeddingModel):
    """A timm backbone used as an image-only feature extractor."""

    modalities = frozenset({"image"})

    def __init__(self, model_id: str, timm_name: str, device: str | torch.device | None = None,
                 identity: str = "") -> None:
        super().__init__(device)
        import timm

        self.model_id = model_id
        try:
            net = timm.create_model(timm_name, pretrained=True, num_classes=0)
        except RuntimeError as exc:
            sourced = timm_name.startswith(("hf-hub:", "local-dir:"))
            if not sourced and ("Unknown model" in str(exc) or "Invalid pretrained tag" in str(exc)):
                raise UnknownModel(_unknown_name_message(timm, timm_name)) from exc
            raise ModelLoadError(f"model '{model_id}': {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - hub, file and config errors all land here
            raise load_failure(model_id, exc) from exc
        net.eval().to(self.device)
        # The architecture, not the name: for hf-hub: and local-dir: names only the config knows it.
        arch = str((getattr(net, "pretrained_cfg", None) or {}).get("architecture") or timm_name)
        self.channels_last = not any(k in arch for k in _TRANSFORMER_MARKERS)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.dim = int(net.num_features)
        self.preprocess = preprocess_from_timm(timm.data.resolve_data_config({}, model=net))
        self._identity = identity or timm_name

    @classmethod
    def from_spec(cls, spec: ModelSpec, device: str | torch.device | None = None) -> "TimmModel":
        if spec.source == "hf-hub":
            return cls(spec.canonical, f"hf-hub:{spec.name}", device)
        if spec.source == "local":
            folder = Path(spec.name)
            identity = local_folder_identity(folder, "config.json", _CHECKPOINT_GLOBS)
            return cls(spec.canonical, f"local-dir:{folder}", device, identity=identity)
        name = spec.name + (f".{spec.tag}" if spec.tag else "")
        return cls(spec.canonical, name, device)

    def _weights_identity(self) -> str:
        return self._identity

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels)
