"""A transport serving files from memory, for tests of everything above the network.

:class:`FakeTransport` implements :class:`~segdl.net.transport.Transport` without a socket:
each URL is answered by a route, a function from the :class:`FakeRequest` to a
:class:`FakeAnswer`. :func:`serve` is the honest route for a file (RFC 9110 ranges, a strong
ETag, ``If-Range``, ``416``); tests wrap it to misbehave on purpose. Every request is logged
in :attr:`FakeTransport.requests`, so a test can assert what was sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from segdl.core.errors import ConnectionBroken
from segdl.net.interfaces import FollowOn, NoPreconnection, Preconnection, Response


@dataclass(frozen=True, slots=True)
class FakeRequest:
    method: str
    url: str
    headers: Mapping[str, str]

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass(frozen=True, slots=True)
class FakeAnswer:
    status: int
    headers: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    body: bytes = b""
    reason: str = ""
    break_after: int | None = None
    """Raise :class:`ConnectionBroken` once this many body bytes have been read (a reset)."""
    read_delay_s: float = 0.0
    """Each read waits this long first (a slow server: other connections get work)."""


Route = Callable[[FakeRequest], FakeAnswer]


@dataclass(frozen=True, slots=True)
class FakeFile:
    data: bytes
    etag: str | None = '"fake-1"'
    last_modified: str | None = None


def serve(file: FakeFile) -> Route:
    """The honest route for ``file``: ``bytes=a-b`` and ``bytes=a-`` ranges answered with
    ``206``, ``If-Range`` honoured (a different validator gets the whole file), ``416``
    past the end."""

    def route(request: FakeRequest) -> FakeAnswer:
        headers: dict[str, str | Sequence[str]] = {}
        if file.etag is not None:
            headers["ETag"] = file.etag
        if file.last_modified is not None:
            headers["Last-Modified"] = file.last_modified
        wanted = request.header("Range")
        guard = request.header("If-Range")
        if guard is not None and guard not in (file.etag, file.last_modified):
            wanted = None
        size = len(file.data)
        if wanted is None:
            return FakeAnswer(200, {**headers, "Content-Length": str(size)}, file.data)
        first, _, last = wanted.removeprefix("bytes=").partition("-")
        start, end = int(first), min(int(last) + 1 if last else size, size)
        if start >= size:
            return FakeAnswer(416, {**headers, "Content-Range": f"bytes */{size}"})
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        return FakeAnswer(206, headers, file.data[start:end])

    return route


class FakeResponse:
    """A :class:`~segdl.net.interfaces.Response` over a body held in memory."""

    def __init__(self, answer: FakeAnswer, url: str) -> None:
        self._answer = answer
        self._url = url
        self._body = memoryview(answer.body)
        self._pos = 0
        self.closed = False

    @property
    def status(self) -> int:
        return self._answer.status

    @property
    def reason(self) -> str:
        return self._answer.reason

    def header_values(self, name: str) -> list[str]:
        values: list[str] = []
        for key, value in self._answer.headers.items():
            if key.lower() == name.lower():
                values += [value] if isinstance(value, str) else list(value)
        return values

    def readinto(self, buffer: memoryview) -> int:
        if self._answer.read_delay_s:
            time.sleep(self._answer.read_delay_s)
        limit = len(self._body)
        if self._answer.break_after is not None:
            if self._pos >= self._answer.break_after:
                raise ConnectionBroken(self._url, "connection reset (fake)")
            limit = min(limit, self._answer.break_after)
        n = min(len(buffer), limit - self._pos)
        buffer[:n] = self._body[self._pos : self._pos + n]
        self._pos += n
        return n

    def splice_into(self, pipe_fd: int, max_bytes: int) -> int | None:
        return None

    def abort(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True


class FakeTransport:
    """Answers each URL with its route; a URL without one gets a ``404``."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self.routes = dict(routes)
        self.requests: list[FakeRequest] = []
        self._lock = threading.Lock()

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response:
        request = FakeRequest(method, url, dict(headers))
        with self._lock:
            self.requests.append(request)
            route = self.routes.get(url)
        answer = route(request) if route is not None else FakeAnswer(404, reason="Not Found")
        return FakeResponse(answer, url)

    def follow(self, response: Response) -> FollowOn | None:
        return None  # no pipelining here

    def preconnect(self, url: str, count: int) -> Preconnection:
        return NoPreconnection()

    def close(self) -> None:
        pass
