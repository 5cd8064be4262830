"""Fixtures shared by the explore tests."""

from __future__ import annotations

from typing import Iterator

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread() -> Iterator[None]:
    """FAISS's OpenMP threads spin against each other on a busy 2-core machine: use one."""
    try:
        import faiss
    except ImportError:  # the tests that need faiss skip themselves
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)
