"""TCP connections dialled before the transport exists, so a handshake overlaps start-up.

The command line knows its URL about 50 ms after the interpreter starts; urllib3 and the
engine then take about 80 ms more to import. :func:`dial` starts the TCP connect to the URL's
host in a background thread at that point, and the transport's first new connection to that
host and port takes the socket (:func:`take`) instead of connecting again. TLS, when the URL
is ``https``, is set up on it by urllib3 exactly as on a socket it made itself, so certificate
checks are unchanged.

Only plain TCP happens here, and only to the URL's own host: whoever dials must not when a
proxy would carry the request (the CLI asks :func:`segdl.proxies.proxy_for`). This module
imports nothing heavy.
"""

from __future__ import annotations

import logging
import socket
import threading
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}

_lock = threading.Lock()
_dials: dict[tuple[str, int], _Dial] = {}


class _Dial:
    """One connect in flight, in a daemon thread; its socket, or None if it failed."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port = host, port
        self._sock: socket.socket | None = None
        self._done = threading.Event()
        thread = threading.Thread(
            target=self._connect, args=(timeout_s,), name="segdl-dial", daemon=True
        )
        thread.start()

    def _connect(self, timeout_s: float) -> None:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout_s)
        except OSError as exc:  # the transport connects again and reports its own error
            log.debug("early connect to %s:%s failed: %s", self.host, self.port, exc)
        finally:
            self._done.set()

    def wait(self) -> socket.socket | None:
        """The socket once the connect is over (bounded by its own timeout)."""
        self._done.wait()
        return self._sock


def dial(url: str, timeout_s: float) -> None:
    """Start connecting to ``url``'s host and port; no byte is sent. Never raises."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return  # the download reports the bad URL itself
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return
    key = (parts.hostname.rstrip("."), port or _DEFAULT_PORTS[scheme])  # as urllib3 names it
    with _lock:
        if key not in _dials:
            _dials[key] = _Dial(*key, timeout_s)


def take(host: str, port: int) -> socket.socket | None:
    """The socket dialled to ``host``:``port``, once: None if none was dialled or it failed.
    Waits for a connect still in flight (it started earlier than a new one would)."""
    with _lock:
        pending = _dials.pop((host.lower().rstrip("."), port), None)
    return None if pending is None else pending.wait()


def discard() -> None:
    """Close what no connection took (the download ended, or went to another host)."""
    with _lock:
        pending = list(_dials.values())
        _dials.clear()
    for one in pending:
        sock = one.wait()
        if sock is not None:
            sock.close()
