"""Downloads through real proxies on loopback: tinyproxy (HTTP, CONNECT) and microsocks (SOCKS5).

Each test starts its own proxy process with its own configuration on a free loopback port and
stops it afterwards; a system tinyproxy service, if any, is never used. The binaries come from
Debian (``tinyproxy-bin``, ``microsocks``), installed by ``bash scripts/test.sh``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import segdl
from segdl.cli.main import main
from segdl.core.errors import ConnectError
from segdl.net.transport import Urllib3Transport
from tests.server import FaultServer
from tests.server.relay import TLSRelay

_START_TIMEOUT_S = 10.0
_SIZE = 3 * 1024 * 1024 + 17
_USER, _PASSWORD = "proxyuser", "s3cret-Pa55"


@dataclass
class ProxyProcess:
    """A proxy we started: its URL (without credentials) and where it writes its log."""

    url: str
    port: int
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def with_credentials(self, user: str, password: str) -> str:
        scheme, _, address = self.url.partition("://")
        return f"{scheme}://{user}:{password}@{address}"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `bash scripts/test.sh` installs it (Debian)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _closed_port() -> int:
    """A loopback port nobody listens on (a proxy there refuses every connection)."""
    return _free_port()


@contextmanager
def _process(argv_for: Callable[[int], list[str]], log_path: Path) -> Iterator[int]:
    """Start ``argv_for(port)`` on a free port, wait until it accepts, stop it afterwards."""
    for _attempt in range(3):  # the free port may be taken before the proxy binds it
        port = _free_port()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(argv_for(port), stdout=log, stderr=subprocess.STDOUT)
        try:
            if _wait_accepting(port, proc):
                yield port
                return
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    pytest.fail(f"{argv_for(0)[0]} did not start; its output:\n{log_path.read_text()}")


def _wait_accepting(port: int, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


@contextmanager
def tinyproxy(
    tmp_path: Path, *, connect_ports: tuple[int, ...] = (), basic_auth: bool = False
) -> Iterator[ProxyProcess]:
    """tinyproxy in the foreground with a config of our own (pid file in ``tmp_path``)."""
    binary = _binary("tinyproxy")
    conf = tmp_path / "tinyproxy.conf"
    log_path = tmp_path / "tinyproxy.log"

    def argv(port: int) -> list[str]:
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            "LogLevel Info",
            f'PidFile "{tmp_path / "tinyproxy.pid"}"',
            "MaxClients 64",
            "Allow 127.0.0.1",
            *(f"ConnectPort {p}" for p in connect_ports),
        ]
        if basic_auth:
            lines.append(f"BasicAuth {_USER} {_PASSWORD}")
        conf.write_text("\n".join(lines) + "\n")
        return [binary, "-d", "-c", str(conf)]

    with _process(argv, log_path) as port:
        yield ProxyProcess(f"http://127.0.0.1:{port}", port, log_path)


@contextmanager
def microsocks(tmp_path: Path, *, auth: bool = False) -> Iterator[ProxyProcess]:
    """microsocks on 127.0.0.1, with ``-u``/``-P`` when ``auth``; its log names each target."""
    binary = _binary("microsocks")
    credentials = ["-u", _USER, "-P", _PASSWORD] if auth else []
    log_path = tmp_path / "microsocks.log"

    def argv(port: int) -> list[str]:
        return [binary, "-i", "127.0.0.1", "-p", str(port), *credentials]

    with _process(argv, log_path) as port:
        yield ProxyProcess(f"socks5://127.0.0.1:{port}", port, log_path)


def _fetch(url: str, dest: Path, transport: Urllib3Transport, data: bytes) -> None:
    """Download ``url`` over several connections and check it byte for byte."""
    try:
        segdl.download(url, dest, transport=transport, connections=4, min_split_bytes=512 * 1024)
    finally:
        transport.close()
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()


# -- tinyproxy: forwarding and CONNECT ----------------------------------------------------------


def test_http_target_is_forwarded_by_tinyproxy(
    fault_server: FaultServer, make_data: Callable[..., bytes], tmp_path: Path
) -> None:
    """An http:// URL with a proxy goes through it: the origin sees the proxy's Via header."""
    data = make_data(_SIZE)
    fault_server.add_file("/f.bin", data)
    with tinyproxy(tmp_path) as proxy:
        transport = Urllib3Transport(proxy=proxy.url, environ={})
        _fetch(fault_server.url("/f.bin"), tmp_path / "out", transport, data)
    records = fault_server.requests
    assert len(records) >= 2
    assert all("tinyproxy" in (r.header("Via") or "") for r in records)


def test_https_target_tunnels_through_tinyproxy_connect(
    tls_server: FaultServer, ca_bundle: str, make_data: Callable[..., bytes], tmp_path: Path
) -> None:
    """An https:// URL through an HTTP proxy is a CONNECT tunnel: TLS end to end, no Via."""
    data = make_data(_SIZE)
    tls_server.add_file("/f.bin", data)
    with tinyproxy(tmp_path, connect_ports=(tls_server.port,)) as proxy:
        transport = Urllib3Transport(proxy=proxy.url, ca_bundle=ca_bundle, environ={})
        _fetch(tls_server.url("/f.bin"), tmp_path / "out", transport, data)
        log = proxy.log
    assert f"CONNECT 127.0.0.1:{tls_server.port}" in log
    records = tls_server.requests
    assert len(records) >= 2
    assert all(r.header("Via") is None and r.target.startswith("/") for r in records)


@pytest.mark.parametrize("tls", [False, True], ids=["http-target", "https-target"])
def test_proxy_credentials_reach_only_the_proxy(
    tls: bool,
    fault_server: FaultServer,
    tls_server: FaultServer,
    ca_bundle: str,
    make_data: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    """user:password in the proxy URL authenticates to the proxy; the origin never sees it."""
    origin = tls_server if tls else fault_server
    data = make_data(_SIZE, seed=3)
    origin.add_file("/f.bin", data)
    with tinyproxy(tmp_path, connect_ports=(origin.port,), basic_auth=True) as proxy:
        transport = Urllib3Transport(
            proxy=proxy.with_credentials(_USER, _PASSWORD), ca_bundle=ca_bundle, environ={}
        )
        _fetch(origin.url("/f.bin"), tmp_path / "out", transport, data)
    records = origin.requests
    assert records
    for record in records:
        assert record.header("Proxy-Authorization") is None
        assert record.header("Authorization") is None
        assert not any(_PASSWORD in value for _, value in record.headers)


def test_wrong_proxy_password_is_a_connect_error_without_the_password(
    tls_server: FaultServer, ca_bundle: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A rejected CONNECT is a ConnectError naming the proxy, never its user or password."""
    tls_server.add_file("/f.bin", b"x" * 1000)
    caplog.set_level(logging.DEBUG)
    with tinyproxy(tmp_path, connect_ports=(tls_server.port,), basic_auth=True) as proxy:
        transport = Urllib3Transport(
            proxy=proxy.with_credentials(_USER, "wrong-Pa55word"), ca_bundle=ca_bundle, environ={}
        )
        with pytest.raises(ConnectError) as caught:
            segdl.download(
                tls_server.url("/f.bin"), tmp_path / "out", transport=transport, retries=0
            )
        transport.close()
    message = str(caught.value)
    assert f"proxy {proxy.url} rejected the credentials (401)" in message
    assert "\n" not in message
    for text in (message, repr(caught.value), caplog.text, repr(transport)):
        assert "wrong-Pa55word" not in text and _USER not in text
    assert tls_server.requests == []


def test_missing_proxy_credentials_is_a_connect_error(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """A forwarding proxy's 407 is a ConnectError about the proxy, not an HTTP status error."""
    fault_server.add_file("/f.bin", b"x" * 1000)
    with tinyproxy(tmp_path, basic_auth=True) as proxy:
        transport = Urllib3Transport(proxy=proxy.url, environ={})
        with pytest.raises(ConnectError, match=r"requires authentication \(407\)"):
            segdl.download(
                fault_server.url("/f.bin"), tmp_path / "out", transport=transport, retries=0
            )
        transport.close()
    assert fault_server.requests == []


def test_refused_proxy_is_a_connect_error_without_credentials(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """A proxy that refuses the connection fails the download with a redacted ConnectError."""
    fault_server.add_file("/f.bin", b"x" * 1000)
    port = _closed_port()
    transport = Urllib3Transport(proxy=f"http://{_USER}:{_PASSWORD}@127.0.0.1:{port}", environ={})
    with pytest.raises(ConnectError) as caught:
        segdl.download(fault_server.url("/f.bin"), tmp_path / "out", transport=transport, retries=0)
    message = str(caught.value)
    assert f"proxy http://127.0.0.1:{port} refused the connection" in message
    assert _PASSWORD not in message and _USER not in message
    assert fault_server.requests == []


# -- https:// proxy: TLS to the proxy -------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["http-target", "https-target"])
def test_https_proxy_speaks_tls_to_the_proxy(
    tls: bool,
    fault_server: FaultServer,
    tls_server: FaultServer,
    server_context: ssl.SSLContext,
    ca_bundle: str,
    make_data: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    """An https:// proxy gets TLS (verified with the same CA bundle); TLS-in-TLS to https."""
    origin = tls_server if tls else fault_server
    data = make_data(_SIZE, seed=5)
    origin.add_file("/f.bin", data)
    with (
        tinyproxy(tmp_path, connect_ports=(origin.port,), basic_auth=True) as proxy,
        TLSRelay(server_context, ("127.0.0.1", proxy.port)) as relay,
    ):
        url = f"https://{_USER}:{_PASSWORD}@localhost:{relay.port}"
        transport = Urllib3Transport(proxy=url, ca_bundle=ca_bundle, environ={})
        _fetch(origin.url("/f.bin"), tmp_path / "out", transport, data)
    assert relay.handshakes >= 1
    assert all(r.header("Proxy-Authorization") is None for r in origin.requests)


# -- microsocks: SOCKS5 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "target_seen"),
    [("socks5", "127.0.0.1"), ("socks5h", "localhost")],
    ids=["socks5-local-dns", "socks5h-remote-dns"],
)
def test_socks5_proxy_with_authentication(
    scheme: str,
    target_seen: str,
    fault_server: FaultServer,
    make_data: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    """socks5 resolves the name locally, socks5h leaves it to the proxy; both authenticate."""
    # microsocks logs each target as it was asked for: an address (socks5) or a name (socks5h).
    data = make_data(_SIZE, seed=7)
    fault_server.add_file("/f.bin", data)
    url = f"http://localhost:{fault_server.port}/f.bin"
    with microsocks(tmp_path, auth=True) as proxy:
        proxy_url = f"{scheme}://{_USER}:{_PASSWORD}@127.0.0.1:{proxy.port}"
        _fetch(url, tmp_path / "out", Urllib3Transport(proxy=proxy_url, environ={}), data)
        log = proxy.log
    assert f"connected to {target_seen}:{fault_server.port}" in log
    assert len(fault_server.requests) >= 2


def test_https_target_through_socks5h(
    tls_server: FaultServer, ca_bundle: str, make_data: Callable[..., bytes], tmp_path: Path
) -> None:
    """TLS to the origin runs inside the SOCKS connection, verified against the origin's name."""
    data = make_data(_SIZE, seed=8)
    tls_server.add_file("/f.bin", data)
    url = f"https://localhost:{tls_server.port}/f.bin"
    with microsocks(tmp_path) as proxy:
        transport = Urllib3Transport(
            proxy=f"socks5h://127.0.0.1:{proxy.port}", ca_bundle=ca_bundle, environ={}
        )
        _fetch(url, tmp_path / "out", transport, data)


def test_wrong_socks_password_is_a_connect_error_without_the_password(
    fault_server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A SOCKS server rejecting the credentials is a ConnectError that does not repeat them."""
    fault_server.add_file("/f.bin", b"x" * 1000)
    caplog.set_level(logging.DEBUG)
    with microsocks(tmp_path, auth=True) as proxy:
        proxy_url = f"socks5://{_USER}:wrong-Pa55word@127.0.0.1:{proxy.port}"
        transport = Urllib3Transport(proxy=proxy_url, environ={})
        with pytest.raises(ConnectError) as caught:
            segdl.download(
                fault_server.url("/f.bin"), tmp_path / "out", transport=transport, retries=0
            )
        transport.close()
    message = str(caught.value)
    assert f"proxy socks5://127.0.0.1:{proxy.port}" in message and "\n" not in message
    for text in (message, repr(caught.value), caplog.text):
        assert "wrong-Pa55word" not in text and _USER not in text
    assert fault_server.requests == []


def test_socks_proxy_without_pysocks_is_a_usage_error() -> None:
    """Without PySocks a socks proxy (explicit or from the env) is a UsageError: what to install."""
    script = "\n".join(
        [
            "import sys",
            "sys.modules['socks'] = None  # as if PySocks were not installed",
            "from segdl.core.errors import UsageError",
            "from segdl.net.transport import Urllib3Transport",
            "try:",
            "    Urllib3Transport(proxy='socks5h://u:secret@127.0.0.1:9')",
            "except UsageError as exc:",
            "    print(exc)",
            "t = Urllib3Transport(environ={'all_proxy': 'socks5://127.0.0.1:9'})",
            "try:",
            "    t.request('GET', 'http://127.0.0.1:9/', {})",
            "except UsageError as exc:",
            "    print(exc)",
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "a socks5h:// proxy needs PySocks: pip install 'segdl[socks]'",
        "a socks5:// proxy needs PySocks: pip install 'segdl[socks]'",
    ]


# -- choosing a proxy: environment and NO_PROXY ---------------------------------------------------


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.0/8", "*"])
def test_no_proxy_bypasses_even_an_explicit_proxy(
    no_proxy: str, fault_server: FaultServer, make_data: Callable[..., bytes], tmp_path: Path
) -> None:
    """A URL matching NO_PROXY goes direct, so a dead proxy does not matter."""
    data = make_data(100_000)
    fault_server.add_file("/f.bin", data)
    dead = f"http://127.0.0.1:{_closed_port()}"
    transport = Urllib3Transport(proxy=dead, environ={"NO_PROXY": no_proxy})
    _fetch(fault_server.url("/f.bin"), tmp_path / "out", transport, data)


def test_url_not_in_no_proxy_uses_the_proxy(fault_server: FaultServer, tmp_path: Path) -> None:
    """A URL not matching NO_PROXY goes to the proxy (here a dead one: ConnectError)."""
    fault_server.add_file("/f.bin", b"x" * 1000)
    dead = f"http://127.0.0.1:{_closed_port()}"
    environ = {"no_proxy": "example.com,10.0.0.0/8", "http_proxy": dead}
    transport = Urllib3Transport(environ=environ)
    with pytest.raises(ConnectError, match="refused the connection"):
        segdl.download(fault_server.url("/f.bin"), tmp_path / "out", transport=transport, retries=0)
    assert fault_server.requests == []


@pytest.mark.parametrize("variable", ["http_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"])
def test_proxy_from_the_environment(
    variable: str,
    fault_server: FaultServer,
    tls_server: FaultServer,
    ca_bundle: str,
    make_data: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    """The environment's proxy for the URL's scheme (or all_proxy) carries the download."""
    origin = tls_server if variable == "HTTPS_PROXY" else fault_server
    data = make_data(200_000)
    origin.add_file("/f.bin", data)
    with tinyproxy(tmp_path, connect_ports=(origin.port,)) as proxy:
        transport = Urllib3Transport(environ={variable: proxy.url}, ca_bundle=ca_bundle)
        _fetch(origin.url("/f.bin"), tmp_path / "out", transport, data)
        log = proxy.log
    assert f"127.0.0.1:{origin.port}" in log  # the proxy carried it


@pytest.mark.parametrize(
    "environ",
    [
        {"https_proxy": "http://127.0.0.1:{dead}"},  # another scheme's proxy
        {"HTTP_PROXY": "http://127.0.0.1:{dead}", "REQUEST_METHOD": "GET"},  # httpoxy
        {"http_proxy": "", "HTTP_PROXY": "", "all_proxy": ""},  # empty is unset
    ],
    ids=["other-scheme", "httpoxy", "empty"],
)
def test_environment_without_a_proxy_for_the_url_goes_direct(
    environ: dict[str, str], fault_server: FaultServer, tmp_path: Path
) -> None:
    """Variables that do not apply to an http:// URL leave it on a direct connection."""
    fault_server.add_file("/f.bin", b"y" * 5000)
    dead = _closed_port()
    environ = {name: value.format(dead=dead) for name, value in environ.items()}
    transport = Urllib3Transport(environ=environ)
    _fetch(fault_server.url("/f.bin"), tmp_path / "out", transport, b"y" * 5000)


def test_use_proxy_env_false_ignores_the_environment(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """With use_proxy_env=False, http_proxy in the environment is not used."""
    fault_server.add_file("/f.bin", b"z" * 5000)
    environ = {"http_proxy": f"http://127.0.0.1:{_closed_port()}"}
    transport = Urllib3Transport(environ=environ, use_proxy_env=False)
    _fetch(fault_server.url("/f.bin"), tmp_path / "out", transport, b"z" * 5000)


def test_cli_proxy_option_reaches_the_proxy(
    fault_server: FaultServer, make_data: Callable[..., bytes], tmp_path: Path
) -> None:
    """`segdl --proxy socks5h://user:pass@…` goes through the proxy; the password stays out
    of everything printed."""
    data = make_data(_SIZE, seed=11)
    fault_server.add_file("/f.bin", data)
    url = f"http://localhost:{fault_server.port}/f.bin"
    with microsocks(tmp_path, auth=True) as proxy:
        proxy_url = f"socks5h://{_USER}:{_PASSWORD}@127.0.0.1:{proxy.port}"
        out, err = io.StringIO(), io.StringIO()
        code = main(
            ["--progress", "json", "--proxy", proxy_url, "-o", str(tmp_path / "o"), url],
            stdout=out,
            stderr=err,
        )
        log = proxy.log
    assert code == 0, err.getvalue()
    assert (tmp_path / "o").read_bytes() == data
    assert f"connected to localhost:{fault_server.port}" in log
    assert _PASSWORD not in out.getvalue() + err.getvalue()
