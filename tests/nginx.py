"""Run a real nginx on loopback, serving one directory, for integration tests and benchmarks.

Everything nginx writes (pid, logs, temp dirs, the config itself) lives in a private temp
directory, so it runs as root or as a normal user without touching /etc or /var.  The access log
is one JSON object per request, parsed by :meth:`Nginx.access_log`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TypedDict

SETUP_HINT = "install it with `apt-get install -y nginx` (scripts/test.sh does this)"
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 5
_CHUNK_BYTES = 16 << 20

# escape=json (nginx >= 1.11.8) makes every line a JSON object; $status, $body_bytes_sent,
# $connection and $connection_requests are always digits, so they are written unquoted.
_LOG_FORMAT = (
    "log_format segdl escape=json '{"
    '"request":"$request","status":$status,"body_bytes_sent":$body_bytes_sent,'
    '"range":"$http_range","connection":$connection,'
    '"connection_requests":$connection_requests,"request_time":"$request_time",'
    '"tls_resumed":"$ssl_session_reused"'
    "}';"
)


class NginxNotFound(RuntimeError):
    """No nginx binary on this machine."""


class NginxStartError(RuntimeError):
    """nginx exited or never accepted connections."""


class AccessEntry(TypedDict):
    """One parsed access-log line."""

    request: str
    method: str
    path: str
    status: int
    body_bytes_sent: int
    range: str | None
    connection: int
    connection_requests: int
    request_time_s: float
    tls_resumed: bool
    """Over TLS: the connection resumed an earlier session."""


def nginx_binary() -> Path:
    """Return the nginx executable, or raise NginxNotFound with the setup hint."""
    found = shutil.which("nginx")
    if found:
        return Path(found)
    for candidate in (Path("/usr/sbin/nginx"), Path("/usr/local/sbin/nginx")):
        if os.access(candidate, os.X_OK):
            return candidate
    raise NginxNotFound(f"nginx is not installed (not on PATH, not in /usr/sbin): {SETUP_HINT}")


def write_random_file(path: Path, size_bytes: int, seed: int) -> str:
    """Write `size_bytes` deterministic pseudo-random bytes to `path`; return their sha256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size_bytes
        while left > 0:
            block = rng.randbytes(min(left, _CHUNK_BYTES))
            out.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Return the sha256 hex digest of a file's contents."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def render_config(
    workdir: Path,
    root: Path,
    port: int,
    tls: tuple[Path, Path] | None = None,
    keepalive_requests: int = 10000,
    redirects: str | None = None,
) -> str:
    """Return an nginx.conf serving `root` on 127.0.0.1:`port` with all state in `workdir`;
    with `tls` (certificate chain, key: PEM files) over HTTPS only; a connection is closed
    after `keepalive_requests` answers (the last saying `Connection: close`); with
    `redirects` (a path prefix such as "/r/"), `<prefix><name>` answers 302 to `/<name>`."""
    # As root the master would start workers as `nobody`, which cannot read a 0700 temp dir;
    # as a normal user the `user` directive is ignored with a warning, so only write it for root.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp_paths = "".join(
        f"    {kind}_temp_path {workdir / (kind + '_temp')};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    tls_directives = ""
    if tls is not None:
        chain, key = tls
        indent = "\n        "
        tls_directives = f" ssl;{indent}ssl_certificate {chain};{indent}ssl_certificate_key {key}"
    redirect = ""
    if redirects is not None:  # a relative Location: nginx makes it absolute, on this port
        redirect = f"\n        location {redirects} {{ rewrite ^{redirects}(.*)$ /$1 redirect; }}"
    return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {workdir / "nginx.pid"};
lock_file {workdir / "nginx.lock"};
error_log {workdir / "error.log"} warn;
events {{
    worker_connections 1024;
}}
http {{
    default_type application/octet-stream;
{temp_paths}    {_LOG_FORMAT}
    access_log {workdir / "access.log"} segdl;
    sendfile on;
    tcp_nopush on;
    keepalive_requests {keepalive_requests};
    keepalive_timeout 65s;
    server {{
        listen 127.0.0.1:{port}{tls_directives};
        root {root};
        location / {{ }}{redirect}
    }}
}}
"""


def parse_access_line(line: str) -> AccessEntry:
    """Parse one line of the JSON access log."""
    raw = json.loads(line)
    request: str = raw["request"]
    method, _, rest = request.partition(" ")
    path = rest.rsplit(" ", 1)[0] if " " in rest else rest
    return AccessEntry(
        request=request,
        method=method,
        path=path,
        status=int(raw["status"]),
        body_bytes_sent=int(raw["body_bytes_sent"]),
        range=raw["range"] or None,
        connection=int(raw["connection"]),
        connection_requests=int(raw["connection_requests"]),
        request_time_s=float(raw["request_time"]),
        tls_resumed=raw.get("tls_resumed") == "r",
    )


def _accepts(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Nginx:
    """A private nginx serving `root` on a free loopback port, as a context manager."""

    def __init__(
        self,
        root: Path,
        binary: Path | None = None,
        tls: tuple[Path, Path] | None = None,
        keepalive_requests: int = 10000,
        redirects: str | None = None,
    ) -> None:
        """`tls`: (certificate chain, key) PEM files to serve HTTPS instead of HTTP;
        `keepalive_requests`: answers per connection; `redirects`: a prefix answered with a
        redirect (see render_config)."""
        self.root = Path(root).resolve()
        self.binary = binary if binary is not None else nginx_binary()
        self.tls = tls
        self.keepalive_requests = keepalive_requests
        self.redirects = redirects
        self.port = 0
        self._workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def workdir(self) -> Path:
        """The private directory holding the config, logs and temp dirs."""
        if self._workdir is None:
            raise RuntimeError("nginx is not running")
        return self._workdir

    def url(self, name: str) -> str:
        """Return the http (or https) URL of `name` (a path relative to root)."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/{name.lstrip('/')}"

    def __enter__(self) -> Nginx:
        self._workdir = Path(tempfile.mkdtemp(prefix="segdl-nginx-"))
        try:
            self._start()
        except BaseException:
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def _start(self) -> None:
        """Start nginx, retrying on another port if the chosen one was taken meanwhile."""
        errors: list[str] = []
        for _ in range(_PORT_ATTEMPTS):
            self.port = free_port()
            conf = self.workdir / "nginx.conf"
            conf.write_text(render_config(self.workdir, self.root, self.port, self.tls,
                                          self.keepalive_requests, self.redirects))  # fmt: skip
            if self._launch(conf):
                return
            errors.append(self.error_log())
        raise NginxStartError("nginx did not start:\n" + "\n---\n".join(errors))

    def _launch(self, conf: Path) -> bool:
        """Run nginx with `conf`; True once the port accepts, False if nginx exited."""
        argv = [str(self.binary), "-c", str(conf), "-p", str(self.workdir)]
        # -e (nginx >= 1.19.5) keeps even the earliest start-up errors out of /var/log.
        argv += ["-e", str(self.workdir / "error.log")]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                return False
            if _accepts(self.port):
                return True
            time.sleep(0.02)
        self.stop()
        raise NginxStartError(f"nginx did not accept in {_START_TIMEOUT_S}s: {self.error_log()}")

    def stop(self) -> None:
        """Stop nginx: graceful SIGQUIT, then SIGTERM, then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig in (signal.SIGQUIT, signal.SIGTERM):
            proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_STOP_TIMEOUT_S / 2)
                return
        proc.kill()
        proc.wait()

    def error_log(self) -> str:
        """Return the error log's text ('' if there is none yet)."""
        path = self.workdir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> list[AccessEntry]:
        """Return every request logged so far, oldest first."""
        path = self.workdir / "access.log"
        if not path.exists():
            return []
        lines = path.read_text().splitlines()
        return [parse_access_line(line) for line in lines if line.strip()]
