"""Reading a body: ``readinto`` straight into the caller's buffer (over TLS taking every
record already waiting), ``splice`` from the socket into a pipe on Linux, the trickle floor,
and the hand-over of the connection to a pipelined request."""

from __future__ import annotations

import errno
import functools
import http.client
import io
import logging
import os
import select
import socket
import ssl
import threading
import time
from contextlib import suppress
from typing import Any

import urllib3
import urllib3.connection

from segdl.core.errors import SlowBody
from segdl.net.error_map import mapped_errors
from segdl.net.origins import host_of, origin
from segdl.net.pipelining import FOLLOW_MAX_BYTES, Handover, Lane, QueuedRequest
from segdl.net.urllib3_compat import connection_of, detach, end_body, http_response_of, socket_of

log = logging.getLogger(__name__)


# A body slower than this many bytes per read timeout counts as stalled, as silence does:
# a server sending a byte every few seconds would otherwise never trip the idle timeout (#19).
TRICKLE_FLOOR_BYTES = 1024


class Floor:
    """The slowest a body may arrive: ``bytes`` per ``window_s`` of waiting on the server."""

    __slots__ = ("bytes", "window_s")

    def __init__(self, window_s: float, floor_bytes: int) -> None:
        self.window_s = window_s
        self.bytes = floor_bytes


class Urllib3Response:
    def __init__(
        self,
        url: str,
        raw: urllib3.BaseHTTPResponse,
        *,
        method: str = "GET",
        direct: bool = False,
        floor: Floor | None = None,
    ) -> None:
        self._url = url
        self._floor = floor
        # Time spent inside reads (the server's share, not ours: a rate limit or a disk write
        # between reads is not the server trickling) and the bytes they brought, per window.
        self._window_waited_s = 0.0
        self._window_bytes = 0
        self._raw = raw
        self._method = method
        self._direct = direct  # no proxy between us and the server
        self._lane: Lane | None = None  # a request queued behind this one, if any
        # urllib3's own readinto copies through read(); http.client's fills our buffer
        # directly and still handles Content-Length and chunked framing.
        self._fp = http_response_of(raw)
        self._received_bytes = 0
        self._aborted = False
        self._closed = False
        self._closing = threading.Lock()  # abort() and close() come from different threads
        # http.client's reader may hold body bytes read along with the head; only once a
        # read larger than its buffer has emptied it may bytes be taken from the socket.
        self._reader_empty = False
        self._can_splice = hasattr(os, "splice")

    @property
    def status(self) -> int:
        return self._raw.status

    @property
    def reason(self) -> str:
        return self._raw.reason or ""

    def header_values(self, name: str) -> list[str]:
        return self._raw.headers.getlist(name)

    @property
    def connection(self) -> tuple[Any, Any]:
        """The urllib3 connection carrying this response, and its pool."""
        return connection_of(self._raw)

    def open_lane(self) -> Lane | None:
        """Room for one request behind this response, if it qualifies: a ``GET`` answered
        2xx on a kept-alive direct HTTP/1.1 connection, its body framed by a length of at most
        FOLLOW_MAX_BYTES and not read yet."""
        fp, (conn, pool) = self._fp, self.connection
        if (
            self._lane is not None
            or not self._direct
            or self._method != "GET"
            or self._aborted
            or not 200 <= self._raw.status < 300
            or conn is None
            or pool is None
            or fp is None
            or fp.isclosed()
            or fp.chunked
            or fp.will_close
            or fp.version != 11
            or fp.length is None
            or not 0 < fp.length <= FOLLOW_MAX_BYTES
        ):
            return None
        self._lane = Lane(origin(self._url))
        return self._lane

    def _send_queued(self) -> None:
        """Write the request queued behind this response (from this response's reader: one
        thread per socket, as TLS needs)."""
        assert self._lane is not None
        conn, _ = connection_of(self._raw)
        self._lane.send_queued(functools.partial(send_request, conn))

    def readinto(self, buffer: memoryview) -> int:
        if self._lane is not None and self._lane.queued:
            self._send_queued()
        self._check_floor()
        began_s = time.monotonic()
        with mapped_errors(self._url, self._received_bytes):
            n = self._readinto(buffer) if self._fp is not None else self._raw.readinto(buffer)
        self._received_bytes += n
        self._count_window(n, time.monotonic() - began_s)
        return n

    def _count_window(self, n_bytes: int, waited_s: float) -> None:
        if self._floor is not None and n_bytes:
            self._window_waited_s += waited_s
            self._window_bytes += n_bytes

    def _check_floor(self) -> None:
        """Before a read (never after one: its bytes are the caller's, in its buffer or its
        pipe): raise :class:`SlowBody` when a whole window of waiting brought too few bytes."""
        floor = self._floor
        if floor is None or not self._window_bytes or self._window_waited_s < floor.window_s:
            return
        if self._window_bytes < floor.bytes:
            raise SlowBody(
                self._url,
                f"body trickled: {self._window_bytes} bytes in {self._window_waited_s:.0f} s "
                f"(under {floor.bytes} per {floor.window_s:g} s)",
            )
        self._window_waited_s, self._window_bytes = 0.0, 0

    def _readinto(self, buffer: memoryview) -> int:
        """http.client's ``readinto``, but returning after one ``recv`` instead of waiting
        for the whole buffer: a slow connection then shows its progress (and its rate, which
        the planner needs to decide a race) instead of going quiet until 256 KiB arrived."""
        fp = self._fp
        assert fp is not None
        reader = fp.fp
        if reader is None:  # http.client closes itself at the end of the body
            return 0
        if fp.chunked:
            return fp.readinto(buffer)  # chunk framing stays http.client's business
        length: int | None = fp.length
        view = buffer if length is None else buffer[:length]
        if length is not None and 0 < len(view) <= io.DEFAULT_BUFFER_SIZE:
            # readinto1 would fill the reader's buffer and could take bytes past the body:
            # those of a pipelined answer. read1 reads no more than asked.
            data = reader.read1(len(view))
            n = len(data)
            view[:n] = data
        else:
            n = reader.readinto1(view) if view else 0
        # CPython's BufferedReader serves a read larger than its buffer from what it holds
        # plus one read from the socket straight into ours, leaving itself empty.
        self._reader_empty = len(view) > io.DEFAULT_BUFFER_SIZE
        if n and self._reader_empty:
            n += more_records(self._tls_socket(), view[n:])
        consumed(fp, n)
        return n

    def _tls_socket(self) -> ssl.SSLSocket | None:
        sock = self._body_socket()
        return sock if isinstance(sock, ssl.SSLSocket) else None

    def _body_socket(self) -> object:
        """The socket under http.client's reader; None for a chunked body (its framing is
        http.client's business) or when there is none."""
        fp = self._fp
        if fp is None or fp.chunked:
            return None
        return socket_of(fp)

    def splice_into(self, pipe_fd: int, max_bytes: int) -> int | None:
        """Move up to ``max_bytes`` of body from the socket into the pipe ``pipe_fd`` (Linux
        ``splice``: the bytes never pass through Python); 0 at the end of the body. None when
        this response cannot (TLS, chunked, bytes held by http.client): use :meth:`readinto`."""
        sock = self._splice_socket()
        if sock is None:
            return None
        if self._lane is not None and self._lane.queued:
            self._send_queued()
        fp = self._fp
        assert fp is not None
        length: int | None = fp.length
        count = max_bytes if length is None else min(max_bytes, length)
        n = 0
        self._check_floor()
        began_s = time.monotonic()
        if count > 0:
            with mapped_errors(self._url, self._received_bytes):
                try:
                    n = splice(sock, pipe_fd, count)
                except OSError as exc:
                    if isinstance(exc, (ConnectionError, TimeoutError)):
                        raise
                    if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        self._can_splice = False  # nothing was moved: read instead
                        return None
                    raise ConnectionResetError(exc.errno, exc.strerror) from exc
        consumed(fp, n)
        self._received_bytes += n
        self._count_window(n, time.monotonic() - began_s)
        return n

    def _splice_socket(self) -> socket.socket | None:
        if not (self._can_splice and self._reader_empty):
            return None
        sock = self._body_socket()
        return sock if type(sock) is socket.socket else None  # not TLS, not SOCKS

    def abort(self) -> None:
        """Safe from any thread at any moment, even after :meth:`close` handed the connection
        back to the pool (urllib3 then raises RuntimeError) or while it does."""
        with self._closing:
            self._aborted = True
            if self._closed:
                return  # released: the socket may already carry another request
            shutdown = getattr(self._raw, "shutdown", None)  # urllib3 >= 2.3
            if shutdown is None:
                return
            # ValueError: no socket (yet, or any more); RuntimeError, AttributeError: urllib3
            # found the connection released or half torn down by a close in another thread.
            with suppress(OSError, ValueError, RuntimeError, AttributeError):
                shutdown()

    def close(self) -> None:
        with self._closing:
            if self._closed:
                return
            self._closed = True
        try:
            self._close()
        except (OSError, ValueError, RuntimeError, AttributeError) as exc:
            # Called from finally blocks: never mask the error that ended the body. A
            # connection urllib3 could not put back is dropped, not reused.
            log.debug("closing a response from %s: %r", host_of(self._url), exc)
            with suppress(Exception):
                self._raw.close()

    def _close(self) -> None:
        finished = self._fp is None or self._fp.isclosed()
        handover = Handover.RELEASE
        if self._lane is not None:
            handover = self._lane.ahead_closed(finished and not self._aborted)
        if handover is Handover.KEEP:
            detach(self._raw)  # the follower's now
            return
        if self._aborted or not finished or handover is Handover.CLOSE:
            self._raw.close()  # closes the socket: the rest of the body is never read
        self._raw.release_conn()


def send_request(conn: urllib3.connection.HTTPConnection, request: QueuedRequest) -> None:
    """Write a pipelined request on ``conn``, as urllib3's pool writes any request."""
    conn.request(
        request.method,
        urllib3.util.parse_url(request.url).request_uri,
        headers=dict(request.headers),
        preload_content=False,
        decode_content=False,
    )


# One TLS record carries at most 16 KiB: a read returns no more, whatever the buffer.
_TLS_RECORD_BYTES = 16 * 1024


def more_records(sock: ssl.SSLSocket | None, view: memoryview) -> int:
    """Read into ``view`` the TLS records that are already waiting, without blocking; how many
    bytes. One read returns one record (16 KiB), so without this every 16 KiB would cost a
    trip through the planner, a write and two releases of the GIL; with 16 connections those
    hand-overs cost more CPU than the decryption. An error is left for the next read."""
    if sock is None or len(view) < _TLS_RECORD_BYTES:
        return 0
    timeout_s = sock.gettimeout()
    got = 0
    try:
        sock.settimeout(0.0)
        while len(view) - got >= _TLS_RECORD_BYTES:
            n = sock.recv_into(view[got:])
            if not n:
                break
            got += n
    except OSError:  # nothing waiting (SSLWantReadError), or a failure the next read sees
        pass
    finally:
        with suppress(OSError):
            sock.settimeout(timeout_s)
    return got


def consumed(fp: http.client.HTTPResponse, n_bytes: int) -> None:
    """Account for body bytes taken past http.client: its remaining length, and the end of
    the body (0 bytes, or the length reached), which frees the connection for reuse."""
    if n_bytes and fp.length is not None:
        fp.length -= n_bytes
    if not n_bytes or fp.length == 0:
        end_body(fp)


def splice(sock: socket.socket, pipe_fd: int, count: int) -> int:
    """One ``splice`` from ``sock`` into the (empty) pipe, waiting at most the socket's
    timeout for bytes to arrive; a socket with a timeout is non-blocking underneath."""
    fd = sock.fileno()
    timeout_s = sock.gettimeout()
    poller: select.poll | None = None
    while True:
        try:
            return os.splice(fd, pipe_fd, count, flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
        except BlockingIOError:
            pass
        if poller is None:
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
        wait_ms = None if timeout_s is None else max(1, int(timeout_s * 1000))
        if not poller.poll(wait_ms):
            raise TimeoutError("read timed out")
