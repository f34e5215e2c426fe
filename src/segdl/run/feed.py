"""A batch's jobs as the loop that fetches them takes them, without waiting on its input.

A list piped from a program that writes a line now and then (``crawler | segdl -i -``) must
not hold up the answers already arriving: such an input is read ahead by a thread of its own
(:class:`Feed`), at most ``ahead`` jobs waiting, and the taker takes what is there, waiting
only when it has nothing else to do. An input that never waits long (a list, a regular file)
is read in the taker's thread (:class:`Direct`): handing each job from one thread to another
cost a wake-up and a GIL hand-over per file, up to doubling a small file's CPU.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

_PUT_WAIT_S = 0.1


class _End:
    """The input ended; ``error``: what reading it raised, if anything."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Direct(Generic[T]):
    """Items of ``source``, taken in the caller's thread (an input that never waits long)."""

    def __init__(self, source: Iterable[T]) -> None:
        self._source = iter(source)
        self.exhausted = False

    def take(self, wait_s: float = 0.0) -> T | None:
        """The next item; None once the input has ended (then :attr:`exhausted`)."""
        if self.exhausted:
            return None
        item = next(self._source, None)
        if item is None:
            self.exhausted = True
        return item

    def close(self) -> None:
        """Nothing runs beside the taker."""


class Feed(Generic[T]):
    """Items of ``source``, read by a daemon thread, at most ``ahead`` waiting."""

    def __init__(self, source: Iterable[T], ahead: int) -> None:
        self._queue: queue.Queue[T | _End] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self.exhausted = False
        # A daemon: a reader blocked on a pipe that never ends must not keep the process.
        self._thread = threading.Thread(
            target=self._read, args=(source,), name="segdl-input", daemon=True
        )
        self._thread.start()

    def _read(self, source: Iterable[T]) -> None:
        end = _End()
        try:
            for item in source:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the taker, raised there
            end = _End(exc)
        self._put(end)

    def _put(self, item: T | _End) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_PUT_WAIT_S)
                return True
            except queue.Full:
                continue
        return False

    def take(self, wait_s: float = 0.0) -> T | None:
        """The next item; None if none came within ``wait_s`` (0: do not wait) or the input
        has ended (then :attr:`exhausted`). An error reading the input is raised here."""
        if self.exhausted:
            return None
        try:
            item = self._queue.get(timeout=wait_s) if wait_s else self._queue.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, _End):
            self.exhausted = True
            if item.error is not None:
                raise item.error
            return None
        return item

    def close(self) -> None:
        """Stop reading (the reader ends at its next item; one blocked on its input stays
        blocked until that input gives a line or ends)."""
        self._stop.set()
