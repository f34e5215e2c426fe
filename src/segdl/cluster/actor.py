"""The run's one Ray actor: the lease book for every host, and the live tally of shards.

An async actor: its methods run on one event loop, so the book (pure, not thread-safe)
needs no lock, and the calls that wait (a slot to be freed, a pause to be reported) cost a
coroutine each, not a thread. It is placed on the driver's node, which a run cannot lose
without losing the run; workers on other nodes may come and go.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import ray

from segdl.cluster.gate import Departures
from segdl.cluster.leases import HostView, LeaseBook

Counts = tuple[int, int, int, int]
"""(done, skipped, failed, bytes) of one shard attempt so far."""
Note = tuple[str, str, Counts, str]
"""What a shard's heartbeat carries: (shard id, attempt, counts, node id)."""


class HostBook:
    """The actor's class (made remote by :func:`start_book`)."""

    def __init__(
        self, cap: int, ttl_s: float, max_pause_s: float, rate_per_s: float | None
    ) -> None:
        self._book = LeaseBook(cap, ttl_s=ttl_s, max_pause_s=max_pause_s, rate_per_s=rate_per_s)
        self._changed = asyncio.Event()
        self._gone = Departures()
        self._calls = 0
        # shard id -> (attempt, counts, worker, when): the latest attempt's live figures
        self._tally: dict[str, tuple[str, Counts, str, float]] = {}
        self._nodes: set[str] = set()  # nodes that ran a shard attempt
        self._begun: set[str] = set()  # shards an attempt has begun

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(self, timeout_s: float) -> None:
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout_s)

    async def acquire(self, worker: str, host: str, want: int, wait_s: float) -> HostView:
        deadline = time.monotonic() + wait_s
        while True:
            self._calls += 1
            now = time.monotonic()
            if self._book.expire(now):
                self._notify()
            view = self._book.acquire(worker, host, want, now)
            if view.granted or now >= deadline:
                return view
            await self._wait(deadline - now)

    async def release(self, worker: str, host: str, count: int) -> None:
        self._calls += 1
        self._book.release(worker, host, count, time.monotonic())
        self._notify()

    async def pause(self, host: str, delay_s: float) -> None:
        self._calls += 1
        self._book.pause(host, delay_s, time.monotonic())
        self._notify()

    async def watch(
        self, worker: str, since: int, timeout_s: float, note: Note | None = None
    ) -> tuple[int, dict[str, HostView]]:
        if note is not None:
            self._tally_of(worker, note)
        deadline = time.monotonic() + timeout_s
        while (
            self._book.pause_epoch == since
            and worker not in self._gone
            and (left := deadline - time.monotonic()) > 0
        ):
            await self._wait(left)
        self._calls += 1
        if self._gone.seen(worker):
            return self._book.pause_epoch, {}
        return self._book.pause_epoch, self._book.renew(worker, time.monotonic())

    async def take_requests(self, worker: str, host: str, want: int) -> tuple[int, float]:
        self._calls += 1
        return self._book.take_requests(worker, host, want, time.monotonic())

    async def leave(self, worker: str) -> None:
        self._calls += 1
        self._book.leave(worker)
        self._gone.add(worker, time.monotonic())
        self._notify()

    async def begin(self, shard_id: str) -> bool:
        """A shard attempt begins: whether an earlier one did (and was lost)."""
        earlier = shard_id in self._begun
        self._begun.add(shard_id)
        return earlier

    def _tally_of(self, worker: str, note: Note) -> None:
        """A running shard's figures so far (its heartbeat's note); a newer attempt of a
        shard replaces an older."""
        shard_id, attempt, counts, node = note
        self._tally[shard_id] = (attempt, counts, worker, time.monotonic())
        self._nodes.add(node)

    async def snapshot(self) -> dict[str, Any]:
        """What the driver shows: each shard's live figures (with the worker and the age of
        its last word), and the book's counters."""
        now = time.monotonic()
        return {
            "shards": {
                shard: (counts, worker, now - at)
                for shard, (_, counts, worker, at) in self._tally.items()
            },
            "nodes": sorted(self._nodes),
            "granted": self._book.granted_total,
            "expired_workers": self._book.expired_workers,
            "calls": self._calls,
        }

    async def held(self, host: str) -> int:
        return self._book.held(host)


def start_book(cap: int, *, ttl_s: float, max_pause_s: float, rate_per_s: float | None) -> Any:
    """The actor, pinned to this (the driver's) node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    actor_class: Any = ray.remote(HostBook)
    return actor_class.options(
        num_cpus=0,
        max_concurrency=10_000,  # waiting calls are coroutines: one per waiting worker
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
    ).remote(cap, ttl_s, max_pause_s, rate_per_s)


class RayLeases:
    """A :class:`segdl.cluster.gate.LeaseService` over the actor, for a worker: what must
    be answered waits for the answer; what need not (a release, a pause) is sent and left."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    def acquire(self, worker: str, host: str, want: int, wait_s: float) -> HostView:
        view: HostView = ray.get(self._actor.acquire.remote(worker, host, want, wait_s))
        return view

    def release(self, worker: str, host: str, count: int) -> None:
        self._actor.release.remote(worker, host, count)

    def pause(self, host: str, delay_s: float) -> None:
        self._actor.pause.remote(host, delay_s)

    def watch(
        self, worker: str, since: int, timeout_s: float, note: object = None
    ) -> tuple[int, dict[str, HostView]]:
        answer: tuple[int, dict[str, HostView]] = ray.get(
            self._actor.watch.remote(worker, since, timeout_s, note)
        )
        return answer

    def take_requests(self, worker: str, host: str, want: int) -> tuple[int, float]:
        answer: tuple[int, float] = ray.get(self._actor.take_requests.remote(worker, host, want))
        return answer

    def leave(self, worker: str) -> None:
        ray.get(self._actor.leave.remote(worker))
