"""Helpers shared by test modules: ``from support import make_image, samples``.

A plain module rather than conftest imports: test folders have no ``__init__.py``, so
``import conftest`` would resolve to whichever conftest pytest loaded last. ``tests/`` (for
this module) and the repository root (for ``tools``) are on ``sys.path`` through
``pythonpath`` in pyproject.toml.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from tools import samples  # re-exported: tools/samples.py fetches and caches the real sample images

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["ROOT", "samples", "make_image", "free_port", "live_server", "save_tiny_clip", "save_tiny_timm"]


def make_image(path: Path, seed: int, size: tuple[int, int] = (96, 80), fmt: str | None = None) -> Path:
    """Write a small distinct image (random blocks of colour) and return its path."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


# --------------------------------------------------------------------------- tiny local models
#: A random CLIP small enough to build and run in a blink: 32-d, 32 px, one layer per tower.
#: It has a text tower (open_clip's bundled tokenizer, no download), so text search works;
#: its rankings mean nothing, so only tests that do not judge semantics may use it.
TINY_CLIP_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
#: A random image-only timm model (~200k parameters, 64 features, 64 px input).
TINY_TIMM_ARCH = "test_convnext"
TINY_TIMM_DIM = 64


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random open_clip model that ``lookalike.load_model(f"openclip:{folder}")`` loads."""
    import open_clip
    import torch

    from lookalike.models.openclip import save_local

    torch.manual_seed(seed)
    model = open_clip.CLIP(**json.loads(json.dumps(TINY_CLIP_CFG)))  # a deep copy: CLIP edits its config
    preprocess = {"resize_mode": "squash", "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.25] * 3}
    return save_local(model, TINY_CLIP_CFG, folder, preprocess)


def save_tiny_timm(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random timm model (hub layout) that ``lookalike.load_model(f"timm:{folder}")`` loads."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    net = timm.create_model(TINY_TIMM_ARCH, pretrained=False, num_classes=0)
    assert net.num_features == TINY_TIMM_DIM
    folder.mkdir(parents=True, exist_ok=True)
    pretrained_cfg = {"input_size": [3, 64, 64], "mean": [0.5] * 3, "std": [0.25] * 3, "crop_pct": 1.0,
                      "interpolation": "bilinear", "crop_mode": "center", "num_classes": 0}
    config = {"architecture": TINY_TIMM_ARCH, "num_classes": 0, "num_features": net.num_features,
              "pretrained_cfg": pretrained_cfg}
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


# --------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(config: Any, collection: Any = None) -> Iterator[str]:
    """Run the app under uvicorn on a loopback port in a thread; yield its base URL."""
    import uvicorn

    from lookalike.server import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config, collection=collection), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def api_error(resp, status: int, code: str | None = None, contains: str = "") -> dict:
    """The response is the API's JSON error shape, with that status (and code), and no traceback."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert set(err) == {"code", "message"} and err["message"]
    if code:
        assert err["code"] == code, err
    assert contains.lower() in err["message"].lower(), err
    assert "Traceback" not in resp.text
    return err
