"""A collection whose items are tar members and URLs, with captions and table columns:
shared by tests/store/test_item_bytes.py and tests/server/test_sources_api.py.

The URLs are served by a loopback HTTP server that runs only while the collection is built:
afterwards every read must come from the download cache (nothing may fetch again).
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
import threading
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support import make_image

#: Members of the shard: (member name, caption, json metadata).
MEMBERS = [
    ("s/000.jpg", "a red kite over the dunes", {"license": "cc-by", "w": 3}),
    ("s/001.png", "two herons", {"license": "cc0", "w": 7}),
    ("s/002.jpg", None, {"license": "cc-by", "w": 12}),
]
#: Rows of the URL table: (file name, caption, license, stars).
ROWS = [
    ("u0.png", "a lighthouse at dusk", "cc-by", 5),
    ("u1.jpg", "orange cat", "cc-by-sa", 2),
    ("u2.png", "a gone download", "cc0", 1),  # its cached copy is removed after indexing
]


@dataclass
class SourcesCollection:
    path: Path
    shard: Path
    member_bytes: dict[str, bytes]  # identity -> bytes in the shard
    urls: dict[str, str]  # file name -> URL
    uncached: str  # the URL whose cached copy was removed


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def build_sources_collection(root: Path, model: str) -> SourcesCollection:
    """Index a WebDataset shard and a CSV of URLs into a new collection under ``root``."""
    import lookalike
    from lookalike.sources import TableSource, WebDatasetSource
    from lookalike.sources.download import DownloadSettings, cache_key

    root.mkdir(parents=True, exist_ok=True)
    shard = root / "shard-000.tar"
    member_bytes: dict[str, bytes] = {}
    with tarfile.open(shard, "w") as tar:
        for seed, (name, caption, meta) in enumerate(MEMBERS, 1):
            data = make_image(root / "tmp" / Path(name).name, seed=seed).read_bytes()
            key = name.rsplit(".", 1)[0]
            files = [(name, data), (f"{key}.json", json.dumps(meta).encode())]
            if caption:
                files.append((f"{key}.txt", caption.encode()))
            for member, body in files:
                info = tarfile.TarInfo(member)
                info.size, info.mtime = len(body), 1_700_000_000
                tar.addfile(info, io.BytesIO(body))
            member_bytes[f"{shard}#{name}"] = data

    web = root / "web"
    for seed, (name, *_rest) in enumerate(ROWS, 50):
        make_image(web / name, seed=seed)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(web)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urls = {name: f"{base}/{name}" for name, *_ in ROWS}
    table = root / "urls.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["url", "caption", "license", "stars"])
        for name, caption, license_, stars in ROWS:
            w.writerow([urls[name], caption, license_, stars])
    path = root / "sources.lkl"
    try:
        with lookalike.Collection.create(path, model=model, device="cpu") as coll:
            report = coll.add(WebDatasetSource([str(shard)]))
            assert not report.failed, report
            report = coll.add(TableSource(str(table), image_column="url", caption_column="caption"),
                              download=DownloadSettings(cache_dir=path / "downloads", retries=0))
            assert not report.failed, report
    finally:
        server.shutdown()
        server.server_close()
    uncached = urls["u2.png"]
    key = cache_key(uncached)
    gone = list((path / "downloads" / key[:2]).glob(f"{key}*"))
    assert gone, "the download cache is not laid out as expected"
    for f in gone:
        f.unlink()
    return SourcesCollection(path, shard, member_bytes, urls, uncached)
