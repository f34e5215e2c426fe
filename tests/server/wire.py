"""HTTP/1.1 on the wire (RFC 9112): read and parse one request head, format a response head.

Named ``wire`` rather than ``http`` so that nothing can ever mistake it for the stdlib package.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import urlsplit

from tests.server.records import RequestRecord

MAX_HEAD_BYTES = 64 * 1024
MAX_DISCARDED_BODY_BYTES = 1024 * 1024
_RECV_BYTES = 64 * 1024
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")


class BadRequest(Exception):
    """The request cannot be parsed; answer ``status`` and close the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A request head as received."""

    method: str
    target: str
    version: tuple[int, int]
    headers: tuple[tuple[str, str], ...]

    @property
    def path(self) -> str:
        """The target's path, without query: origin-form or absolute-form (RFC 9112 §3.2)."""
        if self.target.startswith("/"):
            return self.target.split("?", 1)[0]
        if "://" in self.target:
            return urlsplit(self.target).path or "/"
        return self.target

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    def record(self, connection_id: int, started_s: float) -> RequestRecord:
        """The request as logged, before its response: status 0, no body bytes sent."""
        return RequestRecord(
            method=self.method,
            path=self.path,
            target=self.target,
            headers=self.headers,
            connection_id=connection_id,
            status=0,
            body_bytes_sent=0,
            started_s=started_s,
        )

    @property
    def wants_close(self) -> bool:
        """HTTP/1.0 closes; HTTP/1.1 closes when asked with ``Connection: close``."""
        if self.version < (1, 1):
            return True
        options = (self.header("Connection") or "").lower().split(",")
        return "close" in (option.strip(" \t") for option in options)


def parse_head(raw: bytes) -> ParsedRequest:
    """Parse a request line and header fields (the bytes before the empty line)."""
    lines = [line.rstrip(b"\r").decode("latin-1") for line in raw.split(b"\n")]
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise BadRequest(400, f"bad request line {lines[0]!r}")
    method, target, version_text = parts
    version = _VERSION.fullmatch(version_text)
    if version is None:
        raise BadRequest(400, f"bad HTTP version {version_text!r}")
    if version.group(1) != "1":
        raise BadRequest(505, f"unsupported HTTP version {version_text!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            raise BadRequest(400, "obsolete line folding")  # RFC 9112 §5.2
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise BadRequest(400, f"bad header line {line!r}")
        headers.append((name, value.strip(" \t")))
    return ParsedRequest(method, target, (1, int(version.group(2))), tuple(headers))


class RequestReader:
    """Reads request heads from one connection, keeping any bytes that follow for the next."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def read_head(self) -> bytes | None:
        """The raw head of the next request, or None if the peer closed between requests."""
        while True:
            # RFC 9112 §2.2: ignore empty lines received before the request line.
            self._buffer = self._buffer.lstrip(b"\r\n")
            match = _HEAD_END.search(self._buffer)
            if match is not None:
                head, self._buffer = self._buffer[: match.start()], self._buffer[match.end() :]
                return head
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise BadRequest(431, "request head too large")
            received = self._sock.recv(_RECV_BYTES)
            if not received:
                if self._buffer:
                    raise BadRequest(400, "connection closed inside a request head")
                return None
            self._buffer += received

    def head_waiting(self, wait_s: float) -> bool:
        """Whether a whole next request head has arrived (waiting up to ``wait_s`` for it)."""
        deadline = time.monotonic() + wait_s
        timeout = self._sock.gettimeout()
        try:
            while _HEAD_END.search(self._buffer.lstrip(b"\r\n")) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._sock.settimeout(left)
                received = self._sock.recv(_RECV_BYTES)
                if not received:
                    return False
                self._buffer += received
        except (TimeoutError, BlockingIOError, ssl.SSLWantReadError):
            return False
        finally:
            self._sock.settimeout(timeout)
        return True

    def heads_waiting(self) -> int:
        """How many whole request heads have arrived and wait to be read (without waiting)."""
        timeout = self._sock.gettimeout()
        self._sock.setblocking(False)
        try:
            while received := self._sock.recv(_RECV_BYTES):
                self._buffer += received
        except (BlockingIOError, ssl.SSLWantReadError, OSError):
            pass
        finally:
            self._sock.settimeout(timeout)
        return len(_HEAD_END.findall(self._buffer))

    def drop_received(self) -> None:
        """Throw away every byte received so far, buffered or waiting in the socket."""
        self._buffer = b""
        timeout = self._sock.gettimeout()
        self._sock.setblocking(False)
        try:
            while self._sock.recv(_RECV_BYTES):
                pass
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        finally:
            self._sock.settimeout(timeout)

    def discard_body(self, request: ParsedRequest) -> None:
        """Skip a request body framed by Content-Length, so the next request parses cleanly."""
        if request.header("Transfer-Encoding") is not None:
            raise BadRequest(411, "request bodies must be framed by Content-Length")
        length_text = request.header("Content-Length")
        if length_text is None:
            return
        if not (length_text.isascii() and length_text.isdigit()):
            raise BadRequest(400, f"bad Content-Length {length_text!r}")
        remaining = int(length_text)
        if remaining > MAX_DISCARDED_BODY_BYTES:
            raise BadRequest(413, "request body too large")
        while remaining > 0:
            if not self._buffer:
                self._buffer = self._sock.recv(_RECV_BYTES)
                if not self._buffer:
                    raise BadRequest(400, "connection closed inside a request body")
            taken = min(remaining, len(self._buffer))
            self._buffer = self._buffer[taken:]
            remaining -= taken


def http_date(epoch_s: float | None = None) -> str:
    """An IMF-fixdate (RFC 9110 §5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(epoch_s, usegmt=True)


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def format_head(status: int, headers: list[tuple[str, str]], reason: str | None = None) -> bytes:
    """A response's status line and header section, ending with the empty line; ``reason``
    replaces the standard phrase (its UTF-8 bytes, whatever they are)."""
    phrase = reason_phrase(status) if reason is None else reason.encode().decode("latin-1")
    lines = [f"HTTP/1.1 {status} {phrase}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
