"""Many downloads: an input file in aria2's format, a bounded number at once, one report.

Every download of a batch shares one transport whose pools block at
``max_connections_per_host``, so the per-host cap holds across all of them (aria2#577), not
per file. A failed item never stops the others; the report says what happened to each.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from segdl.core.errors import OutputChanged, OutputLocked, SegdlError, UsageError
from segdl.core.models import Result
from segdl.core.options import DownloadOptions, IfExists, parse_headers, with_overrides
from segdl.core.progress import DownloadReceived, Event, ProgressListener, silent
from segdl.disk.journal import Completion, Journals
from segdl.disk.storage import make_directory
from segdl.net.gate import HostGate
from segdl.net.interfaces import FollowOn, Preconnection, Response, Transport
from segdl.net.transport import Urllib3Transport
from segdl.run.engine import download
from segdl.run.lean import LeanRun, lean_batch_usable
from segdl.run.ratelimit import TokenBucket

log = logging.getLogger(__name__)

# Per-item options an input file may set (aria2's names), and the download() keyword for each.
_ITEM_KEYS = {
    "out": "dest",
    "dir": "directory",
    "checksum": "checksum",
    "header": "headers",
    "connections": "connections",
    "split": "connections",
    "limit-rate": "limit_rate",
}


@dataclass(frozen=True, slots=True)
class Job:
    """One file to fetch: its URLs (the first, then mirrors of the same file) and options."""

    urls: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    """``dest`` and ``directory`` (where the file goes), and any option of
    :func:`segdl.download` for this file only (``checksum``, ``connections``, ``headers``...)."""

    @property
    def url(self) -> str:
        return self.urls[0]


# Options of the transport every file of a batch shares: a file cannot set its own.
_BATCH_WIDE = frozenset(
    {"timeout_s", "max_connections_per_host", "ca_bundle", "insecure", "proxy", "use_proxy_env"}
)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A job checked: its options applied to the batch's, and where its file goes."""

    job: Job
    options: DownloadOptions
    dest: Path | None
    directory: Path | None


class Outcome(Enum):
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ItemReport:
    job: Job
    outcome: Outcome
    result: Result | None = None
    error: BaseException | None = None
    complete_before: bool = False
    """SKIPPED because an earlier run finished this very file (see :mod:`segdl.disk.journal`):
    nothing was asked of any server."""


@dataclass(frozen=True, slots=True)
class BatchReport:
    items: tuple[ItemReport, ...]
    elapsed_s: float

    def count(self, outcome: Outcome) -> int:
        return sum(1 for item in self.items if item.outcome is outcome)

    @property
    def already_complete(self) -> int:
        """Items an earlier run had finished (counted in SKIPPED too)."""
        return sum(1 for item in self.items if item.complete_before)

    @property
    def ok(self) -> bool:
        return self.count(Outcome.FAILED) == 0

    @property
    def bytes_done(self) -> int:
        return sum(i.result.size_bytes for i in self.items if i.result and not i.result.skipped)

    @property
    def failures(self) -> list[ItemReport]:
        return [item for item in self.items if item.outcome is Outcome.FAILED]


def parse_input_file(text: str, *, first_line: int = 1) -> list[Job]:
    """aria2's input file: a line of TAB-separated URLs (mirrors of one file), then indented
    ``key=value`` lines for that file; ``#`` comments and blank lines are ignored.
    ``first_line``: the number of the text's first line in messages (a piece of a longer
    list, see :mod:`segdl.run.shards`)."""
    jobs: list[Job] = []
    for number, line in enumerate(text.splitlines(), first_line):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t":
            if not jobs:
                raise UsageError(f"input line {number}: an option before any URL")
            key, sep, value = line.strip().partition("=")
            if not sep or key not in _ITEM_KEYS:
                known = ", ".join(sorted(_ITEM_KEYS))
                raise UsageError(f"input line {number}: unknown option {key!r} (known: {known})")
            options = dict(jobs[-1].options)
            _set_option(options, _ITEM_KEYS[key], value.strip(), number)
            jobs[-1] = Job(jobs[-1].urls, options)
            continue
        urls = tuple(u for u in line.strip().split("\t") if u)
        jobs.append(Job(urls))
    return jobs


def _set_option(options: dict[str, Any], name: str, value: str, number: int) -> None:
    if name == "headers":
        header = parse_headers([value], where=f"input line {number}: ")
        options["headers"] = {**options.get("headers", {}), **header}
    elif name == "connections":
        if not (value.isascii() and value.isdigit()):
            raise UsageError(f"input line {number}: connections must be a number")
        options["connections"] = int(value)
    else:
        options[name] = value


class Downloader:
    """For programs that add work over time: ``submit()`` returns a future per file.

    All files share one transport (the per-host cap holds across them), one rate limit and
    ``parallel`` places on the network; a file gives its place to the next as soon as its
    bytes are in, while it is checked, synced and renamed. With ``pipelining`` (the default)
    the next file's request for the same server goes out on a connection while the previous
    file's last bytes arrive (HTTP/1.1 pipelining, direct connections only, see
    :mod:`segdl.net.pipelining`), which saves a round trip per file. ``host_gate``: who else
    must agree before a connection opens or a request goes (:mod:`segdl.net.gate`; the
    cluster runner's cap and pauses across machines). With ``journal`` the directories keep a
    journal of the files finished there, as :func:`download_many` does (off by default here:
    work submitted over time is rarely "the same batch again"). Use as a context manager, or
    call :meth:`close`.
    """

    def __init__(
        self,
        *,
        parallel: int = 4,
        options: DownloadOptions | None = None,
        directory: str | Path | None = None,
        progress: ProgressListener | None = None,
        cancel: threading.Event | None = None,
        pipelining: bool = True,
        host_gate: HostGate | None = None,
        journal: bool = False,
        **overrides: object,
    ) -> None:
        """``options`` and ``overrides`` (as for :func:`segdl.download`) are every file's,
        checked here; a :class:`Job` may override some of them for its file."""
        if parallel < 1:
            raise UsageError("jobs must be at least 1")
        settings = with_overrides(options, overrides)
        self.cancel = cancel or threading.Event()
        self._directory = Path(directory) if directory is not None else None
        self._progress = progress or silent
        shared_rate = settings.limit_rate_bytes_per_s
        self._rate_limiter = TokenBucket(shared_rate) if shared_rate is not None else None
        # A file's own options: the batch's rate limit is the shared bucket, not one a file,
        # and no file preconnects (the batch's pool keeps connections warm).
        self._options = replace(settings, limit_rate_bytes_per_s=None, preconnect=False)
        self._transport = Urllib3Transport.for_options(
            settings,
            max_connections_per_host=settings.max_connections_per_host,
            block=True,  # the cap is shared by every download
            pipelining=pipelining,
            host_gate=host_gate,
        )
        # `parallel` files on the network at once, as many waiting with a request queued
        # behind them, and as many more finishing on disk (digest check, sync, rename): the
        # next file's request need not wait for the last one's sync.
        self._pool = cf.ThreadPoolExecutor(3 * parallel, thread_name_prefix="segdl-job")
        # The connections' threads, shared by every file. A thread started per file waits on
        # concurrent.futures' global lock (a batch of small files: bench/README.md).
        # A thread starts only when none is idle; past the cap, a file's extra connections
        # wait for one.
        self._workers = cf.ThreadPoolExecutor(
            parallel * max(16, settings.max_connections_per_host),
            thread_name_prefix="segdl",
        )
        self._places = _Places(parallel)
        self._parallel = parallel
        self._pipelining = pipelining
        self._host_gate = host_gate
        self._journals = Journals() if journal else None

    def submit(
        self, job: Job | str, on_done: Callable[[ItemReport], None] | None = None
    ) -> cf.Future[ItemReport]:
        """Queue one file; ``on_done(ItemReport)`` runs (in a worker thread) when it ends.
        A bad option of ``job`` raises :class:`~segdl.core.errors.UsageError` here."""
        return self._submit(self._prepare(job), on_done)

    def _prepare(self, job: Job | str) -> _Prepared:
        """``job`` with its options checked and applied to the batch's."""
        item = job if isinstance(job, Job) else Job((job,))
        own = dict(item.options)
        dest, directory = own.pop("dest", None), own.pop("directory", None)
        if shared := sorted(_BATCH_WIDE & own.keys()):
            raise UsageError(f"option {shared[0]} is the whole batch's: it cannot be set per file")
        options = with_overrides(self._options, own)
        place = Path(directory) if directory is not None else self._directory
        if dest is None:
            return _Prepared(item, options, None, place)
        # aria2: `out` is relative to `dir`
        return _Prepared(item, options, (place or Path(".")) / dest, None)

    def _submit(
        self, prepared: _Prepared, on_done: Callable[[ItemReport], None] | None
    ) -> cf.Future[ItemReport]:
        def run() -> ItemReport:
            report = self._finished_before(prepared)
            if report is None:
                ticket = self._places.enter(prepared.job.url)
                try:
                    transport = _FileTransport(self._transport, ticket)
                    report = self._run_one(prepared, transport, ticket)
                finally:
                    ticket.give_back()
                self._record(report)
            if on_done is not None:
                on_done(report)
            return report

        return self._pool.submit(run)

    def _finished_before(self, prepared: _Prepared) -> ItemReport | None:
        """An item the journal settles without the network: complete (skipped), or at its
        name but not the file segdl finished (failed, left alone); else None, fetch it."""
        policy = prepared.options.if_exists
        if self._journals is None or policy is IfExists.OVERWRITE:
            return None
        job, dest = prepared.job, prepared.dest
        if dest is not None:
            found = self._journals.check(job.url, dest.parent, dest.name)
        else:
            found = self._journals.check(job.url, prepared.directory or Path("."))
        if found.completion is Completion.COMPLETE and found.path is not None:
            size = found.path.lstat().st_size
            result = Result(job.url, found.path, size, 0.0, 0, False, skipped=True)
            return ItemReport(job, Outcome.SKIPPED, result, complete_before=True)
        if found.completion is Completion.CHANGED and policy is IfExists.ERROR:
            return ItemReport(job, Outcome.FAILED, error=OutputChanged(str(found.path)))
        return None

    def _record(self, report: ItemReport) -> None:
        """A file this batch finished goes in its directory's journal, for reruns."""
        if self._journals is None or report.outcome is not Outcome.DONE or not report.result:
            return
        try:
            self._journals.record(report.job.url, report.result.path)
        except OSError as exc:  # the file is fine; a rerun will only not know it is ours
            log.warning("cannot record %s in its journal: %s", report.result.path, exc)

    def _run_one(self, prepared: _Prepared, transport: Transport, ticket: _Ticket) -> ItemReport:
        """Fetch the file from its first URL with the others as mirrors (ranges spread over all,
        a failing mirror dropped); if the first URL itself fails, the next one leads."""
        job = prepared.job
        if prepared.dest is not None:
            try:  # the directories `out` names are created, as aria2 does
                make_directory(prepared.dest.parent)
            except SegdlError as exc:
                return ItemReport(job, Outcome.FAILED, error=exc)
        error: BaseException | None = None
        for number, url in enumerate(job.urls):
            if number:  # the next URL: on the network again (the first took its place at entry)
                ticket.take()
            if self.cancel.is_set():
                break
            try:
                result = download(
                    url,
                    prepared.dest,
                    options=prepared.options,
                    directory=prepared.directory,
                    progress=ticket.listener(self._progress),
                    transport=transport,
                    cancel=self.cancel,
                    mirrors=job.urls[number + 1 :],
                    rate_limiter=self._rate_limiter,
                    workers=self._workers,
                )
            except OutputLocked as exc:
                if not exc.same_process:
                    error = exc
                    continue
                # The lock names the batch's own pid, which says nothing to the user.
                why = "two entries of this batch name the same file"
                error = OutputLocked(exc.path, why, same_process=True, message=f"{why} {exc.path}")
                break  # another URL of this entry would only name the same file again
            except SegdlError as exc:
                error = exc
                continue
            outcome = Outcome.SKIPPED if result.skipped else Outcome.DONE
            return ItemReport(job, outcome, result)
        return ItemReport(job, Outcome.FAILED, error=error or SegdlError("cancelled"))

    def close(self, *, cancel: bool = False) -> None:
        """Wait for queued files (or stop them, resumably, with ``cancel``), then clean up."""
        if cancel:
            self.cancel.set()
        self._pool.shutdown(wait=True)
        self._workers.shutdown(wait=True)
        self._transport.close()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(cancel=exc_info[0] is not None)


def download_many(
    jobs: Iterable[Job | str],
    *,
    parallel: int = 4,
    on_item: Callable[[ItemReport], None] | None = None,
    journal: bool = True,
    lean: bool = True,
    **keywords: Any,
) -> BatchReport:
    """Download every job, ``parallel`` at a time; never raises for a failed item.

    Other keywords are :class:`Downloader`'s (``options``, ``directory``, ``progress``,
    ``cancel``, ``pipelining``) and the options every file gets (a job's own win). Every
    job's options are checked before the first file starts: a bad one raises
    :class:`~segdl.core.errors.UsageError`, never half-way through the batch.
    ``on_item(ItemReport)`` is called as each item ends, from a worker thread.
    With ``journal`` (the default) each directory keeps ``.segdl-journal``, the files this
    tool finished there (:mod:`segdl.disk.journal`): run the same batch again and those are
    skipped without a request (``ItemReport.complete_before``), a file replaced since is left
    alone and reported (unless ``if_exists="overwrite"``), and the rest is fetched.
    With ``lean`` (the default) small files over plain http are fetched by one loop on a
    few pipelined connections and committed in groups (:mod:`segdl.run.lean`); the others,
    and whatever that loop does not take whole, go the full way, as with ``lean=False``.
    """
    started = time.monotonic()
    with Downloader(parallel=parallel, journal=journal, **keywords) as downloader:
        prepared = [downloader._prepare(job) for job in jobs]
        if lean and lean_batch_usable(downloader):  # small files: see segdl.run.lean
            reports = LeanRun(downloader, prepared, on_item).run()
        else:
            futures = [downloader._submit(item, on_item) for item in prepared]
            reports = [future.result() for future in futures]
    return BatchReport(tuple(reports), time.monotonic() - started)


class _Places:
    """A batch's ``parallel`` places on the network, and the lanes files offer behind their
    last responses (HTTP/1.1 pipelining: see :mod:`segdl.net.pipelining`).

    A file enters with a free place, or by taking a lane a file on the network offered for
    its own origin; then its first request rides behind that file's response and it inherits
    that file's place when the file gives it back. Until it holds a place, nothing else of it
    goes on the network, so files receiving at once stay at ``parallel``, each with at most
    the next one's request queued behind it.

    Every hand-over goes straight to one waiter, first come first served, and wakes only it:
    with dozens of files waiting, waking them all to compete would cost more than the files.
    """

    def __init__(self, parallel: int) -> None:
        self._lock = threading.Lock()
        self._free = parallel
        self._offers: deque[_Offer] = deque()
        self._waiting: deque[_Waiter] = deque()  # files not yet admitted
        self._inheriting: deque[_Ticket] = deque()  # admitted files that want a place again

    def enter(self, url: str) -> _Ticket:
        """A free place or a lane that ``url`` may take, waiting for one."""
        with self._lock:
            if self._free > 0:
                self._free -= 1
                return _Ticket(self, held=True)
            offer = self._take_offer(url)
            if offer is not None:
                return self._behind(offer)
            waiter = _Waiter(url)
            self._waiting.append(waiter)
        waiter.admitted.wait()
        assert waiter.ticket is not None
        return waiter.ticket

    def _behind(self, offer: _Offer) -> _Ticket:
        ticket = _Ticket(self, held=False, lane=offer.lane, ahead=offer.ticket)
        offer.ticket.successor = ticket
        return ticket

    def _take_offer(self, url: str) -> _Offer | None:
        for offer in list(self._offers):
            if not offer.lane.open or offer.ticket.successor is not None:
                self._offers.remove(offer)  # stale: its response ended, or it was taken
            elif offer.lane.accepts(url):
                self._offers.remove(offer)
                return offer
        return None

    def _offer(self, offer: _Offer) -> None:
        """With the lock held: to the first waiter for that origin, else kept for one."""
        for waiter in self._waiting:
            if offer.lane.accepts(waiter.url):
                self._waiting.remove(waiter)
                waiter.ticket = self._behind(offer)
                waiter.admitted.set()
                return
        self._offers.append(offer)

    def _place_freed(self) -> None:
        """With the lock held: a place to the first file wanting one, else back to the pool."""
        if self._inheriting:
            ticket = self._inheriting.popleft()
            ticket.held = True
            ticket.holding.set()
        elif self._waiting:
            waiter = self._waiting.popleft()
            waiter.ticket = _Ticket(self, held=True)
            waiter.admitted.set()
        else:
            self._free += 1


@dataclass(eq=False, slots=True)
class _Waiter:
    url: str
    admitted: threading.Event = field(default_factory=threading.Event)
    ticket: _Ticket | None = None


@dataclass(eq=False, slots=True)
class _Offer:
    ticket: _Ticket
    lane: FollowOn


class _Ticket:
    """One file's admission: a place held, or a lane to ride and a place to inherit."""

    def __init__(
        self,
        places: _Places,
        *,
        held: bool,
        lane: FollowOn | None = None,
        ahead: _Ticket | None = None,
    ) -> None:
        self._places = places
        self.held = held
        self.holding = threading.Event()  # set when held becomes True by a hand-over
        self.lane = lane  # for the first request only
        self.ahead = ahead  # whose place this ticket inherits
        self.successor: _Ticket | None = None

    def take(self) -> None:
        """Hold a place before going on the network on one's own: inherit it from the file
        ahead (it gives it back when its bytes are in), or wait for a free one."""
        places = self._places
        with places._lock:
            if self.held:
                return
            self.holding.clear()
            if self.ahead is None:
                if places._free > 0:
                    places._free -= 1
                    self.held = True
                    return
                places._inheriting.append(self)
        self.holding.wait()

    def offer(self, lane: FollowOn) -> None:
        """Let a waiting file ride behind this file's response (one at a time)."""
        places = self._places
        with places._lock:
            if (self.held or self.ahead is not None) and self.successor is None:
                places._offer(_Offer(self, lane))
                return
        lane.give_up()

    def give_back(self) -> None:
        """Done with the network: the place goes to the successor, or back to the batch."""
        places = self._places
        with places._lock:
            if self.lane is not None:
                self.lane.give_up()
                self.lane = None
            places._offers = deque(o for o in places._offers if o.ticket is not self)
            if self in places._inheriting:
                places._inheriting.remove(self)
            if self.ahead is not None:  # never got the place: the one ahead keeps it
                ahead, successor = self.ahead, self.successor
                if ahead.successor is self:  # whoever queued behind us now waits on it
                    ahead.successor = successor
                if successor is not None:
                    successor.ahead = ahead
                self.ahead = self.successor = None
            elif self.held:
                self.held = False
                successor, self.successor = self.successor, None
                if successor is not None:
                    successor.ahead = None
                    successor.held = True
                    successor.holding.set()
                else:
                    places._place_freed()

    def listener(self, inner: ProgressListener) -> ProgressListener:
        def listen(event: Event) -> None:
            if isinstance(event, DownloadReceived):
                self.give_back()
            inner(event)

        return listen


class _FileTransport:
    """The batch's transport as one file sees it: its first request may ride a lane, and
    its responses offer lanes to the files waiting."""

    def __init__(self, shared: Transport, ticket: _Ticket) -> None:
        self._shared = shared
        self._ticket = ticket

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response:
        lane, self._ticket.lane = self._ticket.lane, None
        response = lane.request(method, url, headers) if lane is not None else None
        if response is None:
            self._ticket.take()
            response = self._shared.request(method, url, headers)
        follow = self._shared.follow(response)
        if follow is not None:
            self._ticket.offer(follow)
        return response

    def preconnect(self, url: str, count: int) -> Preconnection:
        self._ticket.take()
        return self._shared.preconnect(url, count)

    def follow(self, response: Response) -> FollowOn | None:
        """Lanes are offered by :meth:`request` itself, to the batch's waiting files."""
        return None

    def close(self) -> None:
        """The shared transport outlives every file."""
