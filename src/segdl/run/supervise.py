"""The calling thread's side of one attempt: run a phase's workers, report, stop them all.

A :class:`~segdl.run.transfer.Transfer` moves bytes in phases (many ranged connections, then
perhaps one plain stream). For each, :meth:`Supervisor.run` starts the workers, reports
progress a few times a second, keeps the checkpointer ticking, passes the workers' notices on
(listeners are only ever called from the caller's thread), and turns the first fatal error or
a cancel into a clean stop: every worker halted, every open response aborted, all ended.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segdl.core.errors import Cancelled
from segdl.core.models import Resource
from segdl.core.progress import (
    DownloadProgress,
    DownloadStarted,
    Notice,
    NoticeKind,
    ProgressListener,
    SegmentMap,
)
from segdl.disk.resume import Checkpointer
from segdl.net.interfaces import OpenResponses

log = logging.getLogger(__name__)

_PROGRESS_INTERVAL_S = 0.25
_EARLY_TICK_S = 0.05
_IDLE_POLL_S = 0.05
_RATE_WINDOW_S = 3.0


@dataclass(frozen=True, slots=True)
class Watch:
    """What the calling thread looks at while a phase runs."""

    size_bytes: int | None
    done_bytes: Callable[[], int]
    segment_map: Callable[[], SegmentMap | None]
    checkpointer: Checkpointer | None
    """Keeps the state file durable (none: no state)."""
    before_progress: Callable[[], None]
    """Called before each progress event (lets the digest check read the written prefix)."""


class Supervisor:
    """Runs the phases of one attempt; its events and its stop are shared by their workers."""

    def __init__(
        self,
        shown_url: str,
        path: Path,
        listener: ProgressListener,
        clock: Callable[[], float],
        cancel: threading.Event,
        started_s: float,
        workers: cf.Executor | None = None,
    ) -> None:
        """``workers``: threads lent by a batch (else each phase starts its own)."""
        self.shown_url = shown_url
        self.path = path
        self.listener = listener
        self.clock = clock
        self.cancel = cancel
        self.halt = threading.Event()
        """Stops the workers of the current phase."""
        self.open = OpenResponses()
        self._workers = workers
        self._started_s = started_s
        self._work_changed = threading.Condition()
        self._caller = threading.current_thread()
        self._pending_notices: collections.deque[Notice] = collections.deque()
        self._rates: collections.deque[tuple[float, int]] = collections.deque()

    def run(self, calls: Sequence[Callable[[], Any]], watch: Watch) -> list[cf.Future[Any]]:
        """Run ``calls`` on worker threads and report progress until they end; on the first
        error or Ctrl-C, stop all. Every call has ended when this returns or raises."""
        futures: list[cf.Future[Any]] = []
        with self._threads(len(calls)) as pool:
            try:
                futures += [pool.submit(call) for call in calls]
                self._watch(futures, watch)
            except BaseException:
                self.halt.set()
                self.work_changed()
                self.open.abort_all()
                cf.wait(futures)
                self.halt.clear()
                self._flush_notices()
                raise
        return futures

    def _watch(self, futures: list[cf.Future[Any]], watch: Watch) -> None:
        pending = set(futures)
        progress_due_s = self.clock() + _PROGRESS_INTERVAL_S
        checkpointer = watch.checkpointer
        while pending:
            # Until the checkpointer's own thread runs, its first save waits for a tick:
            # tick often then, so a kill -9 early in a run loses little (#19).
            early = checkpointer is not None and not checkpointer.running
            done, pending = cf.wait(
                pending,
                timeout=_EARLY_TICK_S if early else _PROGRESS_INTERVAL_S,
                return_when=cf.FIRST_EXCEPTION,
            )
            if any(future.exception() is not None for future in done):
                raise _first_error(futures)
            self._flush_notices()
            if checkpointer is not None:
                if checkpointer.error is not None:
                    raise checkpointer.error
                checkpointer.tick()
            now_s = self.clock()
            if now_s >= progress_due_s or not pending:
                progress_due_s = now_s + _PROGRESS_INTERVAL_S
                watch.before_progress()
                self._progress(watch.size_bytes, watch.done_bytes(), len(pending), watch)
            if self.cancel.is_set():
                raise Cancelled("download cancelled")

    def idle(self) -> None:
        """A worker with nothing to take waits until a range ends (or a short while)."""
        with self._work_changed:
            self._work_changed.wait(_IDLE_POLL_S)

    def work_changed(self) -> None:
        """A range ended (or the phase stops): idle workers look again."""
        with self._work_changed:
            self._work_changed.notify_all()

    def wait_for(self, done: threading.Event) -> None:
        """Wait for another worker's ``done``, or for the phase to stop."""
        while not done.wait(_IDLE_POLL_S) and not self.halt.is_set():
            pass

    def started(self, resource: Resource, *, ranged: bool, connections: int) -> None:
        self.listener(
            DownloadStarted(self.shown_url, self.path, resource.size_bytes, ranged, connections)
        )

    def notice(self, kind: NoticeKind, message: str) -> None:
        log.info("%s: %s", self.shown_url, message)
        notice = Notice(self.shown_url, kind, message)
        if threading.current_thread() is self._caller:
            self.listener(notice)
        else:  # listeners are only ever called from the caller's thread
            self._pending_notices.append(notice)

    def _flush_notices(self) -> None:
        while self._pending_notices:
            self.listener(self._pending_notices.popleft())

    @contextlib.contextmanager
    def _threads(self, count: int) -> Iterator[cf.Executor]:
        """The threads lent by a batch, which its files share (a thread started per file
        costs more than a small file's transfer); else a pool of our own for this phase."""
        if self._workers is not None:
            yield self._workers
            return
        with cf.ThreadPoolExecutor(count, thread_name_prefix="segdl") as pool:
            yield pool

    def _progress(
        self, size_bytes: int | None, done_bytes: int, connections: int, watch: Watch
    ) -> None:
        """A progress event, its rate over the last few seconds."""
        now = self.clock()
        if not self._rates:
            self._rates.append((self._started_s, 0))
        self._rates.append((now, done_bytes))
        while len(self._rates) > 2 and now - self._rates[0][0] > _RATE_WINDOW_S:
            self._rates.popleft()
        then, then_bytes = self._rates[0]
        rate = (done_bytes - then_bytes) / (now - then) if now > then else 0.0
        elapsed_s = now - self._started_s
        self.listener(
            DownloadProgress(
                self.shown_url,
                done_bytes,
                size_bytes,
                elapsed_s,
                rate,
                connections,
                watch.segment_map(),
            )
        )


def _first_error(futures: Sequence[cf.Future[Any]]) -> BaseException:
    """The error that caused the stop, preferring a real cause over the ``Cancelled`` of
    workers that were stopped because of it."""
    errors = [e for f in futures if f.done() and (e := f.exception()) is not None]
    for error in errors:
        if not isinstance(error, Cancelled):
            return error
    return errors[0]
