"""Moving the bytes of one attempt: connections, workers, progress, and fallbacks.

The thread that calls :meth:`Transfer.fetch` only coordinates: it starts the workers, reports
progress a few times a second, and turns the first fatal error (or a cancel) into a clean stop.
Workers (one per connection) take claims from the :class:`~segdl.core.planning.Planner`, stream
them with :mod:`segdl.run.fetch`, and give the remainder back when a connection fails. A server
whose ranges cannot be believed gets one plain stream instead.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from segdl.core.answers import Mode, Witness, changed
from segdl.core.errors import (
    Cancelled,
    ConnectionBroken,
    HTTPStatusError,
    ProtocolError,
    RemoteChanged,
    ShortBody,
    shown,
)
from segdl.core.failures import Action, Decision, RangeFailure, decide
from segdl.core.models import ByteRange, Resource, Validator
from segdl.core.options import DownloadOptions
from segdl.core.planning import Claim, Planner
from segdl.core.progress import (
    DownloadProgress,
    DownloadStarted,
    Notice,
    NoticeKind,
    ProgressListener,
    SegmentMap,
    merged,
)
from segdl.core.retry import RetryPolicy
from segdl.disk.hashing import DigestCheck
from segdl.disk.resume import Checkpointer
from segdl.disk.storage import PartFile, Pipe
from segdl.net.auth import Identity
from segdl.net.interfaces import OpenResponses, Response, Transport
from segdl.run.fetch import open_range, stream_claim, stream_to_end
from segdl.run.probe import FirstContact, first_contact
from segdl.run.ratelimit import TokenBucket
from segdl.run.retries import call_with_retries

log = logging.getLogger(__name__)

_PROGRESS_INTERVAL_S = 0.25
_EARLY_TICK_S = 0.05
_IDLE_POLL_S = 0.05
_RATE_WINDOW_S = 3.0


# Ranged answers that end before their first body byte, in a row (no range delivering a
# byte in between): after every FEWER_AFTER of them the connections are halved, and after
# SINGLE_AFTER the rest comes in one plain stream (#19: a server whose 206 to any range past 0
# closes right after its head, while the stream from byte 0 works, had every range retried to
# exhaustion, about 40 requests, then exit 7).
_FEWER_AFTER = 2
_SINGLE_AFTER = 6


class _SwitchToSingleStream(Exception):
    """Ranges cannot be used on this server: one plain stream instead. ``keep``: the bytes
    already written are the file's (ranges were believed; they only kept breaking), so the
    stream keeps them; otherwise (a range was not believable) it starts over."""

    def __init__(self, reason: str, *, keep: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.keep = keep


class _RangeBreaks:
    """Counts ranged answers that broke before their first byte, and decides what now: go
    on, go on with fewer connections, or stop using ranges. Thread-safe."""

    def __init__(self, connections: int) -> None:
        self._lock = threading.Lock()
        self._in_a_row = 0
        self.cap = connections
        """Workers with an index at or above this stop taking ranges."""

    def delivered(self) -> None:
        with self._lock:
            self._in_a_row = 0

    def broke(self) -> bool:
        """One more break; True when ranges should be given up for one plain stream."""
        with self._lock:
            self._in_a_row += 1
            if self._in_a_row >= _SINGLE_AFTER:
                return True
            if self._in_a_row % _FEWER_AFTER == 0:
                self.cap = max(1, self.cap // 2)
            return False


class Transfer:
    """One attempt at getting every byte of a file into its ``.part``; used once."""

    def __init__(
        self,
        url: str,
        path: Path,
        options: DownloadOptions,
        transport: Transport,
        listener: ProgressListener,
        cancel: threading.Event,
        clock: Callable[[], float],
        started_s: float,
        identity: Identity,
        *,
        mirrors: Sequence[Resource] = (),
        rate_limiters: Sequence[TokenBucket] = (),
        workers: cf.Executor | None = None,
        digest: DigestCheck | None = None,
    ) -> None:
        """``mirrors``: other sources of the same file (checked already); ``workers``:
        threads lent by a batch; ``digest``: the check the written prefix is fed to."""
        self.url = url
        self.shown_url = shown(url)  # what events, logs and messages may show
        self.path = path
        self.options = options
        self.transport = transport
        self.listener = listener
        self.clock = clock
        self.cancel = cancel
        self.checkpointer: Checkpointer | None = None  # the current fetch's
        self.workers = workers
        self.identity = identity
        self.rate_limiters = list(rate_limiters)
        self.digest = digest
        self.mirrors = list(mirrors)
        self._dead: set[str] = set()
        self._started_s = started_s
        self._halt = threading.Event()  # stops the workers of the current phase
        self._work_changed = threading.Condition()
        self._headers = options.request_headers()
        self._counts_lock = threading.Lock()
        self._open = OpenResponses()
        self._streamed_workers = 0
        self._workers = 0
        self._shed = 0
        self._single_done_bytes = 0
        self._rates: collections.deque[tuple[float, int]] = collections.deque()
        self._caller = threading.current_thread()
        self._pending_notices: collections.deque[Notice] = collections.deque()
        self._resource = Resource(url, url, None, False, Validator())
        self._resolve_lock = threading.Lock()
        self._renewals: dict[str, threading.Event] = {}  # target -> its renewal is done
        self._written_source: Callable[[], list[ByteRange]] = list
        self._kept: list[ByteRange] = []  # written by ranges, kept by a plain stream
        self._breaks = _RangeBreaks(options.connections)

    def written_ranges(self) -> list[ByteRange]:
        """What is written so far (pwrite returned), for the checkpointer."""
        return self._written_source()

    def fetch(
        self,
        contact: FirstContact,
        part: PartFile,
        missing: list[ByteRange] | None,
        checkpointer: Checkpointer | None = None,
    ) -> tuple[Resource, bool, int]:
        """Get every byte into ``part``; return the resource as finally known.
        ``checkpointer`` keeps the state file of this fetch durable (none: no state)."""
        self.checkpointer = checkpointer
        self._resource = contact.resource
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
                self._kept = self.written_ranges() if switch.keep else []
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
            resource.size_bytes,
            self.options.connections,
            self.options.min_split_bytes,
            missing,
            self.options.lowest_speed_bytes_per_s,
            lock=threading.Lock(),
        )
        self._written_source = planner.written_ranges
        part.allocate(resource.size_bytes)
        first: Claim | None = None
        if contact.response is not None and contact.first_range is not None:
            first_range = contact.first_range
            first = planner.claim_first(first_range.start, first_range.end, self.clock())
            self._open.add(contact.response)
        options = self.options
        workers = min(planner.initial_connections, options.connections)
        workers = min(workers, options.max_connections_per_host)
        self._workers = workers
        self._started(resource, ranged=True, connections=workers)
        if workers == 0:
            return 0
        calls = [functools.partial(self._worker, planner, part, first, contact.response, 0)]
        calls += [
            functools.partial(self._worker, planner, part, None, None, index)
            for index in range(1, workers)
        ]
        self._supervise(calls, resource.size_bytes, lambda: planner.done_bytes, planner.segment_map)
        log.debug("plan: %d splits, %d races", planner.splits, planner.races)
        if not planner.finished:  # every worker gave up; each already raised if fatal
            raise ProtocolError(f"download of {self.shown_url} stopped with bytes missing")
        return self._streamed_workers

    def _worker(
        self,
        planner: Planner,
        part: PartFile,
        claim: Claim | None,
        response: Response | None,
        index: int = 0,
    ) -> None:
        buffer = memoryview(bytearray(self._buffer_bytes()))
        policy = self.options.retry_policy()
        streamed = False
        # Over plain HTTP on Linux, bytes skip Python: socket → pipe → file (splice). Not under
        # a rate limit, whose small reads keep the pace smooth.
        pipe = Pipe() if Pipe.supported() and not self.rate_limiters else None
        try:
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
                resource = self._source(index) if response is None else self._resource
                try:
                    if response is None:
                        headers = {**self._headers, **self.identity.headers_for(resource.final_url)}
                        response = open_range(self.transport, resource, claim.request, headers)
                        self._open.add(response)
                        log.debug(
                            "range %s answered after %.3f s", claim.request, self._since(claim)
                        )
                    stream_claim(
                        response,
                        claim,
                        planner,
                        part,
                        buffer,
                        self.clock,
                        self._halt,
                        self.url,
                        self._throttle,
                        pipe,
                    )
                    log.debug(
                        "range %s stopped at %d after %.3f s",
                        claim.request,
                        claim.stream_pos,
                        self._since(claim),
                    )
                except BaseException as exc:
                    planner.release(claim, self.clock())
                    broke = response is not None and claim.received_bytes == received_before
                    if broke and self._range_broke(exc, index):
                        return
                    failure = self._failure(planner, policy, resource, claim, received_before)
                    decision = decide(exc, failure)
                    policy = decision.policy
                    if not self._act(decision, exc, resource):
                        return
                finally:
                    if response is not None:
                        self._open.discard(response)
                        response.close()
                    with self._work_changed:  # a range ended: idle workers look again
                        self._work_changed.notify_all()
                    if claim.received_bytes > received_before:
                        self._breaks.delivered()
                    if claim.received_bytes and not streamed:
                        streamed = True
                        with self._counts_lock:
                            self._streamed_workers += 1
                    claim, response = None, None
        finally:
            if pipe is not None:
                pipe.close()

    # -- one plain stream -------------------------------------------------------------------

    def _fetch_single(self, response: Response | None, known: Resource, part: PartFile) -> Resource:
        """Fetch the whole body in one stream, from byte 0; a broken stream starts again
        (without ranges there is nothing to resume from), up to the retry limit."""
        first = [response]  # used once: a retry asks again

        def attempt() -> Resource:
            return self._single_attempt(first.pop() if first else None, known, part)

        def on_retry(wait_s: float, error: BaseException) -> None:
            self._notice(NoticeKind.CONNECTION_RETRY, f"restarting in {wait_s:.1f} s: {error}")

        return call_with_retries(attempt, self.options.retry_policy(), self.cancel, on_retry)

    def _single_attempt(
        self, response: Response | None, known: Resource, part: PartFile
    ) -> Resource:
        resource = known
        if response is None:
            contact = first_contact(
                self.transport, self.url, self.options, ranged=False, identity=self.identity
            )
            if contact.mode is Mode.EMPTY:
                part.allocate(0)
                return contact.resource
            if contact.response is None or contact.mode is not Mode.SINGLE_STREAM:
                raise ProtocolError(
                    f"server answered a plain GET with a partial body ({self.shown_url})"
                )
            response, resource = contact.response, contact.resource
            _check_same_file(known, resource)
        # Bytes from ranged responses that could not be believed are never mixed with this
        # body: first the state stops claiming them, then the file forgets them. Bytes of
        # ranges that were believed but kept breaking (self._kept) are the same file's, by
        # the same validator: they stay, and the stream writes the same bytes over them.
        self._single_done_bytes = 0
        self._written_source = self._single_written
        if not self._kept:
            if self.checkpointer is not None:
                self.checkpointer.save()
            if self.digest is not None:  # what it hashed is about to be overwritten
                self.digest.restart()
            part.allocate(0)
        if resource.size_bytes is not None:
            part.allocate(resource.size_bytes)
        self._started(resource, ranged=False, connections=1)
        self._open.add(response)

        def on_bytes(done_bytes: int) -> None:
            self._single_done_bytes = done_bytes

        buffer = memoryview(bytearray(self._buffer_bytes()))
        call = functools.partial(
            stream_to_end, response, part, buffer, self._halt, on_bytes, self._throttle
        )
        try:
            (future,) = self._supervise(
                [call],
                resource.size_bytes,
                lambda: self._single_done_bytes,
                functools.partial(self._single_map, resource.size_bytes),
            )
        finally:
            self._open.discard(response)
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
        calls: Sequence[Callable[[], Any]],
        size_bytes: int | None,
        done_bytes: Callable[[], int],
        segment_map: Callable[[], SegmentMap | None],
    ) -> list[cf.Future[Any]]:
        """Run ``calls`` on worker threads and report progress until they end; on the first
        error or Ctrl-C, stop all. Every call has ended when this returns or raises."""
        futures: list[cf.Future[Any]] = []
        with self._threads(len(calls)) as pool:
            try:
                for call in calls:
                    futures.append(pool.submit(call))
                pending = set(futures)
                progress_due_s = self.clock() + _PROGRESS_INTERVAL_S
                while pending:
                    checkpointer = self.checkpointer
                    # Until the checkpointer's own thread runs, its first save waits for a
                    # tick: tick often then, so a kill -9 early in a run loses little (#19).
                    early = checkpointer is not None and not checkpointer.running
                    done, pending = cf.wait(
                        pending,
                        timeout=_EARLY_TICK_S if early else _PROGRESS_INTERVAL_S,
                        return_when=cf.FIRST_EXCEPTION,
                    )
                    for future in done:
                        if future.exception() is not None:
                            raise _first_error(futures)
                    self._flush_notices()
                    if checkpointer is not None:
                        if checkpointer.error is not None:
                            raise checkpointer.error
                        checkpointer.tick()
                    now_s = self.clock()
                    if now_s >= progress_due_s or not pending:
                        progress_due_s = now_s + _PROGRESS_INTERVAL_S
                        self._advance_hasher()
                        self._progress(size_bytes, done_bytes(), len(pending), segment_map())
                    if self.cancel.is_set():
                        raise Cancelled("download cancelled")
            except BaseException:
                self._halt.set()
                with self._work_changed:
                    self._work_changed.notify_all()
                self._open.abort_all()
                cf.wait(futures)
                self._halt.clear()
                self._flush_notices()
                raise
        return futures

    @contextlib.contextmanager
    def _threads(self, count: int) -> Iterator[cf.Executor]:
        """The threads lent by a batch, which its files share (a thread started per file
        costs more than a small file's transfer); else a pool of our own for this phase."""
        if self.workers is not None:
            yield self.workers
            return
        with cf.ThreadPoolExecutor(count, thread_name_prefix="segdl") as pool:
            yield pool

    def _progress(
        self,
        size_bytes: int | None,
        done_bytes: int,
        connections: int,
        segments: SegmentMap | None,
    ) -> None:
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
                self.shown_url,
                done_bytes,
                size_bytes,
                now - self._started_s,
                rate,
                connections,
                segments,
            )
        )

    def _started(self, resource: Resource, *, ranged: bool, connections: int) -> None:
        self.listener(
            DownloadStarted(self.shown_url, self.path, resource.size_bytes, ranged, connections)
        )

    def _notice(self, kind: NoticeKind, message: str) -> None:
        log.info("%s: %s", self.shown_url, message)
        notice = Notice(self.shown_url, kind, message)
        if threading.current_thread() is self._caller:
            self.listener(notice)
        else:  # listeners are only ever called from the caller's thread
            self._pending_notices.append(notice)

    def _flush_notices(self) -> None:
        while self._pending_notices:
            self.listener(self._pending_notices.popleft())

    def _source(self, index: int) -> Resource:
        """Where worker ``index`` asks for bytes: the URL or one of its mirrors, in turn.
        Work stealing then gives faster mirrors more of the file by itself."""
        with self._resolve_lock:
            alive = [self._resource] + [m for m in self.mirrors if m.url not in self._dead]
        return alive[index % len(alive)]

    def _drop_mirror(self, mirror: Resource, error: BaseException) -> None:
        with self._resolve_lock:
            if mirror.url in self._dead:
                return
            self._dead.add(mirror.url)
        self._notice(NoticeKind.MIRROR_DROPPED, f"mirror {shown(mirror.url)} dropped: {error}")

    def _advance_hasher(self) -> None:
        """Let the background hasher read the contiguous prefix written so far."""
        if self.digest is None:
            return
        written = self._written_source()
        if written and written[0].start == 0:
            self.digest.advance_to(written[0].end)

    def _throttle(self, n_bytes: int) -> None:
        for bucket in self.rate_limiters:
            bucket.consume(n_bytes, stop=self._halt)

    def _buffer_bytes(self) -> int:
        """Smaller reads under a rate limit, so one read is not a burst of half a second."""
        size = self.options.buffer_bytes
        for bucket in self.rate_limiters:
            size = min(size, max(16 * 1024, int(bucket.rate_bytes_per_s / 20)))
        return size

    def _range_broke(self, error: BaseException, index: int) -> bool:
        """A believed ranged answer ended before its first byte: count it; True when this
        worker is one too many now (its range stays in the plan for the others). Raises
        :class:`_SwitchToSingleStream` once ranges have broken too often in a row."""
        if not isinstance(error, (ShortBody, ConnectionBroken)) or self._halt.is_set():
            return False
        if self._breaks.broke():
            raise _SwitchToSingleStream(
                f"ranged answers keep ending before their first byte ({error})", keep=True
            ) from error
        if index < self._breaks.cap:
            return False
        self._notice(
            NoticeKind.CONNECTIONS_LOWERED,
            f"ranged answers keep breaking ({error}); continuing with {self._breaks.cap}",
        )
        return True

    def _failure(
        self,
        planner: Planner,
        policy: RetryPolicy,
        resource: Resource,
        claim: Claim,
        received_before: int,
    ) -> RangeFailure:
        """What :func:`~segdl.core.failures.decide` needs to know about a failed range."""
        return RangeFailure(
            policy=policy,
            progressed=claim.received_bytes > received_before,
            from_mirror=resource.url != self.url,
            others_working=planner.active_claims > 0,
            stopping=self._halt.is_set(),
            renewable=self._renewable(resource),
            now_epoch_s=time.time(),
        )

    def _act(self, decision: Decision, error: BaseException, resource: Resource) -> bool:
        """Do what ``decision`` says after ``error``: True to go on taking work, False to
        leave it to the other connections; otherwise raise."""
        action = decision.action
        if action is Action.RETRY:
            self._notice(
                NoticeKind.CONNECTION_RETRY, f"retrying in {decision.wait_s:.1f} s: {error}"
            )
            self._halt.wait(decision.wait_s)
            return True
        if action is Action.RENEW:
            assert isinstance(error, HTTPStatusError)
            self._renew(resource, error)
            return True  # at once, against the renewed target
        if action is Action.DROP_MIRROR:
            self._drop_mirror(resource, error)
            return True
        if action is Action.SHED:
            with self._counts_lock:
                self._shed += 1
                remaining = self._workers - self._shed
            self._notice(
                NoticeKind.CONNECTIONS_LOWERED,
                f"server turned a connection away ({error}); continuing with {remaining}",
            )
            return False
        if action is Action.LEAVE:
            log.warning("giving up one connection: %s", error)
            return False
        if action is Action.SINGLE_STREAM:
            raise _SwitchToSingleStream(str(error)) from error
        if action is Action.STOP:
            raise Cancelled("download stopped") from error
        raise error  # RESTART (the engine starts over) or FAIL

    def _renewable(self, used: Resource) -> bool:
        """Bytes from a redirect target that another connection renewed meanwhile, or is
        renewing, or that has not been renewed yet: once per target."""
        if used.final_url == used.url or used.size_bytes is None:
            return False
        with self._resolve_lock:
            if self._resource.final_url != used.final_url:
                return True
            renewing = self._renewals.get(used.final_url)
            return renewing is None or not renewing.is_set()

    def _renew(self, used: Resource, error: HTTPStatusError) -> None:
        """An expired signed URL: ask the original URL again for a fresh target. The first
        connection to see it asks, outside the lock every worker takes (it is a round trip);
        the others wait for its answer. A changed file raises RemoteChanged."""
        with self._resolve_lock:
            if self._resource.final_url != used.final_url:
                return  # another connection renewed it meanwhile
            renewing = self._renewals.get(used.final_url)
            if renewing is None:
                renewing = self._renewals[used.final_url] = threading.Event()
                asking = True
            else:
                asking = False
        if not asking:
            while not renewing.wait(_IDLE_POLL_S) and not self._halt.is_set():
                pass
            return
        try:
            fresh = self._fresh_target(used)
            with self._resolve_lock:
                self._resource = replace(used, final_url=fresh.final_url)
        finally:
            renewing.set()
        self._notice(NoticeKind.URL_RENEWED, f"{error.status} from the redirect target: renewed")

    def _fresh_target(self, used: Resource) -> Resource:
        assert used.size_bytes is not None
        contact = first_contact(
            self.transport,
            self.url,
            self.options,
            start=max(0, used.size_bytes - 1),
            identity=self.identity,
        )
        if contact.response is not None:
            contact.response.close()
        fresh = contact.resource
        why = _resource_mismatch(used, fresh)
        if why is not None:
            raise RemoteChanged(fresh.final_url, why)
        return fresh

    def _single_map(self, size_bytes: int | None) -> SegmentMap | None:
        """One stream from byte 0: what is in is a prefix, and the connection is at its end."""
        if size_bytes is None:
            return None
        done = min(self._single_done_bytes, size_bytes)
        streams = (ByteRange(done, size_bytes),) if done < size_bytes else ()
        return SegmentMap(size_bytes, merged([ByteRange(0, done)]), streams)

    def _single_written(self) -> list[ByteRange]:
        streamed = ByteRange(0, self._single_done_bytes)
        return list(merged([*self._kept, streamed])) if self._kept else [streamed]

    def _since(self, claim: Claim) -> float:
        return self.clock() - claim.started_s


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
    return changed(
        known.size_bytes, known.validator, fresh.size_bytes, fresh.validator, Witness.SAME_SERVER
    )
