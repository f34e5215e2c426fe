"""FaultServer: a threaded raw-socket HTTP/1.1 server that misbehaves on request.

One accept thread, one daemon thread per connection. Every request is logged as a
RequestRecord once its response has ended. With an ``ssl_context`` it speaks HTTPS: each
connection's TLS handshake runs in that connection's thread, so a client that gives up on the
certificate costs the accept loop nothing. ``stop()`` shuts every socket down, which wakes
any thread blocked in accept, recv or send; sleeps (stall, throttle) wait on an Event.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import ssl
import struct
import threading
import time
from dataclasses import replace
from typing import Literal

from tests.server.body import BodySender, Ending
from tests.server.faults import FaultBook, Faults
from tests.server.records import RequestRecord
from tests.server.resources import AUTO, Auto, FileResource, Redirect, Resource, make_file
from tests.server.respond import ResponsePlan, plan_response, simple_plan
from tests.server.wire import BadRequest, ParsedRequest, RequestReader, format_head, parse_head

logger = logging.getLogger(__name__)

OverCap = Literal["close", "503"]
_JOIN_S = 1.0
_LOG_WAIT_S = 2.0


class FaultServer:
    """An HTTP/1.1 server on 127.0.0.1, honest by default; see ``Faults`` for misbehaviour."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        keep_alive_timeout_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._address = (host, port)
        self._ssl_context = ssl_context
        self.keep_alive_timeout_s = keep_alive_timeout_s
        self.max_connections: int | None = None
        self.over_cap: OverCap = "close"
        # A client that closes one connection and at once opens another should not be refused
        # because our thread has not yet seen the close: wait this long for a free slot.
        self.over_cap_grace_s = 0.1
        # Like nginx's keepalive_requests: close a connection (without saying so in the
        # response) after this many responses; None: never.
        self.max_requests_per_connection: int | None = None
        # "ignore": after each response, drop whatever the client already sent (a server
        # that reads one request at a time and throws pipelined ones away, staying open).
        self.pipelined_requests: Literal["serve", "ignore"] = "serve"
        # Say `Connection: close` on this answer of each connection (1 = the first) and end
        # the connection after it, whatever the client has pipelined behind it; None: never.
        self.close_on_answer: int | None = None
        # "swapped": when a second request has arrived behind the first, answer it first
        # (a broken server or proxy answering pipelined requests out of order).
        self.pipelined_order: Literal["in-order", "swapped"] = "in-order"
        # The most requests a client had sent on one connection beyond the one being
        # answered, seen as each answer ends: how deep it pipelines.
        self.deepest_pipeline = 0
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._resources: dict[str, Resource] = {}
        self._faults = FaultBook()
        self._log: list[tuple[int, RequestRecord]] = []
        self._arrivals = itertools.count()
        self._finishing = 0
        self._bytes_sent = 0
        self._next_connection_id = 0
        self._sockets: dict[int, socket.socket] = {}
        self._threads: set[threading.Thread] = set()
        self._admitted = 0
        self._peak = 0
        self._rejected = 0
        self._tls_failures = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultServer:
        """Bind, listen and start accepting."""
        if self._listener is not None:
            raise RuntimeError("FaultServer already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(self._address)
        listener.listen(128)
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"fault-server-accept-{self.port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Close every socket and join the threads (within about a second)."""
        with self._changed:
            if self._stop.is_set():
                return
            self._stop.set()
            sockets = list(self._sockets.values())
            self._changed.notify_all()
        if self._listener is not None:
            _shutdown(self._listener)
        for sock in sockets:
            _shutdown(sock)
        deadline = time.monotonic() + _JOIN_S
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [thread.name for thread in threads if thread.is_alive()]
        if stuck:
            logger.warning("fault server threads still running after stop: %s", stuck)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- content and faults ------------------------------------------------------------------

    def add_file(
        self,
        path: str,
        data: bytes,
        *,
        etag: str | Auto | None = AUTO,
        last_modified: float | str | Auto | None = AUTO,
        content_type: str = "application/octet-stream",
    ) -> None:
        """Serve ``data`` at ``path``; ``last_modified`` is epoch seconds or an HTTP-date."""
        _check_path(path)
        file = make_file(data, etag, last_modified, content_type)
        with self._lock:
            self._resources[path] = file

    def replace_file(
        self,
        path: str,
        data: bytes,
        *,
        etag: str | Auto | None = AUTO,
        last_modified: float | str | Auto | None = AUTO,
    ) -> None:
        """New content at an existing file path, with new validators.

        By default the validators are regenerated, except that a file added without an ETag
        (or Last-Modified) stays without one.
        """
        with self._lock:
            old = self._resources.get(path)
        if not isinstance(old, FileResource):
            raise KeyError(f"no file at {path!r}")
        if old.etag is None and etag is AUTO:
            etag = None
        if old.last_modified is None and last_modified is AUTO:
            last_modified = None
        file = make_file(data, etag, last_modified, old.content_type, previous=old)
        with self._lock:
            self._resources[path] = file

    def add_redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer ``path`` with ``status`` and ``Location: location`` (sent as given)."""
        _check_path(path)
        with self._lock:
            self._resources[path] = Redirect(location, status)

    def remove(self, path: str) -> None:
        """Stop serving ``path``: later requests get 404."""
        with self._lock:
            self._resources.pop(path, None)

    def set_faults(self, path: str, faults: Faults | None = None) -> None:
        """Replace the faults for ``path`` (None or ``Faults()``: honest); counters restart."""
        self._faults.set(path, faults if faults is not None else Faults())

    # -- addresses -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("FaultServer not started")
        port: int = self._listener.getsockname()[1]
        return port

    @property
    def base_url(self) -> str:
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://{self._address[0]}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    # -- observations --------------------------------------------------------------------------

    def _settled(self) -> None:
        """Wait (briefly) for responses whose last bytes are going out to be logged."""
        self._changed.wait_for(lambda: self._finishing == 0, timeout=_LOG_WAIT_S)

    @property
    def requests(self) -> list[RequestRecord]:
        """Finished requests, in arrival order (a copy)."""
        with self._changed:
            self._settled()
            ordered = sorted(self._log, key=lambda item: (item[1].started_s, item[0]))
            return [record for _, record in ordered]

    @property
    def bytes_sent(self) -> int:
        """Body bytes written to sockets since start or ``clear_log``, all paths and statuses."""
        with self._changed:
            self._settled()
            return self._bytes_sent

    @property
    def peak_connections(self) -> int:
        """Most connections served at once (refused connections over the cap not counted)."""
        with self._lock:
            return self._peak

    @property
    def open_connections(self) -> int:
        """Connections being served now."""
        with self._lock:
            return self._admitted

    @property
    def rejected_connections(self) -> int:
        """Connections refused because of ``max_connections``."""
        with self._lock:
            return self._rejected

    @property
    def tls_failures(self) -> int:
        """TLS handshakes that failed (e.g. the client did not trust our certificate)."""
        with self._lock:
            return self._tls_failures

    def clear_log(self) -> None:
        """Forget logged requests; reset bytes_sent, rejected_connections and the peak."""
        with self._changed:
            self._settled()
            self._log.clear()
            self._bytes_sent = 0
            self._rejected = 0
            self._peak = self._admitted

    # -- connections -----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                if self._stop.wait(0.01):
                    return
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(self.keep_alive_timeout_s)
            if self._ssl_context is not None:  # no I/O here: the handshake is the thread's
                try:
                    conn = self._ssl_context.wrap_socket(
                        conn, server_side=True, do_handshake_on_connect=False
                    )
                except OSError:  # the client is gone already
                    conn.close()
                    continue
            with self._lock:
                if self._stop.is_set():
                    conn.close()
                    return
                connection_id = self._next_connection_id
                self._next_connection_id += 1
                self._sockets[connection_id] = conn
                thread = threading.Thread(
                    target=self._connection,
                    args=(conn, connection_id),
                    name=f"fault-server-conn-{connection_id}",
                    daemon=True,
                )
                self._threads.add(thread)
            thread.start()

    def _connection(self, conn: socket.socket, connection_id: int) -> None:
        try:
            if not self._handshake(conn):
                return
            if self._admit():
                try:
                    self._serve(conn, connection_id)
                finally:
                    with self._changed:
                        self._admitted -= 1
                        self._changed.notify_all()
            elif self.over_cap == "503":
                self._refuse_with_503(conn, connection_id)
        except Exception:
            logger.exception("fault server connection %d failed", connection_id)
        finally:
            with self._lock:
                self._sockets.pop(connection_id, None)
                self._threads.discard(threading.current_thread())
            conn.close()

    def _handshake(self, conn: socket.socket) -> bool:
        """Finish the TLS handshake on an HTTPS connection; False if it failed."""
        if not isinstance(conn, ssl.SSLSocket):
            return True
        try:
            conn.do_handshake()
        except OSError:  # ssl.SSLError included: an untrusted certificate, a plain-HTTP client
            with self._lock:
                self._tls_failures += 1
            return False
        return True

    def _admit(self) -> bool:
        with self._changed:

            def has_room() -> bool:
                cap = self.max_connections
                return cap is None or self._admitted < cap or self._stop.is_set()

            if not self._changed.wait_for(has_room, timeout=self.over_cap_grace_s):
                self._rejected += 1
                return False
            self._admitted += 1
            self._peak = max(self._peak, self._admitted)
            return True

    def _refuse_with_503(self, conn: socket.socket, connection_id: int) -> None:
        """Read the request (so closing does not reset), answer 503, close."""
        conn.settimeout(1.0)
        try:
            raw = RequestReader(conn).read_head()
            request = parse_head(raw) if raw is not None else None
        except (OSError, BadRequest):
            return
        if request is None:
            return
        record = request.record(connection_id, time.monotonic())
        plan = simple_plan(
            503, b"too many connections\n", [("Retry-After", "1")], request.method != "HEAD"
        )
        self._transmit(conn, connection_id, record, plan)

    def _serve(self, conn: socket.socket, connection_id: int) -> None:
        """Answer requests on one connection until it closes or a response ends it."""
        reader = RequestReader(conn)
        served = 0
        while not self._stop.is_set():
            limit = self.max_requests_per_connection
            if limit is not None and served >= limit:
                return
            if served and self.pipelined_requests == "ignore":
                reader.drop_received()
            served += 1
            try:
                raw = reader.read_head()
                if raw is None:
                    return
                started_s = time.monotonic()
                request = parse_head(raw)
                reader.discard_body(request)
            except BadRequest as error:
                bad = RequestRecord("", "", "", (), connection_id, 0, 0, time.monotonic())
                plan = simple_plan(error.status, (error.reason + "\n").encode(), [])
                self._transmit(conn, connection_id, bad, plan)
                return
            except OSError:  # idle timeout, reset, or stop()
                return
            closing = self.close_on_answer is not None and served >= self.close_on_answer
            if self.pipelined_order == "swapped" and not closing and reader.head_waiting(0.2):
                if not self._swapped(conn, connection_id, reader, request, started_s):
                    return
                served += 1
                continue
            if not self._respond(conn, connection_id, request, started_s, closing):
                return
            waiting = reader.heads_waiting()
            with self._lock:
                self.deepest_pipeline = max(self.deepest_pipeline, waiting)

    def _swapped(
        self,
        conn: socket.socket,
        connection_id: int,
        reader: RequestReader,
        first: ParsedRequest,
        started_s: float,
    ) -> bool:
        """Answer the request behind ``first`` before ``first`` itself."""
        try:
            second = parse_head(reader.read_head() or b"")
            reader.discard_body(second)
        except (BadRequest, OSError):
            return False
        return self._respond(conn, connection_id, second, started_s) and self._respond(
            conn, connection_id, first, started_s
        )

    def _respond(
        self,
        conn: socket.socket,
        connection_id: int,
        request: ParsedRequest,
        started_s: float,
        closing: bool = False,
    ) -> bool:
        """Answer one request (with ``closing``: say Connection: close and end the
        connection); True if the connection stays open for another."""
        record = request.record(connection_id, started_s)
        selection = self._faults.select(record)
        with self._lock:
            resource = self._resources.get(record.path)
        plan = plan_response(record, resource, selection, request.wants_close or closing)
        return self._transmit(conn, connection_id, record, plan)

    def _transmit(
        self, conn: socket.socket, connection_id: int, record: RequestRecord, plan: ResponsePlan
    ) -> bool:
        """Send ``plan``, log the request, end the connection as the plan says."""
        arrival = next(self._arrivals)
        finishing = False

        def on_final() -> None:
            nonlocal finishing
            with self._lock:
                self._finishing += 1
                finishing = True

        sender = BodySender(conn, self._stop, self._count_sent, on_final)
        ending = Ending.ABORTED
        try:
            if plan.faults.informational and not _send_interim(conn, plan.faults.informational):
                return False
            head = format_head(plan.status, plan.headers, plan.faults.reason)
            if plan.faults.head_bytes_per_s is not None or plan.faults.endless_head:
                if not _trickle_head(conn, head, plan.faults, self._stop):
                    return False
                head = b""
            ending = sender.send(head, plan.body_plan(connection_id))
        finally:  # log even if user code (a throttle callable) raised
            with self._changed:
                final = replace(record, status=plan.status, body_bytes_sent=sender.sent)
                self._log.append((arrival, final))
                if finishing:
                    self._finishing -= 1
                self._changed.notify_all()
        if ending is Ending.RESET:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return False
        if ending is Ending.TRUNCATED:
            _shutdown(conn, socket.SHUT_WR)
            return False
        return ending is Ending.COMPLETE and not plan.close_after

    def _count_sent(self, count: int) -> None:
        with self._lock:
            self._bytes_sent += count


def _send_interim(conn: socket.socket, count: int) -> bool:
    """``count`` interim 100 responses (RFC 9110 §15.2.1); False if the client went away."""
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    try:
        while count > 0:
            batch = min(count, 1000)
            conn.sendall(interim * batch)
            count -= batch
    except OSError:
        return False
    return True


def _trickle_head(conn: socket.socket, head: bytes, faults: Faults, stop: threading.Event) -> bool:
    """Send ``head`` a few bytes at a time at ``faults.head_bytes_per_s``; an endless head
    sends its status line and then padding lines until the client leaves or the server
    stops. True when the whole (finite) head went out."""
    rate = faults.head_bytes_per_s
    piece = 4 if rate is None else max(1, min(64, int(rate / 10)))
    if faults.endless_head:
        status_line = head.split(b"\r\n", 1)[0] + b"\r\n"
        head = status_line + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 20) for i in range(4096))
    try:
        while True:
            for start in range(0, len(head), piece):
                conn.sendall(head[start : start + piece])
                if rate is not None and stop.wait(piece / rate):
                    return False
                if stop.is_set():
                    return False
            if not faults.endless_head:
                return True
            head = b"X-Pad: %s\r\n" % (b"q" * 20)
    except OSError:
        return False


def _check_path(path: str) -> None:
    if not path.startswith("/"):
        raise ValueError(f"a path starts with '/': {path!r}")


def _shutdown(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    # socket.socket's shutdown even for TLS: SSLSocket's also drops its TLS object, which a
    # connection thread still reading may be about to use (an AttributeError, not an OSError).
    with contextlib.suppress(OSError):  # already closed, or never connected
        socket.socket.shutdown(sock, how)
