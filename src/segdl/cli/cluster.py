"""``segdl -i FILE -d DEST --ray [ADDRESS]``: the batch on a Ray cluster, one display.

The driver shows the whole run in the batch's forms: a live line on a terminal (files done
and failed, bytes, rate, ETA, workers and nodes), a plain line every few seconds otherwise,
or with ``--progress json`` one ``ClusterProgress`` object per line on stdout and a final
``Summary``. The exit code is that of the most frequent kind of failure (0 if none).
"""

from __future__ import annotations

import argparse
import collections
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from segdl.cli.display import live_terminal
from segdl.cli.exitcodes import ExitCode, exit_code_for
from segdl.cli.render import clock, eta_s, human_bytes, human_rate, percent
from segdl.core import errors
from segdl.core.errors import SegdlError, UsageError
from segdl.core.options import DownloadOptions
from segdl.core.printable import json_line, printable

if TYPE_CHECKING:
    import threading

    from segdl.cluster.report import RunProgress, RunReport

_PLAIN_INTERVAL_S = 2.0
_FAILURES_SHOWN = 20


def run_cluster(
    args: argparse.Namespace,
    options: DownloadOptions,
    stdout: IO[str],
    stderr: IO[str],
    cancel: threading.Event,
) -> ExitCode:
    """Run ``-i``'s list on the cluster ``--ray`` names (none: a local Ray for the run)."""
    try:
        if args.input_file is None or args.input_file == "-" or args.urls:
            raise UsageError("--ray takes its URLs from -i FILE (a path every run can reread)")
        if args.dir is None:
            raise UsageError("--ray needs -d DIR: a directory every worker sees")
        if args.jobs < 1 or args.shard_size < 1:
            raise UsageError("-j and --shard-size must be at least 1")
        from segdl.cluster import runner
    except ImportError as exc:
        print(f"segdl: error: --ray needs Ray: pip install 'segdl[cluster]' ({exc})", file=stderr)
        return ExitCode.USAGE
    except SegdlError as exc:
        print(f"segdl: error: {printable(str(exc))}", file=stderr)
        return exit_code_for(exc)
    show = _display(args, stdout, stderr)
    try:
        report = runner.run(
            args.input_file,
            args.dir,
            address=args.ray or None,
            shard_size=args.shard_size,
            parallel=args.jobs,
            options=options,
            pipelining=not args.no_pipelining,
            on_progress=show,
            cancel=cancel,
        )
    except (SegdlError, OSError) as exc:
        print(f"segdl: error: {printable(str(exc))}", file=stderr)
        return exit_code_for(exc)
    finally:
        close = getattr(show, "close", None)
        if close is not None:
            close()
    return _finish(
        report, as_json=args.progress == "json", quiet=args.quiet, out=stdout, err=stderr
    )


class Recent:
    """Rates over the last few seconds (Ray's start-up and a shard's tail do not drag them)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self._window_s = window_s
        self._samples: collections.deque[tuple[float, int, int]] = collections.deque()

    def rates(self, progress: RunProgress) -> tuple[float, float]:
        """(bytes/s, files/s) including this sample."""
        ended = progress.done + progress.skipped + progress.failed
        now = progress.elapsed_s
        self._samples.append((now, progress.bytes, ended))
        while len(self._samples) > 2 and now - self._samples[0][0] > self._window_s:
            self._samples.popleft()
        then, then_bytes, then_files = self._samples[0]
        if now <= then:
            return 0.0, 0.0
        return (progress.bytes - then_bytes) / (now - then), (ended - then_files) / (now - then)


def progress_line(progress: RunProgress, recent: Recent | None = None) -> str:
    """``42% 1260/3000 files, 3 failed, 19.7 MiB, 4.1 MiB/s, ETA 0:05, 6 workers, 3 nodes``."""
    ended = progress.done + progress.skipped + progress.failed
    total = f"/{progress.files}" if progress.files is not None else ""
    rate, files_per_s = (recent or Recent()).rates(progress)
    eta = eta_s(ended, progress.files, files_per_s)
    head = percent(ended, progress.files)
    return (
        f"{head + ' ' if head else ''}{ended}{total} files, {progress.failed} failed, "
        f"{human_bytes(progress.bytes)}, {human_rate(rate)}, ETA {clock(eta)}, "
        f"{progress.workers} workers, {progress.nodes} nodes"
    )


def _display(
    args: argparse.Namespace, stdout: IO[str], stderr: IO[str]
) -> Callable[[RunProgress], None] | None:
    if args.progress == "none" or (args.quiet and args.progress != "json"):
        return None
    if args.progress == "json":
        return _JsonLines(stdout)
    if live_terminal(args.progress, stderr):
        return _Bar(stderr)
    return _Plain(stderr)


class _Plain:
    def __init__(self, stderr: IO[str]) -> None:
        self._stderr = stderr
        self._last_s = 0.0
        self._recent = Recent()

    def __call__(self, progress: RunProgress) -> None:
        line = progress_line(progress, self._recent)
        now = time.monotonic()
        if now - self._last_s >= _PLAIN_INTERVAL_S:
            self._last_s = now
            print(f"segdl: {line}", file=self._stderr, flush=True)


class _JsonLines:
    def __init__(self, stdout: IO[str]) -> None:
        self._stdout = stdout

    def __call__(self, progress: RunProgress) -> None:
        fields = {name: getattr(progress, name) for name in progress.__slots__}
        self._stdout.write(json_line({"event": "ClusterProgress", **fields}) + "\n")
        self._stdout.flush()


class _Bar:
    """One live line at the bottom of the terminal (rich, imported only here)."""

    def __init__(self, stderr: IO[str]) -> None:
        from rich.text import Text

        from segdl.cli.screen import Screen

        self._text = Text
        self._line = "starting Ray..."
        self._recent = Recent()
        self._screen = Screen(stderr, lambda width, height: [self._text(self._line[:width])])

    def __call__(self, progress: RunProgress) -> None:
        self._line = progress_line(progress, self._recent)

    def close(self) -> None:
        self._screen.stop()


def exit_code_for_kind(kind: str) -> ExitCode:
    """The exit code a failure of this kind (``http 404``, ``ConnectError``) would have had."""
    if kind.startswith("http "):
        status = kind.removeprefix("http ")
        return ExitCode.AUTH if status in ("401", "407") else ExitCode.SERVER_ERROR
    if kind == "lost":
        return ExitCode.NETWORK
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return exit_code_for(cls.__new__(cls))
    return ExitCode.GENERIC


def _finish(
    report: RunReport, *, as_json: bool, quiet: bool, out: IO[str], err: IO[str]
) -> ExitCode:
    totals = report.totals
    worst = max(totals.failed.items(), key=lambda item: item[1], default=None)
    code = ExitCode.OK if worst is None else exit_code_for_kind(worst[0])
    if as_json:
        record = {
            "event": "Summary",
            "ok": report.ok,
            "exit_code": int(code),
            "done": totals.done,
            "skipped": totals.skipped,
            "failed": totals.failed_count,
            "failed_by_kind": dict(totals.failed),
            "bytes": totals.bytes,
            "elapsed_s": report.elapsed_s,
            "shards": totals.shards,
            "shards_from_markers": report.shards_from_markers,
            "shards_lost": report.shards_lost,
            "failures": [
                {"url": f.url, "kind": f.kind, "error": f.message} for f in totals.failures
            ],
        }
        out.write(json_line(record) + "\n")
        out.flush()
        return code
    if quiet and not totals.failed:
        return code
    rate = totals.bytes / report.elapsed_s if report.elapsed_s > 0 else 0.0
    lines = [
        f"{totals.done} done, {totals.skipped} skipped, {totals.failed_count} failed; "
        f"{human_bytes(totals.bytes)} in {report.elapsed_s:.2f} s ({human_rate(rate)}); "
        f"{totals.shards} shards ({report.shards_from_markers} complete before, "
        f"{report.shards_lost} lost)"
    ]
    lines += [f"failed: {count} x {kind}" for kind, count in sorted(totals.failed.items())]
    lines += [f"failed: {f.url}: {f.message}" for f in totals.failures[:_FAILURES_SHOWN]]
    for line in lines:
        print(f"segdl: {printable(line)}", file=err)
    return code
