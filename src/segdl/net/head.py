"""Reading a response head under one deadline: the idle timeout alone restarts on every
byte, so a server trickling its head would never trip it (#19); and the heads that are
refused whole (endless 1xx, too many header fields)."""

from __future__ import annotations

import http.client
import io
import socket
import time
from typing import Any

# A server may send informational (1xx) responses before the real one (RFC 9110 §15.2), but
# an endless stream of them must not keep a connection busy forever.
MAX_INTERIM_RESPONSES = 10


class TooManyInterimResponses(http.client.HTTPException):
    """More 1xx responses than anyone needs before a final one."""


class TooManyHeaders(http.client.HTTPException):
    """A response head with more header fields than http.client reads."""


class HeadTimeout(TimeoutError):
    """The response head (interim ones included) did not end within the head deadline."""


class HeadReader:
    """The reader http.client parses a head from (``readline`` is all it uses), with one
    deadline for the whole head: the idle timeout alone restarts on every byte, so a server
    trickling its head at 20 bytes/s never trips it (#19).

    A line is taken from what the buffered reader holds, so a head that arrived in one packet
    costs no system call more; only a read that must wait gets the deadline as its timeout."""

    def __init__(self, fp: Any, sock: socket.socket, budget_s: float) -> None:
        self._fp = fp
        self._sock = sock
        self._idle_s = budget_s
        self._budget_s = budget_s
        self._deadline = time.monotonic() + budget_s
        self._buffered = 0  # bytes the reader is known to hold: no recv needed for them
        self.shortened = False  # the socket's timeout was lowered: restore it afterwards

    def readline(self, limit: int = -1) -> bytes:
        line = bytearray()
        while limit < 0 or len(line) < limit:
            chunk = self._peek()
            if not chunk:
                break  # the peer closed: http.client says what that means
            room = len(chunk) if limit < 0 else min(len(chunk), limit - len(line))
            end = chunk.find(b"\n", 0, room)
            take = end + 1 if end >= 0 else room
            line += self._fp.read(take)
            self._buffered = len(chunk) - take
            if end >= 0:
                break
        return bytes(line)

    def _peek(self) -> bytes:
        if self._buffered:
            return bytes(self._fp.peek(self._buffered))
        remaining_s = self._deadline - time.monotonic()
        if remaining_s <= 0:
            raise HeadTimeout(f"response head not complete within {self._budget_s:g} s")
        if remaining_s < self._idle_s - 0.05:
            self._sock.settimeout(remaining_s)
            self.shortened = True
        try:
            return bytes(self._fp.peek(1))  # at most one recv, as much as it brings
        except TimeoutError as exc:
            if time.monotonic() >= self._deadline - 0.01:
                raise HeadTimeout(
                    f"response head not complete within {self._budget_s:g} s"
                ) from exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class ReadFirst(io.RawIOBase):
    """A socket's reader (``raw``, reading ``sock``) that gives ``first`` (the start of an
    answer, read off the socket before: :func:`segdl.net.dial.give_back`) before what the
    socket has."""

    def __init__(self, first: bytes, raw: io.RawIOBase, sock: socket.socket) -> None:
        super().__init__()
        self._first = memoryview(first)
        self._raw = raw
        self._socket = sock

    def readable(self) -> bool:
        return True

    @property
    def _sock(self) -> object:
        """The socket, as ``SocketIO`` names it, for a reader that takes from it directly
        (:func:`segdl.net.urllib3_compat.socket_of`), once ``first`` is all given."""
        return None if self._first else self._socket

    def readinto(self, buffer: Any) -> int | None:
        if self._first:
            size = min(len(buffer), len(self._first))
            buffer[:size] = self._first[:size]
            self._first = self._first[size:]
            return size
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()
