"""``--where`` conditions: parsing, and what they select through ``Collection.search(...,
where=Filter(conditions=[...]))`` over a table's columns and the item's own fields."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

import lookalike
from support import make_image
from lookalike.errors import InvalidArgument
from lookalike.sources import TableSource
from lookalike.store.collection import Collection
from lookalike.store.conditions import Condition, parse_condition
from lookalike.store.filters import Filter

pytest.importorskip("pyarrow")

#: name, (width, height), then the table's columns: caption, license, score, ratio, id, flag, lang.
ROWS = [
    ("i0", (96, 80), "a red kite", "cc-by", "9", "0.5", "00123", "true", "en"),
    ("i1", (120, 80), "two herons", "cc0", "10", "1.5", "7", "false", "de"),
    ("i2", (64, 64), "", "cc-by-sa", "100", "-1", "", "TRUE", "fr"),
    ("i3", (200, 100), "n/a", "", "n/a", "", "", "", "en"),
    ("i4", (96, 81), "", "cc0", "", "", "", "", ""),
]
ALL = {r[0] for r in ROWS}


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory, tiny_timm_dir: Path) -> Iterator[Collection]:
    root = tmp_path_factory.mktemp("conditions")
    lines = ["path,caption,license,score,ratio,id,flag,lang"]
    for i, (name, size, *cols) in enumerate(ROWS):
        make_image(root / f"{name}.png", seed=i, size=size)
        lines.append(",".join([f"{name}.png", *cols]))
    (root / "t.csv").write_text("\n".join(lines) + "\n")
    c = Collection.create(root / "c.lkl", model=lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu"))
    report = c.add(TableSource(str(root / "t.csv"), caption_column="caption"))
    assert report.added == len(ROWS)
    yield c
    c.close()


def names(coll: Collection, *conditions: str) -> set[str]:
    """The items a search filtered by ``conditions`` may return (k beyond the collection's size)."""
    query = coll.get_vectors([next(iter(coll.items())).id])[0]
    hits = coll.search(query, k=50, where=Filter(conditions=list(conditions)))
    return {Path(h.path).stem for h in hits}


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("text, key, op, values", [
    ("license=cc-by", "license", "=", ("cc-by",)),
    ("license != cc0", "license", "!=", ("cc0",)),
    ("score<10", "score", "<", ("10",)),
    ("score<=10", "score", "<=", ("10",)),
    ("score>10", "score", ">", ("10",)),
    ("score >= 10", "score", ">=", ("10",)),
    ("lang in en,de", "lang", "in", ("en", "de")),
    ("lang IN (en, de)", "lang", "in", ("en", "de")),
    ("title=a=b c", "title", "=", ("a=b c",)),
    ("exif.model:x=Canon EOS", "exif.model:x", "=", ("Canon EOS",)),
])
def test_every_operator_parses(text: str, key: str, op: str, values: tuple[str, ...]) -> None:
    assert parse_condition(text) == Condition(key, op, values)


@pytest.mark.parametrize("text, says", [
    ("license", "not a condition"),
    ("=cc0", "not a condition"),
    ("license=", "not a condition"),
    ("  ", "not a condition"),
    ("1st=x", "not a condition"),
    ("lang in ,", "'in' needs values"),
    ("path>/a", "paths compare with"),
    ("path<=/a", "paths compare with"),
    ("width>abc", "width is a number of pixels"),
    ("height=tall", "height is a number of pixels"),
    ("size>=1MB", "size is a number of bytes"),
    ("width in 10,wide", "width is a number of pixels"),
])
def test_a_bad_condition_is_an_invalid_argument_naming_it(text: str, says: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_condition(text)
    assert repr(text) in str(caught.value) and says in str(caught.value)
    with pytest.raises(InvalidArgument, match=says):
        Filter(conditions=["license=cc0", text])  # before any search runs


def test_values_compare_as_numbers_and_as_the_text_written() -> None:
    assert parse_condition("id=00123").sql()[1] == ["id", 123, "00123"]
    assert parse_condition("id='00123'").sql()[1] == ["id", "00123"]  # quoted: text only
    assert parse_condition("flag=false").sql()[1] == ["flag", 0, "false"]
    clause, params = parse_condition("score>9").sql()
    assert "typeof(value) IN ('integer', 'real')" in clause and params == ["score", 9]
    clause, params = parse_condition("license>b").sql()
    assert "typeof(value) = 'text'" in clause and params == ["license", "b"]
    assert parse_condition("width>=512").sql() == ("width >= ?", [512])


# --------------------------------------------------------------------------- through search
def test_equality_and_inequality(coll: Collection) -> None:
    assert names(coll, "license=cc0") == {"i1", "i4"}
    assert names(coll, "license=cc-by") == {"i0"}  # not cc-by-sa: equality, not a prefix
    assert names(coll, "caption=a red kite") == {"i0"}
    # != keeps the items that have no such key at all: they are not equal to it.
    assert names(coll, "license!=cc0") == {"i0", "i2", "i3"}
    assert names(coll, "nosuchkey!=x") == ALL
    assert names(coll, "nosuchkey=x") == set()


def test_numbers_compare_as_numbers_and_text_as_text(coll: Collection) -> None:
    # As text, "10" and "100" sort before "9": only a numeric comparison gives these.
    assert names(coll, "score>9") == {"i1", "i2"}
    assert names(coll, "score>=9") == {"i0", "i1", "i2"}
    assert names(coll, "score<10") == {"i0"}  # i3's "n/a" is text: no number to compare
    assert names(coll, "score<=10") == {"i0", "i1"}
    assert names(coll, "ratio<0") == {"i2"}
    assert names(coll, "ratio<=0.5") == {"i0", "i2"}
    assert names(coll, "score=n/a") == {"i3"}
    # Text orders as text ('-' sorts before '0').
    assert names(coll, "license<cc0") == {"i0", "i2"}
    assert names(coll, "license>=cc0") == {"i1", "i4"}
    assert names(coll, "license>cc-by") == {"i1", "i2", "i4"}


def test_ids_keep_their_leading_zeros_and_booleans_match_true_and_false(coll: Collection) -> None:
    assert names(coll, "id=00123") == {"i0"}
    assert names(coll, "id=123") == set()
    assert names(coll, "id=7") == {"i1"}
    assert names(coll, "id='7'") == set()  # quoted: the text "7", and 7 is stored as a number
    assert names(coll, "flag=true") == {"i0", "i2"}
    assert names(coll, "flag=FALSE") == {"i1"}
    assert names(coll, "flag!=true") == {"i1", "i3", "i4"}


def test_in(coll: Collection) -> None:
    assert names(coll, "lang in en,fr") == {"i0", "i2", "i3"}
    assert names(coll, "lang in (de)") == {"i1"}
    assert names(coll, "score in 9, 100") == {"i0", "i2"}
    assert names(coll, "license in cc0,cc-by", "score>=10") == {"i1"}  # all conditions hold


def test_the_items_own_width_height_size_and_path(coll: Collection) -> None:
    assert names(coll, "width>=100") == {"i1", "i3"}
    assert names(coll, "width=96") == {"i0", "i4"}
    assert names(coll, "height<80") == {"i2"}
    assert names(coll, "height!=80") == {"i2", "i3", "i4"}
    assert names(coll, "width in 64, 200") == {"i2", "i3"}
    i2 = next(item.path for item in coll.items() if item.path.endswith("i2.png"))
    i3 = next(item.path for item in coll.items() if item.path.endswith("i3.png"))
    assert names(coll, f"path={i2}") == {"i2"}
    assert names(coll, f"path!={i2}") == ALL - {"i2"}
    assert names(coll, f"path in {i2},{i3}") == {"i2", "i3"}
    sizes = {Path(item.path).stem: item.size for item in coll.items()}
    assert names(coll, f"size>={sizes['i3']}") == {k for k, v in sizes.items() if v >= sizes["i3"]}


def test_conditions_with_other_filters(coll: Collection) -> None:
    query = coll.get_vectors([next(iter(coll.items())).id])[0]
    hits = coll.search(query, k=50, where=Filter(conditions=["lang=en"], min_width=150))
    assert {Path(h.path).stem for h in hits} == {"i3"}
    hits = coll.search(query, k=1, where=Filter(conditions=["license in cc0,cc-by-sa"]))
    assert len(hits) == 1 and Path(hits[0].path).stem in {"i1", "i2", "i4"}
