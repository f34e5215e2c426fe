"""A worker's host gate whose connection slots are leased from the cluster's one book.

:class:`LeasedGate` is the :class:`segdl.net.gate.HostGate` a worker's batch consults. It keeps
the slots it was granted and hands them to its own connections, asking the book (through a
:class:`LeaseService`: the Ray actor, or :class:`LocalLeases` in one process) only when it
has none to spare, and for a few at a time. A background thread long-polls the book: a
pause reported anywhere reaches every worker within one round trip, and the same call is
the heartbeat that keeps the worker's leases alive and tells it its fair share. Slots are
given back when this worker holds more than its share while others wait, one at a time as
connections close once it has had them ``rotate_s`` while others wait (so that slots go
round and no worker starves), when they have been unused for ``idle_s``, and all of them
when the gate closes.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from segdl.cluster.leases import HostView, LeaseBook

log = logging.getLogger(__name__)

MAX_BATCH = 256
"""Most slots a worker asks the book for at once (within its share)."""


class LeaseService(Protocol):
    """The book as a worker reaches it (each call may cross the network)."""

    def acquire(self, worker: str, host: str, want: int, wait_s: float) -> HostView:
        """Up to ``want`` slots; waits up to ``wait_s`` for one to be freed before saying none."""
        ...

    def release(self, worker: str, host: str, count: int) -> None: ...

    def pause(self, host: str, delay_s: float) -> None: ...

    def watch(
        self, worker: str, since: int, timeout_s: float, note: object = None
    ) -> tuple[int, dict[str, HostView]]:
        """Wait until the pause epoch differs from ``since`` (or ``timeout_s``, or ``worker``
        has left), then renew ``worker``'s leases; the epoch and the worker's view of each
        host (none once it has left). ``note``: what the worker has to tell besides (its
        shard's figures), carried by the heartbeat rather than by calls of its own."""
        ...

    def take_requests(self, worker: str, host: str, want: int) -> tuple[int, float]: ...

    def leave(self, worker: str) -> None:
        """``worker`` is done: its slots are free, and its heartbeat's watch returns now."""
        ...


class Departures:
    """Workers that left, until their heartbeat's last watch has seen it (or a minute has
    passed: a watch that never came)."""

    KEEP_S = 60.0

    def __init__(self) -> None:
        self._left: dict[str, float] = {}

    def add(self, worker: str, now: float) -> None:
        for name, at in list(self._left.items()):
            if now - at > self.KEEP_S:
                del self._left[name]
        self._left[worker] = now

    def __contains__(self, worker: object) -> bool:
        return worker in self._left

    def seen(self, worker: str) -> bool:
        """Whether ``worker`` has left (forgotten from here on)."""
        return self._left.pop(worker, None) is not None


class LocalLeases:
    """A :class:`LeaseService` over a :class:`LeaseBook` in this process (threads as
    workers): for tests and simulations, and the reference for the actor."""

    def __init__(self, book: LeaseBook, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.book = book
        self._clock = clock
        self._changed = threading.Condition()
        self._gone = Departures()
        self.calls = 0
        self.notes: dict[str, object] = {}  # each worker's latest note

    def acquire(self, worker: str, host: str, want: int, wait_s: float) -> HostView:
        deadline = self._clock() + wait_s
        with self._changed:
            while True:
                self.calls += 1
                self.book.expire(self._clock())
                view = self.book.acquire(worker, host, want, self._clock())
                left = deadline - self._clock()
                if view.granted or left <= 0:
                    return view
                self._changed.wait(left)

    def release(self, worker: str, host: str, count: int) -> None:
        with self._changed:
            self.calls += 1
            self.book.release(worker, host, count, self._clock())
            self._changed.notify_all()

    def pause(self, host: str, delay_s: float) -> None:
        with self._changed:
            self.calls += 1
            self.book.pause(host, delay_s, self._clock())
            self._changed.notify_all()

    def watch(
        self, worker: str, since: int, timeout_s: float, note: object = None
    ) -> tuple[int, dict[str, HostView]]:
        with self._changed:
            self.notes[worker] = note
            self._changed.wait_for(
                lambda: self.book.pause_epoch != since or worker in self._gone, timeout_s
            )
            self.calls += 1
            if self._gone.seen(worker):
                return self.book.pause_epoch, {}
            return self.book.pause_epoch, self.book.renew(worker, self._clock())

    def take_requests(self, worker: str, host: str, want: int) -> tuple[int, float]:
        with self._changed:
            self.calls += 1
            return self.book.take_requests(worker, host, want, self._clock())

    def leave(self, worker: str) -> None:
        with self._changed:
            self.calls += 1
            self.book.leave(worker)
            self._gone.add(worker, self._clock())
            self._changed.notify_all()


@dataclass(slots=True)
class _Host:
    held: int = 0  # slots granted to this worker
    open: int = 0  # of which connections use this many
    waiting: int = 0  # local threads waiting for a slot
    asking: bool = False  # one of them is asking the book
    returned: int = 0  # connections put back idle: waiters may take one of those
    share: int = 1 << 30  # unknown until the book says: no reason to close anything
    paused_until: float = 0.0
    tokens: int = 0
    last_busy: float = 0.0
    others_waiting: int = 0  # other workers waiting for this host's slots
    granted_at: float = 0.0  # when the book last granted this worker slots
    asked_at: float = -1e9  # when this worker last asked the book for slots
    streak: int = 0  # slots to ask for next, grown while demand outruns the batch


def worker_name() -> str:
    """A name no other worker has: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class LeasedGate:
    """A :class:`segdl.net.gate.HostGate` whose slots come from a :class:`LeaseService`."""

    def __init__(
        self,
        service: LeaseService,
        *,
        worker: str | None = None,
        lease_batch: int = 4,
        idle_s: float = 0.5,
        tick_s: float = 0.5,
        rotate_s: float = 1.0,
        rate_limited: bool = False,
        note: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``note()``: sent with every heartbeat (see :meth:`LeaseService.watch`)."""
        self.worker = worker or worker_name()
        self._note = note
        self._service = service
        self._batch = max(1, lease_batch)
        self._idle_s = idle_s
        self._tick_s = tick_s
        self._rotate_s = rotate_s
        self._rate_limited = rate_limited
        self._clock = clock
        self._changed = threading.Condition()
        self._hosts: dict[str, _Host] = {}
        self._closed = threading.Event()
        self._epoch = -1
        self._watcher = threading.Thread(target=self._watch, name="segdl-leases", daemon=True)
        self._watcher.start()

    # -- HostGate ---------------------------------------------------------------------------

    def connect(self, host: str, timeout_s: float | None = None) -> bool:
        deadline = None if timeout_s is None else self._clock() + timeout_s
        with self._changed:
            state = self._host(host)
            returned = state.returned
            state.waiting += 1
            asked = False  # a timeout of 0 still asks the book once (without waiting there)
            try:
                while True:
                    if state.open < state.held:
                        state.open += 1
                        state.last_busy = self._clock()
                        return True
                    left = self._tick_s if deadline is None else deadline - self._clock()
                    if (left <= 0 and asked) or state.returned != returned:
                        return False
                    if state.asking:
                        if left <= 0:
                            return False
                        self._changed.wait(min(left, self._tick_s))
                        continue
                    asked = True
                    self._ask(state, host, max(0.0, min(left, 0.5)))
            finally:
                state.waiting -= 1

    def _ask(self, state: _Host, host: str, wait_s: float) -> None:
        """Ask the book for slots, with the lock let go meanwhile: as many as threads wait
        here, or more when the host's slots were asked for again within a tick of a grant
        that gave all it was asked (demand outruns the batch: fewer, larger calls, doubling
        up to :data:`MAX_BATCH`), never past this worker's share."""
        state.asking = True
        want = max(min(self._batch, state.waiting), state.streak)
        want = max(1, min(want, state.share - state.held))
        self._changed.release()
        try:
            view = self._service.acquire(self.worker, host, want, wait_s)
        finally:
            self._changed.acquire()
            state.asking = False
        now = self._clock()
        if view.granted >= want and now - state.asked_at < self._tick_s:
            state.streak = min(2 * max(want, self._batch), MAX_BATCH)
        elif view.granted < want:
            state.streak = 0
        state.asked_at = now
        state.held += view.granted
        if view.granted:
            state.granted_at = now
        self._learn(state, view)
        self._changed.notify_all()

    def disconnected(self, host: str) -> None:
        with self._changed:
            state = self._host(host)
            state.open -= 1
            state.last_busy = self._clock()
            give = 0
            if state.held > state.share and state.waiting == 0:
                give = min(state.held - state.open, state.held - state.share)
            elif state.others_waiting and self._clock() - state.granted_at > self._rotate_s:
                give = 1  # had it a while, others wait: let the slots go round
                state.granted_at = self._clock()
            state.held -= give
            self._changed.notify_all()
        if give > 0:
            self._service.release(self.worker, host, give)

    def keep_idle(self, host: str) -> bool:
        with self._changed:
            state = self._host(host)
            if state.open > state.share:
                return False
            state.returned += 1  # a thread waiting for a slot may take this one instead
            self._changed.notify_all()
            return True

    def before_request(self, host: str) -> None:
        with self._changed:
            state = self._host(host)
            while (left := state.paused_until - self._clock()) > 0:
                self._changed.wait(left)
            if not self._rate_limited:
                return
        self._take_token(host)

    def request_wait_s(self, host: str) -> float:
        with self._changed:
            state = self._host(host)
            left = state.paused_until - self._clock()
            if left > 0:
                return left
            if not self._rate_limited:
                return 0.0
            if state.tokens > 0:
                state.tokens -= 1
                return 0.0
        granted, wait_s = self._service.take_requests(self.worker, host, self._batch)
        with self._changed:
            state.tokens += granted
            if state.tokens > 0:
                state.tokens -= 1
                return 0.0
        return max(wait_s, 0.001)

    def retry_after(self, host: str, delay_s: float) -> None:
        with self._changed:
            state = self._host(host)
            state.paused_until = max(state.paused_until, self._clock() + delay_s)
            self._changed.notify_all()
        self._service.pause(host, delay_s)

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Give every slot back and stop the heartbeat (the connections are closed first):
        leaving also ends the heartbeat's watch, so this takes one round trip, not a tick."""
        self._closed.set()
        self._service.leave(self.worker)
        self._watcher.join(timeout=self._tick_s + 5.0)

    def __enter__(self) -> LeasedGate:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- inside -----------------------------------------------------------------------------

    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(last_busy=self._clock())
        return state

    def _learn(self, state: _Host, view: HostView) -> None:
        state.share = view.share
        state.others_waiting = view.waiting
        if view.pause_s > 0:
            state.paused_until = max(state.paused_until, self._clock() + view.pause_s)

    def _take_token(self, host: str) -> None:
        while True:
            with self._changed:
                state = self._host(host)
                if state.tokens > 0:
                    state.tokens -= 1
                    return
            granted, wait_s = self._service.take_requests(self.worker, host, self._batch)
            with self._changed:
                state.tokens += granted
            if not granted and self._closed.wait(wait_s):
                return

    def _watch(self) -> None:
        """The heartbeat: long-polls the book for pauses and renews the leases."""
        while not self._closed.is_set():
            try:
                note = None if self._note is None else self._note()
                epoch, views = self._service.watch(self.worker, self._epoch, self._tick_s, note)
            except Exception as exc:  # the book unreachable for a moment: try again
                log.warning("lease heartbeat failed: %s", exc)
                self._closed.wait(self._tick_s)
                continue
            idle: list[tuple[str, int]] = []
            with self._changed:
                self._epoch = epoch
                now = self._clock()
                for host, view in views.items():
                    self._learn(self._host(host), view)
                for host, state in self._hosts.items():
                    spare = state.held - state.open
                    if spare > 0 and state.waiting == 0 and now - state.last_busy > self._idle_s:
                        state.held -= spare
                        idle.append((host, spare))
                self._changed.notify_all()
            for host, spare in idle:
                self._service.release(self.worker, host, spare)
