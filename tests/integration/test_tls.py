"""HTTPS against the fault server with a throwaway trustme CA: verified by default, a CA bundle
of the user's choice, insecure only when asked and only for that transport."""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

import segdl
from segdl.cli.exitcodes import ExitCode
from segdl.core.errors import TLSError, UsageError
from segdl.net.transport import Urllib3Transport
from tests.server import FaultServer

_SIZE = 4 * 1024 * 1024 + 5


def _server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def _download(url: str, dest: Path, transport: Urllib3Transport) -> segdl.Result:
    try:
        return segdl.download(
            url, dest, transport=transport, connections=4, min_split_bytes=512 * 1024, retries=0
        )
    finally:
        transport.close()


def test_untrusted_ca_fails_by_default(tls_server: FaultServer, tmp_path: Path) -> None:
    """Certificates are verified by default: an unknown CA is a TLSError and nothing is saved."""
    tls_server.add_file("/f.bin", b"x" * 1000)
    with pytest.raises(TLSError) as caught:
        _download(tls_server.url("/f.bin"), tmp_path / "out", Urllib3Transport(environ={}))
    assert "certificate verify failed: unable to get local issuer certificate" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert tls_server.requests == []  # the client hung up before sending one
    assert not (tmp_path / "out").exists()


def test_cli_untrusted_ca_exits_5_with_one_line(tls_server: FaultServer, tmp_path: Path) -> None:
    """`python -m segdl` against an untrusted certificate exits 5 with a one-line reason."""
    tls_server.add_file("/f.bin", b"x" * 1000)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    proc = subprocess.run(
        [sys.executable, "-m", "segdl", "-o", str(tmp_path / "out"), tls_server.url("/f.bin")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == ExitCode.TLS == 5, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "certificate verify failed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ca_bundle_download_is_identical_over_many_connections(
    tls_server: FaultServer,
    ca_bundle: str,
    make_data: Callable[..., bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the CA's PEM as ca_bundle the file arrives byte for byte, over several connections
    (decrypted in Python: TLS bodies are never spliced from the socket)."""
    data = make_data(_SIZE)
    tls_server.add_file("/f.bin", data)
    spliced: list[int] = []
    real_splice = getattr(os, "splice", None)

    def counting_splice(src: int, dst: int, count: int, *args: Any, **kwargs: Any) -> int:
        if "offset_dst" not in kwargs:
            spliced.append(count)
        assert real_splice is not None
        return int(real_splice(src, dst, count, *args, **kwargs))

    if real_splice is not None:
        monkeypatch.setattr(os, "splice", counting_splice)
    result = _download(
        tls_server.url("/f.bin"), tmp_path / "out", Urllib3Transport(ca_bundle=ca_bundle)
    )
    digest = hashlib.sha256((tmp_path / "out").read_bytes()).hexdigest()
    assert digest == hashlib.sha256(data).hexdigest()
    assert result.ranged and result.connections_used >= 2
    assert len({r.connection_id for r in tls_server.requests}) >= 2
    assert tls_server.tls_failures == 0
    assert not spliced


def test_a_read_takes_every_tls_record_already_waiting(
    tls_server: FaultServer, ca_bundle: str, make_data: Callable[..., bytes]
) -> None:
    """A TLS record carries at most 16 KiB; one read takes all the records that have arrived
    (each read is a trip through the planner and a write), and the body stays exact."""
    data = make_data(1 << 20)
    tls_server.add_file("/f.bin", data)
    transport = Urllib3Transport(ca_bundle=ca_bundle)
    try:
        response = transport.request("GET", tls_server.url("/f.bin"), {})
        time.sleep(0.3)  # meanwhile the server fills the socket buffers
        buffer = memoryview(bytearray(256 * 1024))
        first = response.readinto(buffer)
        assert first > 16 * 1024
        received = bytearray(buffer[:first])
        while n := response.readinto(buffer):
            received += buffer[:n]
        response.close()
        assert received == data
    finally:
        transport.close()


def test_ca_bundle_trusts_only_its_own_cas(tls_server: FaultServer, tmp_path: Path) -> None:
    """A ca_bundle replaces the trust store: a bundle of another CA rejects our server."""
    tls_server.add_file("/f.bin", b"x" * 1000)
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(TLSError, match="certificate verify failed"):
        _download(tls_server.url("/f.bin"), tmp_path / "out", Urllib3Transport(ca_bundle=other))


def test_hostname_mismatch_fails(ca: trustme.CA, ca_bundle: str, tmp_path: Path) -> None:
    """A trusted certificate for another name is still refused (hostname checking is on)."""
    with FaultServer(ssl_context=_server_context(ca, "files.example.test")) as server:
        server.add_file("/f.bin", b"x" * 1000)
        transport = Urllib3Transport(ca_bundle=ca_bundle)
        with pytest.raises(TLSError, match="certificate verify failed: IP address mismatch"):
            _download(server.url("/f.bin"), tmp_path / "out", transport)


def test_insecure_downloads_and_urllib3_still_warns(
    tls_server: FaultServer, make_data: Callable[..., bytes], tmp_path: Path
) -> None:
    """insecure=True skips verification; urllib3's InsecureRequestWarning passes through."""
    data = make_data(_SIZE, seed=1)
    tls_server.add_file("/f.bin", data)
    with pytest.warns(Warning, match="Unverified HTTPS request"):
        _download(tls_server.url("/f.bin"), tmp_path / "out", Urllib3Transport(insecure=True))
    assert (tmp_path / "out").read_bytes() == data


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
def test_insecure_is_per_transport(tls_server: FaultServer, tmp_path: Path) -> None:
    """An insecure transport leaves no trace: the next default transport verifies again."""
    tls_server.add_file("/f.bin", b"x" * 1000)
    _download(tls_server.url("/f.bin"), tmp_path / "a", Urllib3Transport(insecure=True))
    with pytest.raises(TLSError):
        _download(tls_server.url("/f.bin"), tmp_path / "b", Urllib3Transport())


@pytest.mark.parametrize(
    "content", [None, b"", b"not a certificate\n"], ids=["missing", "empty", "garbage"]
)
def test_unusable_ca_bundle_is_a_usage_error(content: bytes | None, tmp_path: Path) -> None:
    """A missing or certificate-less CA bundle is a UsageError when the transport is made."""
    path = tmp_path / "bundle.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError, match="cannot use CA bundle"):
        Urllib3Transport(ca_bundle=str(path))


def test_ca_bundle_and_insecure_exclude_each_other(ca_bundle: str) -> None:
    """Asking to verify against a bundle and to verify nothing at once is a usage error."""
    with pytest.raises(UsageError):
        Urllib3Transport(ca_bundle=ca_bundle, insecure=True)
