"""The daemon's lifetime: load the queue, listen, tick, and stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from aiohttp import web

from segdl.daemon import ariaopts, methods
from segdl.daemon.config import Config, is_loopback
from segdl.daemon.manager import Manager
from segdl.daemon.rpc import Dispatcher
from segdl.daemon.server import RpcServer
from segdl.daemon.store import Store

_FORCE_WAIT_S = 0.5
_ORDERLY_WAIT_S = 10.0


async def serve(config: Config, report: Callable[[str], None]) -> int:
    """Serve until SIGINT, SIGTERM or aria2.shutdown; ``report`` gets the lines for the user."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    force = False
    install_signals(loop, stop)
    store = Store(config.state_dir / "queue.sqlite3")
    options = ariaopts.defaults(str(config.root), config.jobs, config.connections, config.limit)
    manager = Manager(
        store, config.root, options, max_connections_per_host=config.max_connections_per_host
    )
    manager.load()
    manager.attach(loop)
    manager.schedule()  # what was running continues, before any call can look

    def shutdown(forced: bool) -> None:
        nonlocal force
        force = forced
        loop.call_later(0.05, stop.set)  # after the answer has gone out

    dispatcher = Dispatcher(manager, config.secret, methods.build(manager, shutdown))
    server = RpcServer(
        dispatcher,
        port=config.port,
        loopback=is_loopback(config.host),
        allowed_origins=config.allowed_origins,
        max_request_bytes=config.max_request_bytes,
    )
    manager.notify = server.notify
    runner = web.AppRunner(server.app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = _bound_port(runner)
    server.listening_on(port)
    if not is_loopback(config.host):
        report(
            f"segdl: warning: listening on {config.host}, not only on this machine: anyone "
            "who reaches it and has the secret can make it write into the download root"
        )
    host = f"[{config.host}]" if ":" in config.host else config.host
    report(
        f"segdl daemon: listening on http://{host}:{port}/ (JSON-RPC at /jsonrpc), "
        f"downloading into {config.root}, secret from {config.secret_source}, "
        f"{len(manager.items)} items in the queue"
    )
    await manager.commit()
    ticker = asyncio.ensure_future(_tick(manager, stop))
    await stop.wait()
    ticker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ticker
    runners = manager.stop_all()
    await server.close_sockets()
    await runner.cleanup()
    await manager.close(runners, _FORCE_WAIT_S if force else _ORDERLY_WAIT_S)
    store.close()
    return 0


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        return int(address[1])
    raise OSError("the daemon is not listening")


async def _tick(manager: Manager, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(1.0)
        await manager.tick()


def install_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
