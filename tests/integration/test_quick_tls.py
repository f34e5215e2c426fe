"""One file over ``https``: the early request goes over TLS, verified as the transport verifies,
once the options are known; a small answer is finished before urllib3 is imported, and any
other is read by urllib3 on that same connection, what was read of it first
(segdl.net.dial, segdl.run.quick)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from segdl.cli.exitcodes import ExitCode
from segdl.net import dial
from tests.cli_child import main_in_child
from tests.integration.test_cli import MakeData, run_cli
from tests.server import Faults, FaultServer


@pytest.fixture(autouse=True)
def _no_dial_left() -> Iterator[None]:
    yield
    dial.discard()


def _alone(argv: list[str]) -> tuple[int, bool, str]:
    """The command line in a process of its own (the head waited for as long as a loaded
    machine may take): its exit code, whether urllib3 was imported, and its stderr."""
    done = main_in_child(
        argv,
        before="import segdl.run.quick as q; q.HEAD_WAIT_S = 5.0",
        shown="'urllib3' in sys.modules",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    exit_code, urllib3 = done.stdout.split()
    return int(exit_code), urllib3 == "True", done.stderr


def test_a_small_https_file_is_finished_without_urllib3(
    tls_server: FaultServer, ca_bundle: str, make_data: MakeData, tmp_path: Path
) -> None:
    """The request sent early over the verified connection is the only one; urllib3 is
    never imported; nothing but the file is left."""
    data = make_data(16 * 1024)
    tls_server.add_file("/small.bin", data)
    out = tmp_path / "out" / "small.bin"
    out.parent.mkdir()
    argv = ["-q", "--ca-bundle", ca_bundle, "-o", str(out), tls_server.url("/small.bin")]
    assert _alone(argv)[:2] == (0, False)
    assert out.read_bytes() == data
    assert [(r.connection_id, r.range) for r in tls_server.requests] == [(0, "bytes=0-")]
    assert [p.name for p in out.parent.iterdir()] == ["small.bin"]


@pytest.mark.parametrize("late", [False, True])
def test_any_other_answer_is_urllib3s_on_the_same_tls_connection(
    tls_server: FaultServer, ca_bundle: str, make_data: MakeData, tmp_path: Path, late: bool
) -> None:
    """A large file (its head read here, with some of its body), or an answer that has not
    begun when it is looked for (a far server): urllib3 takes the verified connection with
    the request on it and reads the answer, what was read of it first; it sends nothing
    again. One connection, one request, every byte right."""
    data = make_data(3 * 1024 * 1024 if not late else 5000)

    def slow(request: object) -> bool:
        time.sleep(0.5)  # the answer begins late
        return False

    tls_server.add_file("/f.bin", data)
    if late:
        tls_server.set_faults("/f.bin", Faults(when=slow))
    out = tmp_path / "f.bin"
    argv = ["-q", "-x", "1", "--ca-bundle", ca_bundle, "-o", str(out), tls_server.url("/f.bin")]
    code, _, err = run_cli(*argv)
    assert (code, err) == (ExitCode.OK, "")
    assert out.read_bytes() == data
    assert [(r.connection_id, r.range) for r in tls_server.requests] == [(0, "bytes=0-")]


@pytest.mark.parametrize("informational", [0, 2])
def test_an_answer_not_for_this_path_is_read_by_the_transport_from_what_was_read(
    tls_server: FaultServer, ca_bundle: str, tmp_path: Path, informational: int
) -> None:
    """A 404 whose head was read here, or interim 1xx answers first: the transport reads
    them from the bytes read, then the socket, and reports as always (exit 8, one line);
    the server was asked once."""
    url = tls_server.url("/missing.bin")
    if informational:
        tls_server.add_file("/missing.bin", b"x")
        tls_server.set_faults("/missing.bin", Faults(informational=informational, status=404))
    out = tmp_path / "missing.bin"
    code, urllib3, err = _alone(["-q", "--ca-bundle", ca_bundle, "-o", str(out), url])
    assert (code, urllib3) == (ExitCode.SERVER_ERROR, True)
    assert err.strip() == f"segdl: error: 404 Not Found for {url}"
    assert len(tls_server.requests) == 1
    assert not out.exists()


def test_an_unverified_certificate_gets_no_early_request(
    tls_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A certificate the trusted CAs did not sign: the early handshake fails and nothing is
    sent; the transport's own handshake fails alike and says why (exit 5)."""
    tls_server.add_file("/f.bin", make_data(1000))
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    out = tmp_path / "f.bin"
    code, _, err = run_cli("-q", "--ca-bundle", str(other), "-o", str(out),
                           tls_server.url("/f.bin"))  # fmt: skip
    assert code == ExitCode.TLS, err
    assert "certificate verify failed" in err and len(err.splitlines()) == 1
    assert tls_server.requests == [] and not out.exists()


def test_insecure_sends_nothing_early_and_urllib3_makes_the_tls(
    tls_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """With --insecure no context of segdl's verifies (or skips verifying): the dialled
    socket stays plain TCP, urllib3 makes the TLS on it and warns, as before."""
    data = make_data(2000)
    tls_server.add_file("/f.bin", data)
    out = tmp_path / "f.bin"
    code, _, err = run_cli("-q", "-x", "1", "--insecure", "-o", str(out), tls_server.url("/f.bin"))
    assert code == ExitCode.OK, err
    assert out.read_bytes() == data
    assert [r.connection_id for r in tls_server.requests] == [0]


@pytest.mark.parametrize(
    "faults",
    [
        Faults(reset_after=5000, times=1),
        Faults(truncate_after=5000, times=1),
        Faults(throttle_bytes_per_s=40_000, times=1),
    ],
    ids=["reset", "truncated", "slow"],
)
def test_a_tls_answer_broken_or_slow_while_read_is_asked_for_again(
    tls_server: FaultServer, ca_bundle: str, make_data: MakeData, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, faults: Faults,
) -> None:  # fmt: skip
    """Read here over TLS and broken (reset, closed early) or slower than a second: nothing
    was written, and the engine asks again from byte 0 on a new connection."""
    from segdl.run import quick

    monkeypatch.setattr(quick, "HEAD_WAIT_S", 5.0)  # the head is read here
    data = make_data(60_000)
    tls_server.add_file("/f", data)
    tls_server.set_faults("/f", faults)
    out = tmp_path / "out" / "f"
    out.parent.mkdir()
    argv = ["-q", "-x", "1", "--ca-bundle", ca_bundle, "-o", str(out), tls_server.url("/f")]
    code, _, err = run_cli(*argv)
    assert code == ExitCode.OK, err
    assert out.read_bytes() == data
    # The answer given up on goes unlogged when the server could not finish sending it.
    assert 1 <= len(tls_server.requests) <= 2 and tls_server.requests[-1].connection_id > 0
    assert os.listdir(out.parent) == ["f"]
