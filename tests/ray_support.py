"""A local Ray cluster for the tests that run work as Ray tasks.

Use it with ``from ray_support import ray_cluster  # noqa: F401`` in a test module and a
``ray_cluster`` argument: the cluster (2 CPUs, no dashboard) starts once per test session,
on first use, and shuts down at its end. Without ray installed, those tests skip, saying so.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """The ``ray`` module, initialised with a local 2-CPU cluster."""
    # The default reason ("could not import 'ray'") is what conftest turns into a failure under CI.
    ray = pytest.importorskip("ray")
    if ray.is_initialized():  # started by the caller (a cluster to join): leave it to them
        yield ray
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=128 * 1024**2)
    try:
        yield ray
    finally:
        ray.shutdown()
