"""TLSRelay: terminate TLS on 127.0.0.1 and pass the bytes to a plain TCP upstream.

Put in front of a plain HTTP proxy it makes an ``https://`` proxy (TLS between client and
proxy), which no Debian proxy package we start in the tests speaks by itself::

    with TLSRelay(server_context, ("127.0.0.1", tinyproxy_port)) as relay:
        ...  # proxy=f"https://localhost:{relay.port}"
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading

_RECV_BYTES = 64 * 1024


class TLSRelay:
    """Accepts TLS connections and relays each, decrypted, to one upstream TCP address."""

    def __init__(self, ssl_context: ssl.SSLContext, upstream: tuple[str, int]) -> None:
        self._context = ssl_context
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.handshakes = 0
        """TLS handshakes completed: proof that clients spoke TLS to us."""

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    def __enter__(self) -> TLSRelay:
        threading.Thread(target=self._accept_loop, name="tls-relay", daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        with self._lock:
            sockets = [self._listener, *self._sockets]
        for sock in sockets:
            _shutdown(sock)
            sock.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            tls = self._context.wrap_socket(client, server_side=True)
            upstream = socket.create_connection(self._upstream)
        except OSError:
            client.close()
            return
        with self._lock:
            self.handshakes += 1
            self._sockets += [tls, upstream]
        # TLS records cannot be half-closed portably, so each direction runs until either
        # side ends, and then both sockets close.
        threading.Thread(target=_pump, args=(upstream, tls), daemon=True).start()
        _pump(tls, upstream)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(_RECV_BYTES):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _shutdown(source)
        _shutdown(sink)


def _shutdown(sock: socket.socket) -> None:
    # socket.socket's shutdown, not SSLSocket's: that one also drops the TLS object, which
    # a thread still reading the socket may be about to use.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
