"""Every use of urllib3's (and http.client's) private internals, in one module, behind a
check of the installed urllib3 version: the connection classes (a head read skipping a
bounded number of 1xx, under :mod:`segdl.net.head`'s deadline; connections on the sockets
:mod:`segdl.net.dial` opened early; the host gate's slots), the pools that make them, and
accessors for what urllib3 keeps private on a response and a pool."""

from __future__ import annotations

import functools
import http.client
import io
import logging
import socket
import sys
from contextlib import suppress
from typing import Any

import urllib3
import urllib3.connection
from urllib3.util.wait import wait_for_read

from segdl.net import dial, head
from segdl.net.gate import HostGate, linger
from segdl.net.origins import gate_key

log = logging.getLogger(__name__)


class BoundedResponse(http.client.HTTPResponse):
    """http.client's response, but skipping every 1xx (not only 100) and at most a few, and
    the whole head (interim responses included) within the read timeout."""

    _interim = 0

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self._head_sock = sock
        read = dial.already_read(sock)  # the start of this answer, read before (over TLS)
        if read:
            self.fp = io.BufferedReader(head.ReadFirst(read, self.fp.detach(), sock))

    def begin(self) -> None:
        try:
            return self._begin()
        except http.client.HTTPException as exc:
            # http.client's one plain HTTPException while reading a head (every other has a
            # type of its own): the head had more than its limit of header fields.
            if type(exc) is not http.client.HTTPException:
                raise
        # Raised outside the handler, so it is the root cause that error_map reads.
        limit = http.client._MAXHEADERS  # type: ignore[attr-defined]
        raise head.TooManyHeaders(f"more than {limit} header fields")

    def _begin(self) -> None:
        sock = self._head_sock
        budget_s = sock.gettimeout()
        if budget_s is None or self.headers is not None:
            return super().begin()
        fp = self.fp
        reader = head.HeadReader(fp, sock, budget_s)
        self.fp = reader
        try:
            super().begin()
        finally:
            if self.fp is reader:  # not closed meanwhile
                self.fp = fp
            if reader.shortened:
                with suppress(OSError):
                    sock.settimeout(budget_s)

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 100 <= status < 200 or status == 101:
                return version, status, reason
            self._interim += 1
            if self._interim > head.MAX_INTERIM_RESPONSES:
                raise head.TooManyInterimResponses(
                    f"more than {head.MAX_INTERIM_RESPONSES} 1xx responses"
                )
            if status == 100:
                return version, status, reason  # begin() skips a 100's header itself
            http.client._read_headers(self.fp)  # type: ignore[attr-defined]


def _dialled(conn: urllib3.connection.HTTPConnection) -> dial.Dialled | None:
    """The socket :mod:`segdl.net.dial` connected to ``conn``'s host ahead of time, set up as
    urllib3 sets up its own, with the request already written on it; None if there is none
    (urllib3 then connects as usual)."""
    if conn.source_address is not None:
        return None  # a dialled socket is not bound where this connection asks
    dialled = dial.take(conn.host, conn.port)
    if dialled is None:
        return None
    sock = dialled.sock
    # Before any request, a readable socket was closed (or is talking): not usable. After
    # one, its answer may well be arriving.
    if dialled.sent is None and wait_for_read(sock, timeout=0.0):
        sock.close()
        return None
    try:
        for option in conn.socket_options or ():
            sock.setsockopt(*option)
        if conn.timeout is None or isinstance(conn.timeout, int | float):
            sock.settimeout(conn.timeout)
    except OSError:
        sock.close()
        return None
    sys.audit("http.client.connect", conn, conn.host, conn.port)
    return dialled


class DialledHTTPConnection(urllib3.connection.HTTPConnection):
    """urllib3's connection, on the socket :mod:`segdl.net.dial` connected when there is one.

    That socket may carry a request already (:func:`segdl.net.dial.first_request`): when the
    first request written here is that one, byte for byte, it is not written again; any
    other request gets a fresh connection instead, since the server answers the early one
    first and its answer would be read as this one's."""

    response_class = BoundedResponse
    _sent_early: bytes | None = None

    def _new_conn(self) -> socket.socket:
        dialled = _dialled(self)
        self._sent_early = None if dialled is None else dialled.sent
        return super()._new_conn() if dialled is None else dialled.sock

    @property
    def is_connected(self) -> bool:
        """urllib3 takes a readable idle socket for a dropped one; one whose early request
        is not yet claimed may well be readable: its answer is arriving."""
        if self._sent_early is not None and self.sock is not None:
            return True
        return bool(super().is_connected)

    def close(self) -> None:
        self._sent_early = None  # whatever socket comes next carries no request
        super().close()

    def send(self, data: Any) -> None:
        if self.sock is None and self.auto_open:
            self.connect()  # as http.client's send would, but before the check below
        early, self._sent_early = self._sent_early, None
        if early is not None and self.sock is not None:
            if data == early:
                return  # already on its way
            log.debug("early request to %s differs: connecting again", self.host)
            self.sock.close()
            self.sock = None
            self.connect()  # the dialled socket is gone: a new one, as any connection makes
        super().send(data)


class DialledHTTPSConnection(DialledHTTPConnection, urllib3.connection.HTTPSConnection):
    """:class:`DialledHTTPConnection` over TLS: on the dialled socket TLS goes on top as on
    any socket, or its TLS is made already, with the request on it (:mod:`segdl.net.dial`:
    verified as this connection would verify, and only where no proxy is in the way)."""

    _taken: dial.Dialled | None = None

    def connect(self) -> None:
        dialled = _dialled(self)
        if dialled is not None and dialled.tls:
            self.sock = dialled.sock
            self._sent_early = dialled.sent
            self.is_verified = True
            return
        self._taken = dialled
        super().connect()

    def _new_conn(self) -> socket.socket:
        dialled, self._taken = self._taken, None
        if dialled is not None and dialled.sent is None:
            return dialled.sock
        if dialled is not None:  # plain bytes on it already: TLS cannot go on top
            dialled.sock.close()
        return urllib3.connection.HTTPSConnection._new_conn(self)


class _HTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = DialledHTTPConnection


class _HTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = DialledHTTPSConnection


POOL_CLASSES: dict[str, type[urllib3.HTTPConnectionPool]] = {
    "http": _HTTPConnectionPool,
    "https": _HTTPSConnectionPool,
}


def gated_pool_classes(
    gate: HostGate, base: dict[str, type[urllib3.HTTPConnectionPool]] | None = None
) -> dict[str, type[urllib3.HTTPConnectionPool]]:
    """``base``'s pools (ours by default; :func:`socks_pool_classes` for a SOCKS proxy),
    whose connections hold slots of ``gate`` (see :mod:`segdl.net.gate`)."""
    gated: dict[str, type[urllib3.HTTPConnectionPool]] = {}
    for scheme, pool_class in (POOL_CLASSES if base is None else base).items():
        plain: Any = pool_class.ConnectionCls
        connection = type(f"_Gated{plain.__name__}", (GatedConnection, plain), {})
        pool: Any = type(
            f"_Gated{pool_class.__name__}",
            (GatedPool, pool_class),
            {"ConnectionCls": connection, "host_gate": gate},
        )
        gated[scheme] = pool
    return gated


@functools.cache
def socks_pool_classes() -> dict[str, type[urllib3.HTTPConnectionPool]]:
    """urllib3's SOCKS pools, with our bounded-1xx response class (built once PySocks is
    known to be there)."""
    from urllib3.contrib import socks

    class _SOCKSConnection(socks.SOCKSConnection):
        response_class = BoundedResponse

    class _SOCKSHTTPSConnection(socks.SOCKSHTTPSConnection):
        response_class = BoundedResponse

    class _SOCKSHTTPConnectionPool(socks.SOCKSHTTPConnectionPool):
        ConnectionCls = _SOCKSConnection

    class _SOCKSHTTPSConnectionPool(socks.SOCKSHTTPSConnectionPool):
        ConnectionCls = _SOCKSHTTPSConnection

    return {"http": _SOCKSHTTPConnectionPool, "https": _SOCKSHTTPSConnectionPool}


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
                linger(sock)
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


def connection_of(raw: urllib3.BaseHTTPResponse) -> tuple[Any, Any]:
    """The connection carrying ``raw`` and its pool (None, None once released)."""
    return getattr(raw, "_connection", None), getattr(raw, "_pool", None)


def attach(raw: urllib3.BaseHTTPResponse, conn: Any, pool: Any) -> None:
    """Make ``raw`` release ``conn`` to ``pool`` when done, as urllib3's own pool does."""
    raw._connection = conn  # type: ignore[attr-defined]
    raw._pool = pool  # type: ignore[attr-defined]


def detach(raw: urllib3.BaseHTTPResponse) -> None:
    """``raw`` no longer owns its connection (a pipelined follower took it)."""
    raw._connection = None  # type: ignore[attr-defined]


def take_idle(pool: Any) -> Any:
    """An idle connection (or an unconnected slot) out of ``pool``, without waiting."""
    return pool._get_conn(timeout=0)


def put_back(pool: Any, conn: Any) -> None:
    pool._put_conn(conn)


def http_response_of(raw: urllib3.BaseHTTPResponse) -> http.client.HTTPResponse | None:
    """http.client's response under urllib3's, whose ``readinto`` fills our buffer."""
    fp = getattr(raw, "_fp", None)
    return fp if isinstance(fp, http.client.HTTPResponse) else None


def socket_of(fp: http.client.HTTPResponse) -> object:
    """The socket under http.client's buffered reader (``SocketIO``'s), or None."""
    return getattr(getattr(fp.fp, "raw", None), "_sock", None)


def end_body(fp: http.client.HTTPResponse) -> None:
    """Tell http.client its body has ended (bytes were taken past it): the connection is
    free for the next request."""
    fp._close_conn()  # type: ignore[attr-defined]


# The urllib3 versions whose internals (above) are known: the private names used here have
# been stable across 2.x. Another major version is refused at import, by name, rather than
# failing on the first request with an AttributeError.
_URLLIB3_MAJOR = 2


def check_urllib3(version: str) -> None:
    """Raise ImportError unless ``version`` is a urllib3 this module was written for."""
    major = version.split(".", 1)[0]
    if not (major.isascii() and major.isdigit() and int(major) == _URLLIB3_MAJOR):
        raise ImportError(
            f"segdl needs urllib3 {_URLLIB3_MAJOR}.x (it uses internals of its connection "
            f"pools), but urllib3 {version} is installed: pip install 'urllib3>=2,<3'"
        )


check_urllib3(getattr(urllib3, "__version__", "unknown"))
