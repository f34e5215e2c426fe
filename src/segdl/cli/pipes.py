"""A closed pipe (``segdl ... | head``) ends segdl quietly, resumably, with exit 141.

Python ignores SIGPIPE, so a write to a pipe whose reader has gone raises BrokenPipeError,
from whichever listener happens to print. :class:`GuardedStream` wraps stdout and stderr:
the first such error asks the download to stop (the same path as Ctrl-C, so the state is
saved and a rerun resumes), and every later write is dropped instead of raising again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from typing import IO, Any


class PipeWatch:
    """Shared by the guarded streams of one run: whether a reader went away."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.closed = False

    def tripped(self) -> None:
        self.closed = True
        self.stop.set()


class GuardedStream:
    """A text stream whose writes never raise for a closed pipe; line-buffered, so that a
    person watching through ``| tee`` sees each line as it is written."""

    def __init__(self, inner: IO[str], watch: PipeWatch) -> None:
        self._inner = inner
        self._watch = watch
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            if self._watch.closed:
                return len(text)
            try:
                self._inner.write(text)
                if "\n" in text:
                    self._inner.flush()
            except OSError as exc:
                if not _is_closed_pipe(exc):
                    raise
                self._watch.tripped()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._watch.closed:
                return
            try:
                self._inner.flush()
            except OSError as exc:
                if not _is_closed_pipe(exc):
                    raise
                self._watch.tripped()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    def __getattr__(self, name: str) -> Any:  # encoding, errors, buffer...: rich asks
        return getattr(self._inner, name)


def hold_standard_fds() -> frozenset[int]:
    """Open /dev/null on each of descriptors 0, 1 and 2 that is not open (``segdl ... >&-``),
    or, for 1 and 2, not open for writing (a launcher that ran with it closed may leave a file
    it read there), and return those: the first file or socket opened later would otherwise
    take the number, and what is written to stdout or stderr would land in it."""
    closed = []
    for fd in (0, 1, 2):
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        except OSError:
            closed.append(fd)
            continue
        if fd and flags & os.O_ACCMODE == os.O_RDONLY:
            closed.append(fd)
    for fd in closed:  # lowest first: a closed one is the number the next open takes
        devnull = os.open(os.devnull, os.O_RDWR)
        if devnull != fd:
            os.dup2(devnull, fd)
            os.close(devnull)
    return frozenset(closed)


def or_nowhere(stream: IO[str] | None) -> IO[str]:
    """``stream``, or, for a standard stream the process was started without (Python then
    sets ``sys.stdout`` or ``sys.stderr`` to None), a stream to /dev/null: what segdl would
    have said there goes nowhere, and the download goes on."""
    if stream is not None:
        return stream
    return open(os.devnull, "w", encoding="utf-8")  # for the rest of the run


def _is_closed_pipe(exc: OSError) -> bool:
    return isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE


def silence_closed(watch: PipeWatch, *fds: int) -> None:
    """After a closed pipe, point its descriptors at /dev/null, so that the interpreter's
    last flush at exit has nowhere to fail (Python's documented advice for SIGPIPE)."""
    if not watch.closed:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)
