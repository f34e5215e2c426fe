"""Faults and politeness: transient failures are survived, permanent ones fail fast, and a
server that wants fewer connections gets fewer."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import segdl
from segdl.cli.exitcodes import ExitCode
from segdl.cli.main import main
from segdl.core.progress import NoticeKind
from tests.events import Recorder
from tests.server import FaultServer
from tests.server.faults import Faults
from tests.server.records import RequestRecord
from tests.server.wire import http_date

KIB = 1024
MIB = 1024 * KIB
MakeData = Callable[..., bytes]


def logged(server: FaultServer, at_least: int = 1) -> list[RequestRecord]:
    """The request log once it holds ``at_least`` records (a response is logged as it ends)."""
    deadline = time.monotonic() + 2
    while len(server.requests) < at_least and time.monotonic() < deadline:
        time.sleep(0.01)
    return server.requests


def run_cli(*argv: str) -> tuple[int, str]:
    stderr = io.StringIO()
    code = main(["-q", *argv], stdout=io.StringIO(), stderr=stderr)
    return code, stderr.getvalue()


def test_reset_on_every_first_attempt_resumes_from_the_last_byte(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, body_path: str
) -> None:
    """Each initial range is reset mid-body; its retry starts where the bytes stopped."""
    data = make_data(4 * MIB)
    fault_server.add_file("/f.bin", data)
    seen: set[str] = set()
    lock = threading.Lock()

    def first_attempt(record: RequestRecord) -> bool:
        with lock:
            fresh = record.range not in seen
            seen.add(record.range or "")
        start = int((record.range or "bytes=0-")[6:].split("-")[0])
        return fresh and start % MIB == 0

    fault_server.set_faults("/f.bin", Faults(reset_after=200_000, when=first_attempt))
    result = segdl.download(
        fault_server.url("/f.bin"), tmp_path / "o", connections=4, retry_wait_s=0.05
    )
    assert (tmp_path / "o").read_bytes() == data and result.ranged
    starts = sorted(int((r.range or "")[6:].split("-")[0]) for r in fault_server.requests)
    retried = [s for s in starts if s % MIB]
    assert len(retried) == 4  # one retry per reset range...
    assert all(0 < s % MIB <= 200_000 for s in retried)  # ...from where its bytes stopped


def test_stalled_connection_times_out_and_is_retried(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, body_path: str
) -> None:
    """A connection that goes silent costs about the timeout, not forever."""
    data = make_data(4 * MIB)
    fault_server.add_file("/f.bin", data)
    faults = Faults(stall_after=300_000, stall_s=30, times=1, when=lambda r: r.range != "bytes=0-")
    fault_server.set_faults("/f.bin", faults)
    started = time.monotonic()
    segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=4, timeout_s=1.0)
    elapsed_s = time.monotonic() - started
    assert (tmp_path / "o").read_bytes() == data
    assert 1.0 <= elapsed_s < 3.5


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_honoured(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, status: int
) -> None:
    """503/429 with Retry-After (seconds, or an HTTP date) is waited out, then succeeds;
    the error page is never written into the file."""
    data = make_data(2 * MIB)
    fault_server.add_file("/f.bin", data)
    retry_after = "2" if status == 503 else http_date(time.time() + 3)
    fault_server.set_faults("/f.bin", Faults(status=status, retry_after=retry_after, times=1))
    events = Recorder()
    started = time.monotonic()
    segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=2, progress=events)
    elapsed_s = time.monotonic() - started
    assert (tmp_path / "o").read_bytes() == data
    assert 1.9 <= elapsed_s < 5.0
    assert [r.status for r in fault_server.requests][:2] == [status, 206]
    assert events.notices(NoticeKind.CONNECTION_RETRY)


def test_retry_after_beyond_the_cap_fails(fault_server: FaultServer, tmp_path: Path) -> None:
    """A server asking for an hour's pause is not waited for."""
    fault_server.add_file("/f.bin", b"x" * 1000)
    fault_server.set_faults("/f.bin", Faults(status=503, retry_after="3600"))
    code, err = run_cli(
        "--max-retry-after", "10", "-o", str(tmp_path / "o"), fault_server.url("/f.bin")
    )
    assert code == ExitCode.SERVER_ERROR and "503" in err
    time.sleep(0.3)
    assert len(logged(fault_server)) == 1


def test_permanent_error_is_not_retried(fault_server: FaultServer, tmp_path: Path) -> None:
    """A 403 is final: one request, exit 8, a one-line message."""
    fault_server.add_file("/f.bin", b"x" * 1000)
    fault_server.set_faults("/f.bin", Faults(status=403))
    code, err = run_cli("-o", str(tmp_path / "o"), fault_server.url("/f.bin"))
    assert code == ExitCode.SERVER_ERROR and "403" in err and err.count("\n") == 1
    time.sleep(0.3)  # a retry would have come by now
    assert len(logged(fault_server)) == 1


@pytest.mark.parametrize("over_cap", ["503", "close"])
def test_server_capping_connections_gets_fewer(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, over_cap: str
) -> None:
    """A server allowing 3 connections while 16 are asked for: the download succeeds with
    fewer connections instead of failing or hammering it."""
    data = make_data(16 * MIB)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=4 * MIB))
    fault_server.max_connections = 3
    fault_server.over_cap = over_cap  # type: ignore[assignment]
    events = Recorder()
    segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=16, progress=events)
    assert (tmp_path / "o").read_bytes() == data
    lowered = events.notices(NoticeKind.CONNECTIONS_LOWERED)
    assert lowered, "segdl should say it lowered its connection count"
    # Backed off: each turned-away connection was given up, not retried in a loop.
    assert fault_server.rejected_connections <= 15  # 13 extra connections, each turned away once
    assert fault_server.peak_connections <= 3


def test_endless_1xx_is_refused_quickly(fault_server: FaultServer, tmp_path: Path) -> None:
    """A server sending 1xx responses forever is an error, not a hang."""
    fault_server.add_file("/f.bin", b"x" * 1000)
    fault_server.set_faults("/f.bin", Faults(informational=1_000_000))
    started = time.monotonic()
    code, err = run_cli("-o", str(tmp_path / "o"), fault_server.url("/f.bin"))
    assert code == ExitCode.PROTOCOL and "1xx" in err
    assert time.monotonic() - started < 5


def test_a_few_1xx_are_fine(fault_server: FaultServer, make_data: MakeData, tmp_path: Path) -> None:
    """Interim responses before the real one are skipped."""
    data = make_data(MIB + 5)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(informational=3))
    segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=2)
    assert (tmp_path / "o").read_bytes() == data


@pytest.mark.parametrize("value", ["+5", "1_000", "5, 6", "-1"])
def test_hostile_content_length_is_refused(
    fault_server: FaultServer, tmp_path: Path, value: str
) -> None:
    """A Content-Length that is not plain digits (or conflicts) is never believed."""
    fault_server.add_file("/f.bin", b"x" * 1000)
    fault_server.set_faults(
        "/f.bin", Faults(ignore_range=True, extra_headers=(("Content-Length", value),))
    )
    code, err = run_cli("--retries", "0", "-o", str(tmp_path / "o"), fault_server.url("/f.bin"))
    assert code in (ExitCode.PROTOCOL, ExitCode.NETWORK), err
    assert not (tmp_path / "o").exists()


def test_no_space_is_refused_before_any_byte(fault_server: FaultServer, tmp_path: Path) -> None:
    """A file larger than the free space is refused up front: exit 3, nothing written."""
    fault_server.add_file("/f.bin", b"x" * 100_000)
    fault_server.set_faults("/f.bin", Faults(content_range_total=2**60))
    code, err = run_cli("-o", str(tmp_path / "o"), fault_server.url("/f.bin"))
    assert code == ExitCode.FILE_IO and "no space left" in err
    assert list(tmp_path.iterdir()) == []


def test_max_size_is_refused_before_any_byte(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """--max-size refuses a larger file with a clear message."""
    fault_server.add_file("/f.bin", make_data(2 * MIB))
    code, err = run_cli("--max-size", "1M", "-o", str(tmp_path / "o"), fault_server.url("/f.bin"))
    assert code == ExitCode.FILE_IO and "more than the maximum" in err
    assert list(tmp_path.iterdir()) == []
