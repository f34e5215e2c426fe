"""The daemon's configuration: where it listens, its secret, its state directory."""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from segdl.core.errors import UsageError
from segdl.core.options import parse_size

DEFAULT_PORT = 6800  # aria2's, so clients find it where they look
_SECRET_NAME = "rpc-secret"


@dataclass(frozen=True, slots=True)
class Config:
    root: Path
    state_dir: Path
    host: str
    port: int
    secret: str
    secret_source: str
    allowed_origins: frozenset[str]
    max_request_bytes: int
    jobs: int
    connections: int
    max_connections_per_host: int
    limit: str


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "segdl"


def split_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--rpc-listen {text!r}: HOST:PORT expected")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_secret(args: argparse.Namespace, state_dir: Path) -> tuple[str, str]:
    """The secret and where it came from; generated into a 0600 file on first start."""
    if args.rpc_secret is not None:
        if not args.rpc_secret:
            raise UsageError("--rpc-secret may not be empty")
        return args.rpc_secret, "--rpc-secret"
    path = Path(args.rpc_secret_file) if args.rpc_secret_file else state_dir / _SECRET_NAME
    if not path.exists() and args.rpc_secret_file is None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    try:
        mode = os.stat(path).st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read the secret file {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"the secret file {path} is readable by others (chmod 600 it)")
    if not text:
        raise UsageError(f"the secret file {path} is empty")
    return text, str(path)


def configure(args: argparse.Namespace) -> Config:
    root = Path(args.dir).resolve()
    if not root.is_dir():
        raise UsageError(f"--dir {args.dir}: not a directory")
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    host, port = split_listen(args.rpc_listen)
    if not is_loopback(host) and not args.rpc_allow_remote:
        raise UsageError(
            f"--rpc-listen {host}: not a loopback address; add --rpc-allow-remote to mean it"
        )
    if args.jobs < 1 or args.connections < 1 or args.max_connections_per_host < 1:
        raise UsageError("-j, -x and --max-connections-per-host must be at least 1")
    parse_size(args.limit_rate)
    secret, source = load_secret(args, state_dir)
    return Config(
        root=root,
        state_dir=state_dir,
        host=host,
        port=port,
        secret=secret,
        secret_source=source,
        allowed_origins=frozenset(o.rstrip("/") for o in args.rpc_allow_origin),
        max_request_bytes=parse_size(args.rpc_max_request_size),
        jobs=args.jobs,
        connections=args.connections,
        max_connections_per_host=args.max_connections_per_host,
        limit=args.limit_rate,
    )


def lock_state_dir(state_dir: Path) -> int:
    """One daemon per state directory: a second one would share the queue's database."""
    fd = os.open(state_dir / "daemon.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise UsageError(f"another segdl daemon uses {state_dir}") from exc
    return fd
