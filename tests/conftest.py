"""Fixtures shared by segdl's tests: the fault server and deterministic test data."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest

from tests.server import FaultServer


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A started FaultServer on 127.0.0.1, stopped after the test."""
    with FaultServer() as server:
        yield server


@pytest.fixture
def make_data() -> Callable[..., bytes]:
    """``make_data(size, seed=0)``: deterministic pseudo-random bytes (fast even for 64 MiB)."""

    def make(size: int, seed: int = 0) -> bytes:
        return random.Random(seed).randbytes(size)

    return make
