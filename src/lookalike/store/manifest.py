"""``manifest.json``: what made a collection, so queries use the same model and preprocessing."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CollectionCorrupt
from ..fsutil import atomic_writer

__all__ = ["Manifest", "FORMAT_VERSION", "atomic_write_text"]

FORMAT_NAME = "lookalike-collection"
#: Bump on any change readers of older versions could misread.
FORMAT_VERSION = 1


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never a mix."""
    with atomic_writer(path) as f:
        f.write(text.encode("utf-8"))


@dataclass
class Manifest:
    """The parsed manifest. ``model`` is :meth:`EmbeddingModel.info` of the model that built it."""

    model: dict[str, Any]
    dtype: str = "float32"
    metric: str = "cosine"
    created: float = field(default_factory=time.time)
    lookalike_version: str = ""
    format_version: int = FORMAT_VERSION
    #: ``{"settings": IndexSettings.to_dict(), "state": {spec, label, measured, ...} | None}``
    index: dict[str, Any] | None = None

    @property
    def index_state(self) -> dict[str, Any] | None:
        """What index is built and how it measured (None: exact search)."""
        return (self.index or {}).get("state")

    @property
    def model_id(self) -> str:
        return str(self.model["model_id"])

    @property
    def dim(self) -> int:
        return int(self.model["dim"])

    @property
    def fingerprint(self) -> str:
        return str(self.model["fingerprint"])

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT_NAME,
                "format_version": self.format_version,
                "lookalike_version": self.lookalike_version,
                "created": self.created,
                "model": self.model,
                "dtype": self.dtype,
                "metric": self.metric,
                "index": self.index,
            },
            indent=2,
            sort_keys=True,
        )

    def save(self, path: Path) -> None:
        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CollectionCorrupt(f"{path}: unreadable manifest ({exc})") from exc
        if data.get("format") != FORMAT_NAME:
            raise CollectionCorrupt(f"{path}: not a lookalike manifest")
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise CollectionCorrupt(
                f"{path}: collection format {data['format_version']} is newer than this lookalike "
                f"understands ({FORMAT_VERSION}); upgrade lookalike"
            )
        try:
            return cls(
                model=dict(data["model"]),
                dtype=data.get("dtype", "float32"),
                metric=data.get("metric", "cosine"),
                created=float(data.get("created", 0.0)),
                lookalike_version=data.get("lookalike_version", ""),
                format_version=int(data["format_version"]),
                index=data.get("index"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CollectionCorrupt(f"{path}: manifest is missing fields ({exc})") from exc
