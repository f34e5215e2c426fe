"""The seams to the network: the Protocols every transport implements (the real one in
:mod:`segdl.net.transport`, a fake in :mod:`segdl.net.fake`), and nothing else."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol


class Response(Protocol):
    """A response whose body has not been read yet."""

    @property
    def status(self) -> int: ...

    @property
    def reason(self) -> str: ...

    def header_values(self, name: str) -> list[str]:
        """Every field line of header ``name`` (case-insensitive), in order."""
        ...

    def readinto(self, buffer: memoryview) -> int:
        """Fill ``buffer`` with body bytes; fewer only at the end of the body; 0 at its end."""
        ...

    def splice_into(self, pipe_fd: int, max_bytes: int) -> int | None:
        """Move up to ``max_bytes`` body bytes into the pipe ``pipe_fd`` without copying them
        through Python; 0 at the end of the body; None if this response cannot (the caller
        then uses :meth:`readinto`; a transport without the means simply returns None)."""
        ...

    def abort(self) -> None:
        """From another thread: make a blocked :meth:`readinto` return or fail promptly."""
        ...

    def close(self) -> None:
        """Done with this response: keep the connection if the body was read to its end,
        otherwise drop it (never hand a half-read connection to another request)."""
        ...


class Transport(Protocol):
    """Sends one request at a time per calling thread; safe to share between threads."""

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response: ...

    def follow(self, response: Response) -> FollowOn | None:
        """Room for one more ``GET`` on the connection carrying ``response``, sent while its
        body is still arriving (HTTP/1.1 pipelining); None when this transport does not
        pipeline or ``response`` does not qualify. Call before reading its body."""
        ...

    def preconnect(self, url: str, count: int) -> Preconnection:
        """Start opening up to ``count`` connections to ``url``'s server (TCP, proxy tunnel,
        TLS) in the background; no request is sent. Best effort: never raises. A transport
        that cannot returns :class:`NoPreconnection`."""
        ...

    def close(self) -> None: ...


class Preconnection(Protocol):
    """Connections opened ahead of need, held back from requests until released."""

    def release(self) -> None:
        """Let requests use them (the first answer came: the server takes our requests)."""
        ...

    def discard(self) -> None:
        """Close them (the first request failed: do not crowd a server that refused us)."""
        ...


class FollowOn(Protocol):
    """Room for one request behind a response on its connection (HTTP/1.1 pipelining)."""

    @property
    def open(self) -> bool:
        """Not used yet, and the response ahead is still being read."""
        ...

    def accepts(self, url: str) -> bool:
        """Whether a request for ``url`` may ride here (same origin, no proxy)."""
        ...

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response | None:
        """Send a request behind the response ahead and wait for its answer; None if it could
        not ride (send it as usual: nothing of it was used)."""
        ...

    def give_up(self) -> None:
        """Not going to use it."""
        ...


class NoPreconnection:
    """A :class:`Preconnection` holding nothing: what a transport that does not preconnect
    (or has nothing to open) returns."""

    def release(self) -> None:
        pass

    def discard(self) -> None:
        pass


class OpenResponses:
    """The responses an attempt has open, so that a stop can abort them all from another
    thread (a worker blocked in a read wakes at once instead of after its timeout)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[Response] = set()

    def add(self, response: Response) -> None:
        with self._lock:
            self._open.add(response)

    def discard(self, response: Response) -> None:
        with self._lock:
            self._open.discard(response)

    def abort_all(self) -> None:
        with self._lock:
            responses = list(self._open)
        for response in responses:  # outside the lock: an abort may wait on the socket
            response.abort()
