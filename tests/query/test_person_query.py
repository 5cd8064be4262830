"""person:NAME / person:ID in the query language, and Filter.person's SQL (no database)."""

from __future__ import annotations

import sqlite3

import pytest

from lookalike.errors import InvalidArgument, QueryError
from lookalike.query import Query, Term, parse_query, parse_query_tokens, query_vectors
from lookalike.store.filters import Filter, person_key


def test_a_person_is_a_filter_beside_the_terms() -> None:
    q = parse_query("beach person:Ada")
    assert q.terms == (Term(1.0, "text", "beach"),) and q.persons == ("Ada",)
    assert q.describe() == "beach person:Ada"


def test_persons_alone_make_a_query_of_no_terms() -> None:
    q = parse_query('person:"Ada Lovelace" person:3 person:3')
    assert q.terms == () and q.persons == ("Ada Lovelace", "3")  # a repeat is one filter
    assert q.describe() == 'person:"Ada Lovelace" person:3'
    assert parse_query(q.describe()) == q  # the readable form parses back


def test_argv_tokens_take_a_name_with_spaces_as_one_token() -> None:
    q = parse_query_tokens(["red", "car", "person:Ada Lovelace", "+", "2:id:4"])
    assert q.persons == ("Ada Lovelace",)
    assert q.terms == (Term(1.0, "text", "red car"), Term(2.0, "id", 4))


@pytest.mark.parametrize("text, terms", [
    ("dog + person:Ada", ("dog",)),            # a "+" before a filter is harmless
    ("dog + person:Ada + cat", ("dog", "cat")),
    ("+ person:Ada", ()),
    ("person:Ada - cat", ("-cat",)),
])
def test_the_terms_read_as_if_the_filter_were_not_there(text: str, terms: tuple[str, ...]) -> None:
    q = parse_query(text)
    assert q.persons == ("Ada",)
    assert tuple(("-" if t.weight < 0 else "") + t.value for t in q.terms) == terms


@pytest.mark.parametrize("text", ["dog - person:Ada", "- person:Ada", "2:person:Ada", "-1:person:Ada"])
def test_a_weighted_or_negated_person_is_refused_as_a_filter(text: str) -> None:
    with pytest.raises(QueryError, match="person: is a filter"):
        parse_query(text)


@pytest.mark.parametrize("text", ["person:", 'person:" "', "dog person:Ada -"])
def test_an_empty_person_or_a_dangling_operator_is_refused(text: str) -> None:
    with pytest.raises(QueryError, match="after person:|ends with an operator"):
        parse_query(text)


def test_files_off_still_reads_persons_and_query_stays_constructible() -> None:
    q = parse_query("person:Ada.jpg sunset", allow_files=False)  # a name is never a path
    assert q.persons == ("Ada.jpg",) and q.terms == (Term(1.0, "text", "sunset"),)
    assert Query((Term(1.0, "text", "x"),)).persons == ()


def test_a_query_of_persons_alone_has_no_vector() -> None:
    with pytest.raises(QueryError, match="person: filters alone"):
        query_vectors([parse_query("person:Ada")], dim=4, model=lambda: None, item_vectors={})  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="empty query"):
        query_vectors([Query(())], dim=4, model=lambda: None, item_vectors={})  # type: ignore[arg-type]


def test_person_keys_digits_are_ids_and_names_are_stripped() -> None:
    assert (person_key(3), person_key(" 12 "), person_key(" Ada ")) == (3, 12, "Ada")
    for bad in ("  ", True, 1.5):
        with pytest.raises(InvalidArgument):
            person_key(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="empty person"):
        Filter(person=[""])


def test_filter_person_selects_items_showing_every_person() -> None:
    """Filter.sql on the contract's tables: ids and names (any case), ANDed across people."""
    conn = sqlite3.connect(":memory:")
    conn.executescript("""
        CREATE TABLE items(id INTEGER PRIMARY KEY, path TEXT);
        CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT UNIQUE COLLATE NOCASE);
        CREATE TABLE faces(id INTEGER PRIMARY KEY, item_id INTEGER, person_id INTEGER);
        INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd');
        INSERT INTO people VALUES (10, 'Ada Lovelace'), (11, NULL);
        INSERT INTO faces(item_id, person_id) VALUES (1, 10), (2, 10), (2, 11), (3, 11), (4, NULL);
    """)

    def select(flt: Filter) -> list[int]:
        clauses, params = flt.sql()
        return [r[0] for r in conn.execute(f"SELECT id FROM items WHERE {' AND '.join(clauses)} ORDER BY id",
                                           params)]

    assert select(Filter(person=[10])) == [1, 2]
    assert select(Filter(person=["ada lovelace"])) == [1, 2]
    assert select(Filter(person=["11"])) == [2, 3]
    assert select(Filter(person=[10, "11"])) == [2]
    assert select(Filter(person=["Nobody"])) == []
    assert Filter(person=[10]).cache_key() is None and not Filter(person=[10]).is_empty()
    assert select(Filter(person=[10], glob="*b")) == [2]
