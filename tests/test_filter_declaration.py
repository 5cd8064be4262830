"""Filter is the one declaration of the search filters: the CLI options and the HTTP schema
must offer exactly its fields (a field added to one place alone fails here)."""

from __future__ import annotations

import dataclasses
import pytest
import typer

from lookalike.store.filters import Filter

FIELDS = {f.name: f for f in dataclasses.fields(Filter)}


def _search_command():  # noqa: ANN202 - typer's own click Command
    from lookalike.cli.app import app

    group = typer.main.get_command(app)
    return group.commands["search"]  # type: ignore[attr-defined]


def test_every_cli_filter_field_is_a_search_option_with_its_flag() -> None:
    options = {opt for p in _search_command().params if p.param_type_name == "option" for opt in p.opts}
    declared = {f.metadata["cli"] for f in FIELDS.values() if f.metadata.get("cli")}
    assert declared <= options, sorted(declared - options)
    assert {f.name for f in FIELDS.values() if not f.metadata.get("cli")} == {"where"}  # Python-only


def test_cli_filter_flags_reach_the_filter(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    """Each flag sets its own field (not a neighbour's) in the Filter the search receives."""
    from typer.testing import CliRunner

    from lookalike.cli import app as app_mod
    from lookalike.store import collection as coll_mod

    seen: list[Filter] = []

    class FakeCollection:
        def __enter__(self) -> "FakeCollection":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def search_batch(self, queries, k, min_score=None, where=None):  # noqa: ANN001, ANN201
            seen.append(where)
            return [[] for _ in queries]

    monkeypatch.setattr(coll_mod.Collection, "open", classmethod(lambda cls, *a, **kw: FakeCollection()))
    args = ["search", "id:1", "--under", str(tmp_path), "--glob", "*.png", "--after", "2024-01-01",
            "--before", "2024-02-01", "--min-width", "1", "--min-height", "2", "--max-width", "3",
            "--max-height", "4", "--label", "fruit", "--label", "beach", "--cluster", "3"]
    result = CliRunner().invoke(app_mod.app, args)
    assert result.exit_code == 0, result.output
    (flt,) = seen
    assert flt.folders() == (str(tmp_path),) and flt.glob == "*.png"
    assert (flt.min_width, flt.min_height, flt.max_width, flt.max_height) == (1, 2, 3, 4)
    assert str(flt.modified_after)[:10] == "2024-01-01" and str(flt.modified_before)[:10] == "2024-02-01"
    assert list(flt.label) == ["fruit", "beach"] and list(flt.cluster) == [3]


def test_http_filters_schema_has_the_same_fields() -> None:
    pytest.importorskip("fastapi")
    from lookalike.server.schemas import FilterParams, Filters

    http = set(Filters.model_fields)
    assert http == set(FIELDS) - {"where"}, sorted(http ^ (set(FIELDS) - {"where"}))
    assert set(FilterParams.model_fields) == http
    # Every HTTP field converts into the library's Filter as is.
    sample = Filters(under=["/a"], glob="*.jpg", min_width=1, min_height=2, max_width=3, max_height=4)
    flt = Filter(**sample.model_dump())
    assert (flt.glob, flt.max_height) == ("*.jpg", 4)


def test_get_routes_take_each_filter_as_a_query_parameter(tmp_path) -> None:  # noqa: ANN001
    """The OpenAPI spec of GET /api/search and /similar lists every filter field as a parameter."""
    pytest.importorskip("fastapi")
    from lookalike.server import ServerConfig, create_app
    from lookalike.store.manifest import Manifest

    coll = tmp_path / "c.lkl"
    coll.mkdir()
    info = {"model_id": "lite", "dim": 4, "modalities": ["image"], "preprocess": {}, "fingerprint": "x"}
    Manifest(model=info).save(coll / "manifest.json")
    paths = create_app(ServerConfig(collection=coll, warm=False)).openapi()["paths"]
    for route in ("/api/search", "/api/items/{item_id}/similar"):
        params = {p["name"] for p in paths[route]["get"]["parameters"]}
        assert set(FIELDS) - {"where"} <= params, (route, sorted(set(FIELDS) - params))
