"""Live displays on a terminal: lines redrawn in place, everything else printed above them.

rich (imported only here, and this module only on a terminal) owns the bottom of the screen
while a display is live; every other line segdl prints meanwhile goes through
:meth:`Screen.print`, so it scrolls above the display instead of leaving copies of it behind.
The lines themselves come from :mod:`segdl.cli.render` at the terminal's width of the moment,
so a resize is picked up at the next redraw. rich honours ``NO_COLOR``.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable
from typing import IO

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.segment import Segment
from rich.text import Text

from segdl.cli import render
from segdl.cli.render import BatchView, FileView
from segdl.core.models import ByteRange
from segdl.core.printable import printable
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

_REFRESH_PER_S = 4
_PRINT_EVERY_S = 0.1
_WAITING_AT_MOST = 10_000
_RATE_WINDOW_S = 3.0
_MAP_STYLES = {
    render.DONE: "green",
    render.PARTLY: "yellow",
    render.EMPTY: "bright_black",
    render.HEAD: "bold cyan",
}


def _styled(line: str, *, is_map: bool = False) -> Text:
    if not is_map:
        return Text(line, no_wrap=True, overflow="crop")
    text = Text(no_wrap=True, overflow="crop")
    for char in line:
        text.append(char, _MAP_STYLES.get(char, ""))
    return text


class _Lines:
    """A rich renderable that asks for its lines at the width and height of each redraw."""

    def __init__(self, lines: Callable[[int, int], list[Text]]) -> None:
        self._lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self._lines(options.max_width, console.size.height)


class _Printed:
    """Lines for above the live region, written as they are: they are printable already,
    and rich's parsing, styling and wrapping of a Text cost five times as much a line. A
    long line is not cut or broken by segdl (with ``crop=False``): the terminal wraps it,
    so a path copied from the screen is whole."""

    def __init__(self, lines: list[str]) -> None:
        self._lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        newline = Segment.line()
        for line in self._lines:
            yield Segment(line)
            yield newline


class Screen:
    """The live region at the bottom of a terminal, and the way to print above it."""

    def __init__(
        self, stderr: IO[str], lines: Callable[[int, int], list[Text]], *, started: bool = True
    ) -> None:
        """``started``: drawing (and the threads that do it) from now on, else from
        :meth:`start`."""
        self.console = Console(file=stderr, highlight=False, markup=False, emoji=False)
        self._fd = _fileno(stderr)
        self._lines = _Lines(lines)
        self._live = Live(
            get_renderable=self._measured,
            console=self.console,
            refresh_per_second=_REFRESH_PER_S,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._started = self._stopped = False
        self._starting = threading.Lock()
        self._room = threading.Condition()  # the lines waiting
        self._printing = threading.Lock()
        self._waiting: list[str] = []
        self._stop_printing = threading.Event()
        self._printer = threading.Thread(target=self._print_waiting, daemon=True,
                                         name="segdl-print")  # fmt: skip
        if started:
            self.start()

    def start(self) -> None:
        """Draw from now on (once; from any thread)."""
        with self._starting:
            if self._started:
                return
            self._started = True
            self._live.start(refresh=True)  # the first frame now, not a refresh later
            self._printer.start()

    def _measured(self) -> _Lines:
        """Before each redraw, the terminal's size as it is now. rich would otherwise trust
        ``COLUMNS`` and ``LINES`` when set, which a resize makes stale: lines then wrap and
        every redraw leaves a copy behind."""
        if self._fd is not None:
            try:
                size = os.get_terminal_size(self._fd)
            except OSError:
                pass
            else:
                if size.columns and size.lines:  # 0x0: a terminal that does not say (rich's 80x25)
                    self.console.width, self.console.height = size.columns, size.lines
        return self._lines

    def print(self, text: str) -> None:
        """A line above the live region (``text`` already printable), on the screen within
        :data:`_PRINT_EVERY_S`, printed by a thread of the screen's own with the lines
        waiting beside it: each print redraws the live region below it, and writing to a
        terminal can block, neither of which the caller (a download's loop) should wait
        for. Past :data:`_WAITING_AT_MOST` lines waiting, the caller waits."""
        with self._room:
            while len(self._waiting) >= _WAITING_AT_MOST and not self._stop_printing.is_set():
                self._room.wait()
            self._waiting.append(text)

    def _print_waiting(self) -> None:
        while not self._stop_printing.wait(_PRINT_EVERY_S):
            self._print_all()

    def _print_all(self) -> None:
        with self._printing:  # one printer at a time: the lines keep their order
            with self._room:
                lines, self._waiting = self._waiting, []
                self._room.notify_all()
            if lines:
                self.console.print(_Printed(lines), crop=False)

    def stop(self) -> None:
        """Print what waits, draw the last state and leave it on the screen."""
        if not self._stopped:
            self.start()  # never started: its last state is drawn all the same
            self._stopped = True
            self._stop_printing.set()
            with self._room:
                self._room.notify_all()
            self._printer.join()
            self._print_all()
            self._live.refresh()
            self._live.stop()


def _fileno(stream: IO[str]) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):  # not a real file (tests)
        return None


class _Rate:
    """Bytes per second over the last few seconds, from samples taken at each redraw."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def update(self, total_bytes: int) -> float:
        now = self._clock()
        self._samples.append((now, total_bytes))
        while len(self._samples) > 2 and now - self._samples[0][0] > _RATE_WINDOW_S:
            self._samples.popleft()
        then, then_bytes = self._samples[0]
        return (total_bytes - then_bytes) / (now - then) if now > then else 0.0


class SingleScreen:
    """One download on a terminal: its line (bytes, rate, ETA, connections), then its
    segment map; notices above."""

    def __init__(self, stderr: IO[str]) -> None:
        self._lock = threading.Lock()
        self._view: FileView | None = None
        self.screen = Screen(stderr, self._lines)

    def _lines(self, width: int, height: int) -> list[Text]:
        with self._lock:
            if self._view is None:
                return []
            lines = render.single_lines(self._view, width)
        return [_styled(lines[0]), *(_styled(line, is_map=True) for line in lines[1:])]

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, DownloadStarted):
                self._view = FileView(
                    printable(event.path.name), event.size_bytes, connections=event.connections
                )
            elif isinstance(event, DownloadProgress) and self._view is not None:
                _update(self._view, event)
            elif isinstance(event, DownloadFinished) and self._view is not None:
                self._view.done_bytes = self._view.size_bytes = event.size_bytes
                self._view.connections = 0
                self._view.rate_bytes_per_s = event.size_bytes / max(event.elapsed_s, 1e-9)
                self._view.took_s = event.elapsed_s
                if self._view.segments is not None:  # the whole map turns green
                    whole = (ByteRange(0, event.size_bytes),) if event.size_bytes else ()
                    self._view.segments = SegmentMap(event.size_bytes, whole, ())
        if isinstance(event, Notice):
            self.screen.print(_notice_text(event))

    def close(self) -> None:
        self.screen.stop()


class BatchScreen:
    """A batch on a terminal: one overall line, then the files transferring now (as many as
    fit; the rest as ``+N more``); per-file lines and failures above.

    It starts drawing, and runs ``on_begin``, at :meth:`begin` or the batch's first event,
    line or ended file, not when it is made: a batch forks its committing child before its
    first event, which needs a process with no other thread (see
    :func:`segdl.disk.forked.can_fork`)."""

    def __init__(
        self, stderr: IO[str], files: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._started_s = clock()
        self._batch = BatchView(files)
        self._active: dict[str, list[FileView]] = {}
        self._finished_bytes = 0
        self._rate = _Rate(clock)
        self.screen = Screen(stderr, self._lines, started=False)
        self.on_begin: Callable[[], None] | None = None
        self._begun = False

    def begin(self) -> None:
        if self._begun:  # every event asks: the lock only the first time
            return
        with self._lock:
            if self._begun:
                return
            self._begun = True
        self.screen.start()
        if self.on_begin is not None:
            self.on_begin()

    def _lines(self, width: int, height: int) -> list[Text]:
        with self._lock:
            batch = self._batch
            active = [view for views in self._active.values() for view in views]
            batch.bytes_done = self._finished_bytes + sum(v.done_bytes for v in active)
            batch.rate_bytes_per_s = self._rate.update(batch.bytes_done)
            batch.elapsed_s = self._clock() - self._started_s
            lines = render.batch_lines(batch, active, width, height)
        return [_styled(line) for line in lines]

    def __call__(self, event: Event) -> None:
        self.begin()
        # Files are told apart by URL: the events of one file may come from more than one
        # thread (a batch's lean path reports a file's end from the thread committing it).
        # Several files of one URL (out= names) are kept in the order they started.
        with self._lock:
            views = self._active.setdefault(event.url, [])
            if isinstance(event, DownloadStarted):
                name = printable(event.path.name)
                views.append(FileView(name, event.size_bytes, connections=event.connections))
            elif isinstance(event, DownloadProgress) and views:
                _update(views[-1], event)
            elif isinstance(event, (DownloadFinished, DownloadFailed)) and views:
                name = printable(event.path.name) if isinstance(event, DownloadFinished) else ""
                ended = next((v for v in views if v.name == name), views[0])
                views.remove(ended)
            elif isinstance(event, Notice) and event.kind is NoticeKind.HANDED_OVER and views:
                views.pop(0)  # the oldest line of that URL: the one the lean path drew
            if not views:
                del self._active[event.url]
        if isinstance(event, Notice) and event.kind is NoticeKind.INSECURE:
            self.screen.print(_notice_text(event))

    def files_known(self, files: int) -> None:
        """The batch has at least ``files`` files (its list is read as it goes)."""
        with self._lock:
            self._batch.files = max(self._batch.files, files)

    def item_ended(self, *, failed: bool, size_bytes: int, complete_before: bool) -> None:
        """A file of the batch is done with (its line printed above by the caller)."""
        self.begin()
        with self._lock:
            if failed:
                self._batch.failed += 1
            else:
                self._batch.finished += 1
                self._finished_bytes += 0 if complete_before else size_bytes
            if complete_before:
                self._batch.complete_before += 1

    def print(self, text: str) -> None:
        self.begin()
        self.screen.print(text)

    def close(self) -> None:
        self.begin()  # a batch with nothing to show still ends on its last frame
        with self._lock:
            self._batch.over = True  # the last frame: however many files were left
            self._active.clear()  # a file still listed was stopped: the summary counts it
        self.screen.stop()


def _update(view: FileView, event: DownloadProgress) -> None:
    view.done_bytes = event.done_bytes
    view.size_bytes = event.size_bytes
    view.rate_bytes_per_s = event.rate_bytes_per_s
    view.connections = event.connections
    view.segments = event.segments


def _notice_text(event: Notice) -> str:
    if event.kind is NoticeKind.INSECURE:
        return f"segdl: WARNING: {printable(event.message)}"
    return f"segdl: note: {printable(event.message)}"
