"""Input lists are streamed: a batch of a million lines starts at once and holds a bounded
window of them, a bad line fails alone, and twin names are caught however far apart."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from segdl.core.errors import UsageError
from segdl.net.fake import FakeAnswer, FakeFile, FakeRequest, FakeResponse, FakeTransport, serve
from segdl.net.interfaces import Response
from segdl.run.batch import Outcome, download_many
from segdl.run.inputs import open_list, read_jobs
from segdl.run.reports import ItemReport
from tests.server import FaultServer

MakeData = Callable[..., bytes]
LINES = 1_000_000
MIB = 1 << 20


class _AnyFile(FakeTransport):
    """Every URL is the same small file; remembers when the first request came, nothing per
    request (a million of them would be the memory this test measures)."""

    def __init__(self) -> None:
        super().__init__({})
        self.first_request_s: float | None = None
        self._route = serve(FakeFile(b"x" * 512))

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response:
        if self.first_request_s is None:
            self.first_request_s = time.monotonic()
        answer: FakeAnswer = self._route(FakeRequest(method, url, dict(headers)))
        return FakeResponse(answer, url)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _counting(lines: Iterator[str], read: list[int]) -> Iterator[str]:
    for line in lines:
        read[0] += 1
        yield line


def test_a_million_line_list_starts_at_once_and_holds_a_window(tmp_path: Path) -> None:
    """1,000,000 lines: the first request goes out within 1 s of the call, the batch reads
    only a window ahead of what it has finished, and its memory does not grow with the list
    (held whole, the list's jobs alone would take hundreds of MB)."""
    listing = tmp_path / "list.txt"
    with open(listing, "w") as handle:
        for start in range(0, LINES, 10_000):
            handle.write(
                "".join(f"http://h.test/d/f{n}.bin\n" for n in range(start, start + 10_000))
            )
    out = tmp_path / "out"
    transport = _AnyFile()
    cancel = threading.Event()
    ended: list[ItemReport] = []
    read = [0]
    before = _rss_bytes()
    started = time.monotonic()

    def batch() -> None:
        with open_list(listing) as lines:
            jobs = read_jobs(_counting(lines, read))
            download_many(jobs, parallel=4, directory=out, transport=transport, cancel=cancel,
                          on_item=ended.append)  # fmt: skip

    runner = threading.Thread(target=batch)
    runner.start()
    try:
        while len(ended) < 300 and time.monotonic() - started < 20:
            time.sleep(0.05)
        grown = _rss_bytes() - before
        assert transport.first_request_s is not None
        assert transport.first_request_s - started < 1.0
        assert len(ended) >= 300
        # read: what ended, what is in flight (3 a place, and a few), and the next line
        assert read[0] <= len(ended) + 4 * 4 + 16, (read[0], len(ended))
        assert grown < 40 * MIB, grown
    finally:
        cancel.set()
        runner.join(30)
    assert not runner.is_alive()
    assert all(item.outcome is not Outcome.FAILED or item.error for item in ended)
    assert (out / "f0.bin").read_bytes() == b"x" * 512


def test_the_cli_starts_on_the_first_lines_of_a_pipe(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """`segdl -i -` downloads the first files while the rest of the list has not been
    written yet, then finishes the list once it ends."""
    for name in ("a", "b", "c"):
        fault_server.add_file(f"/{name}", make_data(3000, seed=ord(name)))
    command = [sys.executable, "-m", "segdl", "-q", "-d", str(tmp_path), "-i", "-"]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                          ) as process:  # fmt: skip
        assert process.stdin is not None and process.stderr is not None
        # An entry is complete when the next one begins (its option lines come after it).
        process.stdin.write(f"{fault_server.url('/a')}\n{fault_server.url('/b')}\n")
        process.stdin.flush()
        deadline = time.monotonic() + 20
        while not any(r.path == "/a" for r in fault_server.requests):
            assert time.monotonic() < deadline, "no request before the list ended"
            assert process.poll() is None
            time.sleep(0.02)
        process.stdin.write(f"{fault_server.url('/c')}\n")
        process.stdin.close()
        code = process.wait(30)
        err = process.stderr.read()
    assert code == 0, err
    for name in ("a", "b", "c"):
        assert (tmp_path / name).read_bytes() == make_data(3000, seed=ord(name))


def test_a_bad_line_fails_alone_naming_its_line(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A streamed list cannot be checked whole before it starts: an entry with a bad option
    fails with its line number (exit 2, the first failure's), and the others are fetched."""
    for name in ("a", "b"):
        fault_server.add_file(f"/{name}", make_data(2000, seed=ord(name)))
    listing = tmp_path / "list.txt"
    listing.write_text(
        f"{fault_server.url('/a')}\n# a comment\n{fault_server.url('/x')}\n  nonsense=1\n"
        f"{fault_server.url('/b')}\n  out=b.bin\n"
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "segdl", "-d", str(out), "-i", str(listing)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "input line 4: unknown option 'nonsense'" in done.stderr
    assert "Traceback" not in done.stderr
    assert (out / "a").read_bytes() == make_data(2000, seed=ord("a"))
    assert (out / "b.bin").read_bytes() == make_data(2000, seed=ord("b"))
    assert "2 done" in done.stderr and "1 failed" in done.stderr
    assert not any(r.path == "/x" for r in fault_server.requests)


def test_twin_names_far_apart_in_a_stream_are_caught(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Entries 0 and 59 of a streamed list name the same file, far past the lean window: the
    second fails saying so, the first file is intact, and the others are fetched."""
    for n in range(60):
        fault_server.add_file(f"/f{n}", make_data(1000 + n, seed=n))
    lines = [f"{fault_server.url(f'/f{n}')}\n" for n in range(60)]
    lines[0] += "  out=same.bin\n"
    lines[59] += "  out=same.bin\n"
    ended: list[ItemReport] = []
    stream = iter("".join(lines).splitlines(keepends=True))
    report = download_many(read_jobs(stream), parallel=1, directory=tmp_path,
                           on_item=ended.append)  # fmt: skip
    assert report.count(Outcome.DONE) == 59 and report.count(Outcome.FAILED) == 1
    (failed,) = report.failures  # a streamed batch keeps its failures
    assert failed.job.url == fault_server.url("/f59")
    assert "two entries of this batch name the same file" in str(failed.error)
    assert (tmp_path / "same.bin").read_bytes() == make_data(1000, seed=0)
    assert len(ended) == 60 and len(report.items) == 1


def test_a_list_is_still_checked_whole_before_it_starts(tmp_path: Path) -> None:
    """A sequence (not a stream) keeps the rule of the API: a bad job raises at the call."""
    jobs = list(read_jobs(["http://127.0.0.1:9/a\n", "  nonsense=1\n"]))
    with pytest.raises(UsageError, match="input line 2"):
        download_many(jobs, directory=tmp_path)
    assert list(tmp_path.iterdir()) == []
