"""The lean batch path for small files: pipelined deeper than one, and every way a server can
get pipelining wrong still ends with every file right (tests/server and nginx)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from segdl.run import leanplan
from segdl.run.batch import Job, Outcome, download_many
from tests.cli_child import main_in_child
from tests.nginx import Nginx
from tests.server import FaultServer
from tests.server.faults import Faults

MakeData = Callable[..., bytes]
KIB = 1024


def _serve(server: FaultServer, make_data: MakeData, count: int, rate: float | None = None
           ) -> list[str]:  # fmt: skip
    for n in range(count):
        server.add_file(f"/f{n}.bin", make_data(3 * KIB + 97 * n, seed=n))
        if rate is not None:
            server.set_faults(f"/f{n}.bin", Faults(throttle_bytes_per_s=rate))
    return [server.url(f"/f{n}.bin") for n in range(count)]


def _check(tmp_path: Path, make_data: MakeData, count: int) -> None:
    for n in range(count):
        assert (tmp_path / f"f{n}.bin").read_bytes() == make_data(3 * KIB + 97 * n, seed=n), n
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        f"f{n}.bin" for n in range(count)
    )


def test_pipelines_deeper_than_one_and_every_file_is_right(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A kept-alive server gets several requests ahead of its answers on few connections."""
    urls = _serve(fault_server, make_data, 24, rate=400_000)
    report = download_many(urls, parallel=2, directory=tmp_path)
    assert report.ok and report.count(Outcome.DONE) == 24
    _check(tmp_path, make_data, 24)
    assert fault_server.deepest_pipeline >= 2
    assert fault_server.peak_connections <= 2
    assert len(fault_server.requests) == 24  # nothing asked twice


def test_a_server_closing_mid_pipeline_loses_no_file(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Closed without a word after 3 answers, or in the middle of a body: the requests it
    owed are asked again and every file is right."""
    urls = _serve(fault_server, make_data, 20)
    fault_server.max_requests_per_connection = 3
    fault_server.set_faults("/f7.bin", Faults(truncate_after=1000, times=1))
    report = download_many(urls, parallel=2, directory=tmp_path)
    assert report.ok and report.count(Outcome.DONE) == 20
    _check(tmp_path, make_data, 20)


def test_connection_close_on_the_third_answer_is_honoured(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """The requests pipelined behind an answer saying Connection: close go on a new
    connection; every file is right and none is asked for on a closed connection."""
    urls = _serve(fault_server, make_data, 20, rate=2_000_000)
    fault_server.close_on_answer = 3
    report = download_many(urls, parallel=2, directory=tmp_path)
    assert report.ok and report.count(Outcome.DONE) == 20
    _check(tmp_path, make_data, 20)
    per_connection: dict[int, int] = {}
    for record in fault_server.requests:
        per_connection[record.connection_id] = per_connection.get(record.connection_id, 0) + 1
    assert max(per_connection.values()) <= 3


def test_answers_out_of_order_are_caught_by_their_digests(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A server answering pipelined requests out of turn: a file whose digest is known is
    never kept with another's bytes (it is fetched again without pipelining)."""
    urls = _serve(fault_server, make_data, 16, rate=1_000_000)
    fault_server.pipelined_order = "swapped"
    digests = [hashlib.sha256(make_data(3 * KIB + 97 * n, seed=n)).hexdigest() for n in range(16)]
    jobs = [Job((url,), {"checksum": f"sha256={digests[n]}"}) for n, url in enumerate(urls)]
    report = download_many(jobs, parallel=2, directory=tmp_path)
    assert report.ok, report.failures
    _check(tmp_path, make_data, 16)


def test_large_files_and_errors_go_the_full_way(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A file over the lean size, a redirect and a 404 in a batch of small files: the large
    one is fetched whole by the full path, the redirect is followed (by the lean loop:
    tests/integration/test_lean_redirects.py), the 404 fails with its status."""
    urls = _serve(fault_server, make_data, 6)
    big = make_data(leanplan.SMALL_BYTES + 5, seed=99)
    fault_server.add_file("/big.bin", big)
    fault_server.add_redirect("/moved.bin", "/f1.bin")
    jobs: list[str | Job] = [*urls, fault_server.url("/big.bin"), fault_server.url("/nothing")]
    jobs.append(Job((fault_server.url("/moved.bin"),), {"dest": "moved.bin"}))
    report = download_many(jobs, parallel=3, directory=tmp_path)
    assert report.count(Outcome.DONE) == 8
    [failure] = report.failures
    assert "404" in str(failure.error)
    assert (tmp_path / "big.bin").read_bytes() == big
    assert (tmp_path / "moved.bin").read_bytes() == make_data(3 * KIB + 97, seed=1)


def test_an_out_name_and_a_url_name_of_one_file_are_twins_however_spelt(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a relative directory, an entry whose out= is f1.bin and a later entry whose URL
    names f1.bin are the same file: the later fails as its twin, the first's bytes stay."""
    urls = _serve(fault_server, make_data, 2)
    monkeypatch.chdir(tmp_path)
    jobs: list[str | Job] = [Job((urls[0],), {"dest": "f1.bin"}), urls[1]]
    report = download_many(jobs, parallel=1, directory=Path("out"))
    assert report.count(Outcome.DONE) == 1
    [failure] = report.failures
    assert "two entries of this batch name the same file" in str(failure.error)
    assert (tmp_path / "out" / "f1.bin").read_bytes() == make_data(3 * KIB, seed=0)


def test_a_display_hears_each_small_file_start_arrive_whole_then_finish(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Each file of the lean path: started, then all its bytes (before its group is synced,
    so a display does not show a received file at 0% meanwhile), then finished."""
    from segdl.core.progress import DownloadFinished, DownloadProgress, DownloadStarted

    urls = _serve(fault_server, make_data, 5)
    events: list[object] = []
    report = download_many(urls, parallel=2, directory=tmp_path, progress=events.append)
    assert report.count(Outcome.DONE) == 5
    for n, url in enumerate(urls):
        mine = [e for e in events if getattr(e, "url", None) == url]
        size = 3 * KIB + 97 * n
        assert isinstance(mine[0], DownloadStarted) and isinstance(mine[-1], DownloadFinished)
        progress = [e for e in mine if isinstance(e, DownloadProgress)]
        assert progress and progress[-1].done_bytes == size == progress[-1].size_bytes, mine
    _check(tmp_path, make_data, 5)


@pytest.mark.nginx
def test_against_nginx_every_file_is_right_on_few_connections(tmp_path: Path) -> None:
    """nginx serves 300 small files to a batch of 4: at most 4 connections, each reused for
    many files, every byte right, no temporary or lock left in the directory."""
    www = tmp_path / "www"
    www.mkdir()
    data = {f"n{n:03d}.bin": os.urandom(1 + 61 * n) for n in range(300)}
    for name, body in data.items():
        (www / name).write_bytes(body)
    out = tmp_path / "out"
    with Nginx(www) as nginx:
        urls = [f"http://127.0.0.1:{nginx.port}/{name}" for name in data]
        report = download_many(urls, parallel=4, directory=out)
        log = nginx.access_log()
    assert report.ok and report.count(Outcome.DONE) == 300
    for name, body in data.items():
        assert (out / name).read_bytes() == body
    assert sorted(p.name for p in out.iterdir()) == sorted([*data, ".segdl-journal"])
    assert len({entry["connection"] for entry in log}) <= 4
    assert len(log) == 300


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_a_file_that_appears_after_the_batch_looked_is_never_linked_over(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, policy: str
) -> None:
    """The lean path looks at a directory's names once; a file put there later, under the
    name of a file still to come, keeps its bytes: with --if-exists error that file fails
    (not the file segdl finished there), with skip it is skipped, and the others are right."""
    urls = _serve(fault_server, make_data, 6)

    def jobs() -> Iterator[str]:
        for n, url in enumerate(urls):
            if n == 3:  # the directory was looked at for the first file already
                (tmp_path / "f4.bin").write_bytes(b"theirs")
            yield url

    report = download_many(jobs(), parallel=2, directory=tmp_path, if_exists=policy)
    assert (tmp_path / "f4.bin").read_bytes() == b"theirs"
    for n in (0, 1, 2, 3, 5):
        assert (tmp_path / f"f{n}.bin").read_bytes() == make_data(3 * KIB + 97 * n, seed=n)
    if policy == "error":
        assert report.count(Outcome.FAILED) == 1 and report.count(Outcome.DONE) == 5
        assert isinstance(report.failures[0].error, FileExistsError)
    else:
        assert report.count(Outcome.SKIPPED) == 1 and report.count(Outcome.DONE) == 5


# What a quiet batch of small files does without: each costs start-up it has no use for.
_LEAN_BATCH_NEVER_IMPORTS = (
    "urllib3",
    "segdl.run.engine",
    "segdl.disk.state",  # the resume state, and the owner lock with it
    "segdl.disk.lock",
    "segdl.cli.display",  # -q: nothing drawn
    "segdl.cli.render",
    "segdl.net.dial",  # only one URL is dialled before the options are read
    "segdl.core.retry",  # only a 429 or 503 is waited for
    "secrets",  # temporary names: small files are written unnamed
    "hmac",  # only a file with a digest to check
    "segdl.run.places",  # the full way's places on the network
    "encodings.idna",  # an ASCII host name is looked up as bytes
    "gzip",  # only a compressed list
    "ssl",  # only a batch with https files
    "segdl.net.leantls",
)


def test_a_quiet_batch_of_small_files_imports_only_what_it_uses(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """segdl -q -i LIST of small files, in a process of its own: every file is right, and the
    modules only other runs need (the engine, urllib3, the owner lock, the displays) are never
    imported."""
    urls = _serve(fault_server, make_data, 3)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(url + "\n" for url in urls))
    out = tmp_path / "out"
    argv = ["-q", "-j", "4", "-x", "1", "-d", str(out), "-i", str(listing)]
    loaded = f"sorted(m for m in {_LEAN_BATCH_NEVER_IMPORTS!r} if m in sys.modules)"
    done = main_in_child(argv, shown=loaded)
    assert done.stdout.split(maxsplit=1) == ["0", "[]\n"], done.stderr
    _check(out, make_data, 3)


@pytest.mark.parametrize("shown", [["-q"], ["--progress", "bar"]])
def test_a_command_line_batch_commits_in_a_forked_child_with_or_without_a_display(
    shown: list[str], fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """segdl -i LIST, quiet or with the live display: its files are committed by a forked
    child (a display starts its threads only once the batch has begun), every file right."""
    urls = _serve(fault_server, make_data, 6)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(url + "\n" for url in urls))
    out = tmp_path / "out"
    argv = [*shown, "-j", "3", "-x", "1", "-d", str(out), "-i", str(listing)]
    spy = (
        "import segdl.disk.forked as forked\n"
        "made, real = [], forked.new_committer\n"
        "def spy(*args, **keywords):\n"
        "    made.append(real(*args, **keywords))\n"
        "    return made[-1]\n"
        "forked.new_committer = spy\n"
    )
    done = main_in_child(argv, before=spy, shown="[type(m).__name__ for m in made]")
    assert done.stdout.split(maxsplit=1) == ["0", "['ForkedCommit']\n"], done.stderr
    _check(out, make_data, 6)


@pytest.mark.parametrize("from_stdin", [False, True])
def test_the_live_display_shows_before_the_first_answer_arrives(
    from_stdin: bool, fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """On a terminal, heads that take seconds to come: the batch's line is drawn before them
    all the same (the display starts once the committing child is forked, or at once for a
    list from a pipe that stays open: its reader thread keeps the batch from forking), and
    the batch then ends well."""
    urls = _serve(fault_server, make_data, 3)
    for n in range(3):
        fault_server.set_faults(f"/f{n}.bin", Faults(head_bytes_per_s=40, times=1))
    listing = tmp_path / "list.txt"
    listing.write_text("".join(url + "\n" for url in urls))
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "segdl", "-j", "3", "-x", "1", "-d", str(out), "-i",
            "-" if from_stdin else str(listing)]  # fmt: skip
    master, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 20, 100, 0, 0))  # 100x20
    shown = bytearray()
    reader = threading.Thread(target=_read_all, args=(master, shown), daemon=True)
    reader.start()
    stdin = subprocess.PIPE if from_stdin else subprocess.DEVNULL
    proc = subprocess.Popen(argv, stdin=stdin, stderr=terminal, stdout=subprocess.DEVNULL,
                            env={**os.environ, "TERM": "xterm"})  # fmt: skip
    if from_stdin:  # the list is written, the pipe left open until the line is checked
        assert proc.stdin is not None
        proc.stdin.write(listing.read_bytes())
        proc.stdin.flush()
    try:
        deadline = time.monotonic() + 2.5  # a head of ~150 bytes takes 4 s or so
        # "0/N files": N counts the entries read so far (the last one ends with the pipe)
        while re.search(rb"0/\d files", shown) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert re.search(rb"0/\d files", shown) and not any(out.glob("f*"))  # no answer yet
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        assert proc.wait(timeout=60) == 0, bytes(shown)
        os.close(terminal)
        reader.join(timeout=5)
        os.close(master)
    _check(out, make_data, 3)


def _read_all(fd: int, into: bytearray) -> None:
    with contextlib.suppress(OSError):  # EIO once the terminal's last writer has closed it
        while chunk := os.read(fd, 65536):
            into += chunk


def test_a_pipelined_file_s_rate_is_its_own_transfer_not_its_wait_in_the_pipeline(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """One connection, four files each trickled at 40 kB/s: the last one's request waits
    behind three answers (about 1.5 s), then its body takes 0.5 s. Its rate on a display is
    taken from its head, so it reads about 40 kB/s, not a quarter of that."""
    from segdl.core.progress import DownloadProgress

    for n in range(4):
        fault_server.add_file(f"/t{n}.bin", make_data(20_000, seed=n))
        fault_server.set_faults(f"/t{n}.bin", Faults(throttle_bytes_per_s=40_000))
    urls = [fault_server.url(f"/t{n}.bin") for n in range(4)]
    events: list[object] = []
    report = download_many(urls, parallel=1, directory=tmp_path, progress=events.append)
    assert report.count(Outcome.DONE) == 4
    last = [e for e in events if isinstance(e, DownloadProgress) and e.url == urls[3]][-1]
    assert last.done_bytes == 20_000 and last.rate_bytes_per_s > 25_000, last
    assert last.elapsed_s > 1.0  # its time since it was asked for, as before
