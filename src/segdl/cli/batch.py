"""``segdl URL URL ...`` and ``segdl -i FILE``: a batch, a line per file, one report."""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING

from segdl.cli.exitcodes import ExitCode, exit_code_for
from segdl.core.errors import Cancelled, SegdlError, UsageError, shown
from segdl.core.options import DownloadOptions
from segdl.core.printable import json_line, printable
from segdl.core.progress import Event
from segdl.disk.storage import make_directory
from segdl.run.batch import BatchReport, ItemReport, Job, Outcome, download_many
from segdl.run.inputs import JobStream, open_list, read_jobs

if TYPE_CHECKING:
    from segdl.cli.screen import BatchScreen


def run_batch(
    args: argparse.Namespace,
    options: DownloadOptions,
    stdout: IO[str],
    stderr: IO[str],
    cancel: threading.Event,
) -> ExitCode:
    """Run every URL given (and every file of ``-i``), ``-j`` at a time; report each."""
    try:
        if args.output is not None:
            raise UsageError("-o names one file: use -d with several URLs or -i")
        given, listing = _jobs(args)
        if args.dir is not None:
            make_directory(Path(args.dir))  # once, so a failure is one line, not one a file
    except (SegdlError, OSError) as exc:
        print(f"segdl: error: {printable(str(exc))}", file=stderr)
        return exit_code_for(exc)
    lock = threading.Lock()
    as_json = args.progress == "json"
    bar = _live_bar(args, stderr)
    progress: Callable[[Event], None] | None = bar
    on_item = _item_reporter(args, bar, stderr, lock)
    if as_json:
        progress = _json_events(stdout, lock)
    on_read = bar.files_known if bar is not None else None
    jobs: list[Job] | JobStream = given
    if listing is not None:
        jobs = read_jobs(listing, first=given, on_read=on_read)
        if bar is not None and jobs.may_wait:  # a pipe, read by a thread of its own: the
            bar.begin()  # batch may not fork (see BatchScreen), so drawing starts now
    try:
        report = download_many(
            jobs,
            parallel=args.jobs,
            on_item=on_item,
            cancel=cancel,
            pipelining=not args.no_pipelining,
            options=options,
            directory=args.dir,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
        if listing is not None:
            listing.close()
    return _finish(report, as_json=as_json, quiet=args.quiet, stdout=stdout, stderr=stderr)


def _live_bar(args: argparse.Namespace, stderr: IO[str]) -> BatchScreen | None:
    """The live batch display, on a terminal only (rich is imported only then)."""
    if args.progress == "json" or args.quiet:
        return None
    from segdl.cli.display import live_terminal  # start-up: a quiet batch draws nothing

    if not live_terminal(args.progress, stderr):
        return None
    from segdl.cli.screen import BatchScreen

    bar = BatchScreen(stderr, len(args.urls))
    if args.input_file not in (None, "-"):  # a thread: once the batch has begun (see there)
        bar.on_begin = partial(_count_in_background, args.input_file, len(args.urls),
                               bar.files_known)  # fmt: skip
    if hasattr(os, "register_at_fork"):  # draw once the committing child is forked
        os.register_at_fork(after_in_parent=bar.begin)  # (else at the batch's first event)
    return bar


def _item_reporter(
    args: argparse.Namespace,
    bar: BatchScreen | None,
    stderr: IO[str],
    lock: threading.Lock,
) -> Callable[[ItemReport], None]:
    """What is said of each finished item: its line, above the live lines when there are any."""
    as_json = args.progress == "json"

    def on_item(item: ItemReport) -> None:
        with lock:
            # A file a stop left unfinished is neither done nor failed on the live line.
            if bar is not None and not isinstance(item.error, Cancelled):
                size = item.result.size_bytes if item.result is not None else 0
                failed = item.outcome is Outcome.FAILED
                bar.item_ended(failed=failed, size_bytes=size, complete_before=item.complete_before)
            line = _item_line(item, as_json=as_json, quiet=args.quiet)
            if line is None:
                return
            if bar is not None:
                bar.print(line)  # above the live lines, never through them
            else:
                print(line, file=stderr)

    return on_item


def _jobs(args: argparse.Namespace) -> tuple[list[Job], IO[str] | None]:
    """The URLs given, and the list of ``-i`` opened (it is streamed: never held whole)."""
    if not args.urls and args.input_file is None:
        raise UsageError("no URL given (a URL, several, or -i FILE)")
    if args.jobs < 1:
        raise UsageError("-j must be at least 1")
    given = [Job((url,)) for url in args.urls]
    if args.input_file is None:
        return given, None
    return given, open_list(args.input_file)


def _count_in_background(path: str, given: int, known: Callable[[int], None]) -> None:
    """The display's total, from a pass over the list beside the batch (nothing kept)."""
    from segdl.run.shards import count_files

    def count() -> None:
        # If it cannot be counted, the display keeps counting the entries read.
        with contextlib.suppress(OSError, SegdlError, ValueError):
            known(given + count_files(path))

    threading.Thread(target=count, name="segdl-count", daemon=True).start()


def _json_events(stdout: IO[str], lock: threading.Lock) -> Callable[[Event], None]:
    from segdl.cli.display import JsonDisplay

    display = JsonDisplay(stdout)

    def listener(event: Event) -> None:
        with lock:  # events of several files come from several threads
            display(event)

    return listener


def _item_line(item: ItemReport, *, as_json: bool, quiet: bool) -> str | None:
    """The line a file's end gets, if any."""
    if as_json:
        return None  # the per-file events already say it
    if isinstance(item.error, Cancelled):
        return None  # stopped, not failed: the summary says how many (Ctrl-C: a window's worth)
    if item.outcome is Outcome.FAILED:
        return f"segdl: failed: {printable(f'{shown(item.job.url)}: {_cause(item)}')}"
    if item.complete_before:
        return None  # the summary counts them: a rerun of 10,000 files is not 10,000 lines
    if not quiet and item.result is not None:
        verb = "skipped" if item.outcome is Outcome.SKIPPED else "saved"
        return f"segdl: {verb} {printable(str(item.result.path))}"
    return None


def _finish(
    report: BatchReport, *, as_json: bool, quiet: bool, stdout: IO[str], stderr: IO[str]
) -> ExitCode:
    """The summary, and the exit code: the disk's (3) if it stopped the batch (full,
    read-only), else a stopped batch's (130) before its first failure's."""
    failures = _failures(report)
    if report.stopped_by is not None:  # the disk's code, not a Ctrl-C's
        code = exit_code_for(report.stopped_by)
    elif report.interrupted:
        code = ExitCode.INTERRUPTED
    else:
        code = ExitCode.OK if not failures else exit_code_for(failures[0].error or SegdlError())
    if as_json:
        record = {
            "event": "Summary",
            "ok": report.ok,
            "exit_code": int(code),
            "done": report.count(Outcome.DONE),
            "skipped": report.count(Outcome.SKIPPED) - report.already_complete,
            "already_complete": report.already_complete,
            "failed": report.count(Outcome.FAILED) - report.interrupted,
            "interrupted": report.interrupted,
            "stopped_by": None if report.stopped_by is None else str(report.stopped_by),
            "bytes": report.bytes_done,
            "elapsed_s": report.elapsed_s,
            "failures": [{"url": shown(f.job.url), "error": str(f.error)} for f in failures],
        }
        stdout.write(json_line(record) + "\n")
        stdout.flush()
    elif not quiet or failures or report.interrupted:
        for line in summary_lines(report):
            print(f"segdl: {printable(line)}", file=stderr)
    return code


def _failures(report: BatchReport) -> list[ItemReport]:
    """The failures that say something: not the files a stop left unfinished."""
    return [item for item in report.failures if not isinstance(item.error, Cancelled)]


LISTED_ONE_BY_ONE = 10
"""Failures a batch's summary lists one by one; past this many it lists their causes, each
once, with how many files it failed (every file had its own line as it failed)."""
CAUSES_LISTED = 10


def _cause(item: ItemReport) -> str:
    """Why a file failed, without the URL its error names again at its end (its line
    names it first); a URL it came to by a redirect stays."""
    said, url = str(item.error), shown(item.job.url)
    for tail in (f" for {url}", f" ({url})"):
        if said.endswith(tail) and len(said) > len(tail):
            return said[: -len(tail)]
    return said


def _causes(failures: list[ItemReport], failed: int) -> list[str]:
    """The summary's lines for many failures: a line per cause, in the order they came,
    naming its first file and how many more it failed; ``failed``: the files that failed,
    also those past the ones a batch keeps (:data:`segdl.run.reports.FAILURES_KEPT`)."""
    causes: dict[str, list[str]] = {}
    for item in failures:
        causes.setdefault(_cause(item), []).append(shown(item.job.url))
    lines = []
    for cause, urls in list(causes.items())[:CAUSES_LISTED]:
        more = f" and {len(urls) - 1} more" if len(urls) > 1 else ""
        lines.append(f"failed: {urls[0]}{more}: {cause}")
    listed = sum(len(urls) for urls in list(causes.values())[:CAUSES_LISTED])
    if failed > listed:
        others = len(causes) - CAUSES_LISTED
        why = f"{others} other causes" if others > 0 else "their lines above say why"
        lines.append(f"failed: {failed - listed} more files: {why}")
    return lines


def _refused(error: BaseException) -> str:
    """Why the disk takes no more files, in a few words: "no space left on device in DIR"
    (the directory of the file it refused)."""
    code, path = getattr(error, "errno", None), getattr(error, "filename", None)
    said = os.strerror(code) if code else str(error)
    said = said[:1].lower() + said[1:]
    return f"{said} in {Path(path).parent}" if path else said


def summary_lines(report: BatchReport) -> list[str]:
    """The end of a batch: counts, size, time and rate (1024-based), then each failure;
    files a stop left unfinished are counted apart ("interrupted"), not listed."""
    from segdl.cli.render import human_bytes, human_rate  # start-up: -q shows it only on failure

    rate = report.bytes_done / report.elapsed_s if report.elapsed_s > 0 else 0.0
    complete = report.already_complete
    interrupted = report.interrupted
    counts = [
        f"{report.count(Outcome.DONE)} done",
        f"{complete} already complete" if complete else "",
        f"{report.count(Outcome.SKIPPED) - complete} skipped",
        f"{report.count(Outcome.FAILED) - interrupted} failed",
        f"{interrupted} interrupted" if interrupted else "",
    ]
    fetched = (
        f"{human_bytes(report.bytes_done)} in {report.elapsed_s:.2f} s ({human_rate(rate)})"
        if report.count(Outcome.DONE)
        else "nothing fetched"
    )
    lines = [f"{', '.join(c for c in counts if c)}; {fetched}"]
    failures = _failures(report)
    if len(failures) <= LISTED_ONE_BY_ONE:
        lines += [f"failed: {shown(item.job.url)}: {_cause(item)}" for item in failures]
    else:
        lines += _causes(failures, report.count(Outcome.FAILED) - interrupted)
    if report.stopped_by is not None:
        lines.append(f"stopped: {_refused(report.stopped_by)}: once files can be written there, "
                     "the same command run again fetches what is not finished")  # fmt: skip
    elif interrupted:
        lines.append("interrupted: the same command run again fetches what is not finished")
    return lines
