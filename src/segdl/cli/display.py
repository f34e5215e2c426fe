"""Turning progress events into output: a rich bar, plain lines, or JSON lines.

The live displays for a terminal are in :mod:`segdl.cli.screen`, imported only when one is
drawn, so a non-interactive run (and ``segdl --version``) never loads rich.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import IO, Any, Protocol

from segdl.cli.render import bytes_of, clock, eta_s, human_bytes, human_rate
from segdl.core.printable import json_line, printable
from segdl.core.progress import (
    DownloadProgress,
    Event,
    Notice,
    NoticeKind,
    SegmentMap,
)

_PLAIN_INTERVAL_S = 2.0


class Display(Protocol):
    """A progress listener that may hold a terminal and must be closed."""

    def __call__(self, event: Event) -> None: ...

    def close(self) -> None: ...


def live_terminal(mode: str, stream: IO[str]) -> bool:
    """Whether progress is drawn live (rich): ``bar``, or ``auto`` on a terminal; never on
    ``TERM=dumb``, which cannot move the cursor, so it gets plain lines instead."""
    if os.environ.get("TERM") == "dumb":
        return False
    return mode == "bar" or (mode == "auto" and stream.isatty())


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


def stderr_display() -> Display:
    """The CLI's display on this process's stderr, for library callers that asked for a
    progress bar (``segdl.integrations.pooch``'s ``progressbar=True``): the live lines on a
    terminal, the plain lines elsewhere."""
    if live_terminal("auto", sys.stderr):
        from segdl.cli.screen import SingleScreen

        return SingleScreen(sys.stderr)
    return PlainDisplay(sys.stderr, quiet=False)


def _progress_text(event: DownloadProgress) -> str:
    """A plain progress line: percent, bytes, rate, ETA, connections (1024-based units)."""
    done, size = event.done_bytes, event.size_bytes
    rate = human_rate(event.rate_bytes_per_s)
    conns = f"{event.connections} connection{'s' if event.connections != 1 else ''}"
    if size and done >= size:  # the workers have stopped: "ETA 0:00, 0 connections" says nothing
        return f"100.0% {bytes_of(done, size)}, {rate}"
    if size:
        eta = clock(eta_s(done, size, event.rate_bytes_per_s))
        return f"{100 * done / size:5.1f}% {bytes_of(done, size)}, {rate}, ETA {eta}, {conns}"
    return f"{human_bytes(done)}, {rate}, {conns}"
