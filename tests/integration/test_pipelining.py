"""HTTP/1.1 pipelining in batches: the next file's request rides behind the previous answer on
its connection, and every way that can go wrong ends with the right bytes anyway. These are
the full path's (``lean=False``); the lean path's pipelining is tested in test_lean.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from pytest import MonkeyPatch

import segdl.net.interfaces
import segdl.net.transport
from segdl.net import pipelining
from segdl.run.batch import Outcome, download_many
from tests.server import FaultServer
from tests.server.faults import Faults

MakeData = Callable[..., bytes]
KIB = 1024


@pytest.fixture
def rides(monkeypatch: MonkeyPatch) -> list[bool]:
    """Every request that tried to ride a lane: True if its answer came on that lane."""
    outcomes: list[bool] = []
    real_request = segdl.net.transport._FollowOn.request

    def request(
        follow: segdl.net.transport._FollowOn, method: str, url: str, headers: Mapping[str, str]
    ) -> segdl.net.interfaces.Response | None:
        response = real_request(follow, method, url, headers)
        outcomes.append(response is not None)
        return response

    monkeypatch.setattr(segdl.net.transport._FollowOn, "request", request)
    return outcomes


def _serve(server: FaultServer, make_data: MakeData, sizes: list[int], rate: float) -> list[str]:
    for n, size in enumerate(sizes):
        server.add_file(f"/f{n}.bin", make_data(size, seed=n))
        server.set_faults(f"/f{n}.bin", Faults(throttle_bytes_per_s=rate))
    return [server.url(f"/f{n}.bin") for n in range(len(sizes))]


def _check(report_ok: bool, tmp_path: Path, make_data: MakeData, sizes: list[int]) -> None:
    assert report_ok
    for n, size in enumerate(sizes):
        assert (tmp_path / f"f{n}.bin").read_bytes() == make_data(size, seed=n), n


def test_a_batch_pipelines_its_files_on_few_connections(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, rides: list[bool]
) -> None:
    sizes = [200 * KIB] * 10
    urls = _serve(fault_server, make_data, sizes, rate=2_000_000)
    report = download_many(urls, parallel=2, connections=1, directory=tmp_path, lean=False)
    _check(report.ok, tmp_path, make_data, sizes)
    assert fault_server.peak_connections <= 2
    assert rides.count(True) >= 6, rides  # all but the first two could ride
    by_connection = {r.connection_id for r in fault_server.requests}
    assert len(by_connection) <= 2


def test_without_pipelining_nothing_rides(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, rides: list[bool]
) -> None:
    sizes = [100 * KIB] * 4
    urls = _serve(fault_server, make_data, sizes, rate=4_000_000)
    report = download_many(
        urls, parallel=2, connections=1, directory=tmp_path, lean=False, pipelining=False
    )
    _check(report.ok, tmp_path, make_data, sizes)
    assert rides == []


def test_small_bodies_are_read_to_their_last_byte_and_no_further(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, rides: list[bool]
) -> None:
    """Bodies around http.client's 8 KiB read buffer: reading one must never swallow the
    head of the answer pipelined behind it."""
    sizes = [1, 100, 5000, 8191, 8192, 8193, 12_000, 16_384, 20_000, 70_000] * 2
    urls = _serve(fault_server, make_data, sizes, rate=300_000)
    report = download_many(urls, parallel=1, connections=1, directory=tmp_path, lean=False)
    _check(report.ok, tmp_path, make_data, sizes)
    assert True in rides


def test_a_server_closing_after_each_answer_costs_nothing_but_a_resend(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, rides: list[bool]
) -> None:
    """Like a keep-alive request limit: the queued request is lost with the connection and
    sent again; pipelining stays on for the server (the close was not its fault)."""
    fault_server.max_requests_per_connection = 1
    sizes = [64 * KIB] * 6
    urls = _serve(fault_server, make_data, sizes, rate=1_000_000)
    report = download_many(urls, parallel=1, connections=1, directory=tmp_path, lean=False)
    _check(report.ok, tmp_path, make_data, sizes)
    assert rides and not any(rides)
    assert len(rides) >= 3  # it kept trying: a close is no reason to stop


def test_a_server_dropping_pipelined_requests_is_asked_again_then_no_more(
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
    rides: list[bool],
    monkeypatch: MonkeyPatch,
) -> None:
    fault_server.pipelined_requests = "ignore"
    monkeypatch.setattr(segdl.net.transport, "HEAD_WAIT_S", 0.3)
    sizes = [64 * KIB] * 6
    urls = _serve(fault_server, make_data, sizes, rate=500_000)
    report = download_many(urls, parallel=1, connections=1, directory=tmp_path, lean=False)
    _check(report.ok, tmp_path, make_data, sizes)
    assert rides == [False]  # no answer: sent again alone, and the server asked no more
    assert len(fault_server.requests) == len(sizes)


def test_an_answer_cut_short_sends_the_queued_request_elsewhere(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, rides: list[bool]
) -> None:
    sizes = [128 * KIB] * 4
    urls = _serve(fault_server, make_data, sizes, rate=1_000_000)
    fault_server.set_faults(
        "/f0.bin", Faults(throttle_bytes_per_s=1_000_000, reset_after=100 * KIB, times=1)
    )
    report = download_many(
        urls, parallel=1, connections=1, directory=tmp_path, lean=False, retry_wait_s=0
    )
    _check(report.ok, tmp_path, make_data, sizes)
    assert rides[0] is False  # the one queued behind the reset
    assert [item.outcome for item in report.items] == [Outcome.DONE] * 4


def test_no_lane_is_offered_behind_a_long_body(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, rides: list[bool]
) -> None:
    size = pipelining.FOLLOW_MAX_BYTES + 1
    sizes = [size, size]
    urls = _serve(fault_server, make_data, sizes, rate=50_000_000)
    report = download_many(urls, parallel=1, connections=1, directory=tmp_path, lean=False)
    _check(report.ok, tmp_path, make_data, sizes)
    assert rides == []


def test_over_tls_the_reader_of_the_answer_ahead_writes_the_request(
    tls_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
    rides: list[bool],
    ca_bundle: str,
) -> None:
    """One TLS connection must not be written and read by two threads at once."""
    sizes = [150 * KIB] * 6
    urls = _serve(tls_server, make_data, sizes, rate=2_000_000)
    report = download_many(
        urls, parallel=1, connections=1, directory=tmp_path, lean=False, ca_bundle=ca_bundle
    )
    _check(report.ok, tmp_path, make_data, sizes)
    assert rides.count(True) >= 3, rides
    assert len({r.connection_id for r in tls_server.requests}) == 1


def test_a_file_of_another_server_does_not_ride(
    make_data: MakeData, tmp_path: Path, rides: list[bool]
) -> None:
    with FaultServer() as one, FaultServer() as other:
        for server, name in ((one, "a"), (other, "b")):
            server.add_file(f"/{name}.bin", make_data(100 * KIB, seed=ord(name)))
            server.set_faults(f"/{name}.bin", Faults(throttle_bytes_per_s=1_000_000))
        urls = [one.url("/a.bin"), other.url("/b.bin")]
        report = download_many(urls, parallel=1, connections=1, directory=tmp_path, lean=False)
    assert report.ok
    assert (tmp_path / "b.bin").read_bytes() == make_data(100 * KIB, seed=ord("b"))
    assert rides == []
