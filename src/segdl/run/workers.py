"""The ranged phase of a transfer: one worker thread per connection, taking ranges in turn.

A worker takes claims from the :class:`~segdl.core.planning.Planner`, asks its source for
each (:mod:`segdl.run.sources`), checks the answer and streams it to its offsets
(:mod:`segdl.run.fetch`), and gives the remainder back when the range fails. What then is
:mod:`segdl.core.failures`'s decision, taken under the phase's lock from values the worker
hands it; the worker only carries it out (wait and retry, renew, drop a mirror, leave, or
raise to stop the phase).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from segdl.core.errors import Cancelled, HTTPStatusError
from segdl.core.failures import (
    Action,
    Decision,
    RangeBreaks,
    RangeFailure,
    count_break,
    decide,
)
from segdl.core.models import Resource
from segdl.core.options import DownloadOptions
from segdl.core.planning import Claim, Planner
from segdl.core.progress import NoticeKind
from segdl.core.retry import RetryPolicy
from segdl.disk.storage import PartFile, Pipe
from segdl.net.auth import Identity
from segdl.net.interfaces import Response, Transport
from segdl.run.fetch import open_range, stream_claim
from segdl.run.ratelimit import Pace
from segdl.run.sources import Sources
from segdl.run.supervise import Supervisor

log = logging.getLogger(__name__)


class SwitchToSingleStream(Exception):
    """Ranges cannot be used on this server: one plain stream instead. ``keep``: the bytes
    already written are the file's (ranges were believed; they only kept breaking), so the
    stream keeps them; otherwise (a range was not believable) it starts over."""

    def __init__(self, reason: str, *, keep: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.keep = keep


@dataclass(slots=True)
class _Lane:
    """One worker's own things, reused from range to range."""

    index: int
    buffer: memoryview
    pipe: Pipe | None
    policy: RetryPolicy
    """The retry policy of the worker's current range."""
    streamed: bool = False
    """A byte came over this connection (it counts as one the file was fetched over)."""

    def close(self) -> None:
        if self.pipe is not None:
            self.pipe.close()


@dataclass(frozen=True, slots=True)
class _Asked:
    """One range asked of one source, as its failure is judged."""

    claim: Claim
    resource: Resource
    received_before: int
    answered: bool
    """A believed answer came (its body broke, if anything did)."""

    @property
    def delivered(self) -> bool:
        return self.claim.received_bytes > self.received_before


class RangedPhase:
    """The workers of one ranged phase, over one planner and one ``.part``; used once."""

    def __init__(
        self,
        url: str,
        options: DownloadOptions,
        transport: Transport,
        identity: Identity,
        supervisor: Supervisor,
        pace: Pace,
        planner: Planner,
        part: PartFile,
        sources: Sources,
        *,
        workers: int,
    ) -> None:
        """``workers``: the connections this phase starts with."""
        self.url = url
        self.options = options
        self.transport = transport
        self.identity = identity
        self.supervisor = supervisor
        self.pace = pace
        self.planner = planner
        self.part = part
        self.sources = sources
        self.clock = supervisor.clock
        self._halt = supervisor.halt
        self._headers = options.request_headers()
        self._lock = threading.Lock()  # the counts below; nothing else is done under it
        self._workers = workers
        self._shed = 0
        self._streamed = 0
        self._breaks = RangeBreaks(options.connections)

    @property
    def streamed_workers(self) -> int:
        """The connections a byte came over."""
        with self._lock:
            return self._streamed

    def calls(self, first: Claim | None, response: Response | None) -> list[Callable[[], None]]:
        """One call per worker; the first goes on with the first contact's answer."""
        calls = [functools.partial(self._worker, 0, first, response)]
        calls += [functools.partial(self._worker, n, None, None) for n in range(1, self._workers)]
        return list(calls)

    def _worker(self, index: int, claim: Claim | None, response: Response | None) -> None:
        """One connection: ranges, one after the other, until the file is done, the phase
        stops, or this connection is one too many (then it leaves the rest to the others)."""
        # Over plain HTTP on Linux, bytes skip Python: socket → pipe → file (splice). Not under
        # a rate limit, whose small reads keep the pace smooth.
        pipe = Pipe() if Pipe.supported() and not self.pace.buckets else None
        buffer = memoryview(bytearray(self.pace.buffer_bytes(self.options.buffer_bytes)))
        lane = _Lane(index, buffer, pipe, self.options.retry_policy())
        planner = self.planner
        try:
            while not self._halt.is_set():
                if claim is None:
                    claim = planner.next_claim(self.clock())
                if claim is None:
                    if planner.finished:
                        return
                    self.supervisor.idle()
                    continue
                if not self._one_range(claim, response, lane):
                    return
                claim, response = None, None
        finally:
            lane.close()

    def _one_range(self, claim: Claim, response: Response | None, lane: _Lane) -> bool:
        """Fetch ``claim`` (over ``response`` if it is already answered); after a failure,
        what :mod:`segdl.core.failures` decides. True to go on taking ranges."""
        received_before = claim.received_bytes
        sources = self.sources
        resource = sources.for_worker(lane.index) if response is None else sources.main
        try:
            if response is None:
                response = self._ask(resource, claim)
            stream_claim(
                response,
                claim,
                self.planner,
                self.part,
                lane.buffer,
                self.clock,
                self._halt,
                self.url,
                self.pace.take,
                lane.pipe,
            )
            log.debug(
                "range %s stopped at %d after %.3f s",
                claim.request,
                claim.stream_pos,
                self._since(claim),
            )
            return True
        except BaseException as exc:
            self.planner.release(claim, self.clock())
            asked = _Asked(claim, resource, received_before, response is not None)
            return self._after_failure(exc, asked, lane)
        finally:
            self._range_ended(response, claim, received_before, lane)

    def _ask(self, resource: Resource, claim: Claim) -> Response:
        headers = {**self._headers, **self.identity.headers_for(resource.final_url)}
        response = open_range(self.transport, resource, claim.request, headers)
        self.supervisor.open.add(response)
        log.debug("range %s answered after %.3f s", claim.request, self._since(claim))
        return response

    def _range_ended(
        self, response: Response | None, claim: Claim, received_before: int, lane: _Lane
    ) -> None:
        """Whatever the outcome: the answer closed, idle workers told, the counts kept."""
        if response is not None:
            self.supervisor.open.discard(response)
            response.close()
        self.supervisor.work_changed()
        with self._lock:
            if claim.received_bytes > received_before:
                self._breaks = self._breaks.delivered()
            if claim.received_bytes and not lane.streamed:
                lane.streamed = True
                self._streamed += 1

    def _after_failure(self, error: BaseException, asked: _Asked, lane: _Lane) -> bool:
        """Count a break before the first byte, then decide and act: True to go on."""
        stopping = self._halt.is_set()
        with self._lock:
            self._breaks, action = count_break(
                self._breaks,
                error,
                lane.index,
                answered=asked.answered,
                delivered=asked.delivered,
                stopping=stopping,
            )
            cap = self._breaks.connections
        if action is not None:
            return self._act_on_breaks(action, error, cap)
        failure = RangeFailure(
            policy=lane.policy,
            progressed=asked.delivered,
            from_mirror=self.sources.is_mirror(asked.resource),
            others_working=self.planner.active_claims > 0,
            stopping=self._halt.is_set(),
            renewable=self.sources.renewable(asked.resource),
            now_epoch_s=time.time(),
        )
        decision = decide(error, failure)
        lane.policy = decision.policy
        return self._act(decision, error, asked.resource)

    def _act_on_breaks(self, action: Action, error: BaseException, cap: int) -> bool:
        """Ranged answers keep ending before their first byte (#19)."""
        if action is Action.STREAM_THE_REST:
            raise SwitchToSingleStream(
                f"ranged answers keep ending before their first byte ({error})", keep=True
            ) from error
        self.supervisor.notice(
            NoticeKind.CONNECTIONS_LOWERED,
            f"ranged answers keep breaking ({error}); continuing with {cap}",
        )
        return False

    def _act(self, decision: Decision, error: BaseException, resource: Resource) -> bool:
        """Do what ``decision`` says after ``error``: True to go on taking work, False to
        leave it to the other connections; otherwise raise."""
        action = decision.action
        notice = self.supervisor.notice
        if action is Action.RETRY:
            notice(NoticeKind.CONNECTION_RETRY, f"retrying in {decision.wait_s:.1f} s: {error}")
            self._halt.wait(decision.wait_s)
            return True
        if action is Action.RENEW:
            assert isinstance(error, HTTPStatusError)
            self.sources.renew(resource, error)
            return True  # at once, against the renewed target
        if action is Action.DROP_MIRROR:
            self.sources.drop(resource, error)
            return True
        if action is Action.SHED:
            with self._lock:
                self._shed += 1
                remaining = self._workers - self._shed
            message = f"server turned a connection away ({error}); continuing with {remaining}"
            notice(NoticeKind.CONNECTIONS_LOWERED, message)
            return False
        if action is Action.LEAVE:
            log.warning("giving up one connection: %s", error)
            return False
        if action is Action.SINGLE_STREAM:
            raise SwitchToSingleStream(str(error)) from error
        if action is Action.STOP:
            raise Cancelled("download stopped") from error
        raise error  # RESTART (the engine starts over) or FAIL

    def _since(self, claim: Claim) -> float:
        return self.clock() - claim.started_s
