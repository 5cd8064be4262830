"""Fuzzing: schemathesis generates requests from the live OpenAPI spec; none may get a 5xx.

The server runs under uvicorn on a loopback port over ``served_collection`` (generated
images, tiny random CLIP: what is found does not matter here, only that nothing breaks). Each
operation that takes input gets the same number of generated cases, positive and negative
(values outside the schema too), and the test checks how many requests were really sent:
50 each in the default suite (~350 requests), 300 each in the ``slow`` run (``make test-all``),
or ``$LOOKALIKE_FUZZ_EXAMPLES`` each where that is set (``make fuzz`` sets 300).
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
QUICK, THOROUGH = 50, 300


@pytest.fixture(scope="module")
def fuzz_base(served_collection: Path) -> Iterator[str]:
    config = ServerConfig(collection=served_collection, max_upload_bytes=2 * 1024 * 1024, request_timeout_s=20)
    with live_server(config) as url:
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
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(f"{fuzz_base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9, [op.label for op in operations]
    sent: list[tuple[str, int]] = []
    failures: list[str] = []
    for op in operations:
        strategy = op.as_strategy(generation_mode=GenerationMode.POSITIVE) | op.as_strategy(
            generation_mode=GenerationMode.NEGATIVE)

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
