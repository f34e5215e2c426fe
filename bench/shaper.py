"""A shaping TCP proxy for loopback benchmarks: rate, one-way delay, slow connections.

Each accepted connection is forwarded to the upstream.  Each direction is a *delay line*: a
chunk read at time t is written out at t + delay_s, while later chunks are already being read,
so the delay adds latency without cutting throughput.  The downstream direction (server to
client) also passes through one or two *serial lines* before the delay: a per-connection line of
`rate_bytes_per_s` (every `slow_every`-th accepted connection gets rate / slow_factor) and/or
one line of `shared_rate_bytes_per_s` shared by all connections.  A serial line is a virtual
clock: a chunk of n bytes occupies it for n / rate seconds after the previous chunk, and the
reader does not read the next chunk from the upstream until its own chunk has left the line, so
the upstream's socket fills and TCP pushes back as a real bottleneck would.

With `model_handshake` the first client bytes are held until one round trip after accept, as if
the TCP handshake had crossed the delayed path too.

    python -m bench.shaper --upstream 127.0.0.1:8080 --rate 5M --delay-ms 20 --slow-every 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

_CHUNK_MAX_BYTES = 256 * 1024
_CHUNK_MIN_BYTES = 4 * 1024
_CHUNK_LINE_TIME_S = 0.02  # a chunk occupies a rate-limited line for at most ~20 ms
_SLACK_S = 0.02  # credit for timer lateness, so wake-up jitter does not lower the rate
_QUEUE_ITEMS = 256  # chunks in flight per direction: bounds memory when the reader is slow
_STREAM_LIMIT_BYTES = 256 * 1024

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Parse '5M' (5*10**6), '5MiB' / '5Mi' (5*2**20), '1.5k' or '4096' into bytes."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    number, prefix, binary = match.groups()
    power = "kmgt".find(prefix.lower()) + 1 if prefix else 0
    base = 1024 if binary else 1000
    return int(float(number) * base**power)


@dataclass(frozen=True, slots=True)
class ShaperConfig:
    """How each proxied connection is shaped; None means unlimited."""

    rate_bytes_per_s: float | None = None
    delay_s: float = 0.0
    slow_every: int | None = None
    slow_factor: float = 1.0
    shared_rate_bytes_per_s: float | None = None
    model_handshake: bool = True

    def rate_for(self, index: int) -> float | None:
        """Downstream rate of the `index`-th accepted connection (1-based)."""
        if self.rate_bytes_per_s is None:
            return None
        if self.slow_every and index % self.slow_every == 0:
            return self.rate_bytes_per_s / self.slow_factor
        return self.rate_bytes_per_s


class Line:
    """A serial line: each chunk occupies it for len / rate seconds after the one before.

    This is a token bucket of `rate_bytes_per_s` whose depth is one chunk: a line that is kept
    busy delivers exactly its rate, an idle one earns no burst.
    """

    def __init__(self, rate_bytes_per_s: float) -> None:
        if rate_bytes_per_s <= 0:
            raise ValueError("rate must be positive")
        self.rate_bytes_per_s = rate_bytes_per_s
        self._free_at = 0.0

    def reserve(self, size_bytes: int, now: float) -> float:
        """Queue `size_bytes` on the line at `now`; return when their last byte has left it."""
        # A line that went idle starts afresh at `now` (no burst credit); one that was busy until
        # a moment ago continues from where it was, so timer lateness does not lower the rate.
        start = self._free_at if self._free_at >= now - _SLACK_S else now
        self._free_at = start + size_bytes / self.rate_bytes_per_s
        return self._free_at


def _chunk_bytes(lines: Sequence[Line]) -> int:
    """Read size for a direction: small enough that one chunk is ~20 ms on its slowest line."""
    if not lines:
        return _CHUNK_MAX_BYTES
    slowest = min(line.rate_bytes_per_s for line in lines)
    return max(_CHUNK_MIN_BYTES, min(_CHUNK_MAX_BYTES, int(slowest * _CHUNK_LINE_TIME_S)))


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    """Sleep until loop time `when` (no-op if it has passed)."""
    wait = when - loop.time()
    if wait > 0:
        await asyncio.sleep(wait)


async def _feed(
    reader: asyncio.StreamReader,
    queue: asyncio.Queue[tuple[float, bytes]],
    lines: Sequence[Line],
    delay_s: float,
    not_before: float,
) -> None:
    """Read chunks, pass them through the lines, and queue each with its delivery time."""
    loop = asyncio.get_running_loop()
    chunk = _chunk_bytes(lines)
    while True:
        data = await reader.read(chunk)
        now = loop.time()
        sent_at = max(now, not_before)
        if data:
            for line in lines:
                sent_at = max(sent_at, line.reserve(len(data), now))
        await queue.put((sent_at + delay_s, data))
        if not data:
            return
        await _sleep_until(loop, sent_at)


async def _deliver(writer: asyncio.StreamWriter, queue: asyncio.Queue[tuple[float, bytes]]) -> None:
    """Write each queued chunk at its delivery time; an empty chunk is end of stream."""
    loop = asyncio.get_running_loop()
    while True:
        due, data = await queue.get()
        await _sleep_until(loop, due)
        if not data:
            if writer.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()
            return
        writer.write(data)
        await writer.drain()


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    lines: Sequence[Line],
    delay_s: float,
    not_before: float = 0.0,
) -> None:
    """Forward one direction through the lines and the delay line until end of stream."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=_QUEUE_ITEMS)
    async with asyncio.TaskGroup() as group:
        group.create_task(_feed(reader, queue, lines, delay_s, not_before))
        group.create_task(_deliver(writer, queue))


_Direction = tuple[asyncio.StreamReader, asyncio.StreamWriter, Sequence[Line], float]


async def _forward_both(upstream: _Direction, downstream: _Direction, delay_s: float) -> None:
    """Run both directions (reader, writer, lines, not_before) until both end or one fails."""
    try:
        async with asyncio.TaskGroup() as group:
            for reader, writer, lines, not_before in (upstream, downstream):
                group.create_task(_pump(reader, writer, lines, delay_s, not_before))
    except* (OSError, RuntimeError):
        pass  # a peer reset or closed: the caller tears the whole connection down


def _nodelay(writer: asyncio.StreamWriter) -> None:
    """Disable Nagle: small writes (requests, headers) must not wait for an ACK."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Shaper:
    """The proxy; a context manager that serves from a background thread."""

    def __init__(
        self,
        upstream: tuple[str, int],
        config: ShaperConfig,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstream = upstream
        self.config = config
        self.host = host
        self.port = port
        self.connections_accepted = 0
        self._counter = itertools.count(1)
        self._shared = (
            Line(config.shared_rate_bytes_per_s) if config.shared_rate_bytes_per_s else None
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def url(self, path: str) -> str:
        """Return an http URL for `path` through the proxy."""
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        """Proxy one accepted connection until both directions end or one fails."""
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        index = next(self._counter)
        self.connections_accepted = index
        loop = asyncio.get_running_loop()
        accepted_at = loop.time()
        cfg = self.config
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream, limit=_STREAM_LIMIT_BYTES)
        except OSError:
            client_w.close()
            return
        _nodelay(client_w)
        _nodelay(up_w)
        rate = cfg.rate_for(index)
        down_lines = [Line(rate)] if rate else []
        if self._shared is not None:
            down_lines.append(self._shared)
        not_before = accepted_at + 2 * cfg.delay_s if cfg.model_handshake else 0.0
        try:
            await _forward_both(
                (client_r, up_w, [], not_before), (up_r, client_w, down_lines, 0.0), cfg.delay_s
            )
        except asyncio.CancelledError:
            # stop() cancels live connections; returning normally keeps asyncio's stream
            # callback (3.11) from logging the cancellation as an unhandled error.
            pass
        finally:
            for w in (client_w, up_w):
                w.close()
            if task is not None:
                self._handlers.discard(task)

    async def serve(self) -> None:
        """Serve until stop() is called."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=_STREAM_LIMIT_BYTES
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)

    def stop(self) -> None:
        """Ask serve() to close the listener and every connection (thread-safe)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def _run_thread(self) -> None:
        try:
            asyncio.run(self.serve())
        except BaseException as exc:  # reported to the thread that called __enter__
            self._error = exc
            self._ready.set()

    def __enter__(self) -> Shaper:
        self._thread = threading.Thread(target=self._run_thread, name="shaper", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._error is not None or not self._ready.is_set():
            raise RuntimeError(f"shaper did not start: {self._error!r}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.shaper", description=__doc__.split("\n")[0])
    p.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on")
    p.add_argument("--rate", type=parse_size, help="downstream bytes/s per connection, e.g. 5M")
    p.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay in ms")
    p.add_argument("--slow-every", type=int, help="every k-th connection is slow")
    p.add_argument("--slow-factor", type=float, default=8.0, help="how much slower")
    p.add_argument("--shared-rate", type=parse_size, help="one line shared by all, bytes/s")
    p.add_argument("--no-handshake", action="store_true", help="do not delay the first bytes")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the proxy in the foreground until interrupted."""
    args = _parse_args(argv)
    up_host, _, up_port = args.upstream.rpartition(":")
    host, _, port = args.listen.rpartition(":")
    config = ShaperConfig(
        rate_bytes_per_s=args.rate,
        delay_s=args.delay_ms / 1000,
        slow_every=args.slow_every,
        slow_factor=args.slow_factor,
        shared_rate_bytes_per_s=args.shared_rate,
        model_handshake=not args.no_handshake,
    )
    shaper = Shaper((up_host, int(up_port)), config, host=host, port=int(port))
    with shaper:
        print(f"shaper listening on {shaper.host}:{shaper.port} -> {args.upstream}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
