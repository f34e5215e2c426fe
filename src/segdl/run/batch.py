"""Many downloads: a bounded number at once, from a list or a stream of jobs, one report.

Every download of a batch shares one transport whose pools block at
``max_connections_per_host``, so the per-host cap holds across all of them (aria2#577), not
per file. A failed item never stops the others; the report says what happened to each.
Jobs are taken from their iterable only as places free up, so a batch of a million lines
starts at once and holds what it has in flight, not the list (:mod:`segdl.run.inputs`).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from segdl.core.errors import Cancelled, OutputChanged, OutputLocked, SegdlError, UsageError, shown
from segdl.core.models import Result
from segdl.core.options import DownloadOptions, IfExists, with_overrides
from segdl.core.progress import DownloadFailed, ProgressListener, silent
from segdl.disk.journal import Completion, Journals
from segdl.disk.storage import make_directory
from segdl.net.gate import HostGate
from segdl.run.downhosts import DownHosts
from segdl.run.inputs import BadEntry, Job, JobStream
from segdl.run.inputs import parse_input_file as parse_input_file
from segdl.run.ratelimit import TokenBucket
from segdl.run.reports import BatchReport, Collector, ItemReport, Outcome

if TYPE_CHECKING:
    from segdl.net.interfaces import Transport
    from segdl.net.transport import Urllib3Transport
    from segdl.run.places import Places, Ticket

__all__ = [
    "BadEntry",
    "BatchReport",
    "Downloader",
    "ItemReport",
    "Job",
    "Outcome",
    "download_many",
    "parse_input_file",
]

log = logging.getLogger(__name__)

# Options of the transport every file of a batch shares: a file cannot set its own.
_BATCH_WIDE = frozenset(
    {"timeout_s", "max_connections_per_host", "ca_bundle", "insecure", "proxy", "use_proxy_env"}
)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A job checked: its options applied to the batch's, and where its file goes; or the
    error that makes it fail without a request (a bad option of a streamed job)."""

    job: Job | BadEntry
    options: DownloadOptions
    dest: Path | None
    directory: Path | None
    error: SegdlError | None = None


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
    work submitted over time is rarely "the same batch again"); ``journal="append"`` only
    appends to them, never reads them (for a caller that knows none of its files can be
    there yet: a cluster's new shard). ``lean_events=False``: the small files of the lean
    path send no progress events (a caller that counts items needs none, and building them
    costs a fifth of such a batch's time); the others' events go to ``progress``.
    ``transport``: the one every file shares (for tests, :class:`segdl.net.fake.FakeTransport`;
    the caller closes it); by default a urllib3 transport built from the options when the
    first file needs it. Use as a context manager, or call :meth:`close`."""

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
        journal: bool | Literal["append"] = False,
        transport: Transport | None = None,
        lean_events: bool = True,
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
        self._settings = settings
        self._given_transport = transport
        self._built_transport: Urllib3Transport | None = None
        self._transport_lock = threading.Lock()
        self._built_places: Places | None = None
        self._places_lock = threading.Lock()
        # `parallel` files on the network, as many queued behind them, as many finishing on
        # disk (digest, sync, rename): a file's request need not wait for the last one's sync.
        self._pool = cf.ThreadPoolExecutor(3 * parallel, thread_name_prefix="segdl-job")
        # The connections' threads, shared by every file (a thread started per file waits on
        # concurrent.futures' global lock: bench/README.md). A thread starts only when none
        # is idle; past the cap, a file's extra connections wait for one.
        self._workers = cf.ThreadPoolExecutor(
            parallel * max(16, settings.max_connections_per_host),
            thread_name_prefix="segdl",
        )
        self._parallel = parallel
        self._pipelining = pipelining
        self._host_gate = host_gate
        self._down = DownHosts()  # servers refusing the batch: their files are tried once
        self._journals = Journals(read=journal != "append") if journal else None
        self._lean_events = lean_events

    @property
    def transport_given(self) -> bool:
        """Whether the batch was handed its transport (then every request goes through it)."""
        return self._given_transport is not None

    def _transport(self) -> Transport:
        """The transport every file shares: the one given, or one built on first use (a batch
        whose files all take the lean path never imports urllib3)."""
        if self._given_transport is not None:
            return self._given_transport
        with self._transport_lock:
            if self._built_transport is None:
                from segdl.net.transport import Urllib3Transport

                self._built_transport = Urllib3Transport.for_options(
                    self._settings,
                    max_connections_per_host=self._settings.max_connections_per_host,
                    block=True,  # the cap is shared by every download
                    pipelining=self._pipelining,
                    host_gate=self._host_gate,
                )
            return self._built_transport

    def _places(self) -> Places:
        """The ``parallel`` places on the network of the files that go the full way."""
        with self._places_lock:
            if self._built_places is None:
                from segdl.run.places import Places  # start-up: a lean batch may never need it

                self._built_places = Places(self._parallel)
            return self._built_places

    def submit(
        self, job: Job | str, on_done: Callable[[ItemReport], None] | None = None
    ) -> cf.Future[ItemReport]:
        """Queue one file; ``on_done(ItemReport)`` runs (in a worker thread) when it ends.
        A bad option of ``job`` raises :class:`~segdl.core.errors.UsageError` here."""
        return self._submit(self._prepare(job), on_done)

    def _prepare(self, job: Job | str | BadEntry) -> _Prepared:
        """``job`` with its options checked and applied to the batch's."""
        if isinstance(job, BadEntry):
            raise job.error
        item = job if isinstance(job, Job) else Job((job,))
        own = dict(item.options)
        dest, directory = own.pop("dest", None), own.pop("directory", None)
        if shared := sorted(_BATCH_WIDE & own.keys()):
            raise UsageError(f"option {shared[0]} is the whole batch's: it cannot be set per file")
        options = with_overrides(self._options, own) if own else self._options
        place = Path(directory) if directory is not None else self._directory
        if dest is None:
            return _Prepared(item, options, None, place)
        # aria2: `out` is relative to `dir`
        return _Prepared(item, options, (place or Path(".")) / dest, None)

    def _prepare_each(self, jobs: Iterable[Job | str | BadEntry]) -> Iterator[_Prepared]:
        """Each job prepared as it is taken; a bad one fails alone (its line named), since
        the jobs after it have not been read yet."""
        for job in jobs:
            if isinstance(job, BadEntry):
                yield _Prepared(job, self._options, None, None, job.error)
                continue
            try:
                yield self._prepare(job)
            except UsageError as exc:
                item = job if isinstance(job, Job) else Job((job,))
                error = UsageError(f"input line {item.line}: {exc}") if item.line else exc
                yield _Prepared(item, self._options, None, None, error)

    def _submit(
        self, prepared: _Prepared, on_done: Callable[[ItemReport], None] | None
    ) -> cf.Future[ItemReport]:
        from segdl.run.places import FileTransport

        places = self._places()

        def run() -> ItemReport:
            report = self._finished_before(prepared)
            if report is None:
                ticket = places.enter(prepared.job.url)
                try:
                    transport = FileTransport(self._transport(), ticket)
                    report = self._run_one(prepared, transport, ticket)
                finally:
                    ticket.give_back()
                report = self._record(report)
                self._down.ended(report)
            if on_done is not None:
                on_done(report)
            return report

        return self._pool.submit(run)

    def _run_all(self, numbered: Iterable[tuple[int, _Prepared]], collector: Collector) -> None:
        """Every job the full way, taken from ``numbered`` only as the pool has room for it
        (files on the network, waiting behind them, and finishing: 3 per place, and a few)."""
        window = 4 * self._parallel
        outstanding: set[cf.Future[ItemReport]] = set()
        items = iter(numbered)
        for index, prepared in items:
            if self.cancel.is_set():
                if isinstance(numbered, list):  # taken already (a lean pass's): counted
                    collector.unfinished([(index, prepared.job), *((n, p.job) for n, p in items)])
                break
            if len(outstanding) >= window:
                done, outstanding = cf.wait(outstanding, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    future.result()  # a bug in the batch itself surfaces here
            outstanding.add(self._submit(prepared, partial(collector.add, index)))
        for future in outstanding:
            future.result()

    def _finished_before(self, prepared: _Prepared) -> ItemReport | None:
        """An item the journal settles without the network: complete (skipped), or at its
        name but not the file segdl finished (failed, left alone), or one that cannot be
        a download (a bad streamed entry); else None, fetch it."""
        if prepared.error is not None:
            return ItemReport(prepared.job, Outcome.FAILED, error=prepared.error)
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

    def _record(self, report: ItemReport) -> ItemReport:
        """A file this batch finished goes in its directory's journal, for reruns; a full
        disk that refuses its line fails it (see :meth:`Journals.record_named`)."""
        if self._journals is None or report.outcome is not Outcome.DONE or not report.result:
            return report
        path = report.result.path
        try:
            self._journals.record_named(report.job.url, path)
        except SegdlError as exc:  # the disk refused its line: removed, not done after all
            # Its DownloadFinished went out already: the last event says how it ended.
            self._progress(DownloadFailed(shown(report.job.url), exc, report.result.elapsed_s))
            return ItemReport(report.job, Outcome.FAILED, error=exc)
        except OSError as exc:
            log.warning("cannot record %s in its journal: %s", path, exc)  # a rerun asks again
        return report

    def _run_one(self, prepared: _Prepared, transport: Transport, ticket: Ticket) -> ItemReport:
        """Fetch the file from its first URL with the others as mirrors (ranges spread over all,
        a failing mirror dropped); if the first URL itself fails, the next one leads."""
        from segdl.run import engine  # not imported by a batch that never needs it

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
                result = engine.download(
                    url,
                    prepared.dest,
                    options=self._down.options_for(url, prepared.options),
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
        return ItemReport(job, Outcome.FAILED, error=error or Cancelled("interrupted"))

    def close(self, *, cancel: bool = False) -> None:
        """Wait for queued files (or stop them, resumably, with ``cancel``), then clean up."""
        if cancel:
            self.cancel.set()
        self._pool.shutdown(wait=True)
        self._workers.shutdown(wait=True)
        if self._built_transport is not None:
            self._built_transport.close()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(cancel=exc_info[0] is not None)


def download_many(
    jobs: Iterable[Job | str | BadEntry],
    *,
    parallel: int = 4,
    on_item: Callable[[ItemReport], None] | None = None,
    journal: bool | Literal["append"] = True,
    lean: bool = True,
    **keywords: Any,
) -> BatchReport:
    """Download every job, ``parallel`` at a time; never raises for a failed item.

    Other keywords are :class:`Downloader`'s (``options``, ``directory``, ``progress``,
    ``cancel``, ``pipelining``, ``transport``) and the options every file gets (a job's own
    win); a bad one raises :class:`~segdl.core.errors.UsageError` at the call.
    ``jobs``: a list (or any sequence) is checked whole before its first file starts, and
    the report holds every item in order. Any other iterable (a generator,
    :func:`segdl.run.inputs.read_jobs` over a file of a million lines) is consumed lazily,
    as places free up: a job with a bad option, or a :class:`~segdl.run.inputs.BadEntry`,
    fails alone (its input line named) and the batch goes on; the report counts every item
    and keeps the failed ones (at most :data:`segdl.run.reports.FAILURES_KEPT`).
    ``on_item(ItemReport)`` is called as each item ends, from a worker thread. A full or
    read-only disk stops the batch as ``cancel`` does (it is set; the report's ``stopped_by``).
    With ``journal`` (the default) each directory keeps ``.segdl-journal``, the files this
    tool finished there (:mod:`segdl.disk.journal`): run the same batch again and those are
    skipped without a request (``ItemReport.complete_before``), a file replaced since is left
    alone and reported (unless ``if_exists="overwrite"``), and the rest is fetched.
    With ``lean`` (the default) small files over plain http are fetched by one loop on a
    few pipelined connections and committed in groups (:mod:`segdl.run.lean`); the others,
    and whatever that loop does not take whole, go the full way, as with ``lean=False``.
    """
    from segdl.run.lean import LeanRun
    from segdl.run.leanplan import lean_batch_usable

    started = time.monotonic()
    with Downloader(parallel=parallel, journal=journal, **keywords) as downloader:
        whole = isinstance(jobs, Sequence)
        prepared = [downloader._prepare(job) for job in jobs] if whole else []
        numbered = enumerate(prepared if whole else downloader._prepare_each(jobs))
        stop = downloader.cancel.set  # a full or read-only disk: see Collector
        collector = Collector(keep_all=whole, on_item=on_item, on_disk_refused=stop)
        if lean and lean_batch_usable(downloader):  # small files: see segdl.run.lean
            may_wait = isinstance(jobs, JobStream) and jobs.may_wait
            LeanRun(downloader, numbered, collector, may_wait=may_wait).run()
        else:
            downloader._run_all(numbered, collector)
        collector.unfinished((index, item.job) for index, item in enumerate(prepared))
    return collector.report(time.monotonic() - started)
