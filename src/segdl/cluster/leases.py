"""The cluster's per-host book: connection slots leased to workers, shared pauses, a rate.

Pure: no Ray, no threads, no clock of its own (every call is given ``now``), so the rules are
tested directly. :mod:`segdl.cluster.actor` holds one :class:`LeaseBook` in a Ray actor for
the whole run; :class:`segdl.cluster.gate.LeasedGate` is a worker's side of it.

- **Cap**: at most ``cap`` slots per host are held at once, over all workers; a slot is one
  open connection. Workers ask for slots in batches and keep them while they use them, so
  the book is consulted per connection opened, not per request.
- **Fair shares**: when several workers want a host's slots, each one's share is
  ``cap // wanting``; free slots go to the workers waiting longest first, as far as their
  shares go; a worker learns its share (idle connections above it should be closed) and how
  many others wait (it then gives a slot back now and then, so that slots go round).
- **Expiry**: a worker not heard from for ``ttl_s`` (its node died) loses its slots.
- **Pause**: a ``Retry-After`` reported by anyone pauses the host for everyone, at most
  ``max_pause_s``; ``pause_epoch`` changes, so watchers learn it at once.
- **Rate**: with ``rate_per_s``, request tokens per host, granted in batches from a bucket
  holding at most ``burst`` (default: a tenth of a second's worth, at least one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A worker that asked for slots and got fewer is "wanting" until it asks again; entries this
# old are stale (a waiting worker re-asks at least every half second).
WANT_TTL_S = 2.0


@dataclass(frozen=True, slots=True)
class HostView:
    """What a worker learns about one host from the book."""

    granted: int = 0
    """Slots granted by this call."""
    held: int = 0
    """Slots this worker holds now."""
    share: int = 0
    """Slots this worker may keep while others wait for one."""
    pause_s: float = 0.0
    """What is left of a pause every worker must keep."""
    waiting: int = 0
    """Other workers waiting for a slot of this host: a worker that has had its slots a
    while gives one back as its connection closes, so that slots go round."""


class LeaseBook:
    def __init__(
        self,
        cap: int,
        *,
        ttl_s: float = 30.0,
        max_pause_s: float = 300.0,
        rate_per_s: float | None = None,
        burst: float | None = None,
    ) -> None:
        if cap < 1:
            raise ValueError("the cap is at least one connection per host")
        if rate_per_s is not None and rate_per_s <= 0:
            raise ValueError("a request rate is positive")
        self.cap = cap
        self.ttl_s = ttl_s
        self.max_pause_s = max_pause_s
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else max(1.0, (rate_per_s or 0.0) / 10)
        self.pause_epoch = 0
        self.granted_total = 0
        self.expired_workers = 0
        self._held: dict[str, dict[str, int]] = {}  # host -> worker -> slots
        # host -> worker -> (since when it waits, when it last asked)
        self._wanting: dict[str, dict[str, tuple[float, float]]] = {}
        self._seen: dict[str, float] = {}  # worker -> last heard from
        self._paused_until: dict[str, float] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # host -> (tokens, at)

    # -- slots ------------------------------------------------------------------------------

    def acquire(self, worker: str, host: str, want: int, now: float) -> HostView:
        """Up to ``want`` more slots of ``host`` for ``worker`` (maybe none: then it is
        recorded as wanting, which lowers the others' shares)."""
        self._heard(worker, now)
        held = self._held.setdefault(host, {})
        wanting = self._wanting.setdefault(host, {})
        mine = held.get(worker, 0)
        since = wanting.get(worker, (now, now))[0]
        wanting[worker] = (since, now)  # counted in the share while it is decided
        share = self._share(host, now)
        free = self.cap - sum(held.values())
        # First come, first served: free slots go to those waiting longer first, as far as
        # their shares go; what is left, to this worker.
        ahead = sum(
            max(0, share - held.get(w, 0))
            for w, (first, _) in wanting.items()
            if w != worker and first < since
        )
        granted = max(0, min(want, free - ahead))
        if granted:
            held[worker] = mine + granted
            self.granted_total += granted
        if granted >= want:
            del wanting[worker]
        return self._view(worker, host, now, granted)

    def release(self, worker: str, host: str, count: int, now: float) -> HostView:
        """``worker`` gives back ``count`` slots of ``host`` (never more than it holds)."""
        self._heard(worker, now)
        held = self._held.get(host, {})
        left = held.get(worker, 0) - count
        if left > 0:
            held[worker] = left
        else:
            held.pop(worker, None)
        return self._view(worker, host, now)

    def leave(self, worker: str) -> None:
        """``worker`` is done: every slot it held is free."""
        self._forget(worker)

    def held(self, host: str) -> int:
        """Slots of ``host`` held now, over all workers."""
        return sum(self._held.get(host, {}).values())

    def expire(self, now: float) -> list[str]:
        """Forget the workers not heard from for ``ttl_s``; they are returned."""
        dead = [w for w, seen in self._seen.items() if now - seen > self.ttl_s]
        for worker in dead:
            self._forget(worker)
        self.expired_workers += len(dead)
        return dead

    def renew(self, worker: str, now: float) -> dict[str, HostView]:
        """A heartbeat: ``worker`` is alive. Returns its view of every host it holds or
        wants, and of every host paused now."""
        self._heard(worker, now)
        hosts = {h for h, held in self._held.items() if worker in held}
        hosts |= {h for h, wanting in self._wanting.items() if worker in wanting}
        hosts |= {h for h, until in self._paused_until.items() if until > now}
        return {host: self._view(worker, host, now) for host in hosts}

    # -- pauses and rate --------------------------------------------------------------------

    def pause(self, host: str, delay_s: float, now: float) -> None:
        """Nobody sends to ``host`` for ``delay_s`` (capped at ``max_pause_s``)."""
        until = now + min(max(0.0, delay_s), self.max_pause_s)
        if until > self._paused_until.get(host, 0.0):
            self._paused_until[host] = until
            self.pause_epoch += 1

    def take_requests(self, worker: str, host: str, want: int, now: float) -> tuple[int, float]:
        """Up to ``want`` request tokens for ``host``, and if none, how long until one."""
        self._heard(worker, now)
        if self.rate_per_s is None:
            return want, 0.0
        tokens, at = self._buckets.get(host, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
        granted = min(want, math.floor(tokens))
        tokens -= granted
        self._buckets[host] = (tokens, now)
        wait_s = 0.0 if granted else (1.0 - tokens) / self.rate_per_s
        return granted, wait_s

    # -- inside -----------------------------------------------------------------------------

    def _share(self, host: str, now: float) -> int:
        wanting = self._wanting.get(host, {})
        for worker, (_, asked) in list(wanting.items()):
            if now - asked > WANT_TTL_S:
                del wanting[worker]
        workers = set(self._held.get(host, {})) | set(wanting)
        return max(1, self.cap // len(workers)) if workers else self.cap

    def _view(self, worker: str, host: str, now: float, granted: int = 0) -> HostView:
        until = self._paused_until.get(host, 0.0)
        if until and until <= now:
            del self._paused_until[host]
        share = self._share(host, now)
        return HostView(
            granted=granted,
            held=self._held.get(host, {}).get(worker, 0),
            share=share,
            pause_s=max(0.0, until - now),
            waiting=sum(1 for w in self._wanting.get(host, {}) if w != worker),
        )

    def _heard(self, worker: str, now: float) -> None:
        self._seen[worker] = now

    def _forget(self, worker: str) -> None:
        self._seen.pop(worker, None)
        for held in self._held.values():
            held.pop(worker, None)
        for wanting in self._wanting.values():
            wanting.pop(worker, None)
