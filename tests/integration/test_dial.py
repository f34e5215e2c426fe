"""Dialling early: a TCP connect started before the transport exists is the one it uses."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segdl import dial
from segdl.cli.exitcodes import ExitCode
from segdl.errors import ConnectError, TLSError
from segdl.transport import Urllib3Transport
from tests.client import get_body, wait_for
from tests.integration.test_cli import run_cli
from tests.server import FaultServer


@pytest.fixture(autouse=True)
def _no_dial_left() -> Iterator[None]:
    yield
    dial.discard()


def _get_once(url: str, **transport_options: Any) -> bytes:
    """GET ``url`` through a new transport, closed afterwards."""
    transport = Urllib3Transport(**transport_options)
    try:
        return get_body(transport, url)
    finally:
        transport.close()


def test_the_first_connection_is_the_dialled_socket(fault_server: FaultServer) -> None:
    """No second connect: the server sees one connection, and the request arrived on it."""
    fault_server.add_file("/f.bin", b"abc" * 1000)
    dial.dial(fault_server.url("/f.bin"), 5.0)
    assert wait_for(lambda: fault_server.open_connections == 1)
    assert _get_once(fault_server.url("/f.bin")) == b"abc" * 1000
    assert fault_server.peak_connections == 1
    assert [r.connection_id for r in fault_server.requests] == [0]


def test_tls_is_verified_on_a_dialled_socket(
    server_context: ssl.SSLContext, ca_bundle: str
) -> None:
    """urllib3 puts TLS on the dialled socket as on its own: the CA is checked either way."""
    with FaultServer(ssl_context=server_context) as server:
        server.add_file("/f.bin", b"x" * 5000)
        url = server.url("/f.bin")
        dial.dial(url, 5.0)
        with pytest.raises(TLSError):
            _get_once(url)
        dial.dial(url, 5.0)
        assert _get_once(url, ca_bundle=ca_bundle) == b"x" * 5000
        assert server.peak_connections == 1
        assert len(server.requests) == 1


def test_a_socket_the_server_closed_meanwhile_is_not_used() -> None:
    """A server that gave up on the idle socket: a fresh connection, not a failed request."""
    with FaultServer(keep_alive_timeout_s=0.2) as server:
        server.add_file("/f.bin", b"z" * 2000)
        dial.dial(server.url("/f.bin"), 5.0)
        assert wait_for(lambda: server.open_connections == 1)
        assert wait_for(lambda: server.open_connections == 0)
        assert _get_once(server.url("/f.bin")) == b"z" * 2000
        assert [r.connection_id for r in server.requests] == [1]


def test_a_failed_dial_leaves_the_transport_to_report() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    url = f"http://127.0.0.1:{port}/f.bin"
    dial.dial(url, 2.0)
    transport = Urllib3Transport(timeout_s=2.0)
    try:
        with pytest.raises(ConnectError):
            transport.request("GET", url, {})
    finally:
        transport.close()


def test_an_untaken_socket_is_closed_by_discard(fault_server: FaultServer) -> None:
    dial.dial(fault_server.url("/f.bin"), 5.0)
    dial.dial(fault_server.url("/other"), 5.0)  # same host and port: dialled once
    assert wait_for(lambda: fault_server.open_connections == 1)
    dial.discard()
    assert wait_for(lambda: fault_server.open_connections == 0)
    assert dial.take("127.0.0.1", fault_server.port) is None
    assert fault_server.requests == []


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/f", "http://[::1/f", "http://:80/f", "nope"])
def test_what_cannot_be_dialled_is_ignored(url: str) -> None:
    dial.dial(url, 1.0)
    dial.discard()


def test_the_cli_dials_its_url_unless_a_proxy_carries_it(
    fault_server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fault_server.add_file("/f.bin", b"y" * 3000)
    url = fault_server.url("/f.bin")
    dialled: list[str] = []
    real_dial = dial.dial

    def spy(target: str, timeout_s: float) -> None:
        dialled.append(target)
        real_dial(target, timeout_s)

    monkeypatch.setattr(dial, "dial", spy)
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run_cli("-q", "-x", "1", "-o", str(tmp_path / "a.bin"), url)
    assert (code, err) == (ExitCode.OK, "")
    assert dialled == [url]
    assert fault_server.peak_connections == 1  # the dialled socket served the whole file

    # A proxy would carry the request: nothing may go to the server around it.
    dialled.clear()
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{unused.getsockname()[1]}"
    code, _, _ = run_cli(
        "-q", "--retries", "0", "--proxy", dead_proxy, "-o", str(tmp_path / "b"), url
    )
    assert code != ExitCode.OK
    monkeypatch.setenv("http_proxy", dead_proxy)
    code, _, _ = run_cli("-q", "--retries", "0", "-o", str(tmp_path / "c"), url)
    assert code != ExitCode.OK
    assert dialled == []
    assert len(fault_server.requests) == 1
