"""Preconnecting: the range connections open while the first request is in flight."""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Callable
from pathlib import Path

import segdl
from segdl.net.transport import Urllib3Transport
from tests.client import get_body, wait_for
from tests.server import FaultServer
from tests.server.faults import Faults

MIB = 1024 * 1024


def test_released_connections_serve_the_next_requests(fault_server: FaultServer) -> None:
    """preconnect opens the connections without sending anything; once released, requests
    use them instead of opening more."""
    fault_server.add_file("/f.bin", b"x" * 1000)
    url = fault_server.url("/f.bin")
    transport = Urllib3Transport(max_connections_per_host=5)
    try:
        warm = transport.preconnect(url, 3)
        assert wait_for(lambda: fault_server.open_connections == 4)
        assert fault_server.requests == []  # connected only: no request, no credentials
        warm.release()
        with cf.ThreadPoolExecutor(4) as pool:
            sizes = list(pool.map(lambda _: len(get_body(transport, url)), range(4)))
        assert sizes == [1000] * 4
        assert fault_server.peak_connections == 4
        assert len({r.connection_id for r in fault_server.requests}) <= 4
    finally:
        transport.close()


def test_discarded_connections_are_closed(fault_server: FaultServer) -> None:
    """A first request that failed discards the others: a refusing server is not crowded."""
    fault_server.add_file("/f.bin", b"x" * 1000)
    transport = Urllib3Transport(max_connections_per_host=5)
    try:
        warm = transport.preconnect(fault_server.url("/f.bin"), 3)
        assert wait_for(lambda: fault_server.open_connections == 4)
        warm.discard()
        assert wait_for(lambda: fault_server.open_connections == 1)  # the first one's
    finally:
        transport.close()


def test_never_more_than_the_pool_holds(fault_server: FaultServer) -> None:
    """Asking for more connections than the per-host cap opens only what the pool holds."""
    fault_server.add_file("/f.bin", b"x" * 1000)
    transport = Urllib3Transport(max_connections_per_host=3)
    try:
        warm = transport.preconnect(fault_server.url("/f.bin"), 10)
        assert wait_for(lambda: fault_server.open_connections == 3)
        time.sleep(0.2)
        assert fault_server.open_connections == 3
        warm.release()
    finally:
        transport.close()


def test_an_unreachable_server_is_not_preconnected() -> None:
    """A refused first connection ends preconnecting quietly; the request reports it."""
    transport = Urllib3Transport(max_connections_per_host=5)
    try:
        warm = transport.preconnect("http://127.0.0.1:9/f.bin", 3)  # discard port: closed
        warm.release()
        warm.discard()
    finally:
        transport.close()


def test_a_download_uses_its_preconnected_connections(
    fault_server: FaultServer, make_data: Callable[..., bytes], tmp_path: Path
) -> None:
    """Four connections for four ranges: never more than four at once."""
    data = make_data(4 * MIB)
    fault_server.add_file("/f.bin", data)
    # Slow enough that no range ends (and its connection takes other work) before every
    # connection has sent its first request.
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=4 * MIB))
    segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=4)
    assert (tmp_path / "o").read_bytes() == data
    # An answer segdl stopped reading (its range taken by another connection) is logged when
    # the server's send fails, which may come after download() returned.
    assert wait_for(lambda: fault_server.open_connections == 0)
    assert len({r.connection_id for r in fault_server.requests[:4]}) == 4
    assert fault_server.peak_connections <= 4
