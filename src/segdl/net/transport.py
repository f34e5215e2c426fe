"""The one seam to the network: a tiny request/response interface, implemented on urllib3.

This is the only module that imports urllib3. Everything above it sees :class:`Transport` and
:class:`Response` and segdl's own exceptions, so tests can hand the engine a fake transport.
urllib3 is used with retries and redirects off (segdl decides both), without preloading or
decoding the body: bytes go from the socket into the caller's buffer untouched.

TLS is verified by default (the system trust store, urllib3's default). With
``insecure=True`` urllib3 warns (``InsecureRequestWarning``) on every request; we let it:
silencing it would take the process-wide warning filters (``catch_warnings`` is not
thread-safe), and the engine tells the user about insecure use itself.

Proxies (:mod:`segdl.net.proxies` picks one per URL) get a urllib3 manager each: ``ProxyManager``
for http(s) proxies (CONNECT for https targets), ``SOCKSProxyManager`` for socks (PySocks).
urllib3 only ever sees the redacted proxy URL; credentials go in ``Proxy-Authorization``.
"""

from __future__ import annotations

import base64
import errno
import functools
import http.client
import importlib.util
import io
import logging
import os
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, Protocol

import urllib3
import urllib3.connection
from urllib3 import exceptions as u3
from urllib3.util.wait import wait_for_read

from segdl.core.errors import (
    ConnectError,
    ConnectionBroken,
    NetworkError,
    ProtocolError,
    ShortBody,
    SlowBody,
    SlowHead,
    TimeoutError_,
    TLSError,
    UsageError,
    shown,
)
from segdl.core.retry import parse_retry_after
from segdl.net import dial
from segdl.net.gate import GatedConnection, GatedPool, HostGate, gate_key
from segdl.net.pipelining import FOLLOW_MAX_BYTES, HEAD_WAIT_S, Handover, Lane, QueuedRequest
from segdl.net.proxies import ProxyURL, parse_proxy, proxy_auth_failed, proxy_error, proxy_for

log = logging.getLogger(__name__)


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


# A server may send informational (1xx) responses before the real one (RFC 9110 §15.2), but
# an endless stream of them must not keep a connection busy forever.
MAX_INTERIM_RESPONSES = 10
# How many URLs' proxy choices a transport remembers (Urllib3Transport._chosen_proxy).
_PROXY_CHOICES_KEPT = 4096


# A body slower than this many bytes per read timeout counts as stalled, as silence does:
# a server sending a byte every few seconds would otherwise never trip the idle timeout (#19).
TRICKLE_FLOOR_BYTES = 1024


class TooManyInterimResponses(http.client.HTTPException):
    """More 1xx responses than anyone needs before a final one."""


class _HeadTimeout(TimeoutError):
    """The response head (interim ones included) did not end within the head deadline."""


class _HeadReader:
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
            raise _HeadTimeout(f"response head not complete within {self._budget_s:g} s")
        if remaining_s < self._idle_s - 0.05:
            self._sock.settimeout(remaining_s)
            self.shortened = True
        try:
            return bytes(self._fp.peek(1))  # at most one recv, as much as it brings
        except TimeoutError as exc:
            if time.monotonic() >= self._deadline - 0.01:
                raise _HeadTimeout(
                    f"response head not complete within {self._budget_s:g} s"
                ) from exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class _BoundedResponse(http.client.HTTPResponse):
    """http.client's response, but skipping every 1xx (not only 100) and at most a few, and
    the whole head (interim responses included) within the read timeout."""

    _interim = 0

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self._head_sock = sock

    def begin(self) -> None:
        sock = self._head_sock
        budget_s = sock.gettimeout()
        if budget_s is None or self.headers is not None:
            return super().begin()
        fp = self.fp
        reader = _HeadReader(fp, sock, budget_s)
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
            if self._interim > MAX_INTERIM_RESPONSES:
                raise TooManyInterimResponses(f"more than {MAX_INTERIM_RESPONSES} 1xx responses")
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


class _HTTPConnection(urllib3.connection.HTTPConnection):
    """urllib3's connection, on the socket :mod:`segdl.net.dial` connected when there is one.

    That socket may carry a request already (:func:`segdl.net.dial.first_request`): when the
    first request written here is that one, byte for byte, it is not written again; any
    other request gets a fresh connection instead, since the server answers the early one
    first and its answer would be read as this one's."""

    response_class = _BoundedResponse
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
            self.sock = super()._new_conn()
        super().send(data)


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    response_class = _BoundedResponse

    def _new_conn(self) -> socket.socket:
        dialled = _dialled(self)
        if dialled is None:
            return super()._new_conn()
        if dialled.sent is not None:  # not TLS: segdl.net.dial writes plain http only
            dialled.sock.close()
            return super()._new_conn()
        return dialled.sock  # TLS goes on top as on any socket


class _HTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOL_CLASSES: dict[str, type[urllib3.HTTPConnectionPool]] = {
    "http": _HTTPConnectionPool,
    "https": _HTTPSConnectionPool,
}


def _gated_pool_classes(gate: HostGate) -> dict[str, type[urllib3.HTTPConnectionPool]]:
    """Our pools, whose connections hold slots of ``gate`` (see :mod:`segdl.net.gate`)."""

    class _GatedHTTPConnection(GatedConnection, _HTTPConnection):
        pass

    class _GatedHTTPSConnection(GatedConnection, _HTTPSConnection):
        pass

    class _GatedHTTPConnectionPool(GatedPool, _HTTPConnectionPool):
        ConnectionCls = _GatedHTTPConnection
        host_gate = gate

    class _GatedHTTPSConnectionPool(GatedPool, _HTTPSConnectionPool):
        ConnectionCls = _GatedHTTPSConnection
        host_gate = gate

    return {"http": _GatedHTTPConnectionPool, "https": _GatedHTTPSConnectionPool}


class Urllib3Transport:
    """:class:`Transport` over urllib3 pool managers (thread-safe connection pools): one for
    direct connections, one per proxy in use.

    ``ca_bundle``: trust only the CAs in that PEM file; ``insecure``: verify nothing (for this
    transport only). Both apply to an ``https://`` proxy's certificate too. ``proxy`` is used
    for every URL (an empty string: never a proxy); without it and with ``use_proxy_env``,
    ``http_proxy``, ``https_proxy``, ``all_proxy`` and ``no_proxy`` from ``environ`` (default:
    ``os.environ``, read once here) decide per URL, as :func:`segdl.net.proxies.proxy_for` says.
    ``host_gate``: consulted before each connection and request, told of each pause a server
    asks for (:mod:`segdl.net.gate`; not for SOCKS proxies' connections); none by default.
    """

    def __init__(
        self,
        *,
        max_connections_per_host: int = 16,
        timeout_s: float = 30.0,
        ca_bundle: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        proxy: str | None = None,
        use_proxy_env: bool = True,
        environ: Mapping[str, str] | None = None,
        block: bool = False,
        pipelining: bool = False,
        lowest_speed_bytes_per_s: int | None = None,
        host_gate: HostGate | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        # A body counts as stalled when, over one read timeout of waiting for the server, it
        # brought fewer than TRICKLE_FLOOR_BYTES, or less than --lowest-speed-limit asks.
        floor_bytes = max(TRICKLE_FLOOR_BYTES, int((lowest_speed_bytes_per_s or 0) * timeout_s))
        self._trickle_floor = _Floor(timeout_s, floor_bytes)
        self._gate = host_gate
        self._pool_classes = _POOL_CLASSES if host_gate is None else _gated_pool_classes(host_gate)
        # follow() offers lanes only when asked for (a batch of files); see segdl.net.pipelining.
        self._pipelining = pipelining
        self._no_pipelining: set[tuple[str, str, int]] = set()  # origins that failed at it
        self._pool_kw: dict[str, Any] = {
            "num_pools": 32,
            "maxsize": max_connections_per_host,
            # block=True: never more than maxsize connections per host, requests wait for
            # one instead; shared by a batch, this is the cap across all its downloads.
            "block": block,
            "timeout": urllib3.Timeout(connect=timeout_s, read=timeout_s),
            "retries": False,
            **_tls_options(ca_bundle, insecure),
        }
        if proxy:  # a malformed proxy, or one we cannot speak, is a usage error now
            _require_socks_support(parse_proxy(proxy))
        self._explicit_proxy = proxy
        self._use_proxy_env = use_proxy_env
        # A snapshot: one transport sees one environment, whatever is changed meanwhile.
        self._environ = dict(os.environ if environ is None else environ)
        self._lock = threading.Lock()
        self._direct = _manager(None, self._pool_kw, self._pool_classes)
        self._proxied: dict[str, tuple[ProxyURL, urllib3.PoolManager]] = {}
        # proxy_for of each URL, remembered: the environment is a snapshot, so the answer never
        # changes, and a batch asks it of every URL for each lane the URL's file may ride.
        self._chosen_proxy = functools.lru_cache(maxsize=_PROXY_CHOICES_KEPT)(self._proxy_for)

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response:
        proxy, manager = self._route(url)
        if self._gate is not None:
            self._gate.before_request(_gate_key(url))
        with _mapped_errors(url, proxy=proxy):
            raw = manager.request(
                method,
                url,
                headers=dict(headers),
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
            )
        if proxy is not None and not proxy.socks and raw.status == 407:
            # Through a forwarding proxy a 407 is the proxy's own answer (RFC 9110 §15.5.8);
            # it is about our route, not the file, so it is not an HTTP status of the origin.
            raw.close()
            raw.release_conn()
            raise proxy_auth_failed(url, proxy, 407)
        if self._gate is not None and raw.status in (429, 503):
            self._pause_asked(url, raw.headers.getlist("Retry-After"))
        return _Urllib3Response(
            url, raw, method=method, direct=proxy is None, floor=self._trickle_floor
        )

    def _pause_asked(self, url: str, retry_after: list[str]) -> None:
        """A server's "wait before asking again" holds for everyone sharing the gate."""
        assert self._gate is not None
        delay_s = parse_retry_after(retry_after[0], time.time()) if len(retry_after) == 1 else None
        if delay_s is not None and delay_s > 0:
            self._gate.retry_after(_gate_key(url), delay_s)

    def follow(self, response: Response) -> FollowOn | None:
        """Room for one more ``GET`` on the connection carrying ``response``, sent while its
        body is still arriving (HTTP/1.1 pipelining); None unless this transport pipelines
        and ``response`` qualifies (see :mod:`segdl.net.pipelining`). Call before reading its
        body."""
        if not self._pipelining or not isinstance(response, _Urllib3Response):
            return None
        lane = response.open_lane()
        if lane is None or lane.origin in self._no_pipelining:
            return None
        conn, pool = response.connection
        return _FollowOn(self, lane, conn, pool)

    def _answer(self, follow: _FollowOn, request: QueuedRequest) -> Response | None:
        """Read the answer to a request pipelined on ``follow``'s connection, now that the
        response ahead has ended; None if there is none to read (the caller sends again)."""
        conn, pool = follow.conn, follow.pool
        benign = False
        try:
            sock = conn.sock
            if sock is None:
                raise ConnectionResetError("connection closed")
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            if not pending and not wait_for_read(sock, timeout=min(self.timeout_s, HEAD_WAIT_S)):
                raise TimeoutError("no answer to a pipelined request")
            raw = conn.getresponse()
        except (ConnectionError, http.client.RemoteDisconnected) as exc:
            benign = True  # closed after the response ahead (say, a keep-alive limit)
            log.debug("pipelined request to %s not answered: %s", _host(request.url), exc)
        except Exception as exc:  # whatever it was, send the request again
            log.debug("pipelined request to %s failed: %s", _host(request.url), exc)
        else:
            raw._connection = conn  # released to the pool as urllib3 does
            raw._pool = pool
            if self._gate is not None and raw.status in (429, 503):
                self._pause_asked(request.url, raw.headers.getlist("Retry-After"))
            return _Urllib3Response(
                request.url, raw, method=request.method, direct=True, floor=self._trickle_floor
            )
        if not benign:
            self._no_pipelining.add(follow.lane.origin)
        conn.close()
        pool._put_conn(conn)  # a free slot again
        return None

    def preconnect(self, url: str, count: int) -> Preconnection:
        """While the first request is in flight, the connections the ranges will need are
        set up beside it: their handshakes overlap its round trip instead of following it.
        Only free pool slots are used, so this never opens more than the per-host cap.

        The first connection is opened here, in the caller's thread, and left in the pool
        for the first request: a server that caps connections admits that one first. The
        others are connected in background threads and held back until released."""
        try:
            proxy, manager = self._route(url)
            if proxy is not None:  # urllib3 sets tunnels up per request: nothing to gain
                return _Preconnection(None, [])
            pool = manager.connection_from_url(url)
            idle: list[Any] = []
            while len(idle) <= count and pool.pool is not None and not pool.pool.empty():
                idle.append(pool._get_conn(timeout=0))
        except (u3.HTTPError, OSError, ValueError, UsageError) as exc:
            log.debug("not preconnecting to %s: %s", _host(url), exc)
            return _Preconnection(None, [])
        if not idle:
            return _Preconnection(pool, [])
        first, others = idle[0], idle[1:]
        try:
            if not first.is_connected:
                first.connect()
        except Exception as exc:  # the first request will fail (or succeed) by itself
            log.debug("not preconnecting to %s: %s", _host(url), exc)
            first.close()
            for conn in idle:
                pool._put_conn(conn)
            return _Preconnection(pool, [])
        pool._put_conn(first)
        return _Preconnection(pool, others)

    def _route(self, url: str) -> tuple[ProxyURL | None, urllib3.PoolManager]:
        """The proxy for ``url`` (None: direct) and the manager that goes through it."""
        chosen = self._chosen_proxy(url)
        if chosen is None:
            return None, self._direct
        with self._lock:
            route = self._proxied.get(chosen)
            if route is None:
                proxy = parse_proxy(chosen)
                manager = _manager(proxy, self._pool_kw, self._pool_classes)
                route = self._proxied[chosen] = (proxy, manager)
        return route

    def _proxy_for(self, url: str) -> str | None:
        return proxy_for(
            url, explicit=self._explicit_proxy, environ=self._environ, use_env=self._use_proxy_env
        )

    def close(self) -> None:
        with self._lock:
            managers = [self._direct, *(manager for _, manager in self._proxied.values())]
        for manager in managers:
            manager.clear()


class _FollowOn:
    """A :class:`~segdl.net.pipelining.Lane` with the connection and pool it belongs to."""

    def __init__(self, transport: Urllib3Transport, lane: Lane, conn: Any, pool: Any) -> None:
        self._transport = transport
        self.lane = lane
        self.conn = conn
        self.pool = pool

    @property
    def open(self) -> bool:
        return self.lane.open

    def accepts(self, url: str) -> bool:
        """Whether a request for ``url`` may ride here: same origin, no proxy on its way."""
        try:
            proxy, _ = self._transport._route(url)
            return proxy is None and _origin(url) == self.lane.origin
        except (u3.HTTPError, ValueError, UsageError):
            return False

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response | None:
        """Send the request behind the response ahead and return its answer; None if it
        could not ride (send it as usual: nothing of it was used)."""
        if method != "GET" or not self.accepts(url):
            self.lane.give_up()
            return None
        if self._transport._gate is not None:
            self._transport._gate.before_request(_gate_key(url))
        queued = QueuedRequest(method, url, dict(headers))
        # A plain socket takes a write from this thread while another reads; TLS does not.
        plain = type(self.conn.sock) is socket.socket
        if not self.lane.ride(queued, functools.partial(_send, self.conn) if plain else None):
            return None
        return self._transport._answer(self, queued)

    def give_up(self) -> None:
        self.lane.give_up()


class _Preconnection:
    """Pool connections taken out, connected in parallel threads (each handshake takes a
    round trip), and put back only once released; closed and put back if discarded."""

    def __init__(self, pool: Any, conns: list[Any]) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._outcome: str | None = None  # None while held, then "release" or "discard"
        self._ready: list[Any] = []
        for conn in conns:
            threading.Thread(
                target=self._connect, args=(conn,), name="segdl-preconnect", daemon=True
            ).start()

    def release(self) -> None:
        self._settle("release")

    def discard(self) -> None:
        self._settle("discard")

    def _connect(self, conn: Any) -> None:
        try:
            if not conn.is_connected:
                conn.connect()
        except Exception as exc:  # best effort: a request reconnects by itself
            log.debug("preconnect to %s failed: %s", self._pool.host, exc)
            conn.close()
        with self._lock:
            outcome = self._outcome
            if outcome is None:
                self._ready.append(conn)
                return
        self._hand_back(conn, outcome)

    def _settle(self, outcome: str) -> None:
        with self._lock:
            if self._outcome is not None:
                return
            self._outcome = outcome
            ready, self._ready = self._ready, []
        for conn in ready:
            self._hand_back(conn, outcome)

    def _hand_back(self, conn: Any, outcome: str) -> None:
        if outcome == "discard":
            conn.close()  # back in the pool unconnected: a free slot, reconnected on use
        self._pool._put_conn(conn)


def _host(url: str) -> str:
    return urllib3.util.parse_url(url).host or "?"


@functools.lru_cache(maxsize=1024)
def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of ``url``; cached, since a batch asks it of each URL several
    times (a lane's origin, then whether each waiting file may ride it)."""
    parsed = urllib3.util.parse_url(url)
    scheme = (parsed.scheme or "").lower()
    return scheme, (parsed.host or "").lower(), parsed.port or (443 if scheme == "https" else 80)


def _gate_key(url: str) -> str:
    scheme, host, port = _origin(url)
    return gate_key(host, port, scheme)


def _tls_options(ca_bundle: str | os.PathLike[str] | None, insecure: bool) -> dict[str, Any]:
    if insecure and ca_bundle is not None:
        raise UsageError("a CA bundle and insecure (no verification) exclude each other")
    if insecure:
        return {"cert_reqs": "CERT_NONE", "assert_hostname": False}
    if ca_bundle is None:
        return {}
    path = os.fspath(ca_bundle)
    try:  # a missing or unreadable bundle is the user's mistake, not a TLS failure per URL
        ssl.create_default_context(cafile=path)
    except OSError as exc:  # ssl.SSLError is an OSError
        tls_reason = exc.reason if isinstance(exc, ssl.SSLError) else None
        reason = tls_reason.lower().replace("_", " ") if tls_reason else exc.strerror or exc
        raise UsageError(f"cannot use CA bundle {path}: {reason}") from exc
    return {"cert_reqs": "CERT_REQUIRED", "ca_certs": path}


def _manager(
    proxy: ProxyURL | None,
    pool_kw: Mapping[str, Any],
    pool_classes: dict[str, type[urllib3.HTTPConnectionPool]] = _POOL_CLASSES,
) -> urllib3.PoolManager:
    manager: urllib3.PoolManager
    if proxy is None:
        manager = urllib3.PoolManager(**pool_kw)
    elif proxy.socks:
        return _socks_manager(proxy, pool_kw)
    else:
        # Only the redacted URL goes to urllib3, so no urllib3 message can show the password.
        auth = {"Proxy-Authorization": _basic_auth(proxy)} if proxy.username is not None else None
        manager = urllib3.ProxyManager(proxy.redacted, proxy_headers=auth, **pool_kw)
    manager.pool_classes_by_scheme = pool_classes
    return manager


def _basic_auth(proxy: ProxyURL) -> str:
    # RFC 7617 §2.1: UTF-8 is the one charset allowed (urllib3's make_headers uses latin-1).
    pair = f"{proxy.username}:{proxy.password or ''}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _require_socks_support(proxy: ProxyURL) -> None:
    # Checked before importing: urllib3.contrib.socks warns when PySocks is missing.
    if proxy.socks and importlib.util.find_spec("socks") is None:
        raise UsageError(f"a {proxy.scheme}:// proxy needs PySocks: pip install 'segdl[socks]'")


def _socks_manager(proxy: ProxyURL, pool_kw: Mapping[str, Any]) -> urllib3.PoolManager:
    _require_socks_support(proxy)
    from urllib3.contrib.socks import SOCKSProxyManager

    manager = SOCKSProxyManager(
        proxy.redacted, username=proxy.username, password=proxy.password, **pool_kw
    )
    manager.pool_classes_by_scheme = _socks_pool_classes()
    return manager


@functools.cache
def _socks_pool_classes() -> dict[str, type[urllib3.HTTPConnectionPool]]:
    """urllib3's SOCKS pools, with our bounded-1xx response class (built once PySocks is
    known to be there)."""
    from urllib3.contrib import socks

    class _SOCKSConnection(socks.SOCKSConnection):
        response_class = _BoundedResponse

    class _SOCKSHTTPSConnection(socks.SOCKSHTTPSConnection):
        response_class = _BoundedResponse

    class _SOCKSHTTPConnectionPool(socks.SOCKSHTTPConnectionPool):
        ConnectionCls = _SOCKSConnection

    class _SOCKSHTTPSConnectionPool(socks.SOCKSHTTPSConnectionPool):
        ConnectionCls = _SOCKSHTTPSConnection

    return {"http": _SOCKSHTTPConnectionPool, "https": _SOCKSHTTPSConnectionPool}


class _Floor:
    """The slowest a body may arrive: ``bytes`` per ``window_s`` of waiting on the server."""

    __slots__ = ("bytes", "window_s")

    def __init__(self, window_s: float, floor_bytes: int) -> None:
        self.window_s = window_s
        self.bytes = floor_bytes


class _Urllib3Response:
    def __init__(
        self,
        url: str,
        raw: urllib3.BaseHTTPResponse,
        *,
        method: str = "GET",
        direct: bool = False,
        floor: _Floor | None = None,
    ) -> None:
        self._url = url
        self._floor = floor
        # Time spent inside reads (the server's share, not ours: a rate limit or a disk write
        # between reads is not the server trickling) and the bytes they brought, per window.
        self._window_waited_s = 0.0
        self._window_bytes = 0
        self._raw = raw
        self._method = method
        self._direct = direct  # no proxy between us and the server
        self._lane: Lane | None = None  # a request queued behind this one, if any
        # urllib3's own readinto copies through read(); http.client's fills our buffer
        # directly and still handles Content-Length and chunked framing.
        fp = getattr(raw, "_fp", None)
        self._fp: http.client.HTTPResponse | None = (
            fp if isinstance(fp, http.client.HTTPResponse) else None
        )
        self._received_bytes = 0
        self._aborted = False
        self._closed = False
        self._closing = threading.Lock()  # abort() and close() come from different threads
        # http.client's reader may hold body bytes read along with the head; only once a
        # read larger than its buffer has emptied it may bytes be taken from the socket.
        self._reader_empty = False
        self._can_splice = hasattr(os, "splice")

    @property
    def status(self) -> int:
        return self._raw.status

    @property
    def reason(self) -> str:
        return self._raw.reason or ""

    def header_values(self, name: str) -> list[str]:
        return self._raw.headers.getlist(name)

    @property
    def connection(self) -> tuple[Any, Any]:
        """The urllib3 connection carrying this response, and its pool."""
        return getattr(self._raw, "_connection", None), getattr(self._raw, "_pool", None)

    def open_lane(self) -> Lane | None:
        """Room for one request behind this response, if it qualifies: a ``GET`` answered
        2xx on a kept-alive direct HTTP/1.1 connection, its body framed by a length of at most
        FOLLOW_MAX_BYTES and not read yet."""
        fp, (conn, pool) = self._fp, self.connection
        if (
            self._lane is not None
            or not self._direct
            or self._method != "GET"
            or self._aborted
            or not 200 <= self._raw.status < 300
            or conn is None
            or pool is None
            or fp is None
            or fp.isclosed()
            or fp.chunked
            or fp.will_close
            or fp.version != 11
            or fp.length is None
            or not 0 < fp.length <= FOLLOW_MAX_BYTES
        ):
            return None
        self._lane = Lane(_origin(self._url))
        return self._lane

    def _send_queued(self) -> None:
        """Write the request queued behind this response (from this response's reader: one
        thread per socket, as TLS needs)."""
        assert self._lane is not None
        self._lane.send_queued(functools.partial(_send, self._raw._connection))  # type: ignore[attr-defined]

    def readinto(self, buffer: memoryview) -> int:
        if self._lane is not None and self._lane.queued:
            self._send_queued()
        self._check_floor()
        began_s = time.monotonic()
        with _mapped_errors(self._url, self._received_bytes):
            n = self._readinto(buffer) if self._fp is not None else self._raw.readinto(buffer)
        self._received_bytes += n
        self._count_window(n, time.monotonic() - began_s)
        return n

    def _count_window(self, n_bytes: int, waited_s: float) -> None:
        if self._floor is not None and n_bytes:
            self._window_waited_s += waited_s
            self._window_bytes += n_bytes

    def _check_floor(self) -> None:
        """Before a read (never after one: its bytes are the caller's, in its buffer or its
        pipe): raise :class:`SlowBody` when a whole window of waiting brought too few bytes."""
        floor = self._floor
        if floor is None or not self._window_bytes or self._window_waited_s < floor.window_s:
            return
        if self._window_bytes < floor.bytes:
            raise SlowBody(
                self._url,
                f"body trickled: {self._window_bytes} bytes in {self._window_waited_s:.0f} s "
                f"(under {floor.bytes} per {floor.window_s:g} s)",
            )
        self._window_waited_s, self._window_bytes = 0.0, 0

    def _readinto(self, buffer: memoryview) -> int:
        """http.client's ``readinto``, but returning after one ``recv`` instead of waiting
        for the whole buffer: a slow connection then shows its progress (and its rate, which
        the planner needs to decide a race) instead of going quiet until 256 KiB arrived."""
        fp = self._fp
        assert fp is not None
        reader = fp.fp
        if reader is None:  # http.client closes itself at the end of the body
            return 0
        if fp.chunked:
            return fp.readinto(buffer)  # chunk framing stays http.client's business
        length: int | None = fp.length
        view = buffer if length is None else buffer[:length]
        if length is not None and 0 < len(view) <= io.DEFAULT_BUFFER_SIZE:
            # readinto1 would fill the reader's buffer and could take bytes past the body:
            # those of a pipelined answer. read1 reads no more than asked.
            data = reader.read1(len(view))
            n = len(data)
            view[:n] = data
        else:
            n = reader.readinto1(view) if view else 0
        # CPython's BufferedReader serves a read larger than its buffer from what it holds
        # plus one read from the socket straight into ours, leaving itself empty.
        self._reader_empty = len(view) > io.DEFAULT_BUFFER_SIZE
        if n and self._reader_empty:
            n += _more_records(self._tls_socket(), view[n:])
        _consumed(fp, n)
        return n

    def _tls_socket(self) -> ssl.SSLSocket | None:
        sock = self._body_socket()
        return sock if isinstance(sock, ssl.SSLSocket) else None

    def _body_socket(self) -> object:
        """The socket under http.client's reader; None for a chunked body (its framing is
        http.client's business) or when there is none."""
        fp = self._fp
        if fp is None or fp.chunked:
            return None
        return getattr(getattr(fp.fp, "raw", None), "_sock", None)  # SocketIO's socket

    def splice_into(self, pipe_fd: int, max_bytes: int) -> int | None:
        """Move up to ``max_bytes`` of body from the socket into the pipe ``pipe_fd`` (Linux
        ``splice``: the bytes never pass through Python); 0 at the end of the body. None when
        this response cannot (TLS, chunked, bytes held by http.client): use :meth:`readinto`."""
        sock = self._splice_socket()
        if sock is None:
            return None
        if self._lane is not None and self._lane.queued:
            self._send_queued()
        fp = self._fp
        assert fp is not None
        length: int | None = fp.length
        count = max_bytes if length is None else min(max_bytes, length)
        n = 0
        self._check_floor()
        began_s = time.monotonic()
        if count > 0:
            with _mapped_errors(self._url, self._received_bytes):
                try:
                    n = _splice(sock, pipe_fd, count)
                except OSError as exc:
                    if isinstance(exc, (ConnectionError, TimeoutError)):
                        raise
                    if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        self._can_splice = False  # nothing was moved: read instead
                        return None
                    raise ConnectionResetError(exc.errno, exc.strerror) from exc
        _consumed(fp, n)
        self._received_bytes += n
        self._count_window(n, time.monotonic() - began_s)
        return n

    def _splice_socket(self) -> socket.socket | None:
        if not (self._can_splice and self._reader_empty):
            return None
        sock = self._body_socket()
        return sock if type(sock) is socket.socket else None  # not TLS, not SOCKS

    def abort(self) -> None:
        """Safe from any thread at any moment, even after :meth:`close` handed the connection
        back to the pool (urllib3 then raises RuntimeError) or while it does."""
        with self._closing:
            self._aborted = True
            if self._closed:
                return  # released: the socket may already carry another request
            shutdown = getattr(self._raw, "shutdown", None)  # urllib3 >= 2.3
            if shutdown is None:
                return
            # ValueError: no socket (yet, or any more); RuntimeError, AttributeError: urllib3
            # found the connection released or half torn down by a close in another thread.
            with suppress(OSError, ValueError, RuntimeError, AttributeError):
                shutdown()

    def close(self) -> None:
        with self._closing:
            if self._closed:
                return
            self._closed = True
        try:
            self._close()
        except (OSError, ValueError, RuntimeError, AttributeError) as exc:
            # Called from finally blocks: never mask the error that ended the body. A
            # connection urllib3 could not put back is dropped, not reused.
            log.debug("closing a response from %s: %r", _host(self._url), exc)
            with suppress(Exception):
                self._raw.close()

    def _close(self) -> None:
        finished = self._fp is None or self._fp.isclosed()
        handover = Handover.RELEASE
        if self._lane is not None:
            handover = self._lane.ahead_closed(finished and not self._aborted)
        if handover is Handover.KEEP:
            self._raw._connection = None  # type: ignore[attr-defined]  # the follower's now
            return
        if self._aborted or not finished or handover is Handover.CLOSE:
            self._raw.close()  # closes the socket: the rest of the body is never read
        self._raw.release_conn()


def _send(conn: urllib3.connection.HTTPConnection, request: QueuedRequest) -> None:
    """Write a pipelined request on ``conn``, as urllib3's pool writes any request."""
    conn.request(
        request.method,
        urllib3.util.parse_url(request.url).request_uri,
        headers=dict(request.headers),
        preload_content=False,
        decode_content=False,
    )


# One TLS record carries at most 16 KiB: a read returns no more, whatever the buffer.
_TLS_RECORD_BYTES = 16 * 1024


def _more_records(sock: ssl.SSLSocket | None, view: memoryview) -> int:
    """Read into ``view`` the TLS records that are already waiting, without blocking; how many
    bytes. One read returns one record (16 KiB), so without this every 16 KiB would cost a
    trip through the planner, a write and two releases of the GIL; with 16 connections those
    hand-overs cost more CPU than the decryption. An error is left for the next read."""
    if sock is None or len(view) < _TLS_RECORD_BYTES:
        return 0
    timeout_s = sock.gettimeout()
    got = 0
    try:
        sock.settimeout(0.0)
        while len(view) - got >= _TLS_RECORD_BYTES:
            n = sock.recv_into(view[got:])
            if not n:
                break
            got += n
    except OSError:  # nothing waiting (SSLWantReadError), or a failure the next read sees
        pass
    finally:
        with suppress(OSError):
            sock.settimeout(timeout_s)
    return got


def _consumed(fp: http.client.HTTPResponse, n_bytes: int) -> None:
    """Account for body bytes taken past http.client: its remaining length, and the end of
    the body (0 bytes, or the length reached), which frees the connection for reuse."""
    if n_bytes and fp.length is not None:
        fp.length -= n_bytes
    if not n_bytes or fp.length == 0:
        fp._close_conn()  # type: ignore[attr-defined]


def _splice(sock: socket.socket, pipe_fd: int, count: int) -> int:
    """One ``splice`` from ``sock`` into the (empty) pipe, waiting at most the socket's
    timeout for bytes to arrive; a socket with a timeout is non-blocking underneath."""
    fd = sock.fileno()
    timeout_s = sock.gettimeout()
    poller: select.poll | None = None
    while True:
        try:
            return os.splice(fd, pipe_fd, count, flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
        except BlockingIOError:
            pass
        if poller is None:
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
        wait_ms = None if timeout_s is None else max(1, int(timeout_s * 1000))
        if not poller.poll(wait_ms):
            raise TimeoutError("read timed out")


@contextmanager
def _mapped_errors(
    url: str, received_bytes: int = 0, proxy: ProxyURL | None = None
) -> Iterator[None]:
    """Turn urllib3, http.client and socket errors into segdl's tree."""
    try:
        yield
    except http.client.IncompleteRead as exc:
        expected = received_bytes + len(exc.partial) + (exc.expected or 0)
        raise ShortBody(url, expected, received_bytes + len(exc.partial)) from exc
    except u3.IncompleteRead as exc:
        raise ShortBody(url, exc.expected + exc.partial, exc.partial) from exc
    except u3.ProxyError as exc:  # urllib3 wraps what fails before the proxy is connected
        raise _proxy_error(url, proxy, exc) from exc
    except (u3.SSLError, ssl.SSLError) as exc:
        raise TLSError(url, _tls_reason(exc)) from exc
    except u3.NameResolutionError as exc:
        raise ConnectError(url, "host name not found") from exc
    except u3.NewConnectionError as exc:  # a ConnectTimeoutError subclass: test it first
        if proxy is not None and proxy.socks:  # SOCKS failures arrive unwrapped
            raise _proxy_error(url, proxy, exc) from exc
        raise ConnectError(url, _connect_reason(exc)) from exc
    except (TimeoutError, u3.ConnectTimeoutError, u3.ReadTimeoutError) as exc:
        head = _in_chain(exc, _HeadTimeout)
        if head is not None:
            raise SlowHead(url, str(head)) from exc
        raise TimeoutError_(url, "timed out") from exc
    except (u3.LocationValueError, u3.URLSchemeUnknown) as exc:
        raise UsageError(f"invalid URL {url!r}: {exc}") from exc
    except (u3.ProtocolError, ConnectionError, http.client.HTTPException) as exc:
        root = _root_cause(exc)
        # Oversized heads and endless 1xx are the server's fault, not the network's: final.
        oversized = "got more than" in str(root)  # http.client: over 100 header fields
        if oversized or isinstance(root, (TooManyInterimResponses, http.client.LineTooLong)):
            raise ProtocolError(f"invalid response: {root} ({shown(url)})") from exc
        raise ConnectionBroken(url, f"connection broken: {_root_cause(exc)}") from exc
    except u3.InvalidHeader as exc:  # two Content-Length values that differ: not believable
        raise ProtocolError(f"invalid response: {exc} ({shown(url)})") from exc
    except u3.HTTPError as exc:
        raise NetworkError(url, str(exc)) from exc
    except (RuntimeError, AttributeError) as exc:
        # urllib3 and http.client on a connection another thread aborted or released (#19:
        # "Cannot shutdown as connection has already been released to the pool"): the
        # connection is unusable, which is what a broken connection means; retried as one.
        log.debug("transport state error for %s", _host(url), exc_info=True)
        raise ConnectionBroken(url, f"connection broken: {type(exc).__name__}: {exc}") from exc


def _tls_reason(exc: BaseException) -> str:
    """One line: "certificate verify failed: self-signed certificate", not urllib3's repr."""
    root = _root_cause(exc)
    if isinstance(root, ssl.SSLCertVerificationError) and root.verify_message:
        return f"certificate verify failed: {root.verify_message}"
    if isinstance(root, ssl.SSLError) and root.reason:
        return f"TLS error: {root.reason.lower().replace('_', ' ')}"
    return f"TLS error: {root}"


def _proxy_error(url: str, proxy: ProxyURL | None, exc: BaseException) -> NetworkError:
    root = _root_cause(exc)
    if isinstance(root, ssl.SSLError):  # TLS to an https:// proxy
        return TLSError(url, f"proxy {proxy}: {_tls_reason(root)}")
    return proxy_error(url, proxy, root)


def _connect_reason(exc: BaseException) -> str:
    root = _root_cause(exc)
    if isinstance(root, ConnectionRefusedError):
        return "connection refused"
    return f"cannot connect: {root}"


def _in_chain(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of ``kind`` in ``exc``'s chain of causes, or None."""
    seen: BaseException | None = exc
    for _ in range(32):  # a chain is a few links long; never loop on a cycle
        if seen is None or isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _root_cause(exc: BaseException) -> BaseException:
    seen = exc
    while True:
        inner = seen.__cause__ or seen.__context__
        if inner is None and seen.args and isinstance(seen.args[-1], BaseException):
            inner = seen.args[-1]
        if inner is None or inner is seen:
            return seen
        seen = inner
