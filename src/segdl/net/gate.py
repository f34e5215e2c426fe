"""Host gates: when a connection to a host may be opened, and when a request may go.

A transport given a :class:`HostGate` asks it before opening a connection to a host and
tells it when that connection closes; asks it before every request (the host may be paused);
asks it whether an idle connection may stay open for reuse (another worker may want its
slot); and tells it when a server asks everyone to wait (429 or 503 with ``Retry-After``).

In one process no gate is needed: the urllib3 pools cap connections per host and each range
waits out its own ``Retry-After``; a transport without a gate behaves exactly so. A gate is
how a cap and a pause are held across processes: :mod:`segdl.cluster` hands each worker's
batch one whose connection slots are leased from a single owner for the whole cluster.

Hosts are named by :func:`gate_key` (``host:port``, lower case, no IPv6 brackets), the same
for a connection's pool and for a request's URL.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any, Protocol

# How long a closing connection waits for the server to close its side before its slot is
# given to someone else (see _linger).
LINGER_S = 1.0


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

    def retry_after(self, host: str, delay_s: float) -> None:
        """``host`` asked for a pause of ``delay_s`` (429/503 with Retry-After)."""
        ...


def gate_key(host: str, port: int | None, scheme: str = "http") -> str:
    """``host:port`` as a gate names it."""
    name = host.lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return f"{name}:{port or (443 if scheme == 'https' else 80)}"


class GatedConnection:
    """Mixed into a urllib3 connection class: its socket holds a slot of ``host_gate``,
    taken before connecting and given back exactly once when the connection closes."""

    host_gate: HostGate | None = None
    gate_key = ""
    holds_slot = False

    def _new_conn(self) -> Any:
        gate = self.host_gate
        if gate is None or self.holds_slot:
            return super()._new_conn()  # type: ignore[misc]
        gate.connect(self.gate_key)  # no timeout: a slot for this very connection
        self.holds_slot = True
        try:
            return super()._new_conn()  # type: ignore[misc]
        except BaseException:
            self.free_slot()
            raise

    def close(self) -> None:
        try:
            sock = getattr(self, "sock", None)
            if self.holds_slot and sock is not None:
                _linger(sock)
            super().close()  # type: ignore[misc]
        finally:
            self.free_slot()

    def free_slot(self) -> None:
        if self.holds_slot and self.host_gate is not None:
            self.holds_slot = False
            self.host_gate.disconnected(self.gate_key)


# How long a thread wanting a connection waits for a slot before looking for an idle
# connection again (it is woken sooner when one is put back).
_SLOT_POLL_S = 0.5


class GatedPool:
    """Mixed into a urllib3 pool class whose ``host_gate`` is set: its connections hold the
    gate's slots, and an idle one is closed rather than kept when the gate says so."""

    host_gate: HostGate

    def _new_conn(self) -> Any:
        conn = super()._new_conn()  # type: ignore[misc]
        pool: Any = self  # a urllib3 pool: host, port and scheme are its own
        conn.host_gate = self.host_gate
        conn.gate_key = gate_key(pool.host, pool.port, pool.scheme or "http")
        return conn

    def _get_conn(self, timeout: float | None = None) -> Any:
        """An idle connection if there is one; else a slot first, then the pool's next
        connection object; either way, once no pause is in force. Waiting for a slot in the
        connection itself would deadlock: connections put back idle meanwhile would stay
        unused behind threads that all wait for new ones."""
        pool: Any = self
        key = gate_key(pool.host, pool.port, pool.scheme or "http")
        while True:
            conn = self._idle_connected()
            if conn is not None:
                break
            if self.host_gate.connect(key, _SLOT_POLL_S):
                conn = super()._get_conn(timeout)  # type: ignore[misc]
                if conn.holds_slot:  # one came back meanwhile: the new slot is not needed
                    self.host_gate.disconnected(key)
                else:
                    conn.holds_slot = True  # taken above, for the socket it is about to open
                break
        # The request goes out next: a pause that began while this thread waited holds.
        self.host_gate.before_request(key)
        return conn

    def _idle_connected(self) -> Any:
        """Take a connected idle connection out of the pool's queue, if there is one."""
        queue = getattr(self, "pool", None)
        if queue is None:
            return None
        with queue.mutex:
            for index in range(len(queue.queue) - 1, -1, -1):  # the most recent first
                conn = queue.queue[index]
                if conn is not None and conn.holds_slot and conn.sock is not None:
                    del queue.queue[index]
                    queue.not_full.notify()
                    break
            else:
                return None
        if not conn.is_connected:  # dropped by the server while idle
            conn.close()
            self._put_conn(conn)
            return None
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None and conn.holds_slot and not self.host_gate.keep_idle(conn.gate_key):
            conn.close()  # back in the pool unconnected: reconnected (with a slot) on use
        super()._put_conn(conn)  # type: ignore[misc]


def _linger(sock: socket.socket) -> None:
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
