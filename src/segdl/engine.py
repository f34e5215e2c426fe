"""One download, start to finish: first contact → plan → connections → verify → final name.

The thread that calls :func:`download` only coordinates: it starts the workers, reports
progress a few times a second, and turns the first fatal error (or Ctrl-C) into a clean stop.
Workers (one per connection) take claims from the :class:`~segdl.planning.Planner`, stream
them with :mod:`segdl.fetch`, and give the remainder back when a connection fails.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from segdl import resume as resuming
from segdl.errors import (
    Cancelled,
    ContentRangeMismatch,
    HTTPStatusError,
    NetworkError,
    ProtocolError,
    RangeNotHonoured,
    RemoteChanged,
    SegdlError,
    ShortBody,
    UnexpectedEncoding,
    UsageError,
)
from segdl.fetch import open_range, stream_claim, stream_to_end
from segdl.models import ByteRange, Resource, Result, Validator
from segdl.options import MIB, DownloadOptions
from segdl.planning import Claim, Planner
from segdl.probe import FirstContact, Mode, first_contact
from segdl.progress import (
    DownloadFailed,
    DownloadFinished,
    DownloadProgress,
    DownloadStarted,
    Notice,
    NoticeKind,
    ProgressListener,
    silent,
)
from segdl.ranges import filename_from_url
from segdl.state import DownloadState, OwnerLock
from segdl.storage import PartFile, check_output_free, part_path
from segdl.transport import Response, Transport, Urllib3Transport

log = logging.getLogger(__name__)

_PROGRESS_INTERVAL_S = 0.25
_IDLE_POLL_S = 0.05
_RATE_WINDOW_S = 3.0
# Statuses worth another attempt on a range (RFC 9110 §15.5.9, §15.6; RFC 6585 §4).
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# A redirect target answering these after the download began is likely an expired signed URL.
_EXPIRED_STATUSES = frozenset({401, 403, 404, 410})
# A file that keeps changing under us is not downloaded forever.
_MAX_RESTARTS = 2


def download(
    url: str,
    dest: str | Path | None = None,
    *,
    directory: str | Path | None = None,
    connections: int = 8,
    min_split_bytes: int = MIB,
    overwrite: bool = False,
    timeout_s: float = 30.0,
    headers: Mapping[str, str] | None = None,
    user_agent: str | None = None,
    progress: ProgressListener | None = None,
    transport: Transport | None = None,
    cancel: threading.Event | None = None,
    resume: bool = True,
    lock_wait_s: float = 0.0,
) -> Result:
    """Download ``url`` to ``dest`` (or ``directory``/name-from-URL) over many connections.

    ``progress`` receives :mod:`segdl.progress` events from the calling thread a few times a
    second (default: none). Returns a :class:`~segdl.models.Result`; raises a
    :class:`~segdl.errors.SegdlError` subclass on failure. Setting ``cancel`` stops the
    download and raises :class:`~segdl.errors.Cancelled`. A partial download left at the
    same place by an earlier run is resumed when it can be trusted (``resume=False``: start
    over); another process writing the same output raises
    :class:`~segdl.errors.OutputLocked` unless it finishes within ``lock_wait_s``.
    """
    extra: dict[str, object] = {}
    if user_agent is not None:
        extra["user_agent"] = user_agent
    options = DownloadOptions(
        connections=connections,
        min_split_bytes=min_split_bytes,
        overwrite=overwrite,
        timeout_s=timeout_s,
        headers=dict(headers or {}),
        resume=resume,
        lock_wait_s=lock_wait_s,
        **extra,  # type: ignore[arg-type]
    )
    path = output_path(url, dest, directory)
    owned = transport is None
    active = transport or Urllib3Transport(
        max_connections_per_host=max(options.connections, 1) + 1, timeout_s=timeout_s
    )
    try:
        listener = progress or silent
        return Download(url, path, options, active, listener, cancel or threading.Event()).run()
    finally:
        if owned:
            active.close()


def output_path(url: str, output: str | Path | None, directory: str | Path | None) -> Path:
    """``output`` as given, else ``directory`` (default: current) / name from the URL path."""
    if output is not None:
        if directory is not None:
            raise UsageError("give an output path or a directory, not both")
        path = Path(output)
        if path.is_dir():
            raise UsageError(f"output path {path} is a directory (use -d/--dir for that)")
        return path
    return Path(directory or ".") / filename_from_url(url)


class _SwitchToSingleStream(Exception):
    """Ranges cannot be trusted on this server: start over with one plain stream."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Download:
    """The state of one running download; used once."""

    def __init__(
        self,
        url: str,
        path: Path,
        options: DownloadOptions,
        transport: Transport,
        listener: ProgressListener,
        cancel: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.path = path
        self.options = options
        self.transport = transport
        self.listener = listener
        self.clock = clock
        self.cancel = cancel
        self._halt = threading.Event()  # stops the workers of the current phase
        self._work_changed = threading.Condition()
        self._headers = options.request_headers()
        self._open_lock = threading.Lock()
        self._open: set[Response] = set()
        self._streamed_workers = 0
        self._single_done_bytes = 0
        self._started_s = 0.0
        self._rates: collections.deque[tuple[float, int]] = collections.deque()
        self._caller = threading.current_thread()
        self._pending_notices: collections.deque[Notice] = collections.deque()
        self._resource = Resource(url, url, None, False, Validator())
        self._resolve_lock = threading.Lock()
        self._expired: set[str] = set()
        self._checkpointer: resuming.Checkpointer | None = None
        self._written_source: Callable[[], list[ByteRange]] = list

    def run(self) -> Result:
        self._started_s = self.clock()
        lock = OwnerLock(self.path)
        try:
            lock.acquire(wait_s=self.options.lock_wait_s)
            try:
                return self._run_locked(lock)
            finally:
                lock.release()
        except BaseException as exc:
            error = Cancelled("interrupted") if isinstance(exc, KeyboardInterrupt) else exc
            self.listener(DownloadFailed(self.url, error, self.clock() - self._started_s))
            if error is exc:
                raise
            raise error from exc

    def _run_locked(self, lock: OwnerLock) -> Result:
        state: DownloadState | None = None
        if self.options.resume:
            state, why_not = resuming.load_resumable(self.path, self.url)
            if why_not is not None:
                self._notice(NoticeKind.RESUME_DISCARDED, f"not resuming: {why_not}")
                resuming.discard(self.path)
        else:
            resuming.discard(self.path)
        if state is not None and state.complete:
            recovered = self._recover_finished(state)
            if recovered is not None:
                return recovered
        check_output_free(self.path, overwrite=self.options.overwrite)
        for _ in range(_MAX_RESTARTS + 1):
            try:
                return self._attempt(state, lock)
            except RemoteChanged as exc:
                self._notice(NoticeKind.REMOTE_CHANGED, f"{exc}; starting over")
                resuming.discard(self.path)
                state = None
        raise RemoteChanged(self.url, f"changed {_MAX_RESTARTS + 1} times while downloading")

    def _recover_finished(self, state: DownloadState) -> Result | None:
        """A previous run synced every byte but stopped around the rename: finish its job."""
        if part_path(self.path).exists():
            part = PartFile(self.path, overwrite=self.options.overwrite, resume=True)
            part.finalize(state.size_bytes)
        elif not (self.path.is_file() and self.path.stat().st_size == state.size_bytes):
            resuming.discard(self.path)  # the state is all that is left: drop it
            return None
        resuming.finish(self.path)
        self._notice(NoticeKind.RESUMED, "completed the rename an earlier run had begun")
        elapsed_s = self.clock() - self._started_s
        self.listener(DownloadFinished(self.url, self.path, state.size_bytes, elapsed_s))
        return Result(self.url, self.path, state.size_bytes, elapsed_s, 0, True)

    def _attempt(self, state: DownloadState | None, lock: OwnerLock) -> Result:
        """One go at the file: resume ``state`` if given, else from scratch."""
        missing = state.missing() if state is not None else None
        if state is not None and missing:
            if_range = resuming.if_range_value(state.etag, state.last_modified)
            # Bounded: an open-ended range would make the server push bytes we already have.
            first_missing = missing[0]
            contact = first_contact(
                self.transport,
                self.url,
                self.options,
                start=first_missing.start,
                end=first_missing.end,
                if_range=if_range,
            )
            self._check_resumable(state, contact)
        elif state is not None:  # every byte is there; only the final steps are missing
            contact = FirstContact(_resource_of(self.url, state), Mode.RANGED, None)
        else:
            contact = first_contact(self.transport, self.url, self.options)
        self._resource = contact.resource
        part = PartFile(self.path, overwrite=self.options.overwrite, resume=state is not None)
        try:
            size = contact.resource.size_bytes
            if size is None or contact.mode is Mode.EMPTY:
                resource, ranged, connections = self._fetch(contact, part, missing)
            else:
                template = resuming.state_for(self.url, contact.resource, [], lock.token)
                if state is not None:
                    template = replace(template, done=state.done)
                with resuming.Checkpointer(
                    self.path, part, template, self._written_now, lock, self.clock
                ) as checkpointer:
                    self._checkpointer = checkpointer
                    resource, ranged, connections = self._fetch(contact, part, missing)
                    checkpointer.complete()
            part.finalize(resource.size_bytes)
            resuming.finish(self.path)
        finally:
            part.close()
            self._checkpointer = None
        elapsed_s = self.clock() - self._started_s
        log.debug("finalized after %.3f s", elapsed_s)
        size_bytes = resource.size_bytes or 0
        self.listener(DownloadFinished(self.url, self.path, size_bytes, elapsed_s))
        return Result(self.url, self.path, size_bytes, elapsed_s, connections, ranged)

    def _check_resumable(self, state: DownloadState, contact: FirstContact) -> None:
        why = mismatch_reason(state, contact)
        if why is not None:
            if contact.response is not None:
                contact.response.close()
            raise RemoteChanged(contact.resource.final_url, why)
        if state.etag is None and state.last_modified is None:
            self._notice(
                NoticeKind.RESUMED,
                "the server gives no validator: resuming because the size is unchanged",
            )
        done, size = state.done_bytes, state.size_bytes
        self._notice(NoticeKind.RESUMED, f"resuming with {done} of {size} bytes already here")

    def _written_now(self) -> list[ByteRange]:
        return self._written_source()

    def _fetch(
        self, contact: FirstContact, part: PartFile, missing: list[ByteRange] | None
    ) -> tuple[Resource, bool, int]:
        """Get every byte into ``part``; return the resource as finally known."""
        if contact.mode is Mode.EMPTY:
            self._started(contact.resource, ranged=False, connections=0)
            part.allocate(0)
            return contact.resource, False, 0
        if contact.mode is Mode.RANGED:
            try:
                connections = self._fetch_ranged(contact, part, missing)
                return contact.resource, True, connections
            except _SwitchToSingleStream as switch:
                self._notice(NoticeKind.FALLBACK_SINGLE_STREAM, switch.reason)
                resource = self._fetch_single(None, contact.resource, part)
                return resource, False, 1
        self._notice(NoticeKind.FALLBACK_SINGLE_STREAM, contact.reason)
        return self._fetch_single(contact.response, contact.resource, part), False, 1

    # -- many connections -------------------------------------------------------------------

    def _fetch_ranged(
        self, contact: FirstContact, part: PartFile, missing: list[ByteRange] | None
    ) -> int:
        resource = contact.resource
        assert resource.size_bytes is not None
        planner = Planner(
            resource.size_bytes, self.options.connections, self.options.min_split_bytes, missing
        )
        self._written_source = planner.written_ranges
        part.allocate(resource.size_bytes)
        first: Claim | None = None
        if contact.response is not None and contact.first_range is not None:
            first_range = contact.first_range
            first = planner.claim_first(first_range.start, first_range.end, self.clock())
            self._register(contact.response)
        workers = min(planner.initial_connections, self.options.connections)
        self._started(resource, ranged=True, connections=workers)
        if workers == 0:
            return 0
        with cf.ThreadPoolExecutor(workers, thread_name_prefix="segdl") as pool:
            futures = [pool.submit(self._worker, planner, part, first, contact.response)]
            futures += [
                pool.submit(self._worker, planner, part, None, None) for _ in range(workers - 1)
            ]
            self._supervise(futures, resource.size_bytes, lambda: planner.done_bytes)
        log.debug("plan: %d splits, %d races", planner.splits, planner.races)
        if not planner.finished:  # every worker gave up; each already raised if fatal
            raise ProtocolError(f"download of {self.url} stopped with bytes missing")
        return self._streamed_workers

    def _worker(
        self,
        planner: Planner,
        part: PartFile,
        claim: Claim | None,
        response: Response | None,
    ) -> None:
        buffer = memoryview(bytearray(self.options.buffer_bytes))
        failures = 0
        streamed = False
        while not self._halt.is_set():
            if claim is None:
                claim = planner.next_claim(self.clock())
                if claim is None:
                    if planner.finished:
                        return
                    with self._work_changed:
                        self._work_changed.wait(_IDLE_POLL_S)
                    continue
            received_before = claim.received_bytes
            resource = self._resource
            try:
                if response is None:
                    response = open_range(self.transport, resource, claim.request, self._headers)
                    self._register(response)
                    log.debug("range %s answered after %.3f s", claim.request, self._since(claim))
                stream_claim(
                    response, claim, planner, part, buffer, self.clock, self._halt, self.url
                )
                log.debug(
                    "range %s stopped at %d after %.3f s",
                    claim.request,
                    claim.stream_pos,
                    self._since(claim),
                )
            except (RangeNotHonoured, ContentRangeMismatch, UnexpectedEncoding) as exc:
                planner.release(claim, self.clock())
                raise _SwitchToSingleStream(str(exc)) from exc
            except (NetworkError, ShortBody, HTTPStatusError) as exc:
                planner.release(claim, self.clock())
                if self._halt.is_set():  # our own abort broke the connection
                    raise Cancelled("download stopped") from exc
                if isinstance(exc, HTTPStatusError) and self._re_resolve(resource, exc):
                    pass  # an expired signed URL was renewed: retry at once
                elif _is_permanent(exc):
                    raise
                else:
                    failures = 0 if claim.received_bytes > received_before else failures + 1
                    if failures >= self.options.max_attempts_without_progress:
                        if planner.active_claims == 0:
                            raise
                        log.warning("giving up a connection after %d failures: %s", failures, exc)
                        return
                    self._notice(NoticeKind.CONNECTION_RETRY, f"retrying a range: {exc}")
                    self._halt.wait(min(2.0, 0.1 * 2**failures))
            except BaseException:
                planner.release(claim, self.clock())
                raise
            finally:
                if response is not None:
                    self._unregister(response)
                    response.close()
                with self._work_changed:  # a range ended: idle workers look again
                    self._work_changed.notify_all()
                if claim.received_bytes and not streamed:
                    streamed = True
                    with self._open_lock:
                        self._streamed_workers += 1
            claim, response = None, None

    # -- one plain stream -------------------------------------------------------------------

    def _fetch_single(self, response: Response | None, known: Resource, part: PartFile) -> Resource:
        """Fetch the whole body in one stream, from byte 0, into a truncated ``part``."""
        resource = known
        if response is None:
            contact = first_contact(self.transport, self.url, self.options, ranged=False)
            if contact.mode is Mode.EMPTY:
                part.allocate(0)
                return contact.resource
            if contact.response is None or contact.mode is not Mode.SINGLE_STREAM:
                raise ProtocolError(f"server answered a plain GET with a partial body ({self.url})")
            response, resource = contact.response, contact.resource
            _check_same_file(known, resource)
        # Bytes from earlier ranged responses are never mixed with this body: first the state
        # stops claiming them, then the file forgets them.
        self._single_done_bytes = 0
        self._written_source = self._single_written
        if self._checkpointer is not None:
            self._checkpointer.save()
        part.allocate(0)
        if resource.size_bytes is not None:
            part.allocate(resource.size_bytes)
        self._started(resource, ranged=False, connections=1)
        self._register(response)

        def on_bytes(done_bytes: int) -> None:
            self._single_done_bytes = done_bytes

        buffer = memoryview(bytearray(self.options.buffer_bytes))
        with cf.ThreadPoolExecutor(1, thread_name_prefix="segdl") as pool:
            future = pool.submit(stream_to_end, response, part, buffer, self._halt, on_bytes)
            try:
                self._supervise([future], resource.size_bytes, lambda: self._single_done_bytes)
            finally:
                self._unregister(response)
                response.close()
        received = future.result()
        expected = resource.size_bytes
        if expected is not None and received != expected:
            raise ShortBody(resource.final_url, expected, received)
        return Resource(
            resource.url,
            resource.final_url,
            received,
            resource.accepts_ranges,
            resource.validator,
            resource.content_type,
        )

    # -- coordination -----------------------------------------------------------------------

    def _supervise(
        self,
        futures: Sequence[cf.Future[Any]],
        size_bytes: int | None,
        done_bytes: Callable[[], int],
    ) -> None:
        """Report progress until the workers end; on the first error or Ctrl-C, stop all."""
        pending = set(futures)
        try:
            while pending:
                done, pending = cf.wait(
                    pending, timeout=_PROGRESS_INTERVAL_S, return_when=cf.FIRST_EXCEPTION
                )
                for future in done:
                    if future.exception() is not None:
                        raise _first_error(futures)
                self._flush_notices()
                checkpointer = self._checkpointer
                if checkpointer is not None and checkpointer.error is not None:
                    raise checkpointer.error
                self._progress(size_bytes, done_bytes(), len(pending))
                if self.cancel.is_set():
                    raise Cancelled("download cancelled")
        except BaseException:
            self._halt.set()
            with self._work_changed:
                self._work_changed.notify_all()
            self._abort_all()
            cf.wait(futures)
            self._halt.clear()
            self._flush_notices()
            raise

    def _progress(self, size_bytes: int | None, done_bytes: int, connections: int) -> None:
        now = self.clock()
        if not self._rates:
            self._rates.append((self._started_s, 0))
        self._rates.append((now, done_bytes))
        while len(self._rates) > 2 and now - self._rates[0][0] > _RATE_WINDOW_S:
            self._rates.popleft()
        then, then_bytes = self._rates[0]
        rate = (done_bytes - then_bytes) / (now - then) if now > then else 0.0
        self.listener(
            DownloadProgress(
                self.url, done_bytes, size_bytes, now - self._started_s, rate, connections
            )
        )

    def _started(self, resource: Resource, *, ranged: bool, connections: int) -> None:
        self.listener(
            DownloadStarted(self.url, self.path, resource.size_bytes, ranged, connections)
        )

    def _notice(self, kind: NoticeKind, message: str) -> None:
        log.info("%s: %s", self.url, message)
        notice = Notice(self.url, kind, message)
        if threading.current_thread() is self._caller:
            self.listener(notice)
        else:  # listeners are only ever called from the caller's thread
            self._pending_notices.append(notice)

    def _flush_notices(self) -> None:
        while self._pending_notices:
            self.listener(self._pending_notices.popleft())

    def _re_resolve(self, used: Resource, error: HTTPStatusError) -> bool:
        """An expired signed URL? Ask the original URL again for a fresh target, once per
        target. True if requests should go on against ``self._resource``."""
        if error.status not in _EXPIRED_STATUSES or used.final_url == used.url:
            return False
        with self._resolve_lock:
            if self._resource.final_url != used.final_url:
                return True  # another connection renewed it meanwhile
            if used.final_url in self._expired or used.size_bytes is None:
                return False
            self._expired.add(used.final_url)
            contact = first_contact(
                self.transport, self.url, self.options, start=max(0, used.size_bytes - 1)
            )
            if contact.response is not None:
                contact.response.close()
            fresh = contact.resource
            why = _resource_mismatch(used, fresh)
            if why is not None:
                raise RemoteChanged(fresh.final_url, why)
            self._resource = replace(used, final_url=fresh.final_url)
        self._notice(NoticeKind.URL_RENEWED, f"{error.status} from the redirect target: renewed")
        return True

    def _single_written(self) -> list[ByteRange]:
        return [ByteRange(0, self._single_done_bytes)]

    def _since(self, claim: Claim) -> float:
        return self.clock() - claim.started_s

    def _register(self, response: Response) -> None:
        with self._open_lock:
            self._open.add(response)

    def _unregister(self, response: Response) -> None:
        with self._open_lock:
            self._open.discard(response)

    def _abort_all(self) -> None:
        with self._open_lock:
            responses = list(self._open)
        for response in responses:
            response.abort()


def _is_permanent(exc: SegdlError) -> bool:
    return isinstance(exc, HTTPStatusError) and exc.status not in _TRANSIENT_STATUSES


def _first_error(futures: Sequence[cf.Future[Any]]) -> BaseException:
    """The error that caused the stop, preferring a real cause over the ``Cancelled`` of
    workers that were stopped because of it."""
    errors = [e for f in futures if f.done() and (e := f.exception()) is not None]
    for error in errors:
        if not isinstance(error, Cancelled):
            return error
    return errors[0]


def _check_same_file(known: Resource, fresh: Resource) -> None:
    why = _resource_mismatch(known, fresh)
    if why is not None:
        raise RemoteChanged(fresh.final_url, why)


def _resource_mismatch(known: Resource, fresh: Resource) -> str | None:
    if known.size_bytes is not None and fresh.size_bytes not in (None, known.size_bytes):
        return f"size {fresh.size_bytes} is not {known.size_bytes}"
    old, new = known.validator, fresh.validator
    if old.etag and new.etag and old.etag != new.etag:
        return f"ETag {new.etag} is not {old.etag}"
    if old.last_modified and new.last_modified and old.last_modified != new.last_modified:
        return f"Last-Modified {new.last_modified} is not {old.last_modified}"
    return None


def mismatch_reason(state: DownloadState, contact: FirstContact) -> str | None:
    """Why a fresh first contact shows the partial data is not of the current file."""
    if contact.mode is not Mode.RANGED:
        return f"the server sent the whole file, not the missing part ({contact.reason})"
    return resuming.mismatch(state, contact.resource)


def _resource_of(url: str, state: DownloadState) -> Resource:
    """The resource as a state file remembers it (for finishing without the network)."""
    validator = Validator(etag=state.etag, last_modified=state.last_modified)
    return Resource(url, url, state.size_bytes, True, validator)
