"""The host-gate seam in a real batch: two batches (as two workers) share one lease book."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

from segdl.cluster.gate import LeasedGate, LocalLeases
from segdl.cluster.leases import LeaseBook
from segdl.run.batch import Outcome, download_many
from tests.integration.test_proxy import microsocks
from tests.server import FaultServer
from tests.server.faults import Faults

MakeData = Callable[..., bytes]


def _serve(server: FaultServer, make_data: MakeData, count: int, size: int) -> dict[str, bytes]:
    files = {f"/f{n:03d}.bin": make_data(size, seed=n) for n in range(count)}
    for path, data in files.items():
        server.add_file(path, data)
    return files


def _two_workers(
    server: FaultServer,
    files: dict[str, bytes],
    dest: Path,
    service: LocalLeases,
    proxy: str | None = None,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    paths = sorted(files)

    def worker(part: list[str], name: str) -> None:
        with LeasedGate(service, lease_batch=2, tick_s=0.1) as gate:
            report = download_many(
                [server.url(p) for p in part],
                parallel=4,
                directory=dest / name,
                max_connections_per_host=16,  # each worker's own pool would allow 16
                host_gate=gate,
                proxy=proxy,
            )
        outcomes.extend(item.outcome for item in report.items)

    threads = [threading.Thread(target=worker, args=(paths[n::2], f"w{n}")) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_gate_caps_connections_of_two_batches(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Two batches sharing a book of 4 slots never have more than 4 connections open at the
    server, and reach 4; every file arrives intact; every slot is back at the end."""
    files = _serve(fault_server, make_data, 40, 64 * 1024)
    for path in files:  # slow bodies, so that connections overlap
        fault_server.set_faults(path, Faults(throttle_bytes_per_s=2 * 1024 * 1024))
    service = LocalLeases(LeaseBook(4))
    outcomes = _two_workers(fault_server, files, tmp_path, service)
    assert outcomes.count(Outcome.DONE) == 40
    assert fault_server.peak_connections == 4
    for path, data in files.items():
        name = path.lstrip("/")
        got = [p for p in tmp_path.glob(f"w*/{name}")]
        assert len(got) == 1
        assert hashlib.sha256(got[0].read_bytes()).digest() == hashlib.sha256(data).digest()
    assert service.book.held(f"127.0.0.1:{fault_server.port}") == 0


def test_retry_after_pauses_every_batch(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A 429 with Retry-After: 1 to one batch's request stops the other batch too: no request
    reaches the server from 0.25 s after the 429 (requests already on their way) until the
    second is over."""
    files = _serve(fault_server, make_data, 60, 16 * 1024)
    seen = {"count": 0}

    def tenth(record: object) -> bool:
        seen["count"] += 1
        return seen["count"] == 10

    for path in files:
        fault_server.set_faults(path, Faults(status=429, retry_after="1", when=tenth))
    service = LocalLeases(LeaseBook(4))
    outcomes = _two_workers(fault_server, files, tmp_path, service)
    assert outcomes.count(Outcome.DONE) == 60
    records = fault_server.requests
    refused = [r for r in records if r.status == 429]
    assert len(refused) == 1
    t0 = refused[0].started_s
    during = [r for r in records if t0 + 0.25 < r.started_s < t0 + 1.0]
    assert during == [], [
        (round(r.started_s - t0, 3), r.path, r.connection_id, r.status)
        for r in records
        if r.started_s > t0 - 0.05
    ][:30]
    assert any(r.started_s >= t0 + 1.0 for r in records)


def test_gate_counts_connections_through_a_socks_proxy(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Through microsocks (SOCKS5), two batches sharing a book of 3 slots never have more
    than 3 connections at the server (one per proxied connection), and reach 3."""
    files = _serve(fault_server, make_data, 24, 64 * 1024)
    for path in files:
        fault_server.set_faults(path, Faults(throttle_bytes_per_s=2 * 1024 * 1024))
    service = LocalLeases(LeaseBook(3))
    with microsocks(tmp_path) as proxy:
        outcomes = _two_workers(fault_server, files, tmp_path / "out", service, proxy.url)
    assert outcomes.count(Outcome.DONE) == 24
    assert fault_server.peak_connections == 3
    assert service.book.held(f"127.0.0.1:{fault_server.port}") == 0
