"""One byte-rate limit shared by every connection of every download: a token bucket with debt.

Workers account for bytes *after* they have arrived (a socket read cannot be un-read), so the
bucket is allowed to go negative: the caller whose bytes took it below zero sleeps until the
refill has paid the debt back, i.e. ``deficit / rate`` seconds. Because each caller's deficit
includes everyone's debt before it, waiters are released in the order they consumed, which keeps
connections roughly equal without a queue. The bucket holds at most ``burst_s`` seconds' worth of
tokens, so an idle spell buys a fraction of a second of full speed, not a spike.

The lock guards only the arithmetic; sleeping happens outside it so one slow waiter never blocks
another thread's accounting. Clock and sleep are parameters so tests run in virtual time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

__all__ = ["Pace", "TokenBucket"]


class TokenBucket:
    """Thread-safe byte-rate limiter shared by every connection of every download."""

    def __init__(
        self,
        rate_bytes_per_s: float,
        *,
        burst_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # `not x > 0` rather than `x <= 0` so that NaN is rejected too.
        if not rate_bytes_per_s > 0 or not math.isfinite(rate_bytes_per_s):
            raise ValueError(
                f"rate_bytes_per_s must be positive and finite, not {rate_bytes_per_s!r}"
            )
        if not burst_s >= 0 or not math.isfinite(burst_s):
            raise ValueError(f"burst_s must be non-negative and finite, not {burst_s!r}")
        self._rate_bytes_per_s = float(rate_bytes_per_s)
        self._burst_s = burst_s
        self._capacity_bytes = self._rate_bytes_per_s * burst_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # Start full: the first reads of a download may go at line speed for burst_s.
        self._tokens = self._capacity_bytes
        self._last_s = clock()

    @property
    def rate_bytes_per_s(self) -> float:
        """The limit this bucket enforces, in bytes per second."""
        return self._rate_bytes_per_s

    def set_rate(self, rate_bytes_per_s: float) -> None:
        """Enforce ``rate_bytes_per_s`` from now on (a daemon's limit changed while downloads
        run); the debt already owed is kept, tokens above the new burst are dropped."""
        if not rate_bytes_per_s > 0 or not math.isfinite(rate_bytes_per_s):
            raise ValueError(
                f"rate_bytes_per_s must be positive and finite, not {rate_bytes_per_s!r}"
            )
        with self._lock:
            self._rate_bytes_per_s = float(rate_bytes_per_s)
            self._capacity_bytes = self._rate_bytes_per_s * self._burst_s
            self._tokens = min(self._tokens, self._capacity_bytes)

    def consume(self, n_bytes: int, *, stop: threading.Event | None = None) -> None:
        """Account for ``n_bytes`` already received; block until the rate is back under the limit.

        If ``stop`` is given the wait is ``stop.wait(...)``, so setting it releases the caller at
        once (the debt stays on the bucket: those bytes really were received).
        """
        if n_bytes < 0:
            raise ValueError(f"n_bytes must be non-negative, not {n_bytes!r}")
        with self._lock:
            now_s = self._clock()
            # max(0, ...): never let a clock that steps backwards mint or destroy tokens.
            elapsed_s = max(0.0, now_s - self._last_s)
            self._last_s = now_s
            self._tokens = min(
                self._capacity_bytes, self._tokens + elapsed_s * self._rate_bytes_per_s
            )
            self._tokens -= n_bytes
            wait_s = -self._tokens / self._rate_bytes_per_s if self._tokens < 0 else 0.0
        if wait_s <= 0:
            return
        if stop is None:
            self._sleep(wait_s)
        else:
            stop.wait(wait_s)


class Pace:
    """The rate limits one download's connections obey (its own, a batch's), all at once."""

    def __init__(self, buckets: Sequence[TokenBucket], stop: threading.Event) -> None:
        """``stop``: a wait for tokens ends early when it is set."""
        self.buckets = tuple(buckets)
        self._stop = stop

    def take(self, n_bytes: int) -> None:
        """``n_bytes`` arrived: wait here until every limit's average is back in line."""
        for bucket in self.buckets:
            bucket.consume(n_bytes, stop=self._stop)

    def buffer_bytes(self, default_bytes: int) -> int:
        """Smaller reads under a rate limit, so one read is not a burst of half a second."""
        size = default_bytes
        for bucket in self.buckets:
            size = min(size, max(16 * 1024, int(bucket.rate_bytes_per_s / 20)))
        return size
