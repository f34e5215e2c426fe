"""TLS for the lean loop's connections (:mod:`segdl.net.lean`): the standard library's ssl
over memory buffers, so the loop keeps its one selector and its non-blocking sockets.

The socket carries the encrypted bytes; :class:`Tls` turns what arrives into the answers'
bytes and the requests into what goes out. Nothing here is a protocol of its own: the
handshake, the records and the checks are OpenSSL's. The context verifies as the full path
does (urllib3's defaults: TLS 1.2 at least, the certificate and the host name checked, the
system's CAs or ``--ca-bundle``); an answer over TLS is parsed exactly as one over a plain
connection.
"""

from __future__ import annotations

import os
import ssl

_READ_BYTES = 256 * 1024


def lean_context(ca_bundle: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """A client context that verifies (certificate and host name) against ``ca_bundle`` or
    the system's CAs, TLS 1.2 at least, HTTP/1.1 by ALPN. An OSError if the bundle cannot
    be read (the full path then says so)."""
    context = ssl.create_default_context(cafile=os.fspath(ca_bundle) if ca_bundle else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def verifying_context(
    ca_bundle: str | os.PathLike[str] | None, insecure: bool
) -> ssl.SSLContext | None:
    """:func:`lean_context` for connections made outside urllib3 (the lean loop's, the
    command line's early one); None, and urllib3 makes them, with ``insecure`` (whose
    warning it gives) or a bundle that cannot be read (which it reports)."""
    if insecure:
        return None
    try:
        return lean_context(ca_bundle)
    except OSError:
        return None


class Tls:
    """One connection's TLS: bytes received go in (:meth:`received`), the answers' bytes come
    out; requests go in (:meth:`seal`) once :attr:`ready`; :meth:`to_send` is what the
    socket must send next (handshake or records). ``ssl.SSLError`` (an OSError) for a
    handshake or record that fails; :attr:`closed` once the server ended the session (what
    came before its end is returned all the same: a last answer and the end often come
    together)."""

    def __init__(
        self, context: ssl.SSLContext, host: str, resumed: ssl.SSLSession | None = None
    ) -> None:
        """``resumed``: the session of an earlier connection to this same server
        (:attr:`resumable`), offered for resumption; the server may refuse it and make a new
        one (the certificate is then checked as on any connection)."""
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._session = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=host, session=resumed
        )
        self.ready = False
        self.closed = False
        self._step()

    def _step(self) -> None:
        try:
            self._session.do_handshake()
        except ssl.SSLWantReadError:
            return
        self.ready = True

    def received(self, raw: bytes | memoryview) -> bytes:
        """The answers' bytes that ``raw`` completes (none while the handshake goes on)."""
        self._incoming.write(raw)
        if not self.ready:
            self._step()
            if not self.ready:
                return b""
        chunks = []
        while True:
            try:
                chunk = self._session.read(_READ_BYTES)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.closed = True
                break
            if not chunk:  # what ssl returns once the server's close_notify is read
                self.closed = True
                break
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def seal(self, plain: bytes | bytearray) -> None:
        """Requests' bytes, encrypted into :meth:`to_send` (only once :attr:`ready`)."""
        self._session.write(plain)

    def to_send(self) -> bytes:
        return self._outgoing.read()

    @property
    def resumable(self) -> ssl.SSLSession | None:
        """This connection's session, once the server has said it may be resumed (a TLS 1.3
        ticket, or a TLS 1.2 session id): a later connection to the same server offers it and
        skips most of a full handshake (a server that closes every few answers costs one
        each); None before that, or if the server gives none."""
        if not self.ready:
            return None
        session = self._session.session
        if session is None or not (session.has_ticket or session.id):
            return None
        return session

    @property
    def reused(self) -> bool:
        """The server took the session offered."""
        return self._session.session_reused
