"""Where images come from: folders, file lists, CSV/Parquet tables, WebDataset tar shards
and URLs (fetched through :mod:`.download`).

Every source yields :class:`SourceItem` records in :class:`Part` units; the indexer (and
the Ray runner) read them without knowing which kind of source they came from.
"""

from .base import MEMBER_SEPARATOR, Part, PartKey, Source, SourceItem, is_url
from .filelist import FileListSource
from .folder import FolderSource
from .table import CAPTION, TableSource
from .webdataset import WebDatasetSource, expand_shards, is_shard_pattern

__all__ = [
    "SourceItem", "Part", "PartKey", "Source", "MEMBER_SEPARATOR", "CAPTION", "is_url",
    "FolderSource", "FileListSource", "TableSource", "WebDatasetSource", "expand_shards", "is_shard_pattern",
]
