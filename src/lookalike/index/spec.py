"""What an approximate index is: :class:`IndexSpec`, its kinds, and its FAISS factory string.

Plain data: importing this module needs neither FAISS nor any vectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..errors import InvalidArgument

__all__ = ["IndexSpec", "IndexKind", "KINDS", "DISK_KINDS", "factory_string"]

IndexKind = Literal["flat", "hnsw", "ivf", "ivfpq", "ivfpq-disk", "sq8", "fp16", "binary"]
KINDS: tuple[str, ...] = ("flat", "hnsw", "ivf", "ivfpq", "ivfpq-disk", "sq8", "fp16", "binary")
#: Kinds whose inverted lists live in a file next to the index, memory-mapped for search
#: (built by :func:`lookalike.index.ondisk.build_ondisk`, never in RAM).
DISK_KINDS: tuple[str, ...] = ("ivfpq-disk",)


@dataclass(frozen=True)
class IndexSpec:
    """What to build and how to search it.

    Build parameters: ``kind`` (``ivfpq-disk`` is IVF-PQ with its codes in a memory-mapped
    file, for collections larger than RAM); ``nlist`` (IVF cells); ``pq_m`` / ``pq_bits`` (product
    quantiser sub-vectors and bits); ``fast_scan`` (4-bit PQ codes scanned with SIMD
    lookup tables, several times faster than 8-bit codes at the same size, less precise);
    ``opq`` (rotate before PQ); ``hnsw_m`` (graph degree) and ``ef_construction`` (its
    build-time beam); ``reduce`` (``"pca"`` or ``"matryoshka"``) to ``reduce_dim`` dimensions.
    Search parameters: ``nprobe`` (IVF cells visited), ``ef_search`` (HNSW beam) and
    ``rerank`` (candidates fetched per result, re-scored exactly).
    """

    kind: IndexKind = "flat"
    nlist: int = 0
    pq_m: int = 0
    pq_bits: int = 8
    fast_scan: bool = False
    opq: bool = False
    hnsw_m: int = 32
    ef_construction: int = 40
    reduce: Literal["pca", "matryoshka"] | None = None
    reduce_dim: int = 0
    nprobe: int = 16
    ef_search: int = 64
    rerank: int = 4

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidArgument(f"unknown index kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.reduce not in (None, "pca", "matryoshka"):
            raise InvalidArgument(f"reduce must be None, 'pca' or 'matryoshka', not {self.reduce!r}")
        if self.reduce and self.reduce_dim < 1:
            raise InvalidArgument("reduce_dim must be set with reduce")
        if self.kind == "binary" and self.reduce == "pca":
            # Sign bits are taken from the stored vectors; a PCA step would be silently skipped.
            raise InvalidArgument("binary indexes support only matryoshka reduction, not pca")
        if self.kind in ("ivf", "ivfpq", "ivfpq-disk") and self.nlist < 1:
            raise InvalidArgument(f"{self.kind} needs nlist >= 1 (IVF cells)")
        if self.nlist and self.kind not in ("ivf", "ivfpq", "ivfpq-disk", "sq8"):
            raise InvalidArgument(f"nlist (IVF cells) applies to ivf, ivfpq, ivfpq-disk and sq8, not {self.kind}")
        if self.kind in ("ivfpq", "ivfpq-disk") and self.pq_m < 1:
            raise InvalidArgument(f"{self.kind} needs pq_m >= 1 (product quantiser sub-vectors)")
        if self.kind == "ivfpq-disk" and (self.fast_scan or self.opq or self.reduce):
            # merge_ondisk works on a bare IndexIVF with plain codes (no wrapper, no packed blocks).
            raise InvalidArgument("ivfpq-disk supports neither fast_scan, opq nor a reduction")
        if self.fast_scan and (self.kind != "ivfpq" or self.pq_bits != 4):
            raise InvalidArgument("fast_scan needs kind='ivfpq' with pq_bits=4")
        if self.rerank < 1:
            raise InvalidArgument("rerank must be >= 1")

    @property
    def is_ivf(self) -> bool:
        """Whether vectors sit in IVF cells (searched with ``nprobe``); SQ8 may or may not."""
        return self.kind in ("ivf", "ivfpq", "ivfpq-disk") or (self.kind == "sq8" and self.nlist > 0)

    @property
    def on_disk(self) -> bool:
        """Whether the inverted lists live in a memory-mapped file (see :data:`DISK_KINDS`)."""
        return self.kind in DISK_KINDS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "IndexSpec":
        return cls(**data)

    def label(self) -> str:
        """A short human-readable description, e.g. ``IVF1024,PQ64 nprobe=16 rerank=4``."""
        prefix = f"{self.reduce.upper()}{self.reduce_dim}," if self.reduce else ""
        body = {
            "flat": "Flat",
            "hnsw": f"HNSW{self.hnsw_m}",
            "ivf": f"IVF{self.nlist},Flat",
            "ivfpq": (f"{'OPQ,' if self.opq else ''}IVF{self.nlist},PQ{self.pq_m}x{self.pq_bits}"
                      f"{'fs' if self.fast_scan else ''}"),
            "ivfpq-disk": f"IVF{self.nlist},PQ{self.pq_m}x{self.pq_bits} on disk",
            "sq8": f"IVF{self.nlist},SQ8" if self.nlist else "SQ8",
            "fp16": "SQfp16",
            "binary": "Binary",
        }[self.kind]
        knobs = []
        if self.is_ivf:
            knobs.append(f"nprobe={self.nprobe}")
        if self.kind == "hnsw":
            knobs.append(f"efSearch={self.ef_search}")
        if self.kind != "flat" or self.reduce:  # reduced flat search re-ranks too
            knobs.append(f"rerank={self.rerank}")
        return " ".join([prefix + body, *knobs])

    def needs_training(self) -> bool:
        return self.kind in ("ivf", "ivfpq", "ivfpq-disk", "sq8") or self.reduce == "pca" or self.opq


def factory_string(spec: IndexSpec, dim: int) -> str:
    """The FAISS ``index_factory`` string that builds ``spec`` over ``dim``-d vectors."""
    parts = []
    if spec.reduce == "pca":
        parts.append(f"PCA{spec.reduce_dim}")
    d = spec.reduce_dim if spec.reduce else dim
    if spec.kind == "flat":
        parts.append("Flat")
    elif spec.kind == "hnsw":
        parts.append(f"HNSW{spec.hnsw_m},Flat")
    elif spec.kind == "ivf":
        parts.append(f"IVF{spec.nlist},Flat")
    elif spec.kind == "ivfpq-disk":
        parts.append(f"IVF{spec.nlist},PQ{spec.pq_m}x{spec.pq_bits}np")
    elif spec.kind == "ivfpq":
        if spec.opq:
            parts.append(f"OPQ{spec.pq_m}")
        # "np": no polysemous training. It only serves Hamming-thresholded polysemous search,
        # never used here, and it costs several times the rest of the training.
        suffix = "fs" if spec.fast_scan else "np"
        parts.append(f"IVF{spec.nlist},PQ{spec.pq_m}x{spec.pq_bits}{suffix}")
    elif spec.kind == "sq8":
        parts.append(f"IVF{spec.nlist},SQ8" if spec.nlist else "SQ8")
    elif spec.kind == "fp16":
        parts.append("SQfp16")
    if spec.kind in ("ivfpq", "ivfpq-disk") and d % spec.pq_m:
        raise InvalidArgument(f"pq_m={spec.pq_m} must divide the dimension {d}")
    return ",".join(parts)
