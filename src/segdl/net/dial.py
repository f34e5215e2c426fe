"""TCP connections dialled before the transport exists, so handshakes overlap start-up.

The command line knows its URL about 30-50 ms after the interpreter starts; urllib3 and the
engine then take 50-80 ms more to import. :func:`dial` starts the TCP connect to the URL's
host in a background thread at that point, and the transport's first new connection to that
host and port takes the socket (:func:`take`) instead of connecting again. Without an early
request (below), TLS, when the URL is ``https``, is set up on it by urllib3 exactly as on a
socket it made itself.

For a fresh download the first request goes out on that socket at once
(:func:`first_request`): its answer is on its way while the engine is imported. The
connection that takes the socket writes nothing if its own first request is those very
bytes, and connects again otherwise
(:class:`segdl.net.urllib3_compat.DialledHTTPConnection`). Over ``https`` the request goes
only once the options are known (:func:`release`) and with a context that verifies as the
transport's does (:func:`segdl.net.leantls.verifying_context`: the same CA bundle; none with
``--insecure``, and the socket then stays plain TCP for urllib3's own TLS); a handshake that
fails leaves no socket, and the transport connects again and reports why.

Only the URL's own host is dialled: whoever dials must not when a proxy would carry the
request (the CLI asks :func:`segdl.net.proxies.proxy_for`). This module imports nothing heavy
(``ssl`` is imported by the context's maker, in the dialling thread).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

from segdl.net.origins import DEFAULT_PORTS

if TYPE_CHECKING:
    import ssl

TlsContext = Callable[[], "ssl.SSLContext | None"]
"""The context an ``https`` dial verifies with, made in the dialling thread (None: no TLS
here, the socket stays plain for the transport's own)."""

log = logging.getLogger(__name__)

_lock = threading.Lock()
_dials: dict[tuple[str, int], _Dial | _Taken] = {}
_read: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


class Dialled(NamedTuple):
    """A connected socket, and the request already written on it (None: nothing sent);
    ``tls``: the socket is an ``ssl.SSLSocket``, verified (see the module's text)."""

    sock: socket.socket
    sent: bytes | None
    tls: bool = False


class _Dial:
    """One connect in flight, in a daemon thread, then the early request if there is one
    (held, when asked, until :meth:`release`); its socket, or None if either failed."""

    def __init__(
        self, host: str, port: int, timeout_s: float, request: bytes | None, hold: bool,
        secure: bool = False,
    ) -> None:  # fmt: skip
        """``secure``: an ``https`` URL (the request goes over TLS or not at all)."""
        self.host, self.port = host, port
        self._dialled: Dialled | None = None
        self._done = threading.Event()
        self._go = threading.Event()  # the request may be written
        self._dropped = False
        self._secure = secure
        self._tls: TlsContext | None = None
        if not hold:
            self._go.set()
        thread = threading.Thread(
            target=self._connect, args=(timeout_s, request), name="segdl-dial", daemon=True
        )
        thread.start()

    def _connect(self, timeout_s: float, request: bytes | None) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout_s)
        except OSError as exc:  # the transport connects again and reports its own error
            log.debug("early connect to %s:%s failed: %s", self.host, self.port, exc)
            self._done.set()
            return
        try:
            tls = False
            if request is not None:
                self._go.wait(timeout_s)
                if self._dropped or not self._go.is_set():
                    sock.close()  # held back, then not wanted: nothing was sent
                    return
                context = self._context()
                if self._secure and context is None:  # plain TCP: the transport's TLS on it
                    self._dialled = Dialled(sock, None)
                    return
                if context is not None:
                    sock = context.wrap_socket(sock, server_hostname=self.host)
                    tls = True
                sock.sendall(request)
            self._dialled = Dialled(sock, request, tls)
        except OSError as exc:  # a connection that fails already is no use
            log.debug("early request to %s:%s failed: %s", self.host, self.port, exc)
            sock.close()
        finally:
            self._done.set()

    def _context(self) -> ssl.SSLContext | None:
        if not self._secure or self._tls is None:
            return None
        try:
            return self._tls()
        except ValueError as exc:  # nothing early then: the transport's TLS says what is wrong
            log.debug("no early TLS to %s:%s: %s", self.host, self.port, exc)
            return None

    def release(self, tls: TlsContext | None = None) -> None:
        self._tls = tls
        self._go.set()

    def drop(self) -> None:
        """Never write the request; the socket, if any, is closed by the dial or by
        :func:`discard`."""
        self._dropped = True
        self._go.set()

    def wait(self) -> Dialled | None:
        """The socket once the connect (and the request) is over, bounded by its timeout."""
        self._done.wait()
        return self._dialled


class _Taken:
    """A dial already over, given back (see :func:`give_back`)."""

    def __init__(self, dialled: Dialled) -> None:
        self._dialled = dialled

    def release(self, tls: TlsContext | None = None) -> None:
        pass

    def drop(self) -> None:
        pass

    def wait(self) -> Dialled | None:
        return self._dialled


def dial(url: str, timeout_s: float, request: bytes | None = None, *, hold: bool = False) -> None:
    """Start connecting to ``url``'s host and port, then write ``request`` on the socket if
    given (see :func:`first_request`); nothing else is sent. With ``hold``, the request waits
    for :func:`release` (the caller is still checking its options; :func:`discard` drops
    it unsent). Never raises."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return  # the download reports the bad URL itself
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return
    key = (parts.hostname.rstrip("."), port or DEFAULT_PORTS[scheme])  # as urllib3 names it
    with _lock:
        if key not in _dials:
            _dials[key] = _Dial(*key, timeout_s, request, hold, secure=scheme == "https")


def release(tls: TlsContext | None = None) -> None:
    """Let the held early requests go (see :func:`dial`); over ``https`` with ``tls``'s
    context, made from the download's options (without one, none goes)."""
    with _lock:
        pending = list(_dials.values())
    for one in pending:
        one.release(tls)


def take(host: str, port: int) -> Dialled | None:
    """The socket dialled to ``host``:``port``, once, with the request written on it: None if
    none was dialled or it failed. Waits for a connect still in flight (it started earlier
    than a new one would)."""
    with _lock:
        pending = _dials.pop((host.lower().rstrip("."), port), None)
    return None if pending is None else pending.wait()


def give_back(host: str, port: int, dialled: Dialled, read: bytes = b"") -> None:
    """Put back a socket :func:`take` gave: the transport's next :func:`take` of
    ``host``:``port`` gets it, as if it had never been taken. ``read``: the start of the
    answer, read off its TLS already (nothing can be peeked there), which the transport's
    response reads first (:func:`already_read`)."""
    with _lock:
        if read:
            _read[dialled.sock] = read
        _dials[(host.lower().rstrip("."), port)] = _Taken(dialled)


def already_read(sock: socket.socket) -> bytes:
    """What was read of the answer on ``sock`` before it was given back, once (see
    :func:`give_back`); empty for any other socket."""
    if not _read:  # every response of every download asks: no lock when nothing waits
        return b""
    with _lock:
        return _read.pop(sock, b"")


def answered(dialled: Dialled, within_s: float) -> bool:
    """Whether anything of the answer to the request sent on ``dialled`` has arrived, waiting
    at most ``within_s`` for it; reads nothing (a caller that finds nothing there need not
    load what would read it)."""
    if dialled.sent is None:
        return False
    try:
        readable, _, _ = select.select([dialled.sock], [], [], within_s)
    except (OSError, ValueError):  # closed meanwhile: the transport finds out
        return False
    return bool(readable)


def discard() -> None:
    """Close what no connection took (the download ended, or went to another host)."""
    with _lock:
        pending = list(_dials.values())
        _dials.clear()
    for one in pending:
        one.drop()
        dialled = one.wait()
        if dialled is not None:
            dialled.sock.close()


# What may stand in a request target as it is: what urllib3 leaves alone when it
# normalises one (RFC 3986 unreserved, sub-delims, ':', '@', '/', '?', and '%' escapes).
_TARGET_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%"
)


def first_request(url: str, user_agent: str) -> bytes | None:
    """The first request of a fresh download of an ``http`` or ``https`` ``url``, byte for byte as
    the transport writes it (:func:`segdl.run.probe.first_contact`: ``GET`` with
    ``Range: bytes=0-``, segdl's headers, nothing else); None where this cannot be sure of
    its bytes (another scheme, userinfo, a target urllib3 would re-encode). Sent with
    :func:`dial`, it leaves while the engine is still being imported; a connection whose
    own request turns out different does not use that socket (see
    :class:`segdl.net.urllib3_compat.DialledHTTPConnection`), so a wrong guess costs a
    connection, never a wrong answer."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not host or "@" in parts.netloc or ":" in host:
        return None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not set(target) <= _TARGET_CHARS or not user_agent.isprintable():
        return None
    authority = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    head = (
        f"GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {user_agent}\r\n"
        "Accept-Encoding: identity\r\nRange: bytes=0-\r\n\r\n"
    )
    try:
        return head.encode("ascii")
    except UnicodeEncodeError:
        return None
