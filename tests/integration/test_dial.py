"""Dialling early: a TCP connect started before the transport exists is the one it uses."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from segdl.cli.exitcodes import ExitCode
from segdl.core.errors import ConnectError, TLSError
from segdl.disk.paths import PART_SUFFIX, STATE_SUFFIX
from segdl.net import dial
from segdl.net.transport import Urllib3Transport
from segdl.net.urllib3_compat import DialledHTTPConnection
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
        # A socket with plain request bytes on it cannot carry TLS: the connection connects
        # anew, and the answer is right.
        dial.dial(url, 5.0, b"GET /f.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _get_once(url, ca_bundle=ca_bundle) == b"x" * 5000
        assert len(server.requests) == 2


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


def test_a_held_request_goes_only_once_released(fault_server: FaultServer) -> None:
    """A held early request waits for release(); discard() drops it unsent, so a command
    line whose options turn out bad sends nothing."""
    fault_server.add_file("/f.bin", b"x" * 100)
    url = fault_server.url("/f.bin")
    request = dial.first_request(url, "segdl/held")
    assert request is not None
    dial.dial(url, 5.0, request, hold=True)
    time.sleep(0.2)  # connected by now: the request is still held
    assert fault_server.requests == []
    dial.discard()
    time.sleep(0.2)
    assert fault_server.requests == []
    dial.dial(url, 5.0, request, hold=True)
    dial.release()
    host, port = urlsplit(url).hostname, urlsplit(url).port
    assert host is not None and port is not None
    dialled = dial.take(host, port)
    assert dialled is not None and dialled.sent == request
    dialled.sock.close()


def _spy_dial(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bytes | None]]:
    """Every early dial the CLI makes, (URL, request sent with it), without proxy variables."""
    calls: list[tuple[str, bytes | None]] = []
    real_dial = dial.dial

    def spy(
        target: str, timeout_s: float, request: bytes | None = None, *, hold: bool = False
    ) -> None:
        calls.append((target, request))
        real_dial(target, timeout_s, request, hold=hold)

    monkeypatch.setattr(dial, "dial", spy)
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_the_cli_dials_its_url_unless_a_proxy_carries_it(
    fault_server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fault_server.add_file("/f.bin", b"y" * 3000)
    url = fault_server.url("/f.bin")
    calls = _spy_dial(monkeypatch)
    code, _, err = run_cli("-q", "-x", "1", "-o", str(tmp_path / "a.bin"), url)
    assert (code, err) == (ExitCode.OK, "")
    assert [target for target, _ in calls] == [url]
    assert fault_server.peak_connections == 1  # the dialled socket served the whole file

    # A proxy would carry the request: nothing may go to the server around it.
    calls.clear()
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
    assert calls == []
    assert len(fault_server.requests) == 1


# The first request sent with the early connect.


def test_the_first_request_is_segdls_own_byte_for_byte() -> None:
    """What the transport writes for a fresh download's first request (checked end to end
    below); the port only when it is not 80, as http.client writes Host."""
    assert dial.first_request("http://Example.org:8080/a/b.iso?x=1&y=%2F#frag", "segdl/1") == (
        b"GET /a/b.iso?x=1&y=%2F HTTP/1.1\r\nHost: example.org:8080\r\n"
        b"User-Agent: segdl/1\r\nAccept-Encoding: identity\r\nRange: bytes=0-\r\n\r\n"
    )
    assert dial.first_request("http://example.org:80", "ua").startswith(  # type: ignore[union-attr]
        b"GET / HTTP/1.1\r\nHost: example.org\r\n"
    )
    # Over https the same bytes, sent once TLS is up (443 is its port not written).
    assert dial.first_request("https://example.org:443/a", "ua").startswith(  # type: ignore[union-attr]
        b"GET /a HTTP/1.1\r\nHost: example.org\r\n"
    )
    assert b"Host: example.org:80\r\n" in dial.first_request("https://example.org:80/", "ua")  # type: ignore[operator]


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw@example.org/f",  # credentials: the engine's headers differ
        "http://[::1]:8080/f",  # bracketed host: left to urllib3
        "http://example.org/a b",  # urllib3 would re-encode the target
        "http://example.org/caf\u00e9",
        "http://example.org/f?q=[1]",
        "http://example.org:99999/f",  # not a port
    ],
)
def test_no_first_request_where_its_bytes_are_not_certain(url: str) -> None:
    assert dial.first_request(url, "segdl/1") is None


def test_the_cli_sends_its_first_request_with_the_early_connect(
    fault_server: FaultServer,
    make_data: Callable[..., bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The early request is the one the engine meant to send: the server sees it once, on
    the dialled connection, and the download uses its answer (no second connection)."""
    data = make_data(300_000)
    fault_server.add_file("/f.bin", data)
    url = fault_server.url("/f.bin")
    calls = _spy_dial(monkeypatch)
    code, _, err = run_cli(
        "-q", "-x", "1", "-o", str(tmp_path / "a.bin"), fault_server.url("/f.bin")
    )
    assert (code, err) == (ExitCode.OK, "")
    assert (tmp_path / "a.bin").read_bytes() == data
    request = calls[0][1]
    assert request is not None and request.startswith(b"GET /f.bin HTTP/1.1\r\n")
    assert [(r.connection_id, r.range) for r in fault_server.requests] == [(0, "bytes=0-")]

    # Its own User-Agent, even an empty one: still the engine's first request, byte for byte.
    fault_server.clear_log()
    calls.clear()
    for agent in ("", "fetcher/2"):
        out = tmp_path / f"ua{len(agent)}.bin"
        code, _, err = run_cli("-q", "-x", "1", "--user-agent", agent, "-o", str(out), url)
        assert (code, err) == (ExitCode.OK, "")
    assert all(request is not None for _, request in calls)
    assert [r.header("User-Agent") for r in fault_server.requests] == ["", "fetcher/2"]
    assert len({r.connection_id for r in fault_server.requests}) == 2  # one connection each

    # Named by the server (-d): the same first request, whatever the name turns out to be.
    fault_server.clear_log()
    calls.clear()
    (tmp_path / "d").mkdir()
    code, _, err = run_cli("-q", "-x", "1", "-d", str(tmp_path / "d"), fault_server.url("/f.bin"))
    assert (code, err) == (ExitCode.OK, "")
    assert calls[0][1] is not None
    assert [r.range for r in fault_server.requests] == ["bytes=0-"]
    assert len({r.connection_id for r in fault_server.requests}) == 1


def test_no_early_request_when_the_first_request_would_differ(
    fault_server: FaultServer,
    make_data: Callable[..., bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Extra headers or credentials, or something at the output path (a partial download to
    resume, a file to refuse): the engine's first request is its own, so none goes early."""
    data = make_data(200_000)
    fault_server.add_file("/f.bin", data)
    url = fault_server.url("/f.bin")
    calls = _spy_dial(monkeypatch)
    out = tmp_path / "a.bin"
    assert run_cli("-q", "-x", "1", "-H", "X-A: 1", "-o", str(out), url)[0] == ExitCode.OK
    assert run_cli("-q", "-x", "1", "-u", "u:p", "-o", str(tmp_path / "b.bin"), url)[0] == 0
    assert run_cli("-q", "-x", "1", "-o", str(out), url)[0] == ExitCode.OUTPUT_EXISTS
    # What a partial download leaves beside its output (disk.paths.OutputPaths).
    for name, suffix in (("c.bin", PART_SUFFIX), ("d.bin", STATE_SUFFIX)):
        (tmp_path / (name + suffix)).write_bytes(b"")
        assert run_cli("-q", "-x", "1", "-o", str(tmp_path / name), url)[0] == ExitCode.OK
        assert (tmp_path / name).read_bytes() == data
    assert [request for _, request in calls] == [None] * 5


def test_a_connection_whose_request_differs_does_not_use_the_early_socket(
    fault_server: FaultServer,
) -> None:
    """The server answers the early request first, so a connection that would send another
    one connects again: its answer is never taken for the early request's."""
    fault_server.add_file("/f.bin", b"right" * 1000)
    fault_server.add_file("/other.bin", b"wrong" * 1000)
    early = dial.first_request(fault_server.url("/other.bin"), "segdl/early")
    dial.dial(fault_server.url("/f.bin"), 5.0, early)
    assert _get_once(fault_server.url("/f.bin")) == b"right" * 1000
    assert wait_for(lambda: len(fault_server.requests) == 2)
    by_connection = {r.connection_id: r.path for r in fault_server.requests}
    assert by_connection == {0: "/other.bin", 1: "/f.bin"}


def test_an_early_answer_already_waiting_is_used(fault_server: FaultServer) -> None:
    """On a fast network the answer is there before the transport takes the socket: a
    readable socket with a request on it is not a dropped connection."""
    fault_server.add_file("/f.bin", b"fast" * 1000)
    url = fault_server.url("/f.bin")
    dial.dial(url, 5.0, dial.first_request(url, "segdl/early"))
    assert wait_for(lambda: len(fault_server.requests) == 1)  # answered in full
    transport = Urllib3Transport()
    try:
        # The pool hands out an idle connection only after checking it: preconnect first.
        transport.preconnect(url, 0).release()
        headers = {"User-Agent": "segdl/early", "Accept-Encoding": "identity"}
        response = transport.request("GET", url, {**headers, "Range": "bytes=0-"})
        assert response.status == 206
        response.close()
    finally:
        transport.close()
    assert [r.connection_id for r in fault_server.requests] == [0]


def test_a_closed_connection_forgets_its_early_request(fault_server: FaultServer) -> None:
    """Reconnected after a close, a connection writes its request: the early one went with
    the old socket."""
    fault_server.add_file("/f.bin", b"again" * 1000)
    url = fault_server.url("/f.bin")
    request = dial.first_request(url, "segdl/early")
    assert request is not None
    dial.dial(url, 5.0, request)
    conn = DialledHTTPConnection("127.0.0.1", fault_server.port, timeout=5.0)
    conn.connect()
    assert conn._sent_early == request
    conn.close()
    assert conn._sent_early is None
    conn.connect()  # nothing dialled any more: a fresh socket
    assert conn._sent_early is None
    conn.close()
