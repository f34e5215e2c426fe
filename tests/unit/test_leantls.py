"""The lean loop's TLS over memory buffers, against a server session in memory too: verified,
answers kept when the session's end comes with them, a dead session never raises from a
connection's flush."""

from __future__ import annotations

import contextlib
import socket
import ssl
from pathlib import Path

import pytest
import trustme

from segdl.net.leanconn import Conn
from segdl.net.leantls import Tls, lean_context


def _server(ca: trustme.CA, *names: str) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    return context.wrap_bio(incoming, outgoing, server_side=True), incoming, outgoing


def _handshake(client: Tls, server: tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]) -> None:
    session, incoming, outgoing = server
    for _ in range(10):
        incoming.write(client.to_send())
        with contextlib.suppress(ssl.SSLWantReadError):
            session.do_handshake()
        assert client.received(outgoing.read()) == b""
        if client.ready:
            return
    raise AssertionError("no handshake")


def test_a_verified_session_carries_both_ways_and_keeps_what_came_with_its_end(
    tmp_path: Path,
) -> None:
    """Certificate and host name checked against the CA given; requests sealed only once
    ready; the last answer and close_notify in one flight: the answer is returned and the
    session is marked closed."""
    ca = trustme.CA()
    bundle = f"{tmp_path}/ca.pem"
    ca.cert_pem.write_to_path(bundle)
    client = Tls(lean_context(bundle), "files.test")
    server = _server(ca, "files.test")
    assert not client.ready
    _handshake(client, server)
    session, incoming, outgoing = server
    client.seal(b"GET / HTTP/1.1\r\n\r\n")
    incoming.write(client.to_send())
    assert session.read(1024) == b"GET / HTTP/1.1\r\n\r\n"
    session.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    with contextlib.suppress(ssl.SSLWantReadError):
        session.unwrap()  # close_notify, sent with the answer
    answer = client.received(outgoing.read())
    assert answer.endswith(b"\r\n\r\nok") and client.closed


@pytest.mark.parametrize("names", [("other.test",), ("files.test",)])
def test_a_certificate_for_another_name_or_from_another_ca_is_refused(
    names: tuple[str, ...], tmp_path: Path
) -> None:
    """The handshake fails with a verification error; nothing is ready to seal."""
    trusted, other = trustme.CA(), trustme.CA()
    bundle = f"{tmp_path}/ca.pem"
    trusted.cert_pem.write_to_path(bundle)
    signer = trusted if names == ("other.test",) else other
    client = Tls(lean_context(bundle), "files.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(client, _server(signer, *names))
    assert not client.ready


def test_a_connection_whose_session_ended_fails_instead_of_raising_from_flush() -> None:
    """Sealing on a session that cannot take more (ended, broken) marks the connection as
    failed; the loop then sends its requests again elsewhere."""

    class Ended:
        ready = True

        def seal(self, plain: bytes | bytearray) -> None:
            raise ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed")

        def to_send(self) -> bytes:
            return b""

    here, there = socket.socketpair()
    try:
        conn = Conn(here, ("h.test", 443, True))
        conn.tls = Ended()  # type: ignore[assignment]
        conn.outgoing += b"GET / HTTP/1.1\r\n\r\n"
        conn.flush()
        assert conn.failure.startswith("send failed")
    finally:
        here.close()
        there.close()


def test_a_second_connection_resumes_the_first_ones_session(tmp_path: Path) -> None:
    """A server that closes every few answers: the next connection to it offers the session
    of the last (once its ticket came) and the server takes it; a session offered to a
    server that does not know it is refused and a full, verified handshake made instead."""
    ca = trustme.CA()
    bundle = f"{tmp_path}/ca.pem"
    ca.cert_pem.write_to_path(bundle)
    context = lean_context(bundle)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("files.test").configure_cert(server_context)

    def server() -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        session = server_context.wrap_bio(incoming, outgoing, server_side=True)
        return session, incoming, outgoing

    first, first_server = Tls(context, "files.test"), server()
    _handshake(first, first_server)
    session, incoming, outgoing = first_server
    assert not first.reused
    incoming.write(first.to_send())  # the client's Finished: the server sends its tickets
    session.do_handshake()
    session.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert first.received(outgoing.read()).endswith(b"ok")
    offered = first.resumable
    assert offered is not None

    second = Tls(context, "files.test", offered)
    _handshake(second, server())
    assert second.reused and second.resumable is not None

    stranger = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # other ticket keys
    ca.issue_cert("files.test").configure_cert(stranger)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    third = Tls(context, "files.test", offered)
    _handshake(third, (stranger.wrap_bio(incoming, outgoing, server_side=True), incoming, outgoing))
    assert third.ready and not third.reused


def test_no_session_is_resumable_before_the_handshake_or_after_a_refused_one(
    tmp_path: Path,
) -> None:
    trusted, other = trustme.CA(), trustme.CA()
    bundle = f"{tmp_path}/ca.pem"
    trusted.cert_pem.write_to_path(bundle)
    client = Tls(lean_context(bundle), "files.test")
    assert client.resumable is None
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(client, _server(other, "files.test"))
    assert client.resumable is None
