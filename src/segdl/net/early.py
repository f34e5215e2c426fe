"""The answer to the early request (:mod:`segdl.net.dial`), read without urllib3.

The command line sends a fresh download's first request while it is still starting
(:func:`segdl.net.dial.first_request`). When that answer is a small whole file, reading it
here and writing it (:mod:`segdl.run.quick`) finishes the download before urllib3 and the
engine would have been imported. Whether it is one is decided from its head alone, read with
``MSG_PEEK`` (:func:`peek_head`): nothing is taken off the socket, so an answer this path
does not want (a redirect, an error, a large file) is left whole for the transport, which takes
the socket as it always has. Only an answer it wants is read (:func:`read_answer`).

Over TLS nothing can be peeked: the head is read off the socket (:func:`take_head`), and an
answer not wanted here goes to the transport with what was read of it, which its response
reads first (:func:`segdl.net.dial.give_back`): the same connection and request either way.

Parsing is httptools' (llhttp), through the lean loop's connection
(:class:`segdl.net.leanconn.Conn`): the same limits on heads and bodies.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import httptools

from segdl.net.leanconn import MAX_HEAD_BYTES, Answer, Conn, LeanRequest, Unusable, Watch

_RECV_BYTES = 256 * 1024
_FIRST_WAIT_S = 0.0005  # then doubled, up to _LONGEST_WAIT_S, while the head is incomplete
_LONGEST_WAIT_S = 0.02
_STOP_EVERY_S = 0.25


class Head(NamedTuple):
    """A response head seen on a socket, nothing of it read off: its status, and every value
    of a header field by name."""

    status: int
    values: Callable[[str], list[str]]


class Broken(Exception):
    """The answer could not be read whole (closed, timed out, not HTTP, not for this path):
    what was read of it is lost, and the transport asks again on a new connection."""


def peek_head(sock: socket.socket, within_s: float, clock: Callable[[], float] = time.monotonic
              ) -> Head | None:  # fmt: skip
    """The final head of the answer waiting on ``sock``, if all of it arrives within
    ``within_s``; None otherwise (not there yet, an interim ``1xx`` first, past the head
    limits, not HTTP). Reads nothing off the socket."""
    deadline, wait_s = clock() + within_s, _FIRST_WAIT_S
    sock.settimeout(within_s)
    try:
        while True:
            data = sock.recv(MAX_HEAD_BYTES + 1, socket.MSG_PEEK)
            if not data or data.startswith(b"HTTP/1.1 1") or data.startswith(b"HTTP/1.0 1"):
                return None  # closed, or interim answers: the transport's to read
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                return _parse_head(sock, data[: end + 4])
            if len(data) > MAX_HEAD_BYTES or clock() + wait_s > deadline:
                return None
            time.sleep(wait_s)  # a peek returns at once while anything is there: wait for more
            wait_s = min(2 * wait_s, _LONGEST_WAIT_S)
    except OSError:
        return None


def take_head(
    sock: socket.socket,
    within_s: float,
    rest_within_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Head | None, bytes] | None:
    """Over TLS: the final head of the answer on ``sock`` and every byte read off the socket
    for it (the head and any of the body behind it). None if nothing of the answer came
    within ``within_s`` (nothing was read); once some came, the rest of the head may take
    ``rest_within_s``. The head is None (the bytes read all the same) for one that is not
    whole by then, is an interim ``1xx``, past the limits or not HTTP: the transport reads
    it, those bytes first (:func:`segdl.net.dial.give_back`). :class:`Broken` if the
    connection failed or was closed: it is of no use to the transport either."""
    got = bytearray()
    deadline = clock() + within_s
    try:
        while True:
            # One read at least, however late: the socket was readable (if only for the
            # session tickets a TLS 1.3 server sends first).
            sock.settimeout(max(deadline - clock(), _FIRST_WAIT_S))
            try:
                data = sock.recv(_RECV_BYTES)
            except TimeoutError:
                if clock() < deadline:
                    continue
                return (None, bytes(got)) if got else None
            if not data:
                raise Broken("closed by the server")
            if not got:
                deadline = clock() + rest_within_s
            got += data
            end = got.find(b"\r\n\r\n")
            if end >= 0:
                return _parse_head(sock, bytes(got[: end + 4])), bytes(got)
            if len(got) > MAX_HEAD_BYTES:
                return None, bytes(got)
    except OSError as exc:  # ssl.SSLError included: the session is of no use either way
        raise Broken(str(exc) or type(exc).__name__) from exc


def _parse_head(sock: socket.socket, data: bytes) -> Head | None:
    """The final head in ``data`` (a whole head, ending with its blank line); None for an
    interim one, or one past the limits or not HTTP."""
    if data.startswith((b"HTTP/1.1 1", b"HTTP/1.0 1")):
        return None
    seen: list[Head] = []

    def headers_done(
        request: LeanRequest, status: int, values: Callable[[str], list[str]], done: int
    ) -> None:
        seen.append(Head(status, values))

    conn = _conn(sock, LeanRequest("", 0, b"", None), headers_done, max_body_bytes=1 << 62)
    assert conn.parser is not None
    try:
        conn.parser.feed_data(data)
    except (Unusable, httptools.HttpParserError):
        return None
    return seen[0] if seen else None


def read_answer(
    sock: socket.socket,
    request: LeanRequest,
    max_body_bytes: int,
    *,
    within_s: float,
    watch: Watch | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    first: bytes = b"",
) -> Answer | None:
    """Read the answer to ``request`` off ``sock``; :class:`Broken` if it does not come whole
    within ``within_s`` (a slow body is the engine's: it watches rates and stalls), None as
    soon as ``stop`` is set (checked at least every :data:`_STOP_EVERY_S`)."""
    conn = _conn(sock, request, watch, max_body_bytes=max_body_bytes)
    assert conn.parser is not None
    sock.settimeout(min(within_s, _STOP_EVERY_S))
    deadline = clock() + within_s
    try:
        if first:  # read off the socket already (take_head)
            conn.parser.feed_data(first)
        while not conn.done:
            if stop is not None and stop.is_set():
                return None
            if clock() >= deadline:
                raise Broken(f"not whole within {within_s:g} s")
            try:
                data = sock.recv(_RECV_BYTES)
            except TimeoutError:
                continue
            if not data:
                raise Broken("closed by the server before the answer's end")
            conn.parser.feed_data(data)
    except httptools.HttpParserCallbackError as exc:
        raise Broken(str(exc.__context__ or exc)) from exc
    except (OSError, Unusable, httptools.HttpParserError) as exc:
        raise Broken(str(exc) or type(exc).__name__) from exc
    return conn.done[0][1]


def _conn(sock: socket.socket, request: LeanRequest, watch: Watch | None, *,
          max_body_bytes: int) -> Conn:  # fmt: skip
    conn = Conn(sock, (request.host, request.port, False), owed=deque([request]), watch=watch,
                max_body_bytes=max_body_bytes)  # fmt: skip
    conn.parser = httptools.HttpResponseParser(conn)
    return conn
