"""An item's image bytes whatever its kind (file, tar member, URL in the download cache), and
its metadata: ``lookalike.store.item_bytes`` and ``lookalike.store.item_access``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import lookalike
from lookalike.errors import ItemNotFound, UnreadableImage
from lookalike.store.item_access import ItemAccess, item_reader, metadata_of
from lookalike.store.item_bytes import ImageUnavailable, ItemReader, item_kind, read_item_bytes
from sources_support import SourcesCollection, build_sources_collection
from support import make_image

pytest.importorskip("httpx")
pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> SourcesCollection:
    return build_sources_collection(tmp_path_factory.mktemp("item-bytes"), f"openclip:{tiny_clip_dir}")


def _by_path(coll: lookalike.Collection) -> dict[str, int]:
    return {item.path: item.id for item in coll.items()}


def test_item_kind(tmp_path: Path) -> None:
    assert item_kind("https://example.com/a.jpg") == "url"
    assert item_kind("HTTP://example.com/a.jpg") == "url"
    assert item_kind("/data/shard-0001.tar#x/000.jpg") == "member"
    assert item_kind("/data/shard.TAR.GZ#000.jpg") == "member"
    assert item_kind("/photos/party #3.jpg") == "file"  # a '#' alone does not make a member
    odd = make_image(tmp_path / "a.tar#b.png", seed=1)  # a real file wins over the member reading
    assert item_kind(str(odd)) == "file"


def test_each_kind_reads_its_own_bytes(built: SourcesCollection, tmp_path: Path) -> None:
    with lookalike.Collection.open(built.path) as coll:
        ids = _by_path(coll)
        storage = coll._storage
        for identity, data in built.member_bytes.items():
            assert read_item_bytes(storage, identity) == data
            assert read_item_bytes(built.path, coll.item(ids[identity])) == data  # by folder, by Item
        for name in ("u0.png", "u1.jpg"):
            url = built.urls[name]
            cached = ItemReader(storage).cached_copy(url)
            assert cached.is_relative_to(built.path / "downloads")
            assert read_item_bytes(storage, url) == cached.read_bytes()
            assert read_item_bytes(str(built.path), url) == cached.read_bytes()
        file = make_image(tmp_path / "plain.png", seed=3)
        assert read_item_bytes(storage, str(file)) == file.read_bytes()
        with ItemReader(storage) as reader:
            assert reader.source(str(file)) == str(file)  # files are decoded from their path
            assert isinstance(reader.source(next(iter(built.member_bytes))), bytes)


def test_unavailable_items_say_what_to_do(built: SourcesCollection, tmp_path: Path) -> None:
    with lookalike.Collection.open(built.path) as coll:
        storage = coll._storage
        with pytest.raises(ImageUnavailable, match="not in the download cache.*re-index") as err:
            read_item_bytes(storage, built.uncached)
        assert isinstance(err.value, UnreadableImage) and err.value.path == built.uncached
        member = next(iter(built.member_bytes))
        with pytest.raises(ImageUnavailable, match="no such member"):
            read_item_bytes(storage, member.rsplit("#", 1)[0] + "#s/nope.jpg")
        with pytest.raises(ImageUnavailable, match="re-index"):
            read_item_bytes(storage, str(tmp_path / "gone.tar#s/000.jpg"))
        with pytest.raises(ImageUnavailable, match="re-index"):
            read_item_bytes(storage, str(tmp_path / "gone.png"))
        damaged = tmp_path / "damaged.tar"
        damaged.write_bytes(b"not a tar at all" * 100)
        with pytest.raises(ImageUnavailable, match="shard cannot be read"):
            read_item_bytes(storage, f"{damaged}#s/000.jpg")


def test_a_moved_download_cache_is_found_through_the_recorded_folder(built: SourcesCollection,
                                                                     tmp_path: Path) -> None:
    copy = tmp_path / "copy.lkl"
    shutil.copytree(built.path, copy)
    url = built.urls["u0.png"]
    with lookalike.Collection.open(copy) as coll:
        # The copy still records the original's download folder: that is where it reads.
        assert read_item_bytes(coll._storage, url) == ItemReader(coll._storage).cached_copy(url).read_bytes()
        with coll._storage.db.transaction():
            coll._storage.db.set_state("download_dir", str(tmp_path / "elsewhere"))
        with pytest.raises(ImageUnavailable, match="elsewhere"):
            read_item_bytes(coll._storage, url)


def test_metadata_and_image_bytes_through_the_mixin(built: SourcesCollection) -> None:
    with lookalike.Collection.open(built.path) as coll:
        ids = _by_path(coll)
        member = next(iter(built.member_bytes))
        access: ItemAccess = coll if isinstance(coll, ItemAccess) else _Bound(coll)
        assert access.metadata(ids[member]) == {"caption": "a red kite over the dunes", "license": "cc-by", "w": 3}
        assert access.metadata(ids[built.urls["u1.jpg"]]) == {"caption": "orange cat", "license": "cc-by-sa",
                                                               "stars": 2}
        assert access.image_bytes(ids[member]) == built.member_bytes[member]
        assert {"caption", "license", "stars", "w"} <= set(access.metadata_keys())
        many = metadata_of(coll, list(ids.values()))
        assert many[ids[member]]["w"] == 3 and isinstance(many[ids[member]]["w"], int)
        assert item_reader(coll) is item_reader(coll)  # one reader per collection
        with pytest.raises(ItemNotFound):
            access.metadata(10**9)
        with pytest.raises(ItemNotFound):
            access.image_bytes(10**9)
        with pytest.raises(ImageUnavailable):
            access.image_bytes(ids[built.uncached])


class _Bound(ItemAccess):
    """ItemAccess over a collection whose class does not mix it in (yet)."""

    def __init__(self, coll: lookalike.Collection) -> None:
        self._storage = coll._storage
        self._item_reader = item_reader(coll)
