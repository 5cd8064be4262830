"""Fuzzing: schemathesis generates requests from the live OpenAPI spec; none may get a 5xx.

The server runs under uvicorn on a loopback port over ``served_collection`` (generated
images, tiny random CLIP: what is found does not matter here, only that nothing breaks). Each
operation that takes input gets the same number of generated cases, positive and negative
(values outside the schema too), and the test checks how many requests were really sent:
15 each in the default suite, 300 each in the ``slow`` run (``make test-all``),
or ``$LOOKALIKE_FUZZ_EXAMPLES`` each where that is set (``make fuzz`` sets 300). The duplicates
routes are fuzzed a second time on a server started with ``--allow-actions`` over a collection
of their own, so that resolve requests get past the 403. The explore routes (clusters, labels, the map, matrices)
are fuzzed a second time too, on a server over a copy of the collection that has clusters,
labels and a map, so that their GET routes answer more than 404; the POST routes that
(re)compute them run there only, never on the shared collection. POST /api/map's positive
cases ask for PCA layouts only: a UMAP or t-SNE fit takes seconds (the first UMAP fit of a
process compiles for longer than the request deadline), and the layouts themselves are the
library's tests' business.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from lookalike.server import ServerConfig  # noqa: E402
from support import live_server  # noqa: E402

#: Generated cases per operation: a quick default-suite run, and a thorough one marked slow.
#: Quick is 15 (it was 50, then 25) to keep the default suite inside its 5 minutes on 2 cores
#: as routes are added (issue 14's people routes); `make fuzz` and `-m slow` run 300.
QUICK, THOROUGH = 15, 300
#: The routes that compute and store results in the collection: fuzzed on a copy only.
COMPUTING = {"POST /api/clusters", "POST /api/labels", "POST /api/map"}


@pytest.fixture(scope="module")
def fuzz_base(served_collection: Path) -> Iterator[str]:
    config = ServerConfig(collection=served_collection, max_upload_bytes=2 * 1024 * 1024, request_timeout_s=20)
    with live_server(config) as url:
        yield url


@pytest.fixture(scope="module")
def actions_base(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Iterator[str]:
    """A server with --allow-actions over a collection of its own (generated images and exact
    copies of some): fuzzed resolve requests may really move files, into its own quarantine."""
    import shutil

    import lookalike
    from support import make_image

    root = tmp_path_factory.mktemp("fuzz-actions")
    for i in range(12):
        make_image(root / "images" / "a" / f"img{i}.png", seed=500 + i)
    for i in range(0, 12, 3):
        (root / "images" / "b").mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "images" / "a" / f"img{i}.png", root / "images" / "b" / f"copy{i}.png")
    with lookalike.Collection.create(root / "c.lkl", model=f"openclip:{tiny_clip_dir}", device="cpu") as coll:
        coll.add([root / "images"])
    config = ServerConfig(collection=root / "c.lkl", allow_actions=True, quarantine=root / "quarantine",
                          request_timeout_s=20)
    with live_server(config) as url:
        yield url


@pytest.fixture(scope="module")
def explore_base(tmp_path_factory: pytest.TempPathFactory, served_collection: Path) -> Iterator[str]:
    """A server over a copy of the shared collection with clusters, labels and a map."""
    import shutil

    import lookalike

    path = tmp_path_factory.mktemp("fuzz-explore") / "c.lkl"
    shutil.copytree(served_collection, path)
    with lookalike.Collection.open(path) as coll:
        coll.cluster(3)
        coll.label(["a garden", "a kitchen"])
        coll.map(method="pca")
    with live_server(ServerConfig(collection=path, request_timeout_s=20, warm=False)) as url:
        yield url


def _takes_input(operation) -> bool:
    """Whether the operation has parameters or a body (/healthz has neither: one case is all)."""
    return any(True for _ in operation.iter_parameters()) or bool(operation.get_request_payload_content_types())


@pytest.mark.parametrize("examples", [pytest.param(QUICK, id="quick"),
                                      pytest.param(THOROUGH, id="thorough", marks=pytest.mark.slow)])
def test_no_server_errors_on_generated_requests(fuzz_base: str, examples: int) -> None:
    """Every operation of the live spec, fuzzed with positive and negative cases.

    Driven through ``APIOperation.as_strategy`` and Hypothesis directly (schemathesis's
    pytest plugin does not run under this pytest).
    """
    examples = int(os.environ.get("LOOKALIKE_FUZZ_EXAMPLES", examples))
    schema = schemathesis.openapi.from_url(f"{fuzz_base}/openapi.json")
    operations = [op for op in (result.ok() for result in schema.get_all_operations()) if op.label not in COMPUTING]
    assert len(operations) >= 12, [op.label for op in operations]
    assert {"GET /api/duplicates", "GET /api/duplicates/histogram", "POST /api/duplicates/resolve",
            "GET /api/map/points", "GET /api/matrix"} <= {op.label for op in operations}
    _fuzz(operations, examples)


@pytest.mark.parametrize("examples", [pytest.param(QUICK, id="quick"),
                                      pytest.param(THOROUGH, id="thorough", marks=pytest.mark.slow)])
def test_no_server_errors_on_duplicates_with_actions_allowed(actions_base: str, examples: int) -> None:
    """The duplicates routes again, on a server that acts on files: resolve gets past the
    403 and into its checks (and, for a request naming a real group, into moving files)."""
    examples = int(os.environ.get("LOOKALIKE_FUZZ_EXAMPLES", examples))
    schema = schemathesis.openapi.from_url(f"{actions_base}/openapi.json")
    operations = [op for op in (result.ok() for result in schema.get_all_operations())
                  if op.path.startswith("/api/duplicates")]
    assert len(operations) == 3, [op.label for op in operations]
    _fuzz(operations, examples)


@pytest.mark.parametrize("examples", [pytest.param(QUICK, id="quick"),
                                      pytest.param(THOROUGH, id="thorough", marks=pytest.mark.slow)])
def test_no_server_errors_on_explore_routes(explore_base: str, examples: int) -> None:
    """Clusters, labels, the map and matrices on a collection that has them, the routes that
    recompute them included."""
    examples = int(os.environ.get("LOOKALIKE_FUZZ_EXAMPLES", examples))
    schema = schemathesis.openapi.from_url(f"{explore_base}/openapi.json")
    operations = [op for op in (result.ok() for result in schema.get_all_operations())
                  if op.path.startswith(("/api/clusters", "/api/labels", "/api/map", "/api/matrix"))]
    assert COMPUTING <= {op.label for op in operations} and len(operations) == 11, [op.label for op in operations]
    _fuzz(operations, examples, keep={"POST /api/map": lambda case: (case.body or {}).get("method") == "pca"})


def _fuzz(operations: list, examples: int, keep: dict | None = None) -> None:
    """Send ``examples`` positive and negative generated cases to each operation; none may get
    a 5xx, and every 4xx must be the API's JSON error shape. ``keep``: for some operations,
    which positive cases to send."""
    from schemathesis.generation import GenerationMode

    sent: list[tuple[str, int]] = []
    failures: list[str] = []
    for op in operations:
        positive = op.as_strategy(generation_mode=GenerationMode.POSITIVE)
        if keep and op.label in keep:  # only such positive cases (a filter of what is generated)
            positive = positive.filter(keep[op.label])
        strategy = positive | op.as_strategy(generation_mode=GenerationMode.NEGATIVE)

        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case) -> None:
            response = case.call(timeout=30)
            sent.append((op.label, response.status_code))
            if response.status_code >= 500:
                failures.append(f"{op.label}: {response.status_code} {response.text[:300]}")
            elif response.status_code >= 400:
                assert set(response.json()["error"]) == {"code", "message"}, response.text[:300]

        run()
    assert not failures, failures[:5]
    # Every operation was really exercised, and each one that takes input got every generated
    # case: a strategy that generates little must not hide behind the others' total.
    counts = Counter(label for label, _ in sent)
    short = {op.label: counts[op.label] for op in operations if counts[op.label] < (examples if _takes_input(op) else 1)}
    assert not short, f"fewer requests than cases asked for ({examples}): {short}"
    statuses = sorted({status for _, status in sent})
    print(f"\nfuzz: {len(sent)} requests over {len(operations)} operations, statuses {statuses}, 0 server errors")
