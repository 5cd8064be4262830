"""``openclip:`` models: CLIP, OpenCLIP and SigLIP through the open_clip library.

The model carries its own preprocessing config (``visual.preprocess_cfg``); we translate it
into a :class:`~lookalike.images.transforms.PreprocessConfig` so indexing and queries use
exactly what the model was trained with. Weights come from open_clip's pretrained tags or the
Hugging Face hub (its normal cache), or a local folder in the hub layout.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import MissingExtra, ModelLoadError, UnknownModel
from ..images.transforms import PreprocessConfig
from .base import EmbeddingModel, ForwardModule, load_failure, local_folder_identity
from .names import ModelSpec

__all__ = ["OpenClipModel", "preprocess_from_openclip", "save_local"]

_RESIZE_MODES = {"shortest": "crop", "longest": "letterbox", "squash": "squash"}


def _import_open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:
        raise MissingExtra("open_clip_torch", "openclip", "openclip: models") from exc
    return open_clip


def preprocess_from_openclip(cfg: dict[str, Any]) -> PreprocessConfig:
    """Translate open_clip's ``preprocess_cfg`` dict into our config."""
    size = cfg.get("size", 224)
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ModelLoadError(f"non-square open_clip input size {size} is not supported")
        size = size[0]
    mode = _RESIZE_MODES.get(cfg.get("resize_mode", "shortest"), "crop")
    fill = cfg.get("fill_color", 0)
    return PreprocessConfig(
        size=int(size),
        resize_mode=mode,  # type: ignore[arg-type]
        crop_pct=1.0,
        interpolation=cfg.get("interpolation", "bicubic"),
        mean=tuple(float(x) for x in cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),  # type: ignore[arg-type]
        std=tuple(float(x) for x in cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),  # type: ignore[arg-type]
        fill=(int(fill),) * 3 if mode == "letterbox" else None,
    )


class OpenClipModel(EmbeddingModel):
    """An open_clip image + text model."""

    def __init__(
        self,
        model_id: str,
        open_clip_name: str,
        pretrained: str | None,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(device)
        open_clip = _import_open_clip()
        self.model_id = model_id
        try:
            model = open_clip.create_model(open_clip_name, pretrained=pretrained, device="cpu")
            self.tokenizer = open_clip.get_tokenizer(open_clip_name)
        except RuntimeError as exc:
            msg = str(exc)
            if "Unknown model" in msg or "not found" in msg.lower() and "pretrained" in msg.lower():
                raise UnknownModel(f"model '{model_id}': {msg}. `python -c 'import open_clip; "
                                   "print(open_clip.list_pretrained())'` lists valid names.") from exc
            raise ModelLoadError(f"model '{model_id}': {msg}") from exc
        except Exception as exc:  # noqa: BLE001 - hub, file and config errors all land here
            raise load_failure(model_id, exc) from exc
        model.eval().to(self.device)
        self.net = model
        self.preprocess = preprocess_from_openclip(open_clip.get_model_preprocess_cfg(model))
        with torch.inference_mode():
            probe = torch.zeros(1, 3, self.preprocess.size, self.preprocess.size, device=self.device)
            self.dim = int(model.encode_image(probe).shape[-1])
        self.modalities = frozenset({"image", "text"})
        self._identity = _local_identity(open_clip_name) or f"{open_clip_name}|{pretrained}"

    @classmethod
    def from_spec(cls, spec: ModelSpec, device: str | torch.device | None = None) -> "OpenClipModel":
        if spec.source == "hf-hub":
            return cls(spec.canonical, f"hf-hub:{spec.name}", None, device)
        if spec.source == "local":
            return cls(spec.canonical, f"local-dir:{spec.name}", None, device)
        open_clip = _import_open_clip()
        known = {(a, t) for a, t in open_clip.list_pretrained()}
        if (spec.name, spec.tag) not in known:
            archs = sorted({a for a, _ in known})
            if spec.name not in archs:
                near = difflib.get_close_matches(spec.name, archs, n=3)
                raise UnknownModel(f"open_clip has no architecture '{spec.name}'." +
                                   (f" Did you mean {', '.join(near)}?" if near else ""))
            tags = sorted(t for a, t in known if a == spec.name)
            near = difflib.get_close_matches(str(spec.tag), tags, n=1, cutoff=0.6)
            raise UnknownModel(f"open_clip has no pretrained tag '{spec.tag}' for {spec.name}."
                               + (f" Did you mean 'openclip:{spec.name}/{near[0]}'?" if near else "")
                               + f" Tags for {spec.name}: {', '.join(tags)}")
        return cls(spec.canonical, spec.name, spec.tag, device)

    def _weights_identity(self) -> str:
        return self._identity

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.encode_image(pixels)

    def _forward_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        return self.net.encode_text(tokens)

    #: open_clip's tokenizers pad every text to the model's context length.
    text_dynamic_length = False

    def _encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net.encode_text(tokens)

    def text_module(self) -> torch.nn.Module:
        """``encode_text`` on token ids (tokenisation stays in Python), for ONNX export."""
        return ForwardModule(self._encode_tokens, self.net)

    def tokenize_text(self, texts: list[str]) -> dict[str, np.ndarray]:
        """open_clip's token ids for ``texts``, as int64 ``(B, context_length)``."""
        return {"tokens": self.tokenizer(texts).cpu().numpy().astype(np.int64)}


#: Every file open_clip's local-dir loader may take its weights from (it prefers
#: open_clip_model.safetensors but also accepts model.safetensors, pytorch_model.bin, ...).
_CHECKPOINT_GLOBS = ("*.safetensors", "*.bin", "*.pth")


def _local_identity(name: str) -> str | None:
    if not name.startswith("local-dir:"):
        return None
    return local_folder_identity(Path(name[len("local-dir:"):]), "open_clip_config.json", _CHECKPOINT_GLOBS)


def save_local(model: Any, model_cfg: dict[str, Any], folder: str | os.PathLike[str],
               preprocess_cfg: dict[str, Any] | None = None) -> Path:
    """Write an open_clip model in the hub layout that ``openclip:/path`` loads.

    Used to export fine-tuned models, and by the tests to build tiny random ones.
    ``preprocess_cfg`` defaults to the one the model carries (``visual.preprocess_cfg``, set
    by ``open_clip.create_model``), so a reloaded model preprocesses exactly as before.
    Models whose text tower uses a Hugging Face tokenizer also need its files in ``folder``.
    """
    from safetensors.torch import save_file

    if preprocess_cfg is None:
        preprocess_cfg = dict(getattr(getattr(model, "visual", model), "preprocess_cfg", None) or {})
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}
    (out / "open_clip_config.json").write_text(json.dumps(cfg, indent=2))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    return out
