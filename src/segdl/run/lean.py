"""The lean path of a batch: many small files without a thread, a lock or a ``.part`` each.

A batch's files that qualify (plain ``http``, no proxy, no credentials, no rate limit, one URL,
a policy of error/skip/overwrite) are asked for by one loop on a few reused, pipelined
connections (:mod:`segdl.net.lean`) with ``Range: bytes=0-`` up to :data:`SMALL_BYTES`. An
answer that holds the whole file and can be believed (:mod:`segdl.core.wholebody`), and
matches any digest given or sent, is written whole into an unnamed file and committed in a
group (:mod:`segdl.disk.commit`). Every other file, and every answer this path does not take
(a redirect, an error status, a large file, a broken connection), is handed to the batch's
full path, which asks again and does what it does for any download: follows, retries, resumes,
reports. So this path only ever finishes files; it never fails one.

Where a batch writes, it does not take a lock per file: its files never have a name before
they are complete, so there is nothing of theirs for another process to see or clobber; a
file another segdl left partial (its ``.part``, state or lock is there) goes to the full path,
which resumes it under its lock, and a name that appears meanwhile is never linked over
unless the batch overwrites.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from segdl.core.digests import Expected, from_headers, parse_checksum_option, verify
from segdl.core.errors import Cancelled, IntegrityError, OutputLocked, SegdlError, shown
from segdl.core.models import Result
from segdl.core.names import choose_filename
from segdl.core.options import DownloadOptions, IfExists
from segdl.core.progress import (
    DownloadFinished,
    DownloadProgress,
    DownloadStarted,
    Notice,
    NoticeKind,
    ProgressListener,
    silent,
)
from segdl.core.ranges import single_header
from segdl.core.wholebody import Headers, judge, larger_size, larger_than_asked
from segdl.disk.commit import GroupCommit, Staged, unnamed_files_work
from segdl.disk.paths import LOCK_SUFFIX, PART_SUFFIX, STATE_SUFFIX, name_inside
from segdl.disk.storage import make_directory
from segdl.net.lean import Answer, LeanLoop, LeanRequest
from segdl.net.proxies import proxy_for

if TYPE_CHECKING:
    from segdl.run.batch import Downloader, ItemReport, _Prepared

log = logging.getLogger(__name__)

SMALL_BYTES = 1 << 20
"""Files up to this size are taken whole from the first answer; larger ones go to the full
path (what was read of them is thrown away: at most this much per large file)."""
DEPTH = 4
"""Requests written ahead of their answers on a connection that keeps alive."""
_LARGE_IN_A_ROW = 8
_LEFTOVER_SUFFIXES = (PART_SUFFIX, LOCK_SUFFIX, STATE_SUFFIX)


def lean_batch_usable(downloader: Downloader) -> bool:
    """Whether the batch as a whole may use the lean path (per-file checks come later); a
    host gate is consulted by the lean loop as by the full path's pools."""
    return downloader._rate_limiter is None


def why_not_lean(options: DownloadOptions, url: str, job_urls: Sequence[str]) -> str | None:
    """Why this file goes to the full path (None: the lean path may try it). Pure."""
    if len(job_urls) != 1:
        return "mirrors"
    if options.if_exists is IfExists.RENAME:
        return "--if-exists rename"
    if options.limit_rate_bytes_per_s is not None or options.remote_time:
        return "a per-file rate or --remote-time"
    if options.user or options.use_netrc or options.netrc_file or options.cookies_file:
        return "credentials"
    if any(name.lower() in ("authorization", "cookie") for name in options.headers):
        return "credentials"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "an unparsable URL"
    if parts.scheme.lower() != "http" or not parts.hostname or "@" in parts.netloc:
        return "not plain http"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not target.isascii() or any(c in target for c in " \t\r\n\0") or port == 0:
        return "a URL to be encoded"
    return None


def request_bytes(url: str, headers: dict[str, str]) -> tuple[str, int, bytes]:
    """Host, port and the bytes of ``GET url`` with ``headers`` and the lean ``Range``
    (formatting a request, which :func:`why_not_lean` has checked can be sent as it is)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Range: bytes=0-{SMALL_BYTES - 1}")
    wire = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return parts.hostname or "", parts.port or 80, wire


@dataclass(slots=True)
class _Place:
    """A directory the lean path writes into: its real path and the stems of files another
    run left partial there (their ``.part``, state or lock)."""

    real: Path
    usable: bool
    leftovers: set[str] = field(default_factory=set)


@dataclass(eq=False, slots=True)
class _Item:
    index: int
    prepared: _Prepared
    directory: Path
    final: Path | None
    started_s: float
    size_bytes: int = 0
    ranged: bool = False


class LeanRun:
    """One batch's lean pass; the full path (``downloader``) takes what it defers."""

    def __init__(
        self,
        downloader: Downloader,
        prepared: Sequence[_Prepared],
        on_item: Callable[[ItemReport], None] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._downloader = downloader
        self._prepared = prepared
        self._on_item = on_item
        self._clock = clock
        self._listener: ProgressListener = downloader._progress
        self._reports: list[ItemReport | None] = [None] * len(prepared)
        self._deferred: dict[int, object] = {}
        self._to_defer: list[int] = []
        self._commits: deque[tuple[Staged, OSError | None]] = deque()
        self._lock = threading.Lock()
        self._places: dict[Path, _Place] = {}
        options = downloader._options
        self._loop = LeanLoop(
            slots=downloader._parallel,
            per_host=min(downloader._parallel, options.max_connections_per_host),
            depth=DEPTH if downloader._pipelining else 1,
            timeout_s=options.timeout_s,
            max_body_bytes=SMALL_BYTES,
            too_large=lambda status, headers: larger_than_asked(status, headers, SMALL_BYTES),
            watch=None if self._listener is silent else self._watch,
            gate=downloader._host_gate,
        )
        self._claimed: set[Path] = set()  # final names this batch's files take
        self._large: dict[tuple[str, int], int] = {}  # files found too large, per origin
        self._origins_full: set[tuple[str, int]] = set()

    def run(self) -> list[ItemReport]:
        """Every item's report, in order: finished here, or by the full path."""
        from segdl.run.batch import ItemReport, Outcome

        committer = self._committer = GroupCommit(self._committed, before_link=self._journal)
        try:
            self._loop.run(
                self._requests(),
                self._deliver,
                self._given_up,
                self._downloader.cancel,
                window=4 * self._loop.slots * self._loop.depth,
                tick=self._drain,
            )
        finally:
            self._committer = None
            committer.close()
            self._drain()
        # Only now, with this loop's connections closed, does the full path start: the
        # per-host cap then holds across both (the full path's pools block at it).
        with self._lock:
            deferred, self._to_defer = self._to_defer, []
        for index in sorted(deferred):
            self._deferred[index] = self._downloader._submit(self._prepared[index], self._on_item)
        reports = []
        for index, report in enumerate(self._reports):
            if report is None:
                future = self._deferred.get(index)
                if future is not None:
                    report = cast(Any, future).result()  # a Future of the full path's report
                else:  # stopped before it was answered
                    job = self._prepared[index].job
                    report = ItemReport(job, Outcome.FAILED, error=Cancelled("interrupted"))
                    self._report(index, report)
            reports.append(report)
        return reports

    _committer: GroupCommit | None = None

    def _requests(self) -> Iterator[LeanRequest]:
        for index, prepared in enumerate(self._prepared):
            if self._downloader.cancel.is_set():
                return
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
        why = why_not_lean(options, url, prepared.job.urls) or self._proxied(url, options)
        if why is None:
            directory = prepared.dest.parent if prepared.dest else prepared.directory or Path(".")
            place = self._place(directory)
            if place is None or not place.usable:
                why = "an output directory without unnamed files"
        if why is not None:
            self._defer_index(index, why)
            return None
        item = _Item(index, prepared, directory, prepared.dest, self._clock())
        if prepared.dest is not None and not self._free(item, prepared.dest):
            return None
        host, port, wire = request_bytes(url, options.request_headers())
        if (host, port) in self._origins_full:
            self._defer(item, "its server's files are large")
            return None
        return LeanRequest(host, port, wire, item)

    def _proxied(self, url: str, options: DownloadOptions) -> str | None:
        try:
            chosen = proxy_for(url, explicit=options.proxy, environ=os.environ,
                               use_env=options.use_proxy_env)  # fmt: skip
        except ValueError:
            return "an unparsable URL"
        return None if chosen is None else "a proxy"

    def _place(self, directory: Path) -> _Place | None:
        place = self._places.get(directory)
        if place is None:
            try:
                make_directory(directory)
            except SegdlError:
                return None  # the full path reports it
            real = Path(os.path.realpath(directory))
            place = _Place(real, unnamed_files_work(real))
            if place.usable:
                with os.scandir(real) as entries:
                    for entry in entries:
                        for suffix in _LEFTOVER_SUFFIXES:
                            if entry.name.endswith(suffix):
                                place.leftovers.add(entry.name[: -len(suffix)])
            self._places[directory] = place
        return place

    def _free(self, item: _Item, path: Path) -> bool:
        """Whether ``path`` may be written here: no partial download of another run, and
        nothing there unless the batch overwrites (a file there is skipped, or the full path
        says it exists). False when the item was settled or deferred."""
        place = self._places[item.directory]
        if path.name in place.leftovers:
            self._defer(item, "a partial download is there")
            return False
        if path in self._claimed:
            self._twin(item, path)
            return False
        policy = item.prepared.options.if_exists
        if policy is IfExists.OVERWRITE or not os.path.lexists(path):
            self._claimed.add(path)
            return True
        if policy is IfExists.SKIP:
            self._skipped(item, path)
        else:
            self._defer(item, "the output exists")
        return False

    def _deliver(self, request: LeanRequest, answer: Answer) -> None:
        item = cast(_Item, request.token)
        verdict = judge(answer.status, answer.header_values, len(answer.body))
        if not verdict.whole:
            self._defer(item, verdict.why)
            return
        self._large.pop((request.host, request.port), None)
        options = item.prepared.options
        try:
            expected = _expected(options, answer)
            if expected is not None:
                verify(expected, hashlib.new(expected.algorithm, answer.body).digest())
        except IntegrityError as exc:
            if answer.pipelined:  # perhaps answered out of turn: no more pipelining there
                self._loop.shallow.add((request.host, request.port))
            self._defer(item, str(exc))
            return
        except SegdlError as exc:  # a checksum option that does not parse: the full path says so
            self._defer(item, str(exc))
            return
        size = len(answer.body)
        if options.max_size_bytes is not None and size > options.max_size_bytes:
            self._defer(item, "over --max-size")
            return
        path = item.final or self._named(item, answer)
        if path is None or (item.final is None and not self._free(item, path)):
            return
        item.final, item.size_bytes, item.ranged = path, size, answer.status == 206
        committer = self._committer
        try:
            if committer is None:
                raise OSError("stopped")
            committer.stage(self._places[item.directory].real, answer.body, path,
                            overwrite=options.overwrite, token=item)  # fmt: skip
        except OSError as exc:
            self._defer(item, f"cannot write: {exc}")

    def _named(self, item: _Item, answer: Answer) -> Path | None:
        """The file's name from the server's ``Content-Disposition`` or the URL, sanitised,
        in the directory (never outside it)."""
        try:
            disposition = single_header("Content-Disposition",
                                        answer.header_values("Content-Disposition"))  # fmt: skip
        except SegdlError:
            disposition = None
        name = choose_filename(item.prepared.job.url, disposition)
        try:
            return name_inside(self._places[item.directory].real, name)
        except SegdlError as exc:
            self._defer(item, str(exc))
            return None

    def _committed(self, staged: Staged, error: OSError | None) -> None:
        """From the committing thread: reported by the loop's thread (see :meth:`_drain`)."""
        self._commits.append((staged, error))

    def _drain(self) -> None:
        """Report the files committed since the last call, from the thread running the batch:
        every event of a lean file then comes from one thread, as each file's events do on
        the full path (displays tell files apart by it)."""
        while self._commits:
            self._report_commit(*self._commits.popleft())

    def _report_commit(self, staged: Staged, error: OSError | None) -> None:
        from segdl.run.batch import ItemReport, Outcome

        item = cast(_Item, staged.token)
        if error is not None:
            self._defer(item, f"cannot commit: {error}")
            return
        assert item.final is not None
        url = item.prepared.job.url
        elapsed_s = self._clock() - item.started_s
        self._listener(DownloadFinished(shown(url), item.final, item.size_bytes, elapsed_s))
        result = Result(url, item.final, item.size_bytes, elapsed_s, 1, item.ranged)
        self._report(item.index, ItemReport(item.prepared.job, Outcome.DONE, result))

    def _journal(self, files: list[tuple[Staged, os.stat_result]]) -> None:
        """The batch's journal learns of a group's files just before they get their names
        (see :meth:`segdl.disk.journal.Journals.record_many`)."""
        journals = self._downloader._journals
        if journals is None:
            return
        entries = []
        for staged, info in files:
            item = cast(_Item, staged.token)
            if item.final is not None:
                entries.append((item.prepared.job.url, item.final, info))
        journals.record_many(entries)

    def _twin(self, item: _Item, path: Path) -> None:
        """Another entry of this batch names the same file: this one fails, saying so (as
        the full path does when the second entry finds the first one's lock)."""
        from segdl.run.batch import ItemReport, Outcome

        why = "two entries of this batch name the same file"
        error = OutputLocked(str(path), why, same_process=True, message=f"{why} {path}")
        self._report(item.index, ItemReport(item.prepared.job, Outcome.FAILED, error=error))

    def _watch(self, request: LeanRequest, status: int, headers: Headers, done: int) -> None:
        """Events for displays while an answer arrives: started at its head, then progress."""
        item = cast(_Item, request.token)
        url = shown(item.prepared.job.url)
        if not done:
            size = larger_size(status, headers)
            disposition = headers("Content-Disposition")
            name = choose_filename(item.prepared.job.url, disposition[0] if disposition else None)
            path = item.final or self._places[item.directory].real / name
            item.size_bytes = size or 0
            self._listener(DownloadStarted(url, path, size, status == 206, 1))
            return
        elapsed_s = max(1e-6, self._clock() - item.started_s)
        size = item.size_bytes or None
        self._listener(DownloadProgress(url, done, size, elapsed_s, done / elapsed_s, 1))

    def _skipped(self, item: _Item, path: Path) -> None:
        from segdl.run.batch import ItemReport, Outcome

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
        self._defer_index(item.index, why)

    def _defer_index(self, index: int, why: str) -> None:
        log.debug("%s: to the full path (%s)", shown(self._prepared[index].job.url), why)
        with self._lock:
            self._to_defer.append(index)

    def _report(self, index: int, report: ItemReport) -> None:
        with self._lock:
            self._reports[index] = report
        if self._on_item is not None:
            self._on_item(report)


def _expected(options: DownloadOptions, answer: Answer) -> Expected | None:
    """The digest the file must have: the job's checksum, else one the server sent."""
    if options.checksum is not None:
        return parse_checksum_option(options.checksum)
    return from_headers(answer.header_values, full_response=answer.status == 200)
