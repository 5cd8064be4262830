"""Heads: small trained maps on top of a frozen model's vectors (issue 13).

A head is a folder written by :func:`save_head`:

``head.json``
    ``{"format": 1, "id": ..., "digest": ..., "config": {...}, "report": {...}}``. Written
    last, so a folder with a ``head.json`` is a complete head.
``head.safetensors``
    The :class:`ProjectionHead`'s weights.
``train_items.txt``
    The content hashes of every image the head was fitted on (train and validation), one per
    line, so an evaluation can prove it never scores a head on images it has seen.

The head's id is ``f"{name}-{digest[:8]}"``, where the digest is the sha256 of the weights
file and the config: every copy of one head has one id, wherever it lives (collections keep
a copy), and a retrained head gets a new one.

Three kinds: ``projection`` (train: base image vectors -> a new space, for images and
text alike), ``text`` (align: the base's text features -> the base's image space; images
pass through unchanged) and ``student`` (distill: base image vectors -> a teacher's image
space; text queries go to the teacher's text tower).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..errors import InvalidArgument, ModelLoadError
from ..fsutil import atomic_folder, atomic_writer, user_path
from .names import HEAD_FILE, HEAD_FORMAT, read_head_json

__all__ = ["HEAD_KINDS", "HEAD_ARCHS", "HEAD_FORMAT", "HEAD_FILE", "WEIGHTS_FILE", "TRAIN_ITEMS_FILE", "HeadConfig",
           "ProjectionHead", "save_head", "check_out_dir", "LoadedHead", "load_head", "apply_head"]

HEAD_KINDS = ("projection", "text", "student")
HEAD_ARCHS = ("linear", "mlp")
WEIGHTS_FILE = "head.safetensors"
TRAIN_ITEMS_FILE = "train_items.txt"
_HEAD_FILES = frozenset({HEAD_FILE, WEIGHTS_FILE, TRAIN_ITEMS_FILE})


@dataclass(frozen=True)
class HeadConfig:
    """What a head is: its kind, shape, and the model (and weights) it was fitted on.

    ``in_dim`` is the base's image dim, or for a ``text`` head the dim of the base's
    :meth:`~lookalike.models.base.EmbeddingModel.text_features`. ``hidden`` is for ``mlp``
    only; ``teacher`` and ``teacher_fingerprint`` for ``student`` only.
    """

    kind: str
    arch: str
    in_dim: int
    out_dim: int
    base: str
    base_fingerprint: str
    name: str
    hidden: int | None = None
    teacher: str | None = None
    teacher_fingerprint: str | None = None

    def __post_init__(self) -> None:
        _check_config(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (what ``head.json`` stores under ``config``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "HeadConfig":
        """Rebuild a config strictly: unknown or missing keys and wrong types raise.

        Raises:
            InvalidArgument: naming the key at fault.
        """
        if not isinstance(data, dict):
            raise InvalidArgument(f"a head config is a JSON object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArgument(f"head config: unknown keys {unknown} (known: {sorted(known)}); "
                                  "the head was written by a newer lookalike: upgrade lookalike")
        required = {"kind", "arch", "in_dim", "out_dim", "base", "base_fingerprint", "name"}
        missing = sorted(required - set(data))
        if missing:
            raise InvalidArgument(f"head config: missing keys {missing}")
        return cls(**data)


def _check_config(c: HeadConfig) -> None:
    """Every field's type and range; InvalidArgument naming the first one at fault."""
    if c.kind not in HEAD_KINDS:
        raise InvalidArgument(f"head kind '{c.kind}' is not one of {', '.join(HEAD_KINDS)}")
    if c.arch not in HEAD_ARCHS:
        raise InvalidArgument(f"head arch '{c.arch}' is not one of {', '.join(HEAD_ARCHS)}")
    for key in ("in_dim", "out_dim"):
        value = getattr(c, key)
        if not _is_int(value) or value < 1:
            raise InvalidArgument(f"head config: {key} must be a positive integer, not {value!r}")
    for key in ("base", "base_fingerprint", "name"):
        if not isinstance(getattr(c, key), str) or not getattr(c, key):
            raise InvalidArgument(f"head config: {key} must be a non-empty string, not {getattr(c, key)!r}")
    if c.arch == "mlp" and (not _is_int(c.hidden) or c.hidden < 1):  # type: ignore[operator]
        raise InvalidArgument(f"head config: an mlp head needs hidden, a positive integer, not {c.hidden!r}")
    if c.arch == "linear" and c.hidden is not None:
        raise InvalidArgument("head config: a linear head has no hidden layer; leave hidden unset")
    if c.kind == "student":
        if not isinstance(c.teacher, str) or not c.teacher or not isinstance(c.teacher_fingerprint, str):
            raise InvalidArgument("head config: a student head records its teacher and teacher_fingerprint "
                                  "(the model whose text tower answers its text queries)")
    elif c.teacher is not None or c.teacher_fingerprint is not None:
        raise InvalidArgument(f"head config: only a student head has a teacher, not a {c.kind} head")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class ProjectionHead(torch.nn.Module):
    """``(B, in_dim) -> (B, out_dim)``, not normalised: a linear map or a 2-layer MLP.

    A linear head with ``in_dim == out_dim`` starts as the identity, so training starts from
    the base space and a head that learns nothing leaves the vectors as they were.
    """

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        if config.arch == "linear":
            self.net = torch.nn.Sequential(torch.nn.Linear(config.in_dim, config.out_dim))
            if config.in_dim == config.out_dim:
                with torch.no_grad():
                    self.net[0].weight.copy_(torch.eye(config.in_dim))
                    self.net[0].bias.zero_()
        else:
            hidden = int(config.hidden)  # type: ignore[arg-type] - checked by HeadConfig
            self.net = torch.nn.Sequential(torch.nn.Linear(config.in_dim, hidden), torch.nn.GELU(),
                                           torch.nn.Linear(hidden, config.out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass(frozen=True)
class LoadedHead:
    """A head read back from its folder by :func:`load_head`."""

    path: Path
    config: HeadConfig
    module: ProjectionHead
    id: str
    digest: str
    report: dict[str, Any] | None

    def train_hashes(self) -> frozenset[str]:
        """The content hashes of the images the head was fitted on (empty when none were recorded)."""
        f = self.path / TRAIN_ITEMS_FILE
        if not f.is_file():
            return frozenset()
        return frozenset(line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip())


def _weights_bytes(module: ProjectionHead) -> bytes:
    from safetensors.torch import save

    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in module.state_dict().items()}
    return save(state)


def _digest(weights: bytes, config: HeadConfig) -> str:
    h = hashlib.sha256(weights)
    h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    return h.hexdigest()


def _head_id(config: HeadConfig, digest: str) -> str:
    return f"{config.name}-{digest[:8]}"


def save_head(out_dir: str | Path, module: ProjectionHead, config: HeadConfig, *, report: dict[str, Any] | None = None,
              train_hashes: Iterable[str] = ()) -> Path:
    """Write a head folder (see the module docstring); returns its absolute path.

    Each file is replaced atomically and ``head.json`` comes last, so an interrupted save
    never leaves a folder that loads with mismatched parts. Saving over an existing head
    replaces it.

    Raises:
        InvalidArgument: ``out_dir`` is a file, or a folder holding something other than a head
            (a head is never written into a folder of other files); the module's shape does
            not match ``config``; ``report`` is not JSON-serialisable.
    """
    out = Path(user_path(out_dir))
    _check_out_dir(out)
    expected = ProjectionHead(config).state_dict()
    actual = module.state_dict()
    if {k: tuple(v.shape) for k, v in expected.items()} != {k: tuple(v.shape) for k, v in actual.items()}:
        raise InvalidArgument(f"{out}: the head module's layers do not match its config "
                              f"({config.arch}, {config.in_dim} -> {config.out_dim}); build it with ProjectionHead(config)")
    weights = _weights_bytes(module)
    if not all(bool(torch.isfinite(t).all()) for t in actual.values()):
        raise InvalidArgument(f"{out}: the head's weights hold NaN or infinity (training diverged); "
                              "retrain with a lower learning rate")
    digest = _digest(weights, config)
    try:
        meta = json.dumps({"format": HEAD_FORMAT, "id": _head_id(config, digest), "digest": digest,
                           "config": config.to_dict(), "report": report}, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{out}: the head's report cannot be stored as JSON ({exc})") from exc
    hashes = sorted({str(h) for h in train_hashes})
    # Swapped in whole: a crash never leaves new weights beside an older head.json (whose id
    # check would then refuse the folder, losing the older head too).
    with atomic_folder(out) as work:
        with atomic_writer(work / WEIGHTS_FILE) as f:
            f.write(weights)
        with atomic_writer(work / TRAIN_ITEMS_FILE) as f:
            f.write("".join(f"{h}\n" for h in hashes).encode())
        with atomic_writer(work / HEAD_FILE) as f:
            f.write((meta + "\n").encode())
    return out


def check_out_dir(out: str | os.PathLike[str]) -> Path:
    """``out`` as an absolute path, refused (InvalidArgument) when :func:`save_head` would refuse
    it: a file, or a folder of other files. Callers check before minutes of embedding or fitting."""
    path = Path(user_path(out))
    _check_out_dir(path)
    return path


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InvalidArgument(f"{out} is a file; a head is saved as a folder: give a new folder's path")
    if out.is_dir():
        # Only a head's own files (and hidden ones, such as an interrupted save's temp files).
        others = sorted(p.name for p in out.iterdir() if p.name not in _HEAD_FILES and not p.name.startswith("."))
        if others:
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise InvalidArgument(f"{out} already holds {shown} and is not a head folder; a head is written to a "
                                  "new or empty folder (or over another head): give another --out")


def load_head(path: str | Path) -> LoadedHead:
    """Read a head folder written by :func:`save_head`, checking its weights against its id.

    Raises:
        UnknownModel: ``path`` is not a folder, or holds no ``head.json``.
        ModelLoadError: the files are damaged, from a newer lookalike, or do not agree.
    """
    folder = Path(user_path(path))
    meta = read_head_json(folder)
    try:
        config = HeadConfig.from_dict(meta.get("config"))
    except InvalidArgument as exc:
        raise ModelLoadError(f"{folder / HEAD_FILE}: {exc}; save the head again") from exc
    try:
        weights = (folder / WEIGHTS_FILE).read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{folder / WEIGHTS_FILE}: cannot read the head's weights ({exc}); "
                             "copy the whole head folder, or save the head again") from exc
    digest = _digest(weights, config)
    if meta.get("id") != _head_id(config, digest):
        raise ModelLoadError(f"{folder}: head.safetensors does not match head.json (id {meta.get('id')!r}); "
                             "one of them was changed or copied from another head: save the head again")
    module = ProjectionHead(config)
    try:
        from safetensors.torch import load

        module.load_state_dict(load(weights), strict=True)
    except Exception as exc:  # noqa: BLE001 - any parse or shape failure means a broken file
        raise ModelLoadError(f"{folder / WEIGHTS_FILE}: cannot load the head's weights ({exc}); "
                             "save the head again") from exc
    module.eval()
    report = meta.get("report")
    return LoadedHead(folder, config, module, _head_id(config, digest), digest,
                      report if isinstance(report, dict) else None)


def apply_head(head: LoadedHead | ProjectionHead, vectors: np.ndarray, *, batch_size: int = 8192) -> np.ndarray:
    """Map base vectors through a head: float32 ``(N, out_dim)``, rows L2-normalised.

    Input rows are base vectors (they are normalised first, as a model's are, so raw
    features give the same answer as stored vectors).

    Raises:
        InvalidArgument: ``vectors`` is not ``(N, in_dim)``.
    """
    module = head.module if isinstance(head, LoadedHead) else head
    config = module.config
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != config.in_dim:
        raise InvalidArgument(f"head '{config.name}' takes vectors of dim {config.in_dim} (from {config.base}), "
                              f"not an array of shape {x.shape}")
    if batch_size < 1:
        raise InvalidArgument(f"batch_size must be at least 1, not {batch_size}")
    device = next(module.parameters()).device
    out = np.empty((len(x), config.out_dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(x[start:start + batch_size]).to(device)
            batch = torch.nn.functional.normalize(batch, dim=-1)
            y = torch.nn.functional.normalize(module(batch).float(), dim=-1)
            out[start:start + len(y)] = y.cpu().numpy()
    return out
