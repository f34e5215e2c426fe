"""The transport under hostile timing: aborts after release, urllib3's state errors, the head
deadline, the body floor, and urllib3's Content-Length conflict (issue 19)."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest

from segdl.core.errors import ConnectionBroken, ProtocolError, SlowBody, SlowHead
from segdl.net.body import Floor, Urllib3Response
from segdl.net.error_map import mapped_errors
from segdl.net.head import HeadReader, HeadTimeout


class _RawResponse:
    """Just enough of urllib3's HTTPResponse, failing the way a released one does."""

    status = 206
    reason = "Partial Content"

    def __init__(self, *, read_error: BaseException | None = None) -> None:
        self.released = False
        self.closed = False
        self._read_error = read_error
        self.chunks = [b"x" * 10, b"y" * 10]

    def readinto(self, buffer: memoryview) -> int:
        if self._read_error is not None:
            raise self._read_error
        chunk = self.chunks.pop(0) if self.chunks else b""
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def shutdown(self) -> None:
        if self.released:  # what urllib3 2.3+ says after release_conn()
            raise RuntimeError(
                "Cannot shutdown as connection has already been released to the pool"
            )
        raise AttributeError("'NoneType' object has no attribute 'shutdown'")

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        self.released = True


def _response(raw: _RawResponse, floor: Floor | None = None) -> Urllib3Response:
    return Urllib3Response("http://127.0.0.1/f", raw, floor=floor)  # type: ignore[arg-type]


def test_abort_after_close_is_a_no_op() -> None:
    """Aborting a response already handed back to the pool raises nothing (was RuntimeError)."""
    raw = _RawResponse()
    response = _response(raw)
    response.close()
    assert raw.released
    response.abort()
    response.abort()


def test_abort_swallows_urllib3_state_errors() -> None:
    """An abort racing urllib3's own teardown (AttributeError, RuntimeError) raises nothing."""
    raw = _RawResponse()
    response = _response(raw)
    response.abort()
    raw.released = True
    response.abort()
    response.close()
    response.close()


def test_abort_and_close_from_two_threads_never_raise() -> None:
    """close() in one thread and abort() in another, in any order: never an exception."""
    errors: list[BaseException] = []
    for _ in range(200):
        response = _response(_RawResponse())
        barrier = threading.Barrier(2)

        def run(call: Any, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                call()
            except BaseException as exc:  # the test collects any of them
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(f,)) for f in (response.abort, response.close)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []


@pytest.mark.parametrize("error", [RuntimeError("released"), AttributeError("fp is None")])
def test_transport_state_errors_while_reading_are_a_broken_connection(error: Exception) -> None:
    """RuntimeError / AttributeError from urllib3 mid-body become ConnectionBroken (retried),
    never an exception the CLI does not know."""
    response = _response(_RawResponse(read_error=error))
    with pytest.raises(ConnectionBroken, match=type(error).__name__):
        response.readinto(memoryview(bytearray(64)))


def test_urllib3_invalid_header_is_a_protocol_error() -> None:
    """urllib3's InvalidHeader (Content-Length values that differ) is not believable: exit 7."""
    from urllib3.exceptions import InvalidHeader

    with pytest.raises(ProtocolError, match="Content-Length"), mapped_errors("http://h/f"):
        raise InvalidHeader("Content-Length contained multiple unmatching values (4096, 8192)")


def test_a_body_under_the_floor_counts_as_stalled() -> None:
    """A window of waiting that brought fewer bytes than the floor raises SlowBody at the next
    read, never after a read that took bytes (they are the caller's: in its buffer or pipe)."""
    response = _response(_RawResponse(), floor=Floor(1e-9, 1024))
    buffer = memoryview(bytearray(64))
    assert response.readinto(buffer) == 10 and bytes(buffer[:10]) == b"x" * 10
    with pytest.raises(SlowBody, match="body trickled: 10 bytes"):
        response.readinto(buffer)


def test_a_body_over_the_floor_reads_on() -> None:
    """Enough bytes per window: every read returns its bytes, the window starts again."""
    response = _response(_RawResponse(), floor=Floor(1e-9, 10))
    buffer = memoryview(bytearray(64))
    assert [response.readinto(buffer) for _ in range(3)] == [10, 10, 0]


class _Sock:
    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    def settimeout(self, value: float | None) -> None:
        self.timeouts.append(value)


def test_head_reader_reads_lines_from_the_buffer_without_touching_the_socket() -> None:
    """A head that is all buffered is read line by line, limit honoured, no timeout set."""
    head = b"HTTP/1.1 200 OK\r\nA: 1\r\nLong: " + b"z" * 50 + b"\r\n\r\n"
    fp = io.BufferedReader(io.BytesIO(head))  # type: ignore[arg-type]
    sock = _Sock()
    reader = HeadReader(fp, sock, 30.0)  # type: ignore[arg-type]
    assert reader.readline(65537) == b"HTTP/1.1 200 OK\r\n"
    assert reader.readline(65537) == b"A: 1\r\n"
    assert reader.readline(10) == b"Long: zzzz"
    assert reader.readline(65537).endswith(b"z\r\n")
    assert reader.readline(65537) == b"\r\n"
    assert reader.readline(65537) == b""
    assert sock.timeouts == []


def test_head_timeout_maps_to_slow_head() -> None:
    """The head deadline reaches callers as SlowHead, a timeout (exit 4) with its message."""
    with pytest.raises(SlowHead, match="within 2 s"), mapped_errors("http://h/f"):
        try:
            raise HeadTimeout("response head not complete within 2 s")
        except HeadTimeout as exc:
            raise TimeoutError("read timed out") from exc


def test_a_connect_timeout_is_told_from_a_read_timeout() -> None:
    """urllib3's connect timeout (the server drops the attempts) is a ConnectTimeout, which a
    batch marks the server down by; a read timeout stays a plain timeout; a refused connection
    (urllib3's NewConnectionError, a ConnectTimeoutError too) stays a ConnectError."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError

    from segdl.core.errors import ConnectError, ConnectTimeout, TimeoutError_

    with pytest.raises(ConnectTimeout, match="connect timed out"), mapped_errors("http://h/f"):
        raise ConnectTimeoutError(None, "timed out")
    with pytest.raises(TimeoutError_) as caught, mapped_errors("http://h/f"):
        raise ReadTimeoutError(None, "/f", "read timed out")
    assert not isinstance(caught.value, ConnectTimeout)
    with pytest.raises(ConnectError), mapped_errors("http://h/f"):
        raise NewConnectionError(None, "[Errno 111] Connection refused")
