"""The lean path of a batch: many small files without a thread, a lock or a ``.part`` each.

A batch's files that qualify (``http`` or verified ``https``, no proxy, no credentials, no
rate limit, one URL, a policy of error/skip/overwrite: :mod:`segdl.run.leanplan`) are asked
for by one loop on a few reused, pipelined connections (:mod:`segdl.net.lean`) with
``Range: bytes=0-`` up to :data:`SMALL_BYTES`. An answer that holds the whole file and can be
believed (:mod:`segdl.core.wholebody`), and matches any digest given or sent, is written whole
into an unnamed file and committed in a group (:mod:`segdl.disk.commit`), by a child process
where one may be forked (:mod:`segdl.disk.forked`); a redirect is followed on the loop
(:mod:`segdl.run.leanredirects`). Every other file, and every answer it does not take (an
error status, a large file, a broken connection, a redirect it does not follow), goes to the
batch's full path, which asks again as for any download: this path only finishes files,
never fails one.

Where a batch writes, it does not take a lock per file: its files never have a name before
they are complete, so there is nothing of theirs for another process to see or clobber; a
file another segdl left partial (its ``.part``, state or lock is there) goes to the full path,
which resumes it under its lock, and a name that appears meanwhile is never linked over
unless the batch overwrites.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, cast

from segdl.core.answers import REDIRECTS
from segdl.core.errors import Cancelled, OutputLocked, SegdlError, shown
from segdl.core.models import Result
from segdl.core.progress import (
    DownloadFinished,
    DownloadProgress,
    DownloadStarted,
    Notice,
    NoticeKind,
    ProgressListener,
    silent,
)
from segdl.core.wholebody import Headers, larger_size, larger_than_asked
from segdl.disk.forked import ForkedCommit, Record, new_committer
from segdl.net.lean import LeanLoop
from segdl.net.leanconn import Answer, LeanRequest
from segdl.run.feed import Direct, Feed
from segdl.run.leandirs import Destinations, NameVerdict
from segdl.run.leanplan import SMALL_BYTES, ProxyChoices, Targets, refusal, tls_context
from segdl.run.leanredirects import Redirects
from segdl.run.reports import ItemReport, Outcome

if TYPE_CHECKING:
    from segdl.disk.commit import GroupCommit, Staged
    from segdl.run.batch import Downloader, _Prepared
    from segdl.run.reports import Collector

log = logging.getLogger(__name__)

_Jobs = Feed[tuple[int, "_Prepared"]] | Direct[tuple[int, "_Prepared"]]

DEPTH = 16
"""Requests written ahead of their answers on a connection that keeps alive: the deeper, the
fewer system calls a file (bench/README.md, "Many small files")."""
DEFERRED_AT_ONCE = 256
"""Files waiting for the full path that end a lean pass (what a pass holds stays bounded)."""
_IDLE_WAIT_S = 0.05
_LARGE_IN_A_ROW = 8


@dataclass(eq=False, slots=True)
class _Item:
    index: int
    prepared: _Prepared
    directory: Path
    final: Path | None
    started_s: float
    url_path: str
    url: str  # where it was last asked for (a redirect's target: segdl.run.leanredirects)
    named: Path | None = None  # by the answer's head, for a display
    size_bytes: int = 0
    ranged: bool = False
    shown_s: float | None = None  # when a DownloadStarted went out for it (its head came)
    hops: int = 0  # redirects followed


class LeanRun:
    """One batch's lean passes; the full path (``downloader``) takes what they defer.

    Jobs are taken from ``numbered`` as the loop has room (at most its window unanswered),
    so a list of a million starts at once and is never held. A pass ends when the jobs do
    or when :data:`DEFERRED_AT_ONCE` files wait for the full path; those then go the full
    way (with the pass's connections closed, so the per-host cap holds across both), and
    the next pass takes the jobs after them.
    """

    def __init__(
        self,
        downloader: Downloader,
        numbered: Iterable[tuple[int, _Prepared]],
        collector: Collector,
        *,
        may_wait: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``may_wait``: a job may take long to come (a pipe): read ahead (segdl.run.feed)."""
        self._downloader = downloader
        self._may_wait = may_wait
        self._source = iter(numbered)
        self._collector = collector
        self._clock = clock
        self._listener: ProgressListener = (
            downloader._progress if downloader._lean_events else silent
        )
        self._open: dict[int, _Prepared] = {}  # taken, neither reported nor deferred yet
        self._to_defer: list[tuple[int, _Prepared]] = []
        self._commits: deque[tuple[Staged, OSError | None]] = deque()
        self._lock = threading.Lock()
        self._destinations = Destinations()
        self._proxies = ProxyChoices()
        self._targets = Targets()
        self._redirects = Redirects(self._targets, self._proxies)
        self._shallow: set[tuple[str, int, bool]] = set()  # origins not to pipeline to again
        self._loop = self._new_loop()
        self._large: dict[tuple[str, int], int] = {}  # files found too large, per origin
        self._origins_full: set[tuple[str, int]] = set()

    def _new_loop(self) -> LeanLoop:
        """A pass's loop (its selector ends with it); what it learnt of servers stays."""
        downloader, options = self._downloader, self._downloader._options
        loop = LeanLoop(
            slots=downloader._parallel,
            per_host=min(downloader._parallel, options.max_connections_per_host),
            depth=DEPTH if downloader._pipelining else 1,
            timeout_s=options.timeout_s,
            max_body_bytes=SMALL_BYTES,
            too_large=lambda status, headers: larger_than_asked(status, headers, SMALL_BYTES),
            watch=None if self._listener is silent else self._watch,
            gate=downloader._host_gate,
            tls=partial(tls_context, downloader._settings),
        )
        loop.shallow = self._shallow
        return loop

    def run(self) -> None:
        """Every job to its end: finished here, or by the full path; each reported to the
        collector (cancelled ones as failed)."""
        cancel = self._downloader.cancel
        feed: _Jobs = (
            Feed(self._source, ahead=self._window()) if self._may_wait else Direct(self._source)
        )
        try:
            while True:
                self._pass(feed)
                with self._lock:
                    deferred, self._to_defer = self._to_defer, []
                self._downloader._run_all(deferred, self._collector)
                if feed.exhausted or cancel.is_set():
                    return
        finally:
            feed.close()

    def _window(self) -> int:
        return 4 * self._loop.slots * self._loop.depth

    def _pass(self, feed: _Jobs) -> None:
        """One lean loop over the jobs, until they end or enough wait for the full path."""
        journals = self._downloader._journals  # its names are claimed: nothing to remember
        self._record = None if journals is None else partial(journals.record_many, remember=False)
        self._committing = True
        self._loop = self._new_loop()
        if self._listener is not silent:  # before the first event: a display may then
            self._first_committer()  # start threads, and no child is forked beside threads
        try:
            self._loop.run(
                self._requests(feed),
                self._deliver,
                self._given_up,
                self._downloader.cancel,
                window=self._window(),
                tick=self._drain,
            )
        finally:
            committer, self._committer, self._committing = self._committer, None, False
            if committer is not None:
                committer.close()
            self._drain()
        while self._redirects.waiting and not self._downloader.cancel.is_set():
            self._defer(cast(_Item, self._redirects.waiting.popleft().token), "redirected late")
        self._redirects.waiting.clear()
        for index, prepared in list(self._open.items()):  # stopped before it was answered
            report = ItemReport(prepared.job, Outcome.FAILED, error=Cancelled("interrupted"))
            self._report(index, report)

    _committer: GroupCommit | ForkedCommit | None = None
    _committing = False  # a pass is on: it may make its committer
    _record: Record | None = None

    def _first_committer(self) -> GroupCommit | ForkedCommit:
        """The pass's committer, made at its first file, or before its first event (_pass)."""
        if not self._committing:
            raise OSError("stopped")
        url_of = attrgetter("prepared.job.url")  # of a token (an _Item): what the journal says
        self._committer = new_committer(self._committed, url_of=url_of, record=self._record)
        return self._committer

    def _requests(self, feed: _Jobs) -> Iterator[LeanRequest | None]:
        """The loop's requests, as the jobs come; None when none is ready (the loop goes
        on with its answers). With nothing in flight, it waits here for the input."""
        cancel = self._downloader.cancel
        while not cancel.is_set() and len(self._to_defer) < DEFERRED_AT_ONCE:
            if self._redirects.waiting:
                yield self._redirects.waiting.popleft()
                continue
            taken = feed.take()
            if taken is None and not feed.exhausted and not self._loop.unanswered():
                taken = feed.take(_IDLE_WAIT_S)
                if taken is None and not feed.exhausted:
                    self._drain()  # committed files are reported while the input waits
                    continue
            if taken is None:
                if feed.exhausted and not self._loop.unanswered():
                    return  # (an answer still to come may be a redirect, asked for here)
                yield None
                continue
            index, prepared = taken
            self._open[index] = prepared
            request = self._request(index, prepared)
            if request is not None:
                yield request

    def _request(self, index: int, prepared: _Prepared) -> LeanRequest | None:
        """The lean request for a file, or None when it is settled or deferred already."""
        earlier = self._downloader._finished_before(prepared)
        if earlier is not None:
            self._report(index, earlier)
            return None
        url, options = prepared.job.url, prepared.options
        planned = self._targets.request(options, url, prepared.job.urls)
        if isinstance(planned, str):
            self._defer_index(index, planned)
            return None
        target, wire = planned
        directory = prepared.dest.parent if prepared.dest else prepared.directory or Path(".")
        why = self._proxies.why(url, options) or self._destinations.unusable(directory)
        if why is not None:
            self._defer_index(index, why)
            return None
        url_path = target.path.partition("?")[0]
        item = _Item(index, prepared, directory, prepared.dest, self._clock(), url_path, url)
        if prepared.dest is not None and not self._free(item, prepared.dest):
            return None
        if (target.host, target.port) in self._origins_full:
            self._defer(item, "its server's files are large")
            return None
        return LeanRequest(target.host, target.port, wire, item, tls=target.tls)

    def _free(self, item: _Item, path: Path) -> bool:
        """Whether ``path`` may be written here (see :meth:`Destinations.take`). False when
        the item was settled (skipped, a twin) or deferred."""
        verdict = self._destinations.take(item.directory, path, item.prepared.options.if_exists)
        if verdict is NameVerdict.FREE:
            return True
        if verdict is NameVerdict.TWIN:
            self._twin(item, path)
        elif verdict is NameVerdict.SKIP:
            self._skipped(item, path)
        else:
            self._defer(item, verdict.value)
        return False

    def _deliver(self, request: LeanRequest, answer: Answer) -> None:
        item = cast(_Item, request.token)
        self._large.pop((request.host, request.port), None)
        if answer.status in REDIRECTS:  # asked for again where it points, here if it may
            why = self._redirects.follow(item, item.prepared.options, answer)
            if why is not None:
                self._defer(item, why)
            return
        refused = refusal(item.prepared.options, answer)
        if refused is not None:
            if refused.mismatch and answer.pipelined:  # out of turn? no more pipelining there
                self._loop.shallow.add((request.host, request.port, request.tls))
            self._defer(item, refused.why)
            return
        options, size = item.prepared.options, len(answer.body)
        path = item.final or item.named or self._named(item, answer)
        if path is None or (item.final is None and not self._free(item, path)):
            return
        item.final, item.size_bytes, item.ranged = path, size, answer.status == 206
        try:
            committer = self._committer or self._first_committer()
            committer.stage(self._destinations.real(item.directory), answer.body, path,
                            overwrite=options.overwrite, token=item, now=False)  # fmt: skip
        except OSError as exc:
            self._defer(item, f"cannot write: {exc}")
            return
        if self._listener is not silent:  # all of it is here: its line says so while it syncs
            self._watch(request, answer.status, answer.header_values, size)

    def _named(self, item: _Item, answer: Answer) -> Path | None:
        try:
            return self._destinations.name(item.directory, item.prepared.job.url,
                                           item.url_path, answer.header_values)  # fmt: skip
        except SegdlError as exc:
            self._defer(item, str(exc))
            return None

    def _committed(self, staged: Staged, error: OSError | None) -> None:
        """From the committing thread: reported by the loop's thread (see :meth:`_drain`)."""
        self._commits.append((staged, error))

    def _drain(self) -> None:
        """Report the files committed since the last call, from the thread running the batch:
        every event of a lean file then comes from one thread, as each file's events do on
        the full path (displays tell files apart by it); first, hand the round's files over."""
        if self._committer is not None:
            self._committer.hand_over()
        while self._commits:
            self._report_commit(*self._commits.popleft())

    def _report_commit(self, staged: Staged, error: OSError | None) -> None:
        item = cast(_Item, staged.token)
        if error is not None:
            self._defer(item, f"cannot commit: {error}")
            return
        assert item.final is not None
        url = item.prepared.job.url
        elapsed_s = self._clock() - item.started_s
        if self._listener is not silent:
            self._listener(DownloadFinished(shown(url), item.final, item.size_bytes, elapsed_s))
        result = Result(url, item.final, item.size_bytes, elapsed_s, 1, item.ranged)
        self._report(item.index, ItemReport(item.prepared.job, Outcome.DONE, result))

    def _twin(self, item: _Item, path: Path) -> None:
        """Another entry of this batch names the same file: this one fails, saying so (as
        the full path does when the second entry finds the first one's lock)."""
        why = "two entries of this batch name the same file"
        error = OutputLocked(str(path), why, same_process=True, message=f"{why} {path}")
        self._report(item.index, ItemReport(item.prepared.job, Outcome.FAILED, error=error))

    def _watch(self, request: LeanRequest, status: int, headers: Headers, done: int) -> None:
        """Events for displays while an answer arrives: started at its head, then progress."""
        item = cast(_Item, request.token)
        url_given = item.prepared.job.url
        url = shown(url_given)
        if not done:
            size = larger_size(status, headers)
            if item.final is None:
                with contextlib.suppress(SegdlError):  # no name yet: the answer's end says why
                    item.named = self._destinations.name(
                        item.directory, url_given, item.url_path, headers
                    )
            path = item.final or item.named or self._destinations.real(item.directory)
            item.size_bytes = size or 0
            if item.shown_s is None:  # asked again after a broken connection: the same line
                item.shown_s = self._clock()
                self._listener(DownloadStarted(url, path, size, status == 206, 1))
            return
        now, size, head_s = self._clock(), item.size_bytes or None, item.shown_s  # rate: from
        rate = done / max(1e-6, now - (item.started_s if head_s is None else head_s))  # the head
        self._listener(DownloadProgress(url, done, size, max(1e-6, now - item.started_s), rate, 1))

    def _skipped(self, item: _Item, path: Path) -> None:
        url = item.prepared.job.url
        self._listener(Notice(shown(url), NoticeKind.SKIPPED, f"{path} exists: skipped"))
        size = path.lstat().st_size
        result = Result(url, path, size, self._clock() - item.started_s, 0, False, skipped=True)
        self._report(item.index, ItemReport(item.prepared.job, Outcome.SKIPPED, result))

    def _given_up(self, request: LeanRequest, why: str) -> None:
        """The loop gave up on a request; after a few large files in a row from a server,
        its other files go straight to the full path (no request wasted here on each)."""
        origin = (request.host, request.port)
        if why.endswith("a larger file"):
            self._large[origin] = self._large.get(origin, 0) + 1
            if self._large[origin] >= _LARGE_IN_A_ROW:
                self._origins_full.add(origin)
        self._defer(cast(_Item, request.token), why)

    def _defer(self, item: _Item, why: str) -> None:
        if item.shown_s is not None:  # its line on a display ends; the full path starts its own
            url = shown(item.prepared.job.url)
            self._listener(Notice(url, NoticeKind.HANDED_OVER, f"to the full path: {why}"))
        self._defer_index(item.index, why)

    def _defer_index(self, index: int, why: str) -> None:
        prepared = self._open.pop(index)
        log.debug("%s: to the full path (%s)", shown(prepared.job.url), why)
        with self._lock:
            self._to_defer.append((index, prepared))

    def _report(self, index: int, report: ItemReport) -> None:
        self._open.pop(index, None)
        self._collector.add(index, report)
