"""One connection of the lean loop (:mod:`segdl.net.lean`): the requests it owes answers to,
and its answers parsed by httptools (llhttp, the parser of Node.js) as its bytes arrive.

The parser's callbacks build each answer; an answer that is not for the lean path (a head
past the limits, a body framed by the connection's end, too large, too many interim answers)
raises :class:`Unusable` from inside them, and the loop gives its file back. Over ``https``
the bytes go through the connection's :class:`~segdl.net.leantls.Tls` first.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httptools

if TYPE_CHECKING:
    from segdl.net.leantls import Tls

# The limits today's path holds a head to (README: "header lines over 64 KiB or more than
# 100 fields"); past them, the answer is the full path's to judge and report.
MAX_HEAD_BYTES = 64 * 1024
MAX_FIELDS = 100
MAX_INTERIM = 10
WATCH_EVERY_S = 0.25


@dataclass(eq=False, slots=True)
class LeanRequest:
    """One ``GET``: where to, its bytes on the wire, and whose it is."""

    host: str
    port: int
    wire: bytes
    token: object
    attempts: int = 0
    tls: bool = False  # https: only ever on a connection with its TLS


@dataclass(slots=True)
class Answer:
    """A whole answer: status, header fields (by lowercased name, each name's values in the
    order they came) and body."""

    status: int
    version: str
    by_name: dict[str, list[str]]
    body: bytes
    pipelined: bool
    """It was read behind another answer on its connection."""

    @classmethod
    def of(cls, status: int, version: str, fields: Iterable[tuple[str, str]], body: bytes,
           pipelined: bool) -> Answer:  # fmt: skip
        """An answer from its fields as (name, value) pairs, in order."""
        by_name: dict[str, list[str]] = {}
        for name, value in fields:
            by_name.setdefault(name.lower(), []).append(value)
        return cls(status, version, by_name, body, pipelined)

    def header_values(self, name: str) -> list[str]:
        return list(self.by_name.get(name.lower(), ()))


def _by_name(fields: list[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    # One pass over a head's raw fields when it is complete, not a decode per callback: every
    # answer is asked about several of its fields (framing, range, digests, name).
    by_name: dict[str, list[str]] = {}
    for name, value in fields:
        key = name.decode("latin-1").lower()
        if key in by_name:
            by_name[key].append(value.decode("latin-1"))
        else:
            by_name[key] = [value.decode("latin-1")]
    return by_name


# watch(request, status, header_values, body_bytes_so_far): an answer's head has arrived
# (body_bytes_so_far 0), then its body grows (at most every WATCH_EVERY_S), for displays.
Watch = Callable[[LeanRequest, int, Callable[[str], list[str]], int], None]


class Unusable(Exception):
    """This answer is not for this loop (too large, unframed, odd head): defer its file."""


@dataclass(eq=False, slots=True)
class Conn:
    """One connection, its parser and the requests it owes answers to, oldest first."""

    sock: socket.socket
    origin: tuple[str, int, bool]  # host, port, TLS
    key: str = ""  # the origin as a host gate names it
    owed: deque[LeanRequest] = field(default_factory=deque)
    outgoing: bytearray = field(default_factory=bytearray)
    connected: bool = False
    closing: bool = False  # the server said Connection: close: send nothing more
    retiring: bool = False  # over this loop's share of a gated host: closed once answered
    depth: int = 1  # raised once an answer shows the connection is kept alive
    answered: int = 0
    last_s: float = 0.0
    done: list[tuple[LeanRequest, Answer]] = field(default_factory=list)
    failure: str = ""  # why the connection cannot go on (after the answers in done)
    max_body_bytes: int = 0
    too_large: Callable[[int, Callable[[str], list[str]]], bool] | None = None
    watch: Watch | None = None
    clock: Callable[[], float] = time.monotonic
    _watched_s: float = 0.0
    # The answer being parsed.
    _fields: list[tuple[bytes, bytes]] = field(default_factory=list)
    _head: dict[str, list[str]] = field(default_factory=dict)
    _body: list[bytes] = field(default_factory=list)
    _body_bytes: int = 0
    _head_bytes: int = 0
    _interim: int = 0
    _status: int = 0
    parser: httptools.HttpResponseParser | None = None
    tls: Tls | None = None
    sealed: bytearray = field(default_factory=bytearray)  # over TLS: records to send

    def receive(self, buffer: bytearray, view: memoryview) -> None:
        """Read what the kernel holds (into ``buffer``, seen through ``view``) and parse it;
        :attr:`failure` says why the connection cannot go on."""
        try:
            got = self.sock.recv_into(buffer)
        except BlockingIOError:
            return
        except OSError as exc:
            self.failure = f"connection broken: {exc}"
            return
        if not got:
            self.failure = "closed by the server"
            return
        data: bytes | memoryview = view[:got]
        if self.tls is not None:
            data = self._decrypted(data)
            if self.tls.closed:  # after the answers that came with its end
                self.failure = "closed by the server"
            if not data:
                return
        try:
            assert self.parser is not None
            self.parser.feed_data(data)  # the callbacks get copies of its bytes
        except Unusable as exc:
            self.failure = f"unusable: {exc}"
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            unusable = isinstance(cause, Unusable)
            self.failure = f"unusable: {cause}" if unusable else f"invalid answer: {exc}"
        except httptools.HttpParserError as exc:
            self.failure = f"invalid answer: {exc}"

    def _decrypted(self, raw: bytes | memoryview) -> bytes:
        assert self.tls is not None
        try:
            return self.tls.received(raw)
        except OSError as exc:  # ssl.SSLError
            # Refused in the handshake (its certificate, say): the loop leaves the server's
            # files to the full path, which reports why.
            self.failure = f"{'tls' if self.tls.ready else 'tls refused'}: {exc}"
        return b""

    def flush(self) -> None:
        """Send what waits, as far as the socket takes it (over TLS: encrypted, once its
        handshake is done; the handshake's own bytes meanwhile)."""
        pending = self.outgoing
        try:
            if self.tls is not None:  # its errors (a session already ended) are OSErrors
                if self.tls.ready and self.outgoing:
                    self.tls.seal(self.outgoing)
                    self.outgoing.clear()
                self.sealed += self.tls.to_send()
                pending = self.sealed
            while pending:
                sent = self.sock.send(pending)
                del pending[:sent]
        except BlockingIOError:
            pass
        except OSError as exc:
            self.failure = f"send failed: {exc}"

    @property
    def sending(self) -> bool:
        """Bytes wait for the socket to take them."""
        return bool(self.sealed if self.tls is not None else self.outgoing)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if len(self._fields) >= MAX_FIELDS or self._head_bytes > MAX_HEAD_BYTES:
            raise Unusable("head too large")
        self._fields.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self._status = self.parser.get_status_code()
        if 100 <= self._status < 200:
            return
        head = self._head = _by_name(self._fields)
        if "content-length" not in head and "transfer-encoding" not in head:
            raise Unusable("a body framed by the end of the connection")
        if self.too_large is not None and self.too_large(self._status, self._values):
            raise Unusable("a larger file")
        if self.watch is not None:
            self._watched_s = self.clock()
            self.watch(self.owed[0], self._status, self._values, 0)

    def _values(self, name: str) -> list[str]:
        return list(self._head.get(name.lower(), ()))

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.max_body_bytes:
            raise Unusable("body larger than a small file")
        self._body.append(body)
        if self.watch is not None and self.clock() - self._watched_s >= WATCH_EVERY_S:
            self._watched_s = self.clock()
            self.watch(self.owed[0], self._status, self._values, self._body_bytes)

    def on_message_complete(self) -> None:
        status = self._status
        if 100 <= status < 200:  # interim (RFC 9110 §15.2): skipped, a few at most
            self._interim += 1
            self._fields, self._head_bytes = [], 0
            if status == 101 or self._interim > MAX_INTERIM:
                raise Unusable("too many interim answers")
            return
        assert self.parser is not None
        version = self.parser.get_http_version()
        keep_alive = self.parser.should_keep_alive()
        request = self.owed.popleft()
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        answer = Answer(status, version, self._head, body, pipelined=self.answered > 0)
        self.answered += 1
        self._fields, self._head, self._body, self._body_bytes, self._head_bytes = [], {}, [], 0, 0
        self._interim = 0
        self.done.append((request, answer))
        if not keep_alive:
            self.closing = True
        elif version == "1.1":
            self.depth = -1  # the loop sets the origin's depth
