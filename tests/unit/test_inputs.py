"""Streamed input lists (segdl.run.inputs), the names a batch took (segdl.run.claims) and a
streamed batch's report (segdl.run.reports)."""

from __future__ import annotations

import gzip
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from segdl.core.errors import UsageError
from segdl.core.models import Result
from segdl.run import claims
from segdl.run.claims import Claims
from segdl.run.inputs import BadEntry, Job, open_list, parse_input_file, read_jobs
from segdl.run.reports import FAILURES_KEPT, Collector, ItemReport, Outcome

LIST = """# a comment
http://h/a\thttp://m/a
  out=a.bin
  header=X-One: 1

 # an indented comment is a comment
http://h/b
  nonsense=1
  out=b.bin
  dir=sub
   header=oops
http://h/c
"""


def test_a_stream_yields_each_job_and_a_bad_entry_in_its_place() -> None:
    """Good entries become jobs with their line; a bad one becomes a BadEntry naming the
    line of its first bad option, and the entries after it still come."""
    got = list(read_jobs(LIST.splitlines(keepends=True)))
    assert [type(g) for g in got] == [Job, BadEntry, Job]
    first, bad, last = got
    assert isinstance(first, Job) and first.line == 2
    assert first == Job(("http://h/a", "http://m/a"), {"dest": "a.bin", "headers": {"X-One": "1"}})
    assert isinstance(bad, BadEntry) and bad.url == "http://h/b"
    assert "input line 8: unknown option 'nonsense'" in str(bad.error)
    assert isinstance(last, Job) and last.url == "http://h/c" and last.line == 12


def test_an_option_before_any_url_is_a_bad_entry() -> None:
    """Option lines with no URL above them: one bad entry, with no URL."""
    (bad, job) = read_jobs(["  out=x\n", "http://h/a\n"])
    assert isinstance(bad, BadEntry) and bad.url == "-" and "input line 1" in str(bad.error)
    assert isinstance(job, Job) and job.url == "http://h/a"


def test_a_list_in_memory_still_raises_at_its_first_bad_entry() -> None:
    """parse_input_file (lists held whole, shards) keeps raising with the line number."""
    with pytest.raises(UsageError, match="input line 8"):
        parse_input_file(LIST)
    assert parse_input_file("http://h/a\n  connections=3\n") == [
        Job(("http://h/a",), {"connections": 3})
    ]


def test_an_endless_stream_is_read_as_it_goes() -> None:
    """Entries come while the input is still being produced: nothing is read whole."""

    def endless() -> Iterator[str]:
        for n in itertools.count():
            yield f"http://h/{n}\n"

    first = list(itertools.islice(read_jobs(endless()), 3))
    assert [j.url for j in first] == ["http://h/0", "http://h/1", "http://h/2"]


def test_gzip_and_odd_bytes(tmp_path: Path) -> None:
    """A .gz list reads like the plain one; bytes that are not UTF-8 stay in their own line
    (as surrogates) instead of ending the batch."""
    packed = tmp_path / "list.gz"
    packed.write_bytes(gzip.compress(b"http://h/a\nhttp://h/\xff\n"))
    with open_list(packed) as lines:
        urls = [job.url for job in read_jobs(lines)]
    assert urls == ["http://h/a", "http://h/\udcff"]
    with pytest.raises(UsageError, match="cannot read input list"):
        open_list(tmp_path / "absent")


def test_claims_find_every_name_taken_across_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names taken stay found after the recent set spills into sorted arrays and those merge;
    names never taken are not found."""
    monkeypatch.setattr(claims, "_RECENT", 64)
    taken = Claims()
    for n in range(0, 2000, 2):
        taken.add(Path(f"/d/f{n}"))
    assert len(taken) == 1000
    assert all(Path(f"/d/f{n}") in taken for n in range(0, 2000, 2))
    assert not any(Path(f"/d/f{n}") in taken for n in range(1, 2000, 2))


def _report(outcome: Outcome, size: int = 10) -> ItemReport:
    result = Result("u", Path("f"), size, 0.1, 1, False, skipped=outcome is Outcome.SKIPPED)
    error = UsageError("bad") if outcome is Outcome.FAILED else None
    return ItemReport(Job(("u",)), outcome, None if error else result, error)


def test_a_streamed_batch_counts_all_and_keeps_only_some_failures() -> None:
    """Without keep_all, the report counts every item but holds at most FAILURES_KEPT
    failed ones (as aria2's --max-download-result) and none of the others."""
    collector = Collector(keep_all=False)
    outcomes = [Outcome.DONE, Outcome.SKIPPED, Outcome.FAILED]
    for n in range(3 * (FAILURES_KEPT + 5)):
        collector.add(n, _report(outcomes[n % 3]))
    report = collector.report(1.0)
    assert report.count(Outcome.DONE) == report.count(Outcome.FAILED) == FAILURES_KEPT + 5
    assert report.bytes_done == 10 * (FAILURES_KEPT + 5)
    assert len(report.items) == FAILURES_KEPT and len(report.failures) == FAILURES_KEPT
    whole = Collector(keep_all=True)
    for n in (2, 0, 1):
        whole.add(n, _report(outcomes[n]))
    assert [i.outcome for i in whole.report(1.0).items] == outcomes  # in the list's order


def test_a_pipe_may_wait_and_a_regular_file_does_not(tmp_path: Path) -> None:
    """Only an input that can block for long (a pipe) is read by a thread of its own."""
    listing = tmp_path / "list.txt"
    listing.write_text("http://h/a\n")
    with open_list(listing) as lines:
        assert not read_jobs(lines).may_wait
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as pipe, os.fdopen(write_end, "w"):
        assert read_jobs(pipe).may_wait
    assert not read_jobs(["http://h/a\n"]).may_wait
