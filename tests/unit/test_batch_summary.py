"""A batch's summary when a stop (Ctrl-C) left files unfinished: they are counted as
interrupted, apart from the failures, in the report, the human lines and the JSON line."""

from __future__ import annotations

import io
import json

import pytest

from segdl.cli.batch import _finish, summary_lines
from segdl.cli.exitcodes import ExitCode
from segdl.core.errors import Cancelled, HTTPStatusError
from segdl.run.inputs import Job
from segdl.run.reports import FAILURES_KEPT, Collector, ItemReport, Outcome


def _stopped(n: int) -> ItemReport:
    return ItemReport(Job((f"http://h/s{n}",)), Outcome.FAILED, error=Cancelled("interrupted"))


def _missing(n: int) -> ItemReport:
    error = HTTPStatusError(f"http://h/m{n}", 404, "Not Found")
    return ItemReport(Job((f"http://h/m{n}",)), Outcome.FAILED, error=error)


@pytest.mark.parametrize("keep_all", [True, False])
def test_the_report_counts_interrupted_files_in_failed_and_apart(keep_all: bool) -> None:
    collector = Collector(keep_all=keep_all)
    for n in range(5):
        collector.add(n, _stopped(n))
    collector.add(5, _missing(5))
    report = collector.report(1.0)
    assert (report.count(Outcome.FAILED), report.interrupted, report.ok) == (6, 5, False)


def test_a_lazily_fed_batch_keeps_real_failures_not_a_stops_window() -> None:
    """Fed lazily, a batch keeps at most FAILURES_KEPT failures: the files a stop left
    unfinished must not take the places of failures that say something."""
    collector = Collector(keep_all=False)
    for n in range(FAILURES_KEPT + 10):
        collector.add(n, _stopped(n))
    collector.add(FAILURES_KEPT + 10, _missing(0))
    report = collector.report(1.0)
    assert [item.job.url for item in report.failures] == ["http://h/m0"]
    assert report.interrupted == FAILURES_KEPT + 10


@pytest.mark.parametrize("keep_all", [True, False])
def test_the_json_summary_counts_interrupted_apart_and_exits_130(keep_all: bool) -> None:
    collector = Collector(keep_all=keep_all)
    collector.add(0, _missing(0))
    for n in range(1, 4):
        collector.add(n, _stopped(n))
    out, err = io.StringIO(), io.StringIO()
    code = _finish(collector.report(1.0), as_json=True, quiet=False, stdout=out, stderr=err)
    summary = json.loads(out.getvalue())
    assert code == ExitCode.INTERRUPTED and summary["exit_code"] == int(ExitCode.INTERRUPTED)
    assert (summary["failed"], summary["interrupted"], summary["ok"]) == (1, 3, False)
    assert [f["url"] for f in summary["failures"]] == ["http://h/m0"]
    assert err.getvalue() == ""


def test_a_quiet_stopped_batch_still_says_so_in_one_line_and_a_hint() -> None:
    collector = Collector(keep_all=False)
    for n in range(3):
        collector.add(n, _stopped(n))
    out, err = io.StringIO(), io.StringIO()
    code = _finish(collector.report(1.0), as_json=False, quiet=True, stdout=out, stderr=err)
    assert code == ExitCode.INTERRUPTED
    assert err.getvalue().splitlines() == [
        "segdl: 0 done, 0 skipped, 0 failed, 3 interrupted; nothing fetched",
        "segdl: interrupted: the same command run again fetches what is not finished",
    ]


def test_without_a_stop_the_summary_is_unchanged() -> None:
    collector = Collector(keep_all=True)
    collector.add(0, _missing(0))
    report = collector.report(1.0)
    assert report.interrupted == 0
    lines = summary_lines(report)
    assert lines[0] == "0 done, 0 skipped, 1 failed; nothing fetched"
    assert lines[1].startswith("failed: http://h/m0: ")
    out = io.StringIO()
    assert _finish(report, as_json=True, quiet=False, stdout=out, stderr=io.StringIO()) != 0
    assert json.loads(out.getvalue())["interrupted"] == 0


def test_a_failure_line_names_its_url_once() -> None:
    """The error's own mention of the URL (" for URL", " (URL)") is left out: the line
    names the URL first. A URL the error names that is another one (a redirect's) stays."""
    from segdl.core.errors import NetworkError

    collector = Collector(keep_all=True)
    collector.add(0, _missing(0))
    refused = NetworkError("http://h/r", "connection refused")
    collector.add(1, ItemReport(Job(("http://h/r",)), Outcome.FAILED, error=refused))
    moved = HTTPStatusError("http://other/m", 404, "Not Found")
    collector.add(2, ItemReport(Job(("http://h/moved",)), Outcome.FAILED, error=moved))
    lines = summary_lines(collector.report(1.0))
    assert lines[1:] == [
        "failed: http://h/m0: 404 Not Found",
        f"failed: http://h/r: {_without_url(str(refused), 'http://h/r')}",
        f"failed: http://h/moved: {moved}",
    ]
    assert "http://other/m" in lines[3]


def _without_url(said: str, url: str) -> str:
    assert said.endswith((f" ({url})", f" for {url}")), said
    return said.rsplit(" ", 1)[0].removesuffix(" for")


def test_many_failures_are_summed_up_by_cause() -> None:
    """Past ten failures the summary lists each cause once, in the order they came, with its
    first file and how many more it failed; causes past ten, and failures past those a
    batch keeps, in one line. Every failure had its own line as it happened."""
    collector = Collector(keep_all=False)
    for n in range(30):
        collector.add(n, _missing(n))
    for n in range(30, 33):
        refused = HTTPStatusError(f"http://h/m{n}", 403, "Forbidden")
        collector.add(n, ItemReport(Job((f"http://h/m{n}",)), Outcome.FAILED, error=refused))
    lines = summary_lines(collector.report(1.0))
    assert lines == [
        "0 done, 0 skipped, 33 failed; nothing fetched",
        "failed: http://h/m0 and 29 more: 404 Not Found",
        "failed: http://h/m30 and 2 more: 403 Forbidden",
    ]
    many = Collector(keep_all=False)
    for n in range(FAILURES_KEPT + 5):
        many.add(n, _missing(n))
    lines = summary_lines(many.report(1.0))
    assert lines[1:] == [
        f"failed: http://h/m0 and {FAILURES_KEPT - 1} more: 404 Not Found",
        "failed: 5 more files: their lines above say why",  # not kept
    ]
    odd = Collector(keep_all=True)
    for n in range(12):  # twelve causes: the last two summed up
        error = HTTPStatusError(f"http://h/c{n}", 400 + n, "Odd")
        odd.add(n, ItemReport(Job((f"http://h/c{n}",)), Outcome.FAILED, error=error))
    lines = summary_lines(odd.report(1.0))
    assert lines[1] == "failed: http://h/c0: 400 Odd" and len(lines) == 12
    assert lines[-1] == "failed: 2 more files: 2 other causes"
