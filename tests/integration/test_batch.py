"""Batches: input files with mirrors and options, -j, the shared per-host cap, reruns."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from pytest import MonkeyPatch

import segdl
from segdl.cli.exitcodes import ExitCode
from segdl.cli.main import main
from segdl.core.progress import NoticeKind
from segdl.disk.storage import PartFile
from segdl.run.batch import Job, Outcome, download_many, parse_input_file
from tests.server import FaultServer
from tests.server.faults import Faults

MIB = 1024 * 1024
MakeData = Callable[..., bytes]


def run_cli(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def test_parse_input_file_in_aria2_format() -> None:
    """TAB-separated mirrors, indented per-file options, comments and blank lines."""
    jobs = parse_input_file(
        "# a comment\n"
        "http://a/x.bin\thttp://b/x.bin\n"
        "  out=renamed.bin\n"
        "  dir=sub\n"
        "  header=X-Token: 1\n"
        "  connections=3\n"
        "\n"
        "http://a/y.bin\n"
    )
    assert jobs[0].urls == ("http://a/x.bin", "http://b/x.bin")
    assert dict(jobs[0].options) == {
        "dest": "renamed.bin",
        "directory": "sub",
        "headers": {"X-Token": "1"},
        "connections": 3,
    }
    assert jobs[1] == Job(("http://a/y.bin",))


def test_input_file_with_mirrors_options_and_a_dead_mirror(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A dead first mirror does not fail the file; per-file out/dir options are obeyed."""
    a, b, c = make_data(2 * MIB, seed=1), make_data(MIB, seed=2), make_data(3000, seed=3)
    fault_server.add_file("/a.bin", a)
    fault_server.add_file("/b.bin", b)
    fault_server.add_file("/c.bin", c)
    dead = "http://127.0.0.1:9/a.bin"
    listing = tmp_path / "list.txt"
    listing.write_text(
        f"{dead}\t{fault_server.url('/a.bin')}\n"
        f"{fault_server.url('/b.bin')}\n"
        f"  out={tmp_path / 'sub' / 'bee.bin'}\n"
        f"{fault_server.url('/c.bin')}\n"
        "  connections=1\n"
    )
    (tmp_path / "sub").mkdir()
    code, _, err = run_cli(
        "-q", "-j", "2", "--retries", "0", "-d", str(tmp_path), "-i", str(listing)
    )
    assert code == ExitCode.OK, err
    assert (tmp_path / "a.bin").read_bytes() == a
    assert (tmp_path / "sub" / "bee.bin").read_bytes() == b
    assert (tmp_path / "c.bin").read_bytes() == c


def test_per_host_cap_holds_across_the_batch(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """4 files at once with 8 connections each never open more than the cap (3) in all."""
    for n in range(4):
        fault_server.add_file(f"/f{n}.bin", make_data(4 * MIB, seed=n))
        fault_server.set_faults(f"/f{n}.bin", Faults(throttle_bytes_per_s=8 * MIB))
    urls = [fault_server.url(f"/f{n}.bin") for n in range(4)]
    # The server refuses a 4th connection (after a 0.1 s grace for a closing one to go).
    fault_server.max_connections = 3
    fault_server.over_cap = "503"
    report = download_many(
        urls, parallel=4, max_connections_per_host=3, connections=8, directory=tmp_path
    )
    assert report.ok and report.count(Outcome.DONE) == 4
    assert fault_server.rejected_connections == 0
    for n in range(4):
        assert (tmp_path / f"f{n}.bin").read_bytes() == make_data(4 * MIB, seed=n)


def test_rerunning_a_half_failed_batch_completes_it(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """First run: one file fails (exit non-zero, reported); rerun with skip finishes it."""
    good, later = make_data(1000, seed=1), make_data(2000, seed=2)
    fault_server.add_file("/good.bin", good)
    fault_server.add_file("/later.bin", later)
    fault_server.set_faults("/later.bin", Faults(status=404))
    urls = [fault_server.url("/good.bin"), fault_server.url("/later.bin")]
    code, out, err = run_cli(
        "--progress", "json", "-d", str(tmp_path), "--if-exists", "skip", *urls
    )
    summary = json.loads(out.splitlines()[-1])
    assert code == ExitCode.SERVER_ERROR
    assert (summary["done"], summary["failed"]) == (1, 1)
    assert "404" in summary["failures"][0]["error"]
    fault_server.set_faults("/later.bin")
    code, _, err = run_cli("-d", str(tmp_path), "--if-exists", "skip", *urls)
    assert code == ExitCode.OK, err
    assert "1 done, 1 already complete, 0 skipped, 0 failed" in err
    assert (tmp_path / "later.bin").read_bytes() == later


def test_remote_time_sets_the_modification_time(fault_server: FaultServer, tmp_path: Path) -> None:
    """--remote-time gives the file the server's Last-Modified."""
    fault_server.add_file("/f.bin", b"x" * 100, last_modified=1_600_000_000.0)
    code, _, err = run_cli("-q", "--remote-time", "-d", str(tmp_path), fault_server.url("/f.bin"))
    assert code == ExitCode.OK, err
    assert os.stat(tmp_path / "f.bin").st_mtime == 1_600_000_000.0
    header = fault_server.requests[0]
    assert header.method == "GET"
    assert parsedate_to_datetime("Sun, 13 Sep 2020 12:26:40 GMT").timestamp() == 1_600_000_000.0


def test_several_positional_urls_are_separate_downloads(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """`segdl URL1 URL2 -d DIR` downloads both, as wget and curl would."""
    fault_server.add_file("/x.bin", make_data(100, seed=1))
    fault_server.add_file("/y.bin", make_data(200, seed=2))
    code, _, err = run_cli(
        "-d", str(tmp_path), fault_server.url("/x.bin"), fault_server.url("/y.bin")
    )
    assert code == ExitCode.OK, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".segdl-journal", "x.bin", "y.bin"]
    assert segdl.__version__


def test_mirrors_share_the_work_and_bad_ones_are_dropped(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Ranges go to every good mirror; one reporting another size, a dead one and ones that
    are no HTTP URL are dropped with a note; the file is exact."""
    data = make_data(8 * MIB)
    with FaultServer() as second, FaultServer() as liar:
        for server in (fault_server, second):
            server.add_file("/f.bin", data, etag='"v1"')
            server.set_faults("/f.bin", Faults(throttle_bytes_per_s=4 * MIB))
        liar.add_file("/f.bin", data + b"extra", etag='"v1"')
        events: list[object] = []
        segdl.download(
            fault_server.url("/f.bin"),
            tmp_path / "o",
            connections=6,
            mirrors=[
                second.url("/f.bin"),
                liar.url("/f.bin"),
                "http://127.0.0.1:9/f.bin",
                "http://[::1/f.bin",  # unparsable
                "ftp://127.0.0.1/f.bin",
            ],
            progress=events.append,
        )
        assert (tmp_path / "o").read_bytes() == data
        served_by_second = sum(r.body_bytes_sent for r in second.requests if r.status == 206)
        assert served_by_second > MIB  # the mirror really took part
        assert len(liar.requests) == 1  # asked once (its size), never used for ranges
    dropped = [e for e in events if getattr(e, "kind", None) is NoticeKind.MIRROR_DROPPED]
    assert len(dropped) == 4


def test_downloader_takes_work_over_time_with_callbacks(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Files submitted one by one each get a future and a callback with their report."""
    for n in range(3):
        fault_server.add_file(f"/f{n}.bin", make_data(5000, seed=n))
    seen: list[str] = []
    with segdl.Downloader(parallel=2, directory=tmp_path) as downloader:
        futures = [
            downloader.submit(fault_server.url(f"/f{n}.bin"), lambda r: seen.append(r.job.url))
            for n in range(3)
        ]
        reports = [f.result() for f in futures]
    assert [r.outcome for r in reports] == [Outcome.DONE] * 3
    assert sorted(seen) == sorted(fault_server.url(f"/f{n}.bin") for n in range(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0.bin", "f1.bin", "f2.bin"]


def test_the_next_file_starts_while_the_last_one_syncs(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, monkeypatch: MonkeyPatch
) -> None:
    """With one file at a time, the second file's request goes out while the first is still
    being synced and renamed: a batch's places are on the network, not on the disk."""
    for n in range(2):
        fault_server.add_file(f"/f{n}.bin", make_data(5000, seed=n))
    real_finalize = PartFile.finalize
    overlapped: list[bool] = []

    def slow_finalize(part: PartFile, *args: Any, **kwargs: Any) -> Path:
        if part.final_path.name == "f0.bin":
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and len(fault_server.requests) < 2:
                time.sleep(0.01)
            overlapped.append(len(fault_server.requests) == 2)
        return real_finalize(part, *args, **kwargs)

    monkeypatch.setattr(PartFile, "finalize", slow_finalize)
    urls = [fault_server.url(f"/f{n}.bin") for n in range(2)]
    report = download_many(urls, parallel=1, directory=tmp_path, lean=False)
    assert [item.outcome for item in report.items] == [Outcome.DONE] * 2
    assert overlapped == [True]
    assert (tmp_path / "f1.bin").read_bytes() == make_data(5000, seed=1)


def test_a_batch_reuses_its_threads(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, monkeypatch: MonkeyPatch
) -> None:
    """40 small files start a bounded set of threads, not one or two per file: the files
    share the batch's connection threads, and none needs a checkpoint thread."""
    for n in range(40):
        fault_server.add_file(f"/f{n}.bin", make_data(20_000, seed=n))
    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    urls = [fault_server.url(f"/f{n}.bin") for n in range(40)]
    report = download_many(urls, parallel=2, directory=tmp_path)
    monkeypatch.undo()
    assert report.ok and report.count(Outcome.DONE) == 40
    assert not [name for name in started if name.startswith("segdl-checkpoint")]
    # At most 3 x parallel job threads. A connection thread starts only when none is idle;
    # one freed an instant too late may add one, but far from one per file.
    assert len([name for name in started if name.startswith("segdl-job")]) <= 6
    assert len([name for name in started if name.startswith("segdl_")]) <= 16, started
    for n in range(40):
        assert (tmp_path / f"f{n}.bin").read_bytes() == make_data(20_000, seed=n)


def test_batch_bar_display_runs_to_the_end(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """--progress bar in a batch draws an overall bar and per-file lines without failing."""
    for n in range(3):
        fault_server.add_file(f"/f{n}.bin", make_data(MIB, seed=n))
    urls = [fault_server.url(f"/f{n}.bin") for n in range(3)]
    code, _, err = run_cli("--progress", "bar", "-d", str(tmp_path), *urls)
    assert code == ExitCode.OK, err
    assert "3/3 files" in err and "3 done, 0 skipped, 0 failed" in err


def test_a_file_whose_journal_line_the_disk_refuses_ends_with_a_failed_event(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, monkeypatch: MonkeyPatch
) -> None:
    """The full path names a file, then the batch writes its journal line; a full disk that
    refuses the line fails the file (it is removed, so a rerun fetches it). Its events
    end with that failure, not with the DownloadFinished the rename sent: a reader of
    ``--progress json`` sees how the file ended."""
    import errno

    from segdl.core.progress import DownloadFailed, DownloadFinished
    from segdl.disk.journal import Journals

    data = make_data(3 * 1024 * 1024)  # larger than a small file: the full path's
    fault_server.add_file("/big.bin", data)

    def disk_full(self: Journals, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Journals, "record_many", disk_full)
    events: list[object] = []
    url = fault_server.url("/big.bin")
    report = download_many([url], directory=tmp_path, progress=events.append)
    assert report.items[0].outcome is Outcome.FAILED
    assert "in its journal" in str(report.items[0].error)
    assert not (tmp_path / "big.bin").exists()
    ends = [type(e) for e in events if isinstance(e, (DownloadFinished, DownloadFailed))]
    assert ends == [DownloadFinished, DownloadFailed]
    failed = events[-1]
    assert isinstance(failed, DownloadFailed) and failed.url == url


def _retries_asked(monkeypatch: MonkeyPatch) -> list[int]:
    """The retries each file that goes the full way is given, in the order they start."""
    from segdl.run import engine

    retries: list[int] = []
    real = engine.download

    def spy(url: str, *args: Any, **kwargs: Any) -> Any:
        retries.append(kwargs["options"].retries)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(engine, "download", spy)
    return retries


def test_a_server_that_refuses_the_batch_is_tried_once_by_its_other_files(
    tmp_path: Path, monkeypatch: MonkeyPatch
) -> None:
    """Nothing listens: the first files spend their retries on it, each file after that
    tries once (not every file its whole budget: 8 s each with the defaults); every one
    fails with the refusal, named in one line of the summary."""
    import socket

    from segdl.core.errors import ConnectError

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    retries = _retries_asked(monkeypatch)
    urls = [f"http://127.0.0.1:{port}/f{n}.bin" for n in range(12)]
    report = download_many(urls, parallel=2, directory=tmp_path, retries=3, retry_wait_s=0.01)
    assert len(report.failures) == 12
    assert all(isinstance(item.error, ConnectError) for item in report.failures)
    assert retries[:2] == [3, 3] and retries.count(3) <= 3 and retries[-8:] == [0] * 8


def test_a_server_that_drops_connection_attempts_is_tried_once_by_its_other_files(
    tmp_path: Path, monkeypatch: MonkeyPatch
) -> None:
    """A listener whose queue is full: the kernel drops further connection attempts, and
    each waits out the timeout. The first files spend their retries, the others one timeout
    each (not the whole budget); every one fails as a connect timeout."""
    import socket

    from segdl.core.errors import ConnectTimeout

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):  # the queue's one place, taken
            retries = _retries_asked(monkeypatch)
            urls = [f"http://127.0.0.1:{port}/f{n}.bin" for n in range(6)]
            report = download_many(urls, parallel=2, directory=tmp_path, retries=2,
                                   retry_wait_s=0.01, timeout_s=0.3)  # fmt: skip
    assert len(report.failures) == 6
    assert all(isinstance(item.error, ConnectTimeout) for item in report.failures)
    assert retries[:2] == [2, 2] and retries.count(2) <= 3 and retries[-3:] == [0] * 3
