"""What ``lookalike info`` shows of a collection (:meth:`Collection.info
<lookalike.store.collection.Collection.info>`)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from .ann import IndexSettings, IndexState
from .face_db import FACES, FaceTables
from .face_types import FaceStats
from .model_files import precision_of

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["CollectionInfo"]


class CollectionInfo:
    """Summary shown by ``lookalike info`` (see :meth:`Collection.info`)."""

    def __init__(self, *, path: str, model_id: str, fingerprint: str, dim: int, items: int, failed: int,
                 vector_rows: int, bytes_on_disk: int, created: float, errors: list[tuple[str, str]],
                 index_settings: IndexSettings, index: IndexState | None, runtime: str = "torch",
                 precision: str = "fp32", fp32_fingerprint: str | None = None, calibration: str | None = None,
                 faces: FaceStats | None = None) -> None:
        self.path, self.model_id, self.fingerprint, self.dim = path, model_id, fingerprint, dim
        #: The runtime that built the collection and its precision; fp32 collections run on any
        #: runtime (``fp32_fingerprint`` keys this machine's ``auto`` measurement of the model).
        self.runtime, self.precision = runtime, precision
        self.fp32_fingerprint, self.calibration = fp32_fingerprint or fingerprint, calibration
        self.items, self.failed, self.vector_rows, self.bytes_on_disk = items, failed, vector_rows, bytes_on_disk
        self.created, self.errors = created, errors
        #: What was asked for (the defaults when never configured) and what is built (None: exact).
        self.index_settings, self.index = index_settings, index
        #: Faces and people (``faces index``); None when faces were never looked for (opt-in).
        self.faces = faces

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form (``lookalike info --json``)."""
        out = {k: v for k, v in vars(self).items() if k not in ("index_settings", "index", "faces")}
        out["faces"] = dataclasses.asdict(self.faces) if self.faces is not None else None
        out["index"] = {"settings": self.index_settings.to_dict(), "state": self.index.to_dict() if self.index else None}
        return out

    @classmethod
    def of(cls, storage: "Storage", max_errors: int = 20) -> "CollectionInfo":
        """The summary of the collection ``storage`` holds, with up to ``max_errors`` failures."""
        counts = storage.db.counts()
        manifest = storage.manifest
        tables = FaceTables(storage.db)
        return cls(
            path=str(storage.path), model_id=manifest.model_id, fingerprint=manifest.fingerprint, dim=manifest.dim,
            items=counts["ok"], failed=counts["failed"], vector_rows=storage.vector_rows,
            bytes_on_disk=sum(f.stat().st_size for f in storage.path.iterdir() if f.is_file()),
            created=manifest.created, errors=[(r.path, r.error or "") for r in storage.db.failures(limit=max_errors)],
            index_settings=storage.index_settings(), index=storage.index_state(),
            runtime=str(manifest.model.get("runtime") or "torch"), precision=precision_of(manifest.model),
            fp32_fingerprint=manifest.model.get("fp32_fingerprint"), calibration=manifest.model.get("calibration"),
            faces=tables.stats() if tables.settings(FACES) is not None else None,
        )
