"""``segdl daemon``: the command line of the download manager (the ``daemon`` extra)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO

from segdl.core.errors import UsageError
from segdl.core.option_table import default as option_default
from segdl.daemon.config import DEFAULT_PORT, configure, lock_state_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segdl daemon",
        description="A download queue in the background, driven over aria2's JSON-RPC "
        "(aria2p, AriaNg, ...) and from its own page at http://127.0.0.1:6800/.",
    )
    parser.add_argument("-d", "--dir", default=".", help="the download root (default: here)")
    parser.add_argument(
        "--state-dir",
        help="the queue database and the generated secret "
        "(default: $XDG_STATE_HOME/segdl, else ~/.local/state/segdl)",
    )
    parser.add_argument(
        "--rpc-listen",
        default=f"127.0.0.1:{DEFAULT_PORT}",
        metavar="HOST:PORT",
        help="where to listen (default 127.0.0.1:6800; port 0 picks a free one)",
    )
    parser.add_argument(
        "--rpc-allow-remote",
        action="store_true",
        help="allow --rpc-listen on an address other than loopback (anyone who can reach "
        "it and knows the secret can write files into --dir)",
    )
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--rpc-secret", metavar="TOKEN", help="the RPC secret (visible in ps)")
    secret.add_argument("--rpc-secret-file", metavar="PATH", help="read the secret from PATH")
    parser.add_argument(
        "--rpc-allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept browser requests from ORIGIN (e.g. http://127.0.0.1:8080 for an "
        "AriaNg served there), and send it CORS headers; repeatable",
    )
    parser.add_argument(
        "--rpc-max-request-size",
        default="2M",
        metavar="SIZE",
        help="largest request body or WebSocket message (default 2M, as aria2)",
    )
    parser.add_argument("-j", "--jobs", type=int, default=5, help="downloads at once (default 5)")
    parser.add_argument(
        "-x",
        "--connections",
        type=int,
        default=option_default("connections"),
        help="connections per download (default %(default)s)",
    )
    parser.add_argument(
        "--max-connections-per-host",
        type=int,
        default=option_default("max_connections_per_host"),
        help="connections to one host across all downloads (default %(default)s)",
    )
    parser.add_argument(
        "--limit-rate", default="0", metavar="RATE", help="bytes/s for everything (0: none)"
    )
    return parser


def main(argv: Sequence[str] | None = None, stderr: IO[str] | None = None) -> int:
    """Run the daemon until SIGINT/SIGTERM or aria2.shutdown; the exit code."""
    stderr = stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        stderr.write("segdl: error: the daemon needs aiohttp: pip install 'segdl[daemon]'\n")
        return 2
    try:
        config = configure(args)
        lock = lock_state_dir(config.state_dir)
    except UsageError as exc:
        stderr.write(f"segdl: error: {exc}\n")
        return 2
    from segdl.daemon.serve import serve

    def report(line: str) -> None:
        stderr.write(line + "\n")
        stderr.flush()

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(serve(config, report))
    except OSError as exc:  # the port is taken, the state directory unwritable
        stderr.write(f"segdl: error: {exc.strerror or exc}\n")
        return 3
    finally:
        os.close(lock)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is installed (the ``daemon`` extra brings it): RPC round trips are
    a third shorter on it; else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
