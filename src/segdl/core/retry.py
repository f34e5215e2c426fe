"""When to try again, and how long to wait first: one immutable policy, safe to share.

In the spirit of urllib3's ``Retry``: a :class:`RetryPolicy` is never mutated; each failure
gives a new one with one attempt fewer (or all of them back when bytes flowed since the last
failure), so every range can carry its own without locks. Transient failures (connection
refused or reset, timeouts, short bodies, 408/425/429/5xx) are retried with exponential
backoff and full jitter; a ``Retry-After`` from the server is honoured up to a cap. Anything
else is permanent and fails at once: a 404 is not made better by asking again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from segdl.core.errors import (
    ConnectError,
    ConnectionBroken,
    HTTPStatusError,
    ProxyAuthError,
    ShortBody,
    SlowHead,
    TimeoutError_,
    TLSError,
)

# RFC 9110 §15.5.9 (408), RFC 8470 (425), RFC 6585 §4 (429), §15.6 (5xx that say "later").
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Statuses that may mean "too many connections from you" rather than "the file is gone".
OVERLOAD_STATUSES = frozenset({429, 503})


def is_transient(error: BaseException) -> bool:
    """Worth another attempt: the same request may well succeed a moment later."""
    if isinstance(error, (TLSError, ProxyAuthError)):
        return False  # a certificate or a proxy password does not get better by retrying
    if isinstance(error, HTTPStatusError):
        return error.status in TRANSIENT_STATUSES
    return isinstance(error, (ConnectError, ConnectionBroken, TimeoutError_, ShortBody))


def is_overload(error: BaseException) -> bool:
    """The server (or its front) turned an extra connection away."""
    if isinstance(error, HTTPStatusError):
        return error.status in OVERLOAD_STATUSES
    if isinstance(error, (TimeoutError_, ProxyAuthError)):
        return False
    return isinstance(error, (ConnectError, ConnectionBroken))


def parse_retry_after(value: str | None, now_epoch_s: float) -> float | None:
    """``Retry-After`` in seconds from now: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)  # inf for a number too large for a float: never OverflowError
    from email.utils import parsedate_to_datetime  # only for an HTTP-date: 7 ms to import

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # a year past C's long: found
        return None  # by bench/fuzz.py
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_epoch_s)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many more attempts, and the waits between them. Immutable."""

    attempts: int = 5
    """Attempts in a row without a new byte before giving up."""
    base_wait_s: float = 0.5
    max_wait_s: float = 30.0
    max_retry_after_s: float = 300.0
    """A server asking for a longer pause than this is not waited for: the failure stands."""
    failures: int = 0

    def __post_init__(self) -> None:
        if self.attempts < 0 or self.base_wait_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("retry counts and waits cannot be negative")

    @property
    def exhausted(self) -> bool:
        return self.failures > self.attempts

    def after(self, error: BaseException, *, progressed: bool) -> RetryPolicy:
        """The policy after ``error``; ``progressed``: bytes arrived since the last failure."""
        failures = 1 if progressed else self.failures + 1
        return replace(self, failures=failures)

    def may_retry(self, error: BaseException, now_epoch_s: float) -> bool:
        """Transient, attempts left, and any Retry-After within the cap. A head that took
        longer than the timeout is tried once more, not ``attempts`` times: a server that
        trickles its head does it again, and each try costs a whole timeout (#19)."""
        if not is_transient(error) or self.exhausted:
            return False
        if isinstance(error, SlowHead) and self.failures > 1:
            return False
        asked = _retry_after_s(error, now_epoch_s)
        return asked is None or asked <= self.max_retry_after_s

    def wait_s(
        self, error: BaseException, now_epoch_s: float, rand: Callable[[], float] = random.random
    ) -> float:
        """Retry-After if the server gave one, else exponential backoff with full jitter."""
        asked = _retry_after_s(error, now_epoch_s)
        if asked is not None:
            return min(asked, self.max_retry_after_s)
        ceiling = min(self.max_wait_s, self.base_wait_s * 2.0 ** max(0, self.failures - 1))
        return ceiling * rand()


def _retry_after_s(error: BaseException, now_epoch_s: float) -> float | None:
    if isinstance(error, HTTPStatusError):
        return parse_retry_after(error.retry_after, now_epoch_s)
    return None
