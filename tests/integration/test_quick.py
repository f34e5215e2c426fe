"""One small file finished from the early request's answer, before the engine is imported
(segdl.run.quick); every other answer left to the engine as it always was."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from segdl.cli.exitcodes import ExitCode
from segdl.core.errors import Cancelled
from segdl.core.options import DownloadOptions
from segdl.core.progress import DownloadFinished, DownloadStarted, Event
from segdl.disk import commit
from segdl.net import dial
from segdl.net.early import peek_head
from segdl.run import leanplan, quick
from segdl.run.quick import quick_download
from tests.cli_child import main_in_child
from tests.client import wait_for
from tests.integration.test_cli import MakeData, run_cli
from tests.server import Faults, FaultServer


@pytest.fixture(autouse=True)
def _no_dial_left() -> Iterator[None]:
    yield
    dial.discard()


@pytest.fixture
def head_waited(monkeypatch: pytest.MonkeyPatch) -> None:
    """The head is waited for as long as a loaded machine may take to serve it (by default
    only a near server's, already there, is taken)."""
    monkeypatch.setattr(quick, "HEAD_WAIT_S", 5.0)


def _alone(argv: list[str]) -> tuple[int, bool, bool]:
    """The command line run in a process of its own: its exit code, and whether urllib3 and
    the engine were imported (the head waited for as long as a loaded machine may take)."""
    done = main_in_child(
        argv,
        before="import segdl.run.quick as q; q.HEAD_WAIT_S = 5.0",
        shown="'urllib3' in sys.modules, 'segdl.run.engine' in sys.modules",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    exit_code, urllib3, engine = done.stdout.split()
    return int(exit_code), urllib3 == "True", engine == "True"


def test_a_small_file_is_finished_without_urllib3_or_the_engine(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """The one request the command line sent early is the only one; urllib3 and the engine
    are never imported (what makes one small file cost about what importing urllib3 does)."""
    data = make_data(16 * 1024)
    fault_server.add_file("/small.bin", data)
    out = tmp_path / "small.bin"
    assert _alone(["-q", "-o", str(out), fault_server.url("/small.bin")]) == (0, False, False)
    assert out.read_bytes() == data
    assert [(r.connection_id, r.range) for r in fault_server.requests] == [(0, "bytes=0-")]
    assert sorted(os.listdir(tmp_path)) == ["small.bin"]  # no .part, state or lock left


@pytest.mark.parametrize("ignore_range", [False, True])
def test_a_large_file_is_the_engines_on_the_same_unread_answer(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, ignore_range: bool
) -> None:
    """Over 1 MiB: the head was only peeked at, so the engine reads the same answer on the
    same connection, as before this path existed: one connection, one request."""
    data = make_data(3 * 1024 * 1024)
    fault_server.add_file("/big.bin", data)
    fault_server.set_faults("/big.bin", Faults(ignore_range=ignore_range))
    out = tmp_path / "big.bin"
    code, _, err = run_cli("-q", "-x", "1", "-o", str(out), fault_server.url("/big.bin"))
    assert code == ExitCode.OK, err
    assert out.read_bytes() == data
    assert [r.connection_id for r in fault_server.requests] == [0]


@pytest.mark.usefixtures("head_waited")
@pytest.mark.parametrize("unnamed_work", [True, False])
def test_the_directory_is_tried_for_unnamed_files_only_for_a_small_file(
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unnamed_work: bool,
) -> None:
    """A large file's download never makes the test file that asks whether its directory
    takes unnamed files; a small file's directory that takes none leaves the answer unread,
    for the engine to read on the same connection: one request either way."""
    asked: list[Path] = []

    def unnamed_files_work(directory: Path) -> bool:
        asked.append(directory)
        return unnamed_work

    monkeypatch.setattr(commit, "unnamed_files_work", unnamed_files_work)
    for name, size in (("big.bin", 3 * 1024 * 1024), ("small.bin", 16 * 1024)):
        data = make_data(size)
        fault_server.add_file(f"/{name}", data)
        out = tmp_path / name
        code, _, err = run_cli("-q", "-x", "1", "-o", str(out), fault_server.url(f"/{name}"))
        assert code == ExitCode.OK, err
        assert out.read_bytes() == data
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            {"big.bin", name}
        )  # no .part or state left beside either
    assert asked == [tmp_path]  # the small file's directory, once
    assert [r.connection_id for r in fault_server.requests] == [0, 1]  # one request a run


@pytest.mark.parametrize(
    ("faults", "code", "connections"),
    [
        (Faults(status=404), ExitCode.SERVER_ERROR, [0]),
        (Faults(status=503, retry_after="0"), ExitCode.SERVER_ERROR, [0]),
        # The engine asks an encoded answer again without Range, as it does without this path.
        (Faults(extra_headers=(("Content-Encoding", "gzip"),)), ExitCode.OK, [0, 1]),
        (Faults(chunked=True), ExitCode.OK, [0]),
        (Faults(no_content_length=True), ExitCode.OK, [0]),
        (Faults(informational=2), ExitCode.OK, [0]),
    ],
    ids=["404", "503", "gzip", "chunked", "unframed", "interim"],
)
def test_answers_not_promising_a_small_whole_file_are_left_unread(
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
    faults: Faults,
    code: int,
    connections: list[int],
) -> None:
    """An error, an encoding, a body of unknown length, interim answers: the engine reads the
    answer itself, on the early socket (its first request is the early one), and decides."""
    data = make_data(20_000)
    fault_server.add_file("/f", data)
    fault_server.set_faults("/f", faults)
    out = tmp_path / "f"
    got, _, err = run_cli("-q", "-x", "1", "--retries", "0", "-o", str(out), fault_server.url("/f"))
    assert got == code, err
    assert out.exists() == (code == ExitCode.OK)
    if code == ExitCode.OK:
        assert out.read_bytes() == data
    # An error's body is never read: its answer may be logged after segdl has exited.
    wait_for(lambda: len(fault_server.requests) >= len(connections))
    assert [r.connection_id for r in fault_server.requests] == connections


def test_a_redirect_is_followed_by_the_engine(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    data = make_data(5000)
    fault_server.add_file("/to", data)
    fault_server.add_redirect("/from", "/to")
    out = tmp_path / "f"
    code, _, err = run_cli("-q", "-o", str(out), fault_server.url("/from"))
    assert code == ExitCode.OK, err
    assert out.read_bytes() == data
    assert [r.path for r in fault_server.requests] == ["/from", "/to"]


@pytest.mark.parametrize(
    "faults",
    [Faults(reset_after=5000, times=1), Faults(truncate_after=5000, times=1)],
    ids=["reset", "truncated"],
)
@pytest.mark.usefixtures("head_waited")
def test_an_answer_broken_while_read_is_asked_for_again(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, faults: Faults
) -> None:
    """Read here and broken: nothing was written, and the engine asks again from byte 0."""
    data = make_data(200_000)
    fault_server.add_file("/f", data)
    fault_server.set_faults("/f", faults)
    out = tmp_path / "f"
    code, _, err = run_cli("-q", "-x", "1", "-o", str(out), fault_server.url("/f"))
    assert code == ExitCode.OK, err
    assert out.read_bytes() == data
    assert len(fault_server.requests) == 2
    assert sorted(os.listdir(tmp_path)) == ["f"]


@pytest.mark.usefixtures("head_waited")
def test_a_slow_body_is_the_engines(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A body that takes more than a second is given up here and asked for again by the
    engine, which watches its rate (a trickle fails there as a stall)."""
    data = make_data(60_000)
    fault_server.add_file("/f", data)
    fault_server.set_faults("/f", Faults(throttle_bytes_per_s=40_000))
    out = tmp_path / "f"
    code, _, err = run_cli("-q", "-x", "1", "-o", str(out), fault_server.url("/f"))
    assert code == ExitCode.OK, err
    assert out.read_bytes() == data
    assert len(fault_server.requests) == 2


def test_a_head_not_there_yet_is_left_to_the_engine(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A head not there when it is looked for (a far or slow server): the engine, imported
    meanwhile as it always was, reads it on the same connection."""
    data = make_data(4000)
    fault_server.add_file("/f", data)
    fault_server.set_faults("/f", Faults(head_bytes_per_s=300))
    out = tmp_path / "f"
    argv = ["-q", "-x", "1", "--timeout", "10", "-o", str(out), fault_server.url("/f")]
    code, _, err = run_cli(*argv)
    assert code == ExitCode.OK, err
    assert out.read_bytes() == data
    assert [r.connection_id for r in fault_server.requests] == [0]


@pytest.mark.usefixtures("head_waited")
def test_a_wrong_checksum_fails_as_the_engine_fails_it(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    data = make_data(3000)
    fault_server.add_file("/f", data)
    out = tmp_path / "f"
    good = hashlib.sha256(data).hexdigest()
    code, _, err = run_cli("-o", str(out), "--checksum", f"sha256={good}", fault_server.url("/f"))
    assert code == ExitCode.OK and "sha256 verified" in err, err
    out.unlink()
    code, _, err = run_cli("-q", "-o", str(out), "--checksum", f"sha256={'0' * 64}",
                           fault_server.url("/f"))  # fmt: skip
    assert code == ExitCode.INTEGRITY, err
    assert not out.exists()


def _early(url: str) -> None:
    dial.dial(url, 5.0, dial.first_request(url, DownloadOptions().user_agent))


@pytest.mark.usefixtures("head_waited")
def test_a_name_taken_meanwhile_is_never_linked_over(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """The file is linked to its name only if nothing is there: a name another program took
    after the command line looked is left alone, and the engine (which says so) gets it."""
    fault_server.add_file("/f", make_data(3000))
    out = tmp_path / "f"
    out.write_bytes(b"someone else's")
    _early(fault_server.url("/f"))
    got = quick_download(fault_server.url("/f"), out, DownloadOptions(), lambda e: None,
                         threading.Event())  # fmt: skip
    assert got is None
    assert out.read_bytes() == b"someone else's"
    assert sorted(os.listdir(tmp_path)) == ["f"]


@pytest.mark.usefixtures("head_waited")
def test_events_and_result_are_a_downloads(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    data = make_data(10_000)
    fault_server.add_file("/f", data)
    events: list[Event] = []
    _early(fault_server.url("/f"))
    out = tmp_path / "f"
    result = quick_download(fault_server.url("/f"), out, DownloadOptions(), events.append,
                            threading.Event())  # fmt: skip
    assert result is not None and result.size_bytes == len(data) and result.ranged
    assert result.path == out and out.read_bytes() == data
    assert [type(e) for e in events] == [DownloadStarted, DownloadFinished]
    assert isinstance(events[0], DownloadStarted) and events[0].size_bytes == len(data)


@pytest.mark.usefixtures("head_waited")
def test_a_cancel_stops_it_with_nothing_written(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    fault_server.add_file("/f", make_data(100_000))
    fault_server.set_faults("/f", Faults(throttle_bytes_per_s=50_000))
    _early(fault_server.url("/f"))
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(Cancelled):
        quick_download(fault_server.url("/f"), tmp_path / "f", DownloadOptions(),
                       lambda e: None, cancel)  # fmt: skip
    assert os.listdir(tmp_path) == []


def test_a_peek_reads_nothing_off_the_socket() -> None:
    """The head is parsed from MSG_PEEK: every byte is still there for whoever reads next;
    a head in two writes is waited for; interim answers and non-HTTP are not for the peek."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabc"
        theirs.sendall(answer[:20])
        threading.Timer(0.05, theirs.sendall, [answer[20:]]).start()
        head = peek_head(ours, 2.0)
        assert head is not None and head.status == 200 and head.values("x-a") == ["b"]
        assert ours.recv(1000) == answer
        theirs.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        assert peek_head(ours, 1.0) is None
        ours.recv(1000)
        theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")  # never ends within the wait
        assert peek_head(ours, 0.1) is None
        ours.recv(1000)
        theirs.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")
        assert peek_head(ours, 1.0) is None


def test_a_file_over_max_size_is_left_to_the_engine_to_refuse(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    fault_server.add_file("/f", make_data(3000))
    out = tmp_path / "f"
    code, _, err = run_cli("-q", "--max-size", "1K", "-o", str(out), fault_server.url("/f"))
    assert code == ExitCode.FILE_IO, err
    assert not out.exists()
    assert [r.connection_id for r in fault_server.requests] == [0]


@pytest.mark.parametrize("where", ["cwd", "dir"])
def test_a_file_named_by_its_url_is_finished_without_urllib3_or_the_engine(
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """``segdl URL`` and ``segdl -d DIR URL`` take the quick way too, under the name the
    engine would give the file."""
    data = make_data(16 * 1024)
    fault_server.add_file("/files/named.bin", data)
    monkeypatch.chdir(tmp_path)
    argv = ["-q", "-d", "out"] if where == "dir" else ["-q"]
    (tmp_path / "out").mkdir()
    assert _alone([*argv, fault_server.url("/files/named.bin")]) == (0, False, False)
    folder = tmp_path / "out" if where == "dir" else tmp_path
    assert (folder / "named.bin").read_bytes() == data
    assert [r.connection_id for r in fault_server.requests] == [0]
    assert sorted(os.listdir(folder)) == ["named.bin"] if where == "dir" else ["named.bin", "out"]


@pytest.mark.usefixtures("head_waited")
@pytest.mark.parametrize(
    "disposition",
    [
        'attachment; filename="report.csv"',
        "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
        'attachment; filename="../../escape\x01 me.txt"',
        'attachment; filename=".."',
    ],
)
def test_the_quick_way_names_a_file_as_the_engine_does(
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    disposition: str,
) -> None:
    """The server's Content-Disposition (sanitised, kept inside the directory) or else the
    URL: the same name whichever way the file comes."""
    data = make_data(16 * 1024)
    fault_server.add_file("/d/from-url.txt", data)
    fault_server.set_faults(
        "/d/from-url.txt", Faults(extra_headers=(("Content-Disposition", disposition),))
    )
    quick_dir, engine_dir = tmp_path / "quick", tmp_path / "engine"
    quick_dir.mkdir()
    engine_dir.mkdir()
    code, _, err = run_cli("-q", "-d", str(quick_dir), fault_server.url("/d/from-url.txt"))
    assert code == ExitCode.OK, err
    monkeypatch.setattr(leanplan, "why_not_lean", lambda *_: "the engine's, for the comparison")
    code, _, err = run_cli("-q", "-d", str(engine_dir), fault_server.url("/d/from-url.txt"))
    assert code == ExitCode.OK, err
    names = sorted(os.listdir(engine_dir))
    assert len(names) == 1 and sorted(os.listdir(quick_dir)) == names
    assert (quick_dir / names[0]).read_bytes() == data
    assert len(fault_server.requests) == 2  # one each: neither way asked twice


@pytest.mark.usefixtures("head_waited")
@pytest.mark.parametrize(
    ("leftover", "argv", "code"),
    [
        ("named.bin", [], ExitCode.OUTPUT_EXISTS),  # --if-exists error: the file is kept
        ("named.bin", ["--if-exists", "skip"], ExitCode.OK),
        ("named.bin.part", [], ExitCode.OK),  # a partial download: resumed or started over
        ("named.bin.segdl-lock", [], ExitCode.LOCKED),  # another segdl's, maybe: the engine's
    ],
)
def test_anything_at_the_name_leaves_the_answer_to_the_engine(
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    leftover: str,
    argv: list[str],
    code: int,
) -> None:
    """A file, a partial download or a lock at the name the answer gets: the engine decides,
    as it always did; the quick way never links a file there."""
    data = make_data(16 * 1024)
    fault_server.add_file("/named.bin", data)
    old = b"an earlier file, never to be clobbered"
    (tmp_path / leftover).write_bytes(old if leftover == "named.bin" else b"")
    linked: list[Path] = []
    real_stage = commit.GroupCommit.stage

    def stage(
        self: commit.GroupCommit,
        directory: Path,
        body: bytes,
        final_path: Path,
        *,
        overwrite: bool,
        token: object,
    ) -> None:
        linked.append(final_path)
        real_stage(self, directory, body, final_path, overwrite=overwrite, token=token)

    monkeypatch.setattr(commit.GroupCommit, "stage", stage)
    got, _, err = run_cli("-q", "-d", str(tmp_path), *argv, fault_server.url("/named.bin"))
    assert got == code, err
    assert linked == []
    if leftover == "named.bin":
        assert (tmp_path / "named.bin").read_bytes() == old
    elif code == ExitCode.OK:
        assert (tmp_path / "named.bin").read_bytes() == data
    else:
        assert not (tmp_path / "named.bin").exists()


@pytest.mark.usefixtures("head_waited")
def test_a_directory_not_there_yet_is_made_by_the_engine(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """-d names a directory the engine makes (with its parents): the quick way leaves it to."""
    data = make_data(16 * 1024)
    fault_server.add_file("/named.bin", data)
    out = tmp_path / "a" / "b"
    code, _, err = run_cli("-q", "-d", str(out), fault_server.url("/named.bin"))
    assert code == ExitCode.OK, err
    assert (out / "named.bin").read_bytes() == data
    assert [r.connection_id for r in fault_server.requests] == [0]
