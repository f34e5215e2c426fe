"""Turning progress events into output: a rich bar, plain lines, or JSON lines.

rich is imported only when a bar is actually drawn, so a non-interactive run (and
``segdl --version``) never pays for it.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Protocol

from segdl.core.progress import (
    DownloadFailed,
    DownloadFinished,
    DownloadProgress,
    DownloadStarted,
    Event,
    Notice,
    NoticeKind,
    SegmentMap,
)
from segdl.printable import json_line, printable

_PLAIN_INTERVAL_S = 2.0


class Display(Protocol):
    """A progress listener that may hold a terminal and must be closed."""

    def __call__(self, event: Event) -> None: ...

    def close(self) -> None: ...


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class PlainDisplay:
    """One line every couple of seconds on stderr; notices as they come."""

    def __init__(self, stderr: IO[str], *, quiet: bool) -> None:
        self.stderr = stderr
        self.quiet = quiet
        self._last_s = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, Notice) and event.kind is NoticeKind.INSECURE:
            print(f"segdl: WARNING: {printable(event.message)}", file=self.stderr)  # even if quiet
            return
        if self.quiet:
            return
        if isinstance(event, Notice):
            print(f"segdl: note: {printable(event.message)}", file=self.stderr)
        elif isinstance(event, DownloadProgress):
            now = time.monotonic()
            if now - self._last_s < _PLAIN_INTERVAL_S:
                return
            self._last_s = now
            print(f"segdl: {_progress_text(event)}", file=self.stderr, flush=True)

    def close(self) -> None:
        pass


class SilentDisplay(PlainDisplay):
    """Progress off; notices still shown unless quiet."""

    def __call__(self, event: Event) -> None:
        if isinstance(event, Notice) and event.kind is NoticeKind.INSECURE:
            print(f"segdl: WARNING: {printable(event.message)}", file=self.stderr)
        elif isinstance(event, Notice) and not self.quiet:
            print(f"segdl: note: {printable(event.message)}", file=self.stderr)


class JsonDisplay:
    """One JSON object per event on stdout, for programs driving the CLI."""

    def __init__(self, stdout: IO[str]) -> None:
        self.stdout = stdout

    def __call__(self, event: Event) -> None:
        record: dict[str, Any] = {"event": type(event).__name__, "time": time.time()}
        for field in dataclasses.fields(event):
            name, value = field.name, getattr(event, field.name)
            if isinstance(value, (Path, BaseException)):
                value = str(value)
            elif isinstance(value, SegmentMap):
                value = value.as_json()
            elif hasattr(value, "value"):
                value = value.value
            record[name] = value
        self.stdout.write(json_line(record) + "\n")
        self.stdout.flush()

    def close(self) -> None:
        pass


class RichDisplay:
    """A live bar on stderr (a terminal)."""

    def __init__(self, stderr: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = Console(file=stderr)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TextColumn("{task.fields[connections]} conn"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self._task: Any = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, DownloadStarted):
            if self._task is None:
                self._task = self.progress.add_task(
                    _description(event.path.name),
                    total=event.size_bytes,
                    connections=event.connections,
                )
            else:
                self.progress.update(self._task, total=event.size_bytes, completed=0)
        elif isinstance(event, DownloadProgress) and self._task is not None:
            self.progress.update(
                self._task, completed=event.done_bytes, connections=event.connections
            )
        elif isinstance(event, DownloadFinished) and self._task is not None:
            self.progress.update(self._task, completed=event.size_bytes, total=event.size_bytes)
        elif isinstance(event, Notice):
            self.progress.console.print(f"note: {printable(event.message)}", markup=False)
        elif isinstance(event, DownloadFailed):
            pass

    def close(self) -> None:
        self.progress.stop()


def stderr_display() -> Display:
    """The CLI's display on this process's stderr, for library callers that asked for a
    progress bar (``segdl.integrations.pooch``'s ``progressbar=True``): the rich bar on a
    terminal, the plain lines elsewhere."""
    if sys.stderr.isatty():
        return RichDisplay(sys.stderr)
    return PlainDisplay(sys.stderr, quiet=False)


def _description(name: str) -> str:
    """A task's name for rich: no control characters, and no rich markup (``[link=...]``)."""
    from rich.markup import escape

    return escape(printable(name))


def _progress_text(event: DownloadProgress) -> str:
    done = human_bytes(event.done_bytes)
    rate = human_bytes(event.rate_bytes_per_s) + "/s"
    if event.size_bytes:
        percent = 100 * event.done_bytes / event.size_bytes
        return f"{percent:5.1f}% {done} of {human_bytes(event.size_bytes)}, {rate}"
    return f"{done}, {rate}"


class BatchRichDisplay:
    """A batch on a terminal: an overall bar (files done) and one line per active file.
    Events of several files arrive from several threads; rich's Progress is thread-safe."""

    def __init__(self, stderr: IO[str], files: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self._lock = threading.Lock()
        self._tasks: dict[str, Any] = {}
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            console=Console(file=stderr),
        )
        self._overall = self.progress.add_task("[bold]all files", total=files)
        self.progress.start()

    def __call__(self, event: Event) -> None:
        with self._lock:
            task = self._tasks.get(event.url)
            if isinstance(event, DownloadStarted) and task is None:
                self._tasks[event.url] = self.progress.add_task(
                    _description(event.path.name), total=event.size_bytes
                )
            elif isinstance(event, DownloadProgress) and task is not None:
                self.progress.update(task, completed=event.done_bytes)
            elif isinstance(event, (DownloadFinished, DownloadFailed)) and task is not None:
                self.progress.remove_task(task)
                del self._tasks[event.url]
            elif isinstance(event, Notice) and event.kind is NoticeKind.INSECURE:
                self.progress.console.print(f"WARNING: {printable(event.message)}", markup=False)

    def item_done(self) -> None:
        self.progress.advance(self._overall)

    def close(self) -> None:
        self.progress.stop()
