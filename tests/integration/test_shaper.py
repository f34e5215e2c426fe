"""Self-checks of the benchmark's shaping proxy (bench/shaper.py) against a tiny local upstream."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

import pytest

from bench.shaper import Shaper, ShaperConfig, parse_size

_BLOCK = b"x" * 65536


class _Upstream(socketserver.BaseRequestHandler):
    """Reads one line: 'echo' echoes every later byte; a number N is answered with N bytes."""

    def handle(self) -> None:
        f = self.request.makefile("rb")
        line = f.readline().strip()
        if line == b"echo":
            while chunk := f.readline():
                self.request.sendall(chunk)
            return
        left = int(line)
        while left > 0:
            self.request.sendall(_BLOCK[: min(left, len(_BLOCK))])
            left -= min(left, len(_BLOCK))


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64  # 16 clients connect at once; the default 5 drops SYNs (1 s retry)


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, int]]:
    """A threaded loopback server speaking the _Upstream protocol."""
    with _Server(("127.0.0.1", 0), _Upstream) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        host, port = server.server_address[:2]
        yield str(host), int(port)
        server.shutdown()


def _fetch_s(port: int, size_bytes: int) -> float:
    """Ask for size_bytes through the proxy; return seconds until the last one arrived."""
    return _fetch_rate(port, size_bytes)[0]


def _fetch_rate(port: int, size_bytes: int) -> tuple[float, float]:
    """Ask for size_bytes through the proxy; return (total seconds, bytes/s after the first recv).

    The rate leaves out the time to the first byte, which in-process clients and server threads
    stretch by starting up on the same two cores as the proxy.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.perf_counter()
        sock.sendall(f"{size_bytes}\n".encode())
        first = sock.recv(1 << 20)
        assert first, "proxy closed early"
        first_at, got = time.perf_counter(), len(first)
        while got < size_bytes:
            chunk = sock.recv(1 << 20)
            assert chunk, "proxy closed early"
            got += len(chunk)
        done = time.perf_counter()
        return done - started, (size_bytes - len(first)) / max(done - first_at, 1e-9)


def _echo_s(sock: socket.socket, reader: BinaryIO, line: bytes) -> float:
    """Send one line over an echo connection; return the seconds until it came back."""
    started = time.perf_counter()
    sock.sendall(line)
    assert reader.readline() == line
    return time.perf_counter() - started


def test_rate_is_held_within_a_few_percent(upstream: tuple[str, int]) -> None:
    """One connection at 2 MB/s takes 1 s (-2%, +5%) for 2 MB: no burst, no lost time."""
    config = ShaperConfig(rate_bytes_per_s=2_000_000, model_handshake=False)
    with Shaper(upstream, config) as shaper:
        elapsed = _fetch_s(shaper.port, 2_000_000)
    assert 0.98 <= elapsed <= 1.05


def test_sixteen_connections_each_get_their_rate(upstream: tuple[str, int]) -> None:
    """16 parallel connections at 5 MB/s each through a 20 ms delay get 5 MB/s: ±3% on average."""
    size_bytes, rate = 5_000_000, 5_000_000.0
    config = ShaperConfig(rate_bytes_per_s=rate, delay_s=0.02, model_handshake=False)
    rates: list[float] = []
    with Shaper(upstream, config) as shaper:
        workers = [
            threading.Thread(target=lambda: rates.append(_fetch_rate(shaper.port, size_bytes)[1]))
            for _ in range(16)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert len(rates) == 16
    assert 0.97 * rate <= sum(rates) / len(rates) <= 1.03 * rate, sorted(rates)
    # Each one within 6%: what in-process clients on two busy cores still manage.
    assert all(0.94 * rate <= r <= 1.06 * rate for r in rates), sorted(rates)


def test_delay_adds_the_round_trip(upstream: tuple[str, int]) -> None:
    """A 50 ms one-way delay makes a round trip >= 100 ms; the first one pays the handshake too."""
    config = ShaperConfig(delay_s=0.05)
    with (
        Shaper(upstream, config) as shaper,
        socket.create_connection(("127.0.0.1", shaper.port), timeout=10) as sock,
    ):
        reader = sock.makefile("rb")
        sock.sendall(b"echo\n")
        first = _echo_s(sock, reader, b"one\n")
        second = _echo_s(sock, reader, b"two\n")
    assert first >= 0.2 - 0.005  # the handshake's round trip, then the line's own
    assert 0.1 - 0.005 <= second < 0.1 + 0.08


def test_delay_does_not_limit_throughput(upstream: tuple[str, int]) -> None:
    """A 100 ms one-way delay without a rate still carries 32 MB at well over 50 MB/s."""
    config = ShaperConfig(delay_s=0.1, model_handshake=False)
    with Shaper(upstream, config) as shaper:
        total_s, rate = _fetch_rate(shaper.port, 32_000_000)
    assert total_s >= 0.2 - 0.005  # request and response each crossed the delay
    assert rate >= 50e6, f"{rate / 1e6:.1f} MB/s"


def test_every_kth_connection_is_slower(upstream: tuple[str, int]) -> None:
    """With slow_every=2 and slow_factor=4 the 2nd connection is 4x slower than the 1st."""
    config = ShaperConfig(
        rate_bytes_per_s=4_000_000, slow_every=2, slow_factor=4.0, model_handshake=False
    )
    with Shaper(upstream, config) as shaper:
        fast = _fetch_s(shaper.port, 400_000)
        slow = _fetch_s(shaper.port, 400_000)
    assert 0.09 <= fast <= 0.13
    assert 0.36 <= slow <= 0.45


def test_shared_line_caps_all_connections_together(upstream: tuple[str, int]) -> None:
    """Two parallel connections through one 2 MB/s line get 2 MB in about 1 s together."""
    config = ShaperConfig(shared_rate_bytes_per_s=2_000_000, model_handshake=False)
    times: list[float] = []
    with Shaper(upstream, config) as shaper:
        workers = [
            threading.Thread(target=lambda: times.append(_fetch_s(shaper.port, 1_000_000)))
            for _ in range(2)
        ]
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        total = time.perf_counter() - started
    assert len(times) == 2
    assert 0.9 <= total <= 1.15
    assert min(times) >= 0.8  # fair: neither finished at the full line rate


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5M", 5_000_000), ("50M", 50_000_000), ("1MiB", 1 << 20), ("1Mi", 1 << 20),
     ("1.5k", 1500), ("4096", 4096), ("2G", 2_000_000_000)],
)  # fmt: skip
def test_parse_size(text: str, expected: int) -> None:
    """Rates on the command line: decimal SI prefixes, binary with 'i'."""
    assert parse_size(text) == expected


def test_parse_size_rejects_garbage() -> None:
    """A size that is not a number with a known prefix is refused."""
    with pytest.raises(ValueError):
        parse_size("5 megs")
