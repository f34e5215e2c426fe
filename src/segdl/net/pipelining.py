"""HTTP/1.1 pipelining, one request deep: the hand-over between two requests on a connection.

A batch of small files spends one round trip per file waiting for each response to begin. With
pipelining (RFC 9112 §9.3.2) the next file's request goes out on a connection while the
previous response's body is still arriving, so its answer follows the last byte of that body
at once. This module is the pure part: a :class:`Lane` says whose request is queued behind
which response and who owns the connection when that response ends. The transport does the
sending and reading (:meth:`segdl.net.transport.Urllib3Transport.follow`).

The rules that keep it safe:

* only behind a complete-so-far ``GET`` answer with a known length on a kept-alive HTTP/1.1
  connection, never through a proxy; only ``GET`` rides behind it;
* the request is written only after the head of the response ahead was read; over TLS by
  the thread reading that response (one TLS connection must not be used from two threads at
  once), on a plain socket at once by the follower; the body ahead is read to its last byte
  and no further;
* if the response ahead ends early (reset, abort) or the server closes the connection, or
  does not start answering within :data:`HEAD_WAIT_S`, the queued request is simply sent
  again on a connection of its own: nothing of its answer was used. A server that did not
  answer is not asked to pipeline again.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# How long a pipelined request may wait, once the response ahead of it has ended, for the
# first byte of its own answer before it is sent again on a connection of its own.
HEAD_WAIT_S = 5.0

# Queue a request only behind a body with at most this much left: the request waits for
# all of it, so a long body would hold the next file back (a short one hides its round trip).
FOLLOW_MAX_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class QueuedRequest:
    method: str
    url: str
    headers: Mapping[str, str]


class _State(enum.Enum):
    OPEN = "open"  # offered: nobody has queued a request yet
    QUEUED = "queued"  # a request waits to be written
    SENT = "sent"  # written; its answer follows the response ahead
    READY = "ready"  # the response ahead ended cleanly: the connection is the follower's
    GONE = "gone"  # not usable (unused, failed, or the response ahead ended early)


class Handover(enum.Enum):
    """What the response ahead does with its connection when it is closed."""

    RELEASE = "release"  # as usual: back to the pool (or closed if its body was not read)
    KEEP = "keep"  # leave it checked out: the follower reads its answer on it
    CLOSE = "close"  # the queued request was half written: the connection is spoiled


class Lane:
    """Room for one request behind a response, on that response's connection."""

    def __init__(self, origin: tuple[str, str, int]) -> None:
        self.origin = origin
        self._cond = threading.Condition()
        self._state = _State.OPEN
        self._request: QueuedRequest | None = None
        self._spoiled = False

    @property
    def open(self) -> bool:
        """Nobody has used the lane yet and the response ahead is still being read."""
        return self._state is _State.OPEN

    @property
    def queued(self) -> bool:
        """A request waits to be written (read without the lock: a hint for the reader)."""
        return self._state is _State.QUEUED

    # The follower's side.

    def ride(
        self, request: QueuedRequest, send: Callable[[QueuedRequest], None] | None = None
    ) -> bool:
        """Queue ``request`` (or write it now with ``send``, where the socket allows a second
        thread to write: not TLS) and wait until the connection is the follower's (True) or
        the lane cannot carry it (False: send it as usual)."""
        with self._cond:
            if self._state is not _State.OPEN:
                return False
            self._request = request
            self._state = _State.QUEUED
            if send is not None:
                self._send(send)
            while self._state in (_State.QUEUED, _State.SENT):
                self._cond.wait()
            return self._state is _State.READY

    def give_up(self) -> None:
        """The follower will not use this lane (another origin, or no request at all)."""
        with self._cond:
            if self._state is _State.OPEN:
                self._state = _State.GONE

    # The side of the response ahead (its reading thread).

    def send_queued(self, send: Callable[[QueuedRequest], None]) -> None:
        """Write the queued request, if there is one, with ``send``; a failure leaves the
        follower to send it again elsewhere and this connection unusable after the body."""
        with self._cond:
            if self._state is _State.QUEUED:
                self._send(send)

    def _send(self, send: Callable[[QueuedRequest], None]) -> None:
        assert self._request is not None
        try:
            send(self._request)
        except Exception:  # any failure: the follower goes elsewhere
            self._spoiled = True
            self._state = _State.GONE
            self._cond.notify_all()
            return
        self._state = _State.SENT

    def ahead_closed(self, body_complete: bool) -> Handover:
        """The response ahead is done with (its body read to the end, or not)."""
        with self._cond:
            state = self._state
            self._state = _State.GONE
            if state is _State.SENT and body_complete:
                self._state = _State.READY
            self._cond.notify_all()
            if self._state is _State.READY:
                return Handover.KEEP
            if self._spoiled or state is _State.SENT:
                return Handover.CLOSE  # an answer nobody will read would come next
            return Handover.RELEASE
