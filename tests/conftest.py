"""Fixtures shared by segdl's tests: the fault server and deterministic test data."""

from __future__ import annotations

import random
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from segdl.disk.storage import Pipe
from tests.server import FaultServer


@pytest.fixture(autouse=True)
def no_user_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads the config file of whoever runs the tests (segdl's config.toml)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))


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


@pytest.fixture(params=["splice", "copy"])
def body_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test both ways bodies reach the file over plain HTTP: spliced through a pipe
    (Linux) and copied through a buffer (elsewhere, and under a rate limit)."""
    if request.param == "copy" or not Pipe.supported():
        monkeypatch.setattr(Pipe, "supported", staticmethod(lambda: False))
    return str(request.param)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throwaway certificate authority for the TLS tests."""
    return trustme.CA()


@pytest.fixture
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server-side TLS context with that CA's certificate for 127.0.0.1 and localhost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def tls_server(server_context: ssl.SSLContext) -> Iterator[FaultServer]:
    """The fault server speaking HTTPS with ``server_context``."""
    with FaultServer(ssl_context=server_context) as server:
        yield server


@pytest.fixture
def ca_bundle(ca: trustme.CA, tmp_path: Path) -> str:
    """That CA's certificate as a PEM file (what ``--ca-bundle`` takes)."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)
