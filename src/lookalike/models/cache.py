"""lookalike's cache folder (exports, int8 graphs, runtime measurements, the lite bridge).

Its own module, importing nothing heavy: ``lookalike models`` and ``info`` read the
runtime measurements kept here without importing torch.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """lookalike's cache folder: ``$LOOKALIKE_CACHE`` or ``~/.cache/lookalike``."""
    return Path(os.environ.get("LOOKALIKE_CACHE") or Path.home() / ".cache" / "lookalike")
