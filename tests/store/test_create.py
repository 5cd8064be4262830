"""Creating collections: refusals, and recovery from a create that was interrupted."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike import Collection, CollectionError, CollectionExists
from lookalike.store.metadata import MetadataDB


def test_create_refuses_a_folder_with_other_files(tmp_path: Path, lite_model) -> None:
    """A non-empty folder that is not a collection is never written into."""
    (tmp_path / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(CollectionError, match="not empty"):
        Collection.create(tmp_path, model=lite_model)
    assert (tmp_path / "holiday.jpg").read_bytes() == b"not ours"


def test_create_twice_raises_exists(tmp_path: Path, lite_model) -> None:
    """A second create on the same path names the problem; exist_ok opens it instead."""
    Collection.create(tmp_path / "c.lkl", model=lite_model).close()
    with pytest.raises(CollectionExists):
        Collection.create(tmp_path / "c.lkl", model=lite_model)
    with Collection.create(tmp_path / "c.lkl", model=lite_model, exist_ok=True) as coll:
        assert coll.manifest.model_id == "lite"


def test_create_recovers_from_an_interrupted_create(tmp_path: Path, lite_model) -> None:
    """Regression: a create killed after the database but before the manifest left a folder no
    create would accept ("not empty and not a collection")."""
    root = tmp_path / "c.lkl"
    root.mkdir()
    MetadataDB(root / "items.sqlite").close()  # what create writes before the manifest
    (root / ".lock").touch()
    with Collection.create(root, model=lite_model) as coll:
        assert len(coll) == 0 and (root / "manifest.json").is_file()


def test_item_at_finds_url_and_member_items_by_their_identity(tmp_path: Path, lite_model) -> None:
    """Regression: item_at ran every key through user_path, turning a URL into a local path."""
    coll = Collection.create(tmp_path / "c.lkl", model=lite_model)
    url, member = "https://example.org/a.jpg", f"{tmp_path}/shard.tar#000001.jpg"
    with coll._storage.db.transaction():
        coll._storage.db.upsert([(url, 10, 0, None, None, None, "failed", "HTTP 404 Not Found", None),
                                 (member, 10, 0, None, None, None, "failed", "not an image", None)])
    assert coll.item_at(url).path == url
    assert coll.item_at(member).path == member
    assert coll.item_at("https://example.org/other.jpg") is None
