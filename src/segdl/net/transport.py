"""The one seam to the network: a tiny request/response interface, implemented on urllib3.

Only :mod:`segdl.net` imports urllib3. Everything above it sees the interfaces of
:mod:`segdl.net.interfaces` and segdl's own exceptions, so tests can hand the engine a fake
transport (:mod:`segdl.net.fake`).
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

import functools
import http.client
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import urllib3
import urllib3.connection
from urllib3 import exceptions as u3
from urllib3.util.wait import wait_for_read

from segdl.core.errors import UsageError
from segdl.core.retry import parse_retry_after
from segdl.net.body import TRICKLE_FLOOR_BYTES, Floor, Urllib3Response, send_request
from segdl.net.error_map import mapped_errors
from segdl.net.gate import HostGate
from segdl.net.interfaces import FollowOn, Preconnection, Response
from segdl.net.managers import pool_manager, require_socks_support, tls_options
from segdl.net.origins import gate_key_of, host_of, origin
from segdl.net.pipelining import HEAD_WAIT_S, Lane, QueuedRequest
from segdl.net.proxies import ProxyURL, parse_proxy, proxy_auth_failed, proxy_for
from segdl.net.urllib3_compat import (
    POOL_CLASSES,
    attach,
    gated_pool_classes,
    put_back,
    take_idle,
)

if TYPE_CHECKING:
    from segdl.core.options import DownloadOptions

log = logging.getLogger(__name__)


# How many URLs' proxy choices a transport remembers (Urllib3Transport._chosen_proxy).
_PROXY_CHOICES_KEPT = 4096


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

    @classmethod
    def for_options(
        cls,
        settings: DownloadOptions,
        *,
        max_connections_per_host: int,
        block: bool = False,
        pipelining: bool = False,
        host_gate: HostGate | None = None,
    ) -> Urllib3Transport:
        """A transport with a download's network options (timeout, TLS, proxy, stall floor):
        the one place a download, a stream and a batch read them from."""
        return cls(
            max_connections_per_host=max_connections_per_host,
            timeout_s=settings.timeout_s,
            ca_bundle=settings.ca_bundle,
            insecure=settings.insecure,
            proxy=settings.proxy,
            use_proxy_env=settings.use_proxy_env,
            block=block,
            pipelining=pipelining,
            lowest_speed_bytes_per_s=settings.lowest_speed_bytes_per_s,
            host_gate=host_gate,
        )

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
        self._trickle_floor = Floor(timeout_s, floor_bytes)
        self._gate = host_gate
        self._pool_classes = POOL_CLASSES if host_gate is None else gated_pool_classes(host_gate)
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
            **tls_options(ca_bundle, insecure),
        }
        if proxy:  # a malformed proxy, or one we cannot speak, is a usage error now
            require_socks_support(parse_proxy(proxy))
        self._explicit_proxy = proxy
        self._use_proxy_env = use_proxy_env
        # A snapshot: one transport sees one environment, whatever is changed meanwhile.
        self._environ = dict(os.environ if environ is None else environ)
        self._lock = threading.Lock()
        self._direct = pool_manager(None, self._pool_kw, self._pool_classes)
        self._proxied: dict[str, tuple[ProxyURL, urllib3.PoolManager]] = {}
        # proxy_for of each URL, remembered: the environment is a snapshot, so the answer never
        # changes, and a batch asks it of every URL for each lane the URL's file may ride.
        self._chosen_proxy = functools.lru_cache(maxsize=_PROXY_CHOICES_KEPT)(self._proxy_for)

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response:
        proxy, manager = self._route(url)
        if self._gate is not None:
            self._gate.before_request(gate_key_of(url))
        with mapped_errors(url, proxy=proxy):
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
        return Urllib3Response(
            url, raw, method=method, direct=proxy is None, floor=self._trickle_floor
        )

    def _pause_asked(self, url: str, retry_after: list[str]) -> None:
        """A server's "wait before asking again" holds for everyone sharing the gate."""
        assert self._gate is not None
        delay_s = parse_retry_after(retry_after[0], time.time()) if len(retry_after) == 1 else None
        if delay_s is not None and delay_s > 0:
            self._gate.retry_after(gate_key_of(url), delay_s)

    def follow(self, response: Response) -> FollowOn | None:
        """Room for one more ``GET`` on the connection carrying ``response``, sent while its
        body is still arriving (HTTP/1.1 pipelining); None unless this transport pipelines
        and ``response`` qualifies (see :mod:`segdl.net.pipelining`). Call before reading its
        body."""
        if not self._pipelining or not isinstance(response, Urllib3Response):
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
            log.debug("pipelined request to %s not answered: %s", host_of(request.url), exc)
        except Exception as exc:  # whatever it was, send the request again
            log.debug("pipelined request to %s failed: %s", host_of(request.url), exc)
        else:
            attach(raw, conn, pool)  # released to the pool as urllib3 does
            if self._gate is not None and raw.status in (429, 503):
                self._pause_asked(request.url, raw.headers.getlist("Retry-After"))
            return Urllib3Response(
                request.url, raw, method=request.method, direct=True, floor=self._trickle_floor
            )
        if not benign:
            self._no_pipelining.add(follow.lane.origin)
        conn.close()
        put_back(pool, conn)  # a free slot again
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
                idle.append(take_idle(pool))
        except (u3.HTTPError, OSError, ValueError, UsageError) as exc:
            log.debug("not preconnecting to %s: %s", host_of(url), exc)
            return _Preconnection(None, [])
        if not idle:
            return _Preconnection(pool, [])
        first, others = idle[0], idle[1:]
        try:
            if not first.is_connected:
                first.connect()
        except Exception as exc:  # the first request will fail (or succeed) by itself
            log.debug("not preconnecting to %s: %s", host_of(url), exc)
            first.close()
            for conn in idle:
                put_back(pool, conn)
            return _Preconnection(pool, [])
        put_back(pool, first)
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
                manager = pool_manager(proxy, self._pool_kw, self._pool_classes, self._gate)
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
            return proxy is None and origin(url) == self.lane.origin
        except (u3.HTTPError, ValueError, UsageError):
            return False

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response | None:
        """Send the request behind the response ahead and return its answer; None if it
        could not ride (send it as usual: nothing of it was used)."""
        if method != "GET" or not self.accepts(url):
            self.lane.give_up()
            return None
        if self._transport._gate is not None:
            self._transport._gate.before_request(gate_key_of(url))
        queued = QueuedRequest(method, url, dict(headers))
        # A plain socket takes a write from this thread while another reads; TLS does not.
        plain = type(self.conn.sock) is socket.socket
        send = functools.partial(send_request, self.conn) if plain else None
        if not self.lane.ride(queued, send):
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
        put_back(self._pool, conn)
