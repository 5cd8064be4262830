"""Fuzzing: schemathesis generates requests from the live OpenAPI spec; none may get a 5xx.

The server runs under uvicorn on a loopback port over ``served_collection`` (generated
images, tiny random CLIP: what is found does not matter here, only that nothing breaks). Each
operation gets ``$LOOKALIKE_FUZZ_EXAMPLES`` generated cases (100 by default, over 500 in
all; ``make fuzz`` runs 300 each), positive and negative (values outside the schema too),
and the test checks how many requests were really sent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from lookalike.server import ServerConfig  # noqa: E402
from support import live_server  # noqa: E402

EXAMPLES = int(os.environ.get("LOOKALIKE_FUZZ_EXAMPLES", "100"))
MIN_REQUESTS = 500


@pytest.fixture(scope="module")
def fuzz_base(served_collection: Path) -> Iterator[str]:
    config = ServerConfig(collection=served_collection, max_upload_bytes=2 * 1024 * 1024, request_timeout_s=20)
    with live_server(config) as url:
        yield url


def test_no_server_errors_over_500_generated_requests(fuzz_base: str) -> None:
    """Every operation of the live spec, fuzzed with positive and negative cases.

    Driven through ``APIOperation.as_strategy`` and Hypothesis directly (schemathesis's
    pytest plugin does not run under this pytest).
    """
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(f"{fuzz_base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9, [op.label for op in operations]
    sent: list[tuple[str, int]] = []
    failures: list[str] = []
    for op in operations:
        strategy = op.as_strategy(generation_mode=GenerationMode.POSITIVE) | op.as_strategy(
            generation_mode=GenerationMode.NEGATIVE)

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
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
    assert len(sent) >= MIN_REQUESTS or EXAMPLES < 100, f"only {len(sent)} generated requests"
    # Every operation was really exercised: a strategy that generates nothing must not hide
    # behind the others' total.
    unexercised = {op.label for op in operations} - {label for label, _ in sent}
    assert not unexercised, f"no requests generated for {sorted(unexercised)}"
    statuses = sorted({status for _, status in sent})
    print(f"\nfuzz: {len(sent)} requests over {len(operations)} operations, statuses {statuses}, 0 server errors")
