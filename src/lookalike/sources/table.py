"""A table of images: CSV or Parquet, one row per image, read in batches so memory stays flat.

One column names the image (an http(s) URL, or a path: relative paths are taken from the
table's folder); an optional column holds a caption; every other column becomes the item's
metadata, filterable with ``--where``. Rows whose image column is empty or of the wrong type
are reported and skipped, never guessed at; an image named by several rows is indexed once,
with the first row's columns.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from ..errors import InvalidArgument, MissingExtra
from ..fsutil import user_path
from .base import Part, PartKey, SkipCallback, SourceItem, is_url, read_local
from .folder import PART_SIZE

__all__ = ["TableSource", "RowsPart", "CAPTION", "GUESSED_COLUMNS"]

#: The metadata key captions are stored under.
CAPTION = "caption"
#: Image columns tried, in order, when none is named.
GUESSED_COLUMNS = ("url", "path", "image_path", "filepath", "file", "image", "filename")
#: Bytes of CSV parsed at a time.
CSV_BLOCK_BYTES = 1 << 20


def _pyarrow() -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.csv  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise MissingExtra("pyarrow", "scale", "Reading CSV and Parquet tables") from exc
    return pyarrow


@dataclass(frozen=True)
class RowsPart:
    """Rows already read by the driver: ``(row number, image, metadata)``."""

    index: int
    rows: tuple[tuple[int, str, Mapping[str, Any]], ...]
    label: str
    key: PartKey | None = None

    def read(self, on_skip: SkipCallback) -> Iterator[SourceItem]:
        for number, image, meta in self.rows:
            if is_url(image):
                yield SourceItem(image, -1, 0, meta=meta)
                continue
            stat = read_local(image)
            if isinstance(stat, str):
                on_skip(image, f"{stat} (row {number} of {self.label})")
            else:
                yield SourceItem(image, *stat, meta=meta)


def _scalar(value: Any) -> Any:
    """A metadata value SQLite and JSON both hold: numbers, text, booleans; else JSON text."""
    if isinstance(value, decimal.Decimal):
        value = float(value)  # json.dumps would store the text '"1.50"', quotes included
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, bytes):
        return None  # binary columns (embedded images, blobs) are not metadata
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return json.dumps(value, default=str, ensure_ascii=False)


_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _cell(text: str) -> Any:
    """A CSV cell, typed one by one: CSV columns are read as text, because pyarrow infers a
    column's type from the first block and fails the read when a later row disagrees (a
    column of numbers that turns to text after a million rows). ``""`` is no value; numbers
    written in their plain form become numbers (``00123`` stays text, as written);
    ``true``/``false`` become booleans."""
    if not text:
        return None
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        number = float(text)
        return number if math.isfinite(number) else text
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    return text


class TableSource:
    """Rows of a CSV or Parquet file (``.csv``, ``.tsv``, ``.parquet``, ``.pq``)."""

    sweep_folders: tuple[str, ...] = ()

    def __init__(self, table: str, *, image_column: str | None = None, caption_column: str | None = None,
                 part_size: int = PART_SIZE) -> None:
        self.path = user_path(table)
        self.label = self.path
        self.part_size = part_size
        if not os.path.isfile(self.path):
            raise InvalidArgument(f"{self.path}: no such table; give a .csv or .parquet file")
        ext = os.path.splitext(self.path)[1].lower()
        if ext not in (".csv", ".tsv", ".parquet", ".pq"):
            raise InvalidArgument(f"{self.path}: not a table lookalike reads; give a .csv, .tsv or .parquet file")
        self.format = "parquet" if ext in (".parquet", ".pq") else "csv"
        self.columns = self._column_names()
        self.image_column = self._pick(image_column, "--url-col")
        self.caption_column = self._pick(caption_column, "--caption-col") if caption_column else None
        self.base = os.path.dirname(self.path)

    # ------------------------------------------------------------------ reading
    def _column_names(self) -> list[str]:
        pa = _pyarrow()
        if self.format == "parquet":
            try:
                return list(pa.parquet.ParquetFile(self.path).schema_arrow.names)
            except (pa.ArrowException, OSError) as exc:
                raise InvalidArgument(f"{self.path}: not a readable Parquet table ({exc})") from exc
        with self._csv_reader() as reader:
            return list(reader.schema.names)

    def _csv_reader(self, cellwise: bool = False) -> Any:
        pa = _pyarrow()
        # cellwise: every column read as bytes, decoded and typed cell by cell (see _cell), so a
        # late change of type or a stray Latin-1 byte spoils one cell, not the whole read.
        types = {name: pa.binary() for name in self.columns} if cellwise else None
        try:
            # newlines_in_values: a quoted caption may span lines. pyarrow skips a UTF-8 BOM.
            return pa.csv.open_csv(
                self.path,
                read_options=pa.csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                parse_options=pa.csv.ParseOptions(delimiter="\t" if self.path.lower().endswith(".tsv") else ",",
                                                  newlines_in_values=True),
                convert_options=pa.csv.ConvertOptions(column_types=types),
            )
        except pa.ArrowInvalid as exc:
            raise InvalidArgument(f"{self.path}: not a readable CSV table ({exc})") from exc

    def _pick(self, column: str | None, flag: str) -> str:
        if column is not None:
            if column not in self.columns:
                raise InvalidArgument(f"{self.path}: no column {column!r} (it has {', '.join(self.columns)}); "
                                      f"name one with {flag}")
            return column
        for guess in GUESSED_COLUMNS:
            if guess in self.columns:
                return guess
        raise InvalidArgument(f"{self.path}: which column holds the images? Name it with {flag} "
                              f"(columns: {', '.join(self.columns)})")

    def _batches(self) -> Iterator[Any]:
        pa = _pyarrow()
        try:
            if self.format == "parquet":
                yield from pa.parquet.ParquetFile(self.path).iter_batches(batch_size=self.part_size)
                return
            with self._csv_reader(cellwise=True) as reader:
                yield from reader
        except pa.ArrowInvalid as exc:
            raise InvalidArgument(f"{self.path}: cannot read the table ({exc}); check its format") from exc

    def parts(self, on_skip: SkipCallback) -> Iterator[Part]:
        number = 0  # 1-based row numbers in messages, as a spreadsheet shows them
        pending: list[tuple[int, str, Mapping[str, Any]]] = []
        index = 0
        # An image named by several rows (one row per caption) is one item: indexing it twice
        # would count a copy of itself. Found by a 64-bit digest: 8 bytes a row, not the path.
        seen: set[bytes] = set()
        for batch in self._batches():
            for row in batch.to_pylist():
                number += 1
                image = self._image(row, number, on_skip)
                if image is None:
                    continue
                digest = hashlib.blake2b(image.encode("utf-8", "surrogateescape"), digest_size=8).digest()
                if digest in seen:
                    on_skip(f"{self.path} row {number}", f"{image}: named by an earlier row; indexed once, "
                                                         "with the first row's columns")
                    continue
                seen.add(digest)
                pending.append((number, image, self._meta(row)))
                if len(pending) >= self.part_size:
                    yield RowsPart(index, tuple(pending), self.label)
                    index, pending = index + 1, []
        if pending:
            yield RowsPart(index, tuple(pending), self.label)

    def _image(self, row: Mapping[str, Any], number: int, on_skip: SkipCallback) -> str | None:
        value = row.get(self.image_column)
        where = f"{self.path} row {number}"
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                on_skip(where, f"column {self.image_column!r} holds bytes that are not UTF-8 text, not a URL or path")
                return None
        if value is None or (isinstance(value, str) and not value.strip()):
            on_skip(where, f"no image in column {self.image_column!r}")
            return None
        if not isinstance(value, str):
            on_skip(where, f"column {self.image_column!r} holds {type(value).__name__} {value!r}, not a URL or path")
            return None
        value = value.strip()
        if is_url(value):
            return value
        if "://" in value:
            on_skip(where, f"{value}: only http and https URLs are fetched")
            return None
        return user_path(os.path.join(self.base, os.path.expanduser(value)))

    def _meta(self, row: Mapping[str, Any]) -> Mapping[str, Any]:
        meta: dict[str, Any] = {}
        for name, value in row.items():
            if name == self.image_column:
                continue
            cell = self.format == "csv" and isinstance(value, bytes)
            if cell:
                value = value.decode("utf-8", "replace")
            if name == self.caption_column:
                caption = value if isinstance(value, str) else _scalar(value)  # text, even "1984"
                if caption is not None and caption != "":
                    meta[CAPTION] = caption
                continue
            scalar = _cell(value) if cell else _scalar(value)
            if scalar is not None:
                meta[name] = scalar
        return meta
