"""Many small answers on few connections: one thread, one selector, pipelined requests.

A batch of small files spends its time per file, not per byte: the full path (a thread per
file, urllib3, a lock file, a ``.part``) costs milliseconds of CPU per file. This loop keeps one
reused connection per slot, writes the next requests while answers arrive (HTTP/1.1
pipelining, RFC 9112 §9.3.2: two deep on a new connection, ``depth`` once the origin has
shown it keeps alive), and reads with one ``recv`` whatever the kernel holds. httptools
parses the answers (llhttp: 5 µs per 16 KiB answer where h11 took 140 µs, bench/README.md).

Given a host gate (a cluster's cap and pauses, :mod:`segdl.net.gate`), the loop asks it for a
slot before each connection it opens and frees the slot once the connection is closed at both
ends, writes no request while the gate holds the host (a ``Retry-After`` pause, a request
rate), reports each 429/503 ``Retry-After`` it reads, and closes a connection when it holds
more than its share of a host others wait for; it never waits at the gate while it has
connections to serve.

It is deliberately small: ``http`` or ``https`` straight to a host (TLS verified as on the
full path, :mod:`segdl.net.leantls`), no proxy. Whatever it cannot take whole (a failure, a
body larger than ``max_body_bytes``, a head past the limits, every request to a server it
cannot connect to at all) goes back to the caller through ``defer``, and the caller's full
path (retries, error reports) takes the file from there. Nothing of a failed answer is
delivered.

Safe fallback, as with the one-deep pipelining of :mod:`segdl.net.pipelining`: requests that
were written but not answered when a connection ends (closed mid-pipeline, reset, timed out,
``Connection: close`` on an earlier answer, unparsable bytes) are sent again on a fresh
connection; a server that ends a connection with answers owed, other than after saying
``Connection: close``, is not pipelined to again. A request that fails ``max_attempts`` times
here is deferred.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httptools

from segdl.net.gate import HostGate, LoopGate
from segdl.net.leanconn import Answer, Conn, LeanRequest, Watch
from segdl.net.origins import first_address, gate_key
from segdl.net.pipelining import HEAD_WAIT_S

if TYPE_CHECKING:
    import ssl

log = logging.getLogger(__name__)
Origin = tuple[str, int, bool]  # host, port, TLS

_RECV_BYTES = 256 * 1024
_TICK_S = 0.5


class LeanLoop:
    """Runs requests to completion on at most ``slots`` connections (``per_host`` to one
    host), each with up to ``depth`` requests written ahead of its answers."""

    def __init__(
        self,
        *,
        slots: int,
        per_host: int,
        depth: int,
        timeout_s: float,
        max_body_bytes: int,
        max_attempts: int = 2,
        too_large: Callable[[int, Callable[[str], list[str]]], bool] | None = None,
        watch: Watch | None = None,
        clock: Callable[[], float] = time.monotonic,
        gate: HostGate | None = None,
        tls: Callable[[], ssl.SSLContext | None] | None = None,
    ) -> None:
        """``too_large(status, header_values)``: whether a head shows an answer not worth
        reading to its end (its file is the caller's to fetch otherwise). ``gate``: consulted
        for every connection and request (see the module's text). ``tls()``: the context for
        ``https`` connections, asked once, at the first (None: those go to the caller)."""
        self.slots = slots
        self.per_host = per_host
        self.depth = depth
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self.max_attempts = max_attempts
        self.too_large = too_large
        self.watch = watch
        self.clock = clock
        self.gate = None if gate is None else LoopGate(gate, clock=clock)
        self.shallow: set[Origin] = set()  # origins not to pipeline to again
        self.refused: dict[Origin, str] = {}  # why: their requests go to the caller (_end)
        self._tls = tls
        self._tls_context: ssl.SSLContext | None = None
        self._sessions: dict[Origin, ssl.SSLSession] = {}  # to resume, by the last connection
        self._kept_alive: dict[Origin, bool] = {}  # False: broke since (see _depth)
        self._selector = selectors.DefaultSelector()
        # One buffer for every read: a fresh bytes object of _RECV_BYTES a read cost more.
        self._buffer = bytearray(_RECV_BYTES)
        self._view = memoryview(self._buffer)
        self._conns: list[Conn] = []
        self._addresses: dict[Origin, tuple[int, tuple[object, ...]] | None] = {}
        self._waiting: dict[Origin, deque[LeanRequest]] = {}
        self._waiting_count = 0

    def run(
        self,
        source: Iterator[LeanRequest | None],
        deliver: Callable[[LeanRequest, Answer], None],
        defer: Callable[[LeanRequest, str], None],
        cancel: threading.Event,
        window: int,
        tick: Callable[[], None] | None = None,
    ) -> None:
        """Take requests from ``source`` (at most ``window`` unanswered at once; None from it:
        none is ready now, ask again after the next wait), hand each
        whole answer to ``deliver`` and each request this loop gives up on to ``defer``;
        ``tick()`` runs after every wait (at least every half second)."""
        exhausted = False
        try:  # on cancel, whatever was neither delivered nor deferred is the caller's
            while not cancel.is_set():
                room = window - self.unanswered()
                # At most one request a slot at a time: those go out (and the connections
                # open) before the rest of the window is prepared, while their answers travel.
                taken = 0
                while not exhausted and room > 0 and taken < self.slots:
                    try:
                        request = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    if request is None:  # none ready yet: on with the answers
                        break
                    self._wait(request, front=False)
                    room -= 1
                    taken += 1
                self._assign(defer)
                if exhausted and not self.unanswered():
                    return
                # More to take now: only a look at the connections, no wait.
                self._poll(deliver, defer, wait=not (taken == self.slots and room > 0))
                if tick is not None:
                    tick()
        finally:
            for conn in list(self._conns):
                self._drop(conn)
            self._selector.close()
            if self.gate is not None:
                self.gate.close()  # every slot free before the caller goes on

    def unanswered(self) -> int:
        """Requests taken and not yet answered or given up (waiting, or written)."""
        return self._waiting_count + sum(len(conn.owed) for conn in self._conns)

    def _wait(self, request: LeanRequest, *, front: bool) -> None:
        queue = self._waiting.setdefault((request.host, request.port, request.tls), deque())
        if front:
            queue.appendleft(request)
        else:
            queue.append(request)
        self._waiting_count += 1

    def _assign(self, defer: Callable[[LeanRequest, str], None]) -> None:
        """Write waiting requests on connections with room; open connections where needed."""
        for origin in list(self._waiting):
            queue = self._waiting[origin]
            if origin in self.refused:
                self._give_back(origin, self.refused[origin], defer)
            if not queue:
                del self._waiting[origin]
                continue
            mine = [c for c in self._conns if c.origin == origin]
            gate, key = self.gate, gate_key(origin[0], origin[1])
            if gate is not None and mine and gate.over_share(key):
                self._retire(mine)
            for conn in mine:
                room = conn.depth - len(conn.owed)
                if not queue or room <= 0 or conn.closing or conn.retiring:
                    continue
                while queue and room > 0 and (gate is None or gate.take(key)):
                    self._send(conn, queue.popleft())
                    room -= 1
                if conn.connected:
                    self._flush(conn)  # the requests written together: one send for all
            while queue and len(mine) < self.per_host and len(self._conns) < self.slots:
                fresh = self._open(origin, defer)  # may wait at the gate: asked before taking
                if fresh is None:
                    break
                mine.append(fresh)
                if gate is not None and not gate.take(key):
                    break  # connected meanwhile; written to once the host may be asked
                self._send(fresh, queue.popleft())  # written once connected
                if fresh.failure:
                    self._end(fresh, fresh.failure, defer)
        if len(self._conns) >= self.slots and self._waiting_count:
            self._free_idle_slot()

    def _retire(self, mine: list[Conn]) -> None:
        """One connection of a gated host gives its slot back once its answers are in (one
        at a time: the gate is asked again after it has closed)."""
        if any(conn.retiring for conn in mine):
            return
        conn = min(mine, key=lambda c: len(c.owed))
        conn.retiring = True
        if not conn.owed:
            self._drop(conn)
            mine.remove(conn)

    def _free_idle_slot(self) -> None:
        """A connection with nothing to do gives its slot to an origin that waits for one."""
        wanted = {origin for origin, queue in self._waiting.items() if queue}
        for conn in self._conns:
            if not conn.owed and conn.origin not in wanted:
                self._drop(conn)
                return

    def _send(self, conn: Conn, request: LeanRequest) -> None:
        self._waiting_count -= 1
        if not conn.owed:
            conn.last_s = self.clock()  # the timeout counts from now, not from idle time
        conn.owed.append(request)
        conn.outgoing += request.wire

    def _give_back(
        self, origin: Origin, why: str, defer: Callable[[LeanRequest, str], None]
    ) -> None:
        """Every request waiting for ``origin`` to the caller."""
        queue = self._waiting.get(origin, deque())
        while queue:
            self._waiting_count -= 1
            defer(queue.popleft(), why)

    def _open(self, origin: Origin, defer: Callable[[LeanRequest, str], None]) -> Conn | None:
        address = self._address(origin)
        context = self._context() if origin[2] else None
        if address is None or (origin[2] and context is None):  # the full path says why
            self._give_back(origin, "host not found" if address is None else "no TLS", defer)
            return None
        family, sockaddr = address
        key = gate_key(origin[0], origin[1])
        if self.gate is not None and not self.gate.admit(key, alone=not self._conns):
            return None  # no slot for now: asked again on a later turn
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(sock, origin, key, max_body_bytes=self.max_body_bytes, last_s=self.clock(),
                     too_large=self.too_large, watch=self.watch, clock=self.clock,
                     depth=self._depth(origin))  # fmt: skip
        conn.parser = httptools.HttpResponseParser(conn)
        if context is not None:
            from segdl.net.leantls import Tls  # start-up: a batch over http never loads ssl

            conn.tls = Tls(context, origin[0], self._sessions.get(origin))
        code = sock.connect_ex(sockaddr)
        if code not in (0, errno.EINPROGRESS):
            conn.failure = f"connect failed: {errno.errorcode.get(code, code)}"
        self._conns.append(conn)
        self._selector.register(sock, selectors.EVENT_WRITE | selectors.EVENT_READ, conn)
        return conn

    def _context(self) -> ssl.SSLContext | None:
        """The context of https connections, made at the first (None: there is none)."""
        if self._tls is not None:
            self._tls_context, self._tls = self._tls(), None
        return self._tls_context

    def _depth(self, origin: Origin) -> int:
        """Requests a new connection takes before its first answer: ``depth`` where the
        origin has shown it keeps alive; one after a break (RFC 9112 §9.3.2: a retry is not
        pipelined at once); else two: the second's round trip overlaps the first answer."""
        kept_alive = self._kept_alive.get(origin)
        if origin in self.shallow or kept_alive is False:
            return 1
        return self.depth if kept_alive else min(2, self.depth)

    def _address(self, origin: Origin) -> tuple[int, tuple[object, ...]] | None:
        if origin not in self._addresses:
            self._addresses[origin] = first_address(origin[0], origin[1])
        return self._addresses[origin]

    def _flush(self, conn: Conn) -> None:
        conn.flush()
        if conn.failure:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.sending else 0)
        self._selector.modify(conn.sock, events, conn)

    def _poll(
        self,
        deliver: Callable[[LeanRequest, Answer], None],
        defer: Callable[[LeanRequest, str], None],
        *,
        wait: bool = True,
    ) -> None:
        now = self.clock()
        wait_s = _TICK_S if self.gate is None else self.gate.wake_in_s(_TICK_S)
        for key, mask in self._selector.select(wait_s if wait else 0.0):
            conn: Conn = key.data
            conn.last_s = now
            if mask & selectors.EVENT_WRITE:
                if not conn.connected:
                    code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    conn.connected = True
                    if code:
                        conn.failure = f"connect failed: {errno.errorcode.get(code, code)}"
                        self._settle(conn, deliver, defer)
                        continue
                self._flush(conn)
            if mask & selectors.EVENT_READ:
                conn.receive(self._buffer, self._view)
                if conn.tls is not None and not conn.failure:
                    self._flush(conn)  # the handshake's next bytes, or the requests it held
            self._settle(conn, deliver, defer)
        if self.gate is not None:
            self.gate.reap()
        for conn in list(self._conns):
            # Behind an answer, a server that keeps silent for HEAD_WAIT_S is taken to have
            # dropped the requests pipelined to it (segdl.net.pipelining does the same).
            limit_s = self.timeout_s if not conn.answered else min(self.timeout_s, HEAD_WAIT_S)
            if conn.owed and now - conn.last_s > limit_s:
                self._end(conn, "timed out", defer)

    def _settle(
        self,
        conn: Conn,
        deliver: Callable[[LeanRequest, Answer], None],
        defer: Callable[[LeanRequest, str], None],
    ) -> None:
        """Hand out what the last read completed; end the connection if it failed."""
        done, conn.done = conn.done, []
        for request, answer in done:
            if conn.depth == -1:
                conn.depth = 1 if conn.origin in self.shallow else self.depth
                self._kept_alive[conn.origin] = True
            if self.gate is not None:
                self.gate.answered(conn.key, answer.status, answer.header_values("retry-after"))
            deliver(request, answer)
        if (conn.closing or conn.retiring) and not conn.owed:
            self._drop(conn)  # closed as it said it would (with its last answer, over TLS)
        elif conn.failure:
            self._end(conn, conn.failure, defer)
        elif conn.closing:  # answers owed after a Connection: close: never coming
            self._end(conn, "Connection: close with answers owed", defer, benign=True)

    def _end(self, conn: Conn, why: str, defer: Callable[[LeanRequest, str], None], *,
             benign: bool = False) -> None:  # fmt: skip
        """The connection is over: its unanswered requests wait again, or are deferred.

        The oldest owed request is the one whose answer broke off: it counts an attempt. The
        ones behind it count one too, unless the server had said it would close (benign: then
        none was begun, and none counts) or the oldest answer was merely not for this loop (a
        large file, say): then they were never answered through no fault of pipelining."""
        owed = list(conn.owed)
        conn.owed.clear()
        self._drop(conn)
        said_close = benign  # every connection it closes so has answered once at least
        unusable = why.startswith(("unusable", "tls refused"))
        # Its certificate refused, or no connection there at all (refused or dropped, the
        # last one the loop had there: a server that only turns extra connections away keeps
        # the others): the full path asks, with its retries (and a batch's mark of a server
        # down: segdl.run.downhosts).
        never = why.startswith("connect failed") or (why == "timed out" and not conn.connected)
        alone = not any(other.origin == conn.origin for other in self._conns)
        if why.startswith("tls refused") or (never and alone):
            self.refused[conn.origin] = why
        benign = benign or unusable
        if not benign:
            self._kept_alive[conn.origin] = False
        if len(owed) > 1 and not benign:
            log.debug("%s:%d ended a pipeline (%s): no more pipelining", *conn.origin[:2], why)
            self.shallow.add(conn.origin)
            for other in self._conns:
                if other.origin == conn.origin:
                    other.depth = 1
        gone = conn.origin in self.refused
        for number, request in enumerate(reversed(owed)):
            first = number == len(owed) - 1
            request.attempts += 1 if ((first and not said_close) or not benign) else 0
            if gone or (first and unusable) or request.attempts >= self.max_attempts:
                defer(request, why)
            else:
                self._wait(request, front=True)

    def _drop(self, conn: Conn) -> None:
        if conn.tls is not None and (session := conn.tls.resumable) is not None:
            self._sessions[conn.origin] = session
        if conn not in self._conns:
            if self.gate is None:
                conn.sock.close()
            return  # gated: released (and closed by the gate) when it left the list
        self._conns.remove(conn)
        self._selector.unregister(conn.sock)
        if self.gate is not None:
            self.gate.release(conn.sock, conn.key)  # the gate closes it
        else:
            conn.sock.close()
