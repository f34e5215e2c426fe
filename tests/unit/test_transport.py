"""The transport's own logic that needs no server: taking the TLS records already waiting."""

from __future__ import annotations

import ssl
from collections import deque
from typing import Any

import pytest

from segdl.net.body import more_records

RECORD = 16 * 1024


class _FakeTLSSocket:
    """Records (bytes), then what ends the reading: an exception to raise, or b"" (EOF)."""

    def __init__(self, *reads: bytes | OSError) -> None:
        self._reads: deque[bytes | OSError] = deque(reads)
        self.timeout: float | None = 30.0
        self.timeouts_set: list[float | None] = []

    def gettimeout(self) -> float | None:
        return self.timeout

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.timeouts_set.append(timeout)

    def recv_into(self, view: memoryview) -> int:
        assert self.timeout == 0.0, "never a read that could block"
        item = self._reads.popleft()
        if isinstance(item, OSError):
            raise item
        n = min(len(item), len(view))
        view[:n] = item[:n]
        return n


def test_takes_the_waiting_records_until_none_is_left() -> None:
    sock = _FakeTLSSocket(b"a" * RECORD, b"b" * RECORD, ssl.SSLWantReadError())
    view = memoryview(bytearray(8 * RECORD))
    assert more_records(sock, view) == 2 * RECORD  # type: ignore[arg-type]
    assert bytes(view[: 2 * RECORD]) == b"a" * RECORD + b"b" * RECORD
    assert sock.timeouts_set == [0.0, 30.0]  # the socket's own timeout is back


def test_stops_with_room_for_less_than_a_record() -> None:
    """Never a read that could be cut short: a record is only read into room for a whole one."""
    sock = _FakeTLSSocket(*[b"x" * RECORD] * 4)
    view = memoryview(bytearray(3 * RECORD - 1))
    assert more_records(sock, view) == 2 * RECORD  # type: ignore[arg-type]
    assert len(sock._reads) == 2


def test_an_end_or_a_failure_is_left_for_the_next_read() -> None:
    """EOF or a reset ends the extra reads; the bytes read before are kept."""
    for end in (b"", ConnectionResetError(104, "reset")):
        sock = _FakeTLSSocket(b"a" * RECORD, end)
        view = memoryview(bytearray(4 * RECORD))
        assert more_records(sock, view) == RECORD  # type: ignore[arg-type]
        assert sock.timeout == 30.0


def test_nothing_without_a_tls_socket_or_room() -> None:
    assert more_records(None, memoryview(bytearray(4 * RECORD))) == 0
    sock = _FakeTLSSocket(b"a" * RECORD)
    assert more_records(sock, memoryview(bytearray(RECORD - 1))) == 0  # type: ignore[arg-type]
    assert sock.timeouts_set == []


def test_a_remembered_proxy_choice_is_proxy_for_s_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each URL's route is worked out once per transport, and it is what proxy_for says for the
    transport's snapshot of the environment, no_proxy included; the memory stays bounded."""
    import segdl.net.transport as transport_module
    from segdl.net.proxies import proxy_for
    from segdl.net.transport import Urllib3Transport

    asked: list[str] = []

    def counting_proxy_for(url: str, **kwargs: Any) -> str | None:
        asked.append(url)
        return proxy_for(url, **kwargs)

    monkeypatch.setattr(transport_module, "proxy_for", counting_proxy_for)
    environ = {"http_proxy": "http://proxy.invalid:3128", "no_proxy": "direct.invalid"}
    transport = Urllib3Transport(environ=environ)
    urls = [f"http://{host}/f{n}" for host in ("a.invalid", "direct.invalid") for n in range(3)]
    try:
        for url in urls * 2:
            expected = proxy_for(url, explicit=None, environ=environ, use_env=True)
            assert transport._chosen_proxy(url) == expected
        assert asked == urls  # once each
        assert transport._chosen_proxy(urls[0]) == "http://proxy.invalid:3128"
        assert transport._chosen_proxy(urls[-1]) is None
        for n in range(transport_module._PROXY_CHOICES_KEPT + 10):
            transport._chosen_proxy(f"http://a.invalid/g{n}")
        assert transport._chosen_proxy.cache_info().currsize <= transport_module._PROXY_CHOICES_KEPT
    finally:
        transport.close()


def test_a_transport_for_options_takes_every_network_option() -> None:
    """The transport built for a download, a stream or a batch takes its timeout and stall
    floor from the options (a stream's transport had dropped --lowest-speed-limit)."""
    from segdl.core.options import DownloadOptions
    from segdl.net.transport import Urllib3Transport

    settings = DownloadOptions(timeout_s=7.0, lowest_speed_bytes_per_s=10_000)
    transport = Urllib3Transport.for_options(settings, max_connections_per_host=3)
    try:
        assert transport.timeout_s == 7.0
        assert transport._trickle_floor.window_s == 7.0
        assert transport._trickle_floor.bytes == 70_000
    finally:
        transport.close()
