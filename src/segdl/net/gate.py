"""Host gates: when a connection to a host may be opened, and when a request may go.

A transport given a :class:`HostGate` asks it before opening a connection to a host and
tells it when that connection closes; asks it before every request (the host may be paused);
asks it whether an idle connection may stay open for reuse (another worker may want its
slot); and tells it when a server asks everyone to wait (429 or 503 with ``Retry-After``).

In one process no gate is needed: the urllib3 pools cap connections per host and each range
waits out its own ``Retry-After``; a transport without a gate behaves exactly so. A gate is
how a cap and a pause are held across processes: :mod:`segdl.cluster` hands each worker's
batch one whose connection slots are leased from a single owner for the whole cluster.

Hosts are named by :func:`segdl.net.origins.gate_key` (``host:port``, lower case, no IPv6
brackets), the same for a connection's pool and for a request's URL.

A thread per connection (urllib3's pools) may wait at the gate; the one-thread loop of
:mod:`segdl.net.lean` may not, since its other connections must be served meanwhile: it
consults the gate through a :class:`LoopGate`, which asks without waiting and remembers the
answers for a moment.
"""

from __future__ import annotations

import math
import select
import socket
import time
from collections.abc import Callable
from typing import Protocol


class HostGate(Protocol):
    """What a transport consults; implementations must be thread-safe."""

    def connect(self, host: str, timeout_s: float | None = None) -> bool:
        """Before a connection to ``host`` is opened: True once one more may be open; False
        if ``timeout_s`` passed first, or sooner if a connection to ``host`` was put back
        idle meanwhile (:meth:`keep_idle` said yes): the caller may take that one instead."""
        ...

    def disconnected(self, host: str) -> None:
        """A connection :meth:`connect` admitted has closed."""
        ...

    def keep_idle(self, host: str) -> bool:
        """Whether an idle connection to ``host`` may stay open for reuse; False: it is
        closed, which frees its slot for someone else."""
        ...

    def before_request(self, host: str) -> None:
        """Before any request to ``host``: return once it may go (no pause in force)."""
        ...

    def request_wait_s(self, host: str) -> float:
        """:meth:`before_request` without waiting: 0.0 if a request to ``host`` may go now
        (it is then counted as sent, as by :meth:`before_request`); else how long until one
        may (a pause, or a request rate, in force)."""
        ...

    def retry_after(self, host: str, delay_s: float) -> None:
        """``host`` asked for a pause of ``delay_s`` (429/503 with Retry-After)."""
        ...


# How long a closing connection waits for the server to close its side before its slot is
# given to someone else: until then the server still counts the connection, and a slot
# handed on at once could put one more connection on it than the cap allows (a pool's
# connection waits in linger, a loop's in LoopGate).
LINGER_S = 1.0
# A loop refused a slot asks again this much later; one that has no connection at all waits
# at the gate up to ALONE_WAIT_S instead (it has nothing else to do meanwhile).
_REFUSED_S = 0.1
ALONE_WAIT_S = 0.5
# How often a loop checks that it holds no more connections than its share of a host.
_SHARE_EVERY_S = 0.25
_LINGER_TICK_S = 0.005


def linger(sock: socket.socket) -> None:
    """Close our side and wait (briefly) until the server has closed its own: until then the
    server still counts the connection, and a slot handed on at once could put one more
    connection on it than the cap allows. The raw socket is used under TLS too: what is left
    to read is discarded unread."""
    deadline = time.monotonic() + LINGER_S
    try:
        socket.socket.shutdown(sock, socket.SHUT_WR)
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], left)
            if not readable or not socket.socket.recv(sock, 65536):
                return
    except (OSError, ValueError):  # already closed or reset: the server has let go
        return


class LoopGate:
    """A :class:`HostGate` as a one-thread selector loop consults it: nothing here waits
    long, a refusal is remembered for a moment (so a loop spinning through its connections
    does not ask the gate on every turn), and a closing connection's slot is freed only once
    the server has closed its side too (see :data:`LINGER_S`), without blocking the loop."""

    def __init__(self, gate: HostGate, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.gate = gate
        self._clock = clock
        self._refused: dict[str, float] = {}  # host -> do not ask for a slot before
        self._held: dict[str, float] = {}  # host -> no request before
        self._checked: dict[str, float] = {}  # host -> share last checked
        self._lingering: list[tuple[socket.socket, str, float]] = []

    def admit(self, host: str, *, alone: bool) -> bool:
        """Whether one more connection to ``host`` may be opened now (it then holds a slot
        until :meth:`release`). ``alone``: the loop has no connection open, so it may wait
        at the gate a little."""
        self.reap()
        now = self._clock()
        if self._refused.get(host, 0.0) > now:
            return False
        wait_s = ALONE_WAIT_S if alone and not self._lingering else 0.0
        if self.gate.connect(host, wait_s):
            self._refused.pop(host, None)
            return True
        self._refused[host] = self._clock() + _REFUSED_S
        return False

    def take(self, host: str) -> bool:
        """Whether a request to ``host`` may be written now (no pause; a token of the rate,
        taken); ask right before writing it."""
        now = self._clock()
        if self._held.get(host, 0.0) > now:
            return False
        wait_s = self.gate.request_wait_s(host)
        if wait_s > 0:
            self._held[host] = now + wait_s
            return False
        return True

    def answered(self, host: str, status: int, retry_after: list[str]) -> None:
        """An answer arrived: a 429 or 503 with one ``Retry-After`` pauses ``host`` for
        everyone sharing the gate (RFC 9110 §10.2.3), this loop first."""
        if status not in (429, 503) or len(retry_after) != 1:
            return
        from segdl.core.retry import parse_retry_after  # start-up: most batches never see one

        delay_s = parse_retry_after(retry_after[0], time.time())
        if delay_s is None or not delay_s > 0:
            return
        self.gate.retry_after(host, delay_s)
        if math.isfinite(delay_s):
            until = self._clock() + delay_s
            self._held[host] = max(self._held.get(host, 0.0), until)

    def over_share(self, host: str) -> bool:
        """Whether this loop should close one of its connections to ``host`` (others wait
        for the host's slots); asked of the gate at most every quarter second."""
        now = self._clock()
        if now - self._checked.get(host, -math.inf) < _SHARE_EVERY_S:
            return False
        self._checked[host] = now
        return not self.gate.keep_idle(host)

    def release(self, sock: socket.socket, host: str) -> None:
        """``sock`` (non-blocking) held a slot of ``host``: close our side now; the slot is
        freed once the server has closed its own (or after :data:`LINGER_S`)."""
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # never connected, or reset: nothing left for the server to count
            sock.close()
            self.gate.disconnected(host)
            return
        self._lingering.append((sock, host, self._clock() + LINGER_S))

    def reap(self) -> None:
        """Free the slots of closing connections the server has closed meanwhile."""
        if not self._lingering:
            return
        now = self._clock()
        still = []
        for sock, host, deadline in self._lingering:
            if now < deadline and not _closed_by_peer(sock):
                still.append((sock, host, deadline))
                continue
            sock.close()
            self.gate.disconnected(host)
        self._lingering = still

    def wake_in_s(self, longest_s: float) -> float:
        """How long the loop may wait for its sockets before something here is due."""
        if self._lingering:
            return _LINGER_TICK_S
        now = self._clock()
        soonest = longest_s
        for until in (*self._held.values(), *self._refused.values()):
            if until > now:
                soonest = min(soonest, until - now)
        return max(soonest, 0.0)

    def close(self) -> None:
        """Wait (at most :data:`LINGER_S`) for every closing connection, freeing its slot."""
        while self._lingering:
            left = max(deadline for _, _, deadline in self._lingering) - self._clock()
            if left > 0:
                select.select([sock for sock, _, _ in self._lingering], [], [], min(left, 0.05))
            self.reap()


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed (or reset) a connection whose sending side is shut;
    whatever it still sends is read and dropped."""
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True
