"""What now after a failure? One pure decision for every failed request of a download.

A worker whose range failed, and the loop that retries a whole request, ask :func:`decide`
(a range), :func:`decide_whole` (a first contact, a plain stream) or :func:`decide_piece`
(a piece of a stream to stdout) and do what the
:class:`Decision` says; nothing here sleeps, locks or touches a socket, so
``tests/unit/test_failures.py`` tests every branch as a table, without threads.

The order matters, and is the reason this is one function: an answer that cannot be believed
is never retried as it is (a mirror is dropped, the main URL falls back to one plain stream,
a changed file restarts the download); our own stop is never counted as the server's fault;
a mirror failing for good is dropped before anything is retried; an expired signed URL is
renewed before the retry policy counts it; a server turning an extra connection away
(``429``/``503``, a refused connection) while other connections get on costs that
connection, not the download.

Two counts live here too, as immutable values the run layer swaps under its own lock:
:class:`RangeBreaks` (ranged answers that keep ending before their first byte, #19) and the
bound on restarts of a file that keeps changing (:func:`decide_restart`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

from segdl.core.errors import (
    ConnectionBroken,
    ContentRangeMismatch,
    HTTPStatusError,
    NetworkError,
    RangeNotHonoured,
    RemoteChanged,
    ShortBody,
    SlowBody,
    UnexpectedEncoding,
)
from segdl.core.retry import RetryPolicy, is_overload, is_transient

# Answers that cannot be believed: asking the same way again would get the same answer.
UNBELIEVABLE = (RangeNotHonoured, ContentRangeMismatch, UnexpectedEncoding, RemoteChanged)
# Failures another attempt may not see.
RETRIABLE = (NetworkError, ShortBody, HTTPStatusError)
# A redirect target answering these after the download began is likely an expired signed URL.
EXPIRED_STATUSES = frozenset({401, 403, 404, 410})
# Ranged answers that end before their first body byte, in a row (no range delivering a
# byte in between): after every FEWER_AFTER of them the connections are halved, and after
# SINGLE_AFTER the rest comes in one plain stream (#19: a server whose 206 to any range past 0
# closes right after its head, while the stream from byte 0 works, had every range retried to
# exhaustion, about 40 requests, then exit 7).
FEWER_AFTER = 2
SINGLE_AFTER = 6
# A file that keeps changing under us is not downloaded forever: at most this many restarts.
MAX_RESTARTS = 2
# A piece of a stream (``-o -``) waits at most this long before it is asked again: the
# pieces behind it in the reorder window wait for it.
PIECE_MAX_WAIT_S = 5.0


class Action(Enum):
    RETRY = "retry after the wait"
    RENEW = "ask the original URL for a fresh redirect target, then retry at once"
    DROP_MIRROR = "drop the mirror; the other sources go on"
    SHED = "give this connection's work to the others: the server turned it away"
    LEAVE = "give up this connection; the others go on"
    SINGLE_STREAM = "ranges cannot be believed: fetch the file in one plain stream"
    FEWER = "ranged answers keep breaking: this connection stops, the others go on"
    STREAM_THE_REST = "ranged answers keep breaking: one plain stream, keeping what came"
    RESTART = "the remote file changed: start the download over"
    STOP = "our own stop broke the connection: cancelled"
    FAIL = "the download fails with this error"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    policy: RetryPolicy
    """The range's policy from now on (a failure counted, or as it was)."""
    wait_s: float = 0.0
    """For :attr:`Action.RETRY`: how long to wait first."""


@dataclass(frozen=True, slots=True)
class RangeFailure:
    """What a worker knows when its range failed."""

    policy: RetryPolicy
    """The range's retry policy before this failure."""
    progressed: bool
    """Bytes arrived since the range's last failure (then it gets all its attempts back)."""
    from_mirror: bool
    """The range was asked of a mirror, not of the main URL."""
    others_working: bool
    """Other connections hold ranges: the file gets on without this one."""
    stopping: bool
    """The download is being stopped (by a cancel or another connection's fatal error)."""
    renewable: bool
    """The bytes came from a redirect target that may be renewed (a signed URL)."""
    now_epoch_s: float


def decide(
    error: BaseException, failure: RangeFailure, rand: Callable[[], float] = random.random
) -> Decision:
    """What a worker does after ``error`` on a range."""
    policy = failure.policy
    if isinstance(error, UNBELIEVABLE):
        if failure.from_mirror:
            return Decision(Action.DROP_MIRROR, policy)
        if isinstance(error, RemoteChanged):
            return Decision(Action.RESTART, policy)
        return Decision(Action.SINGLE_STREAM, policy)
    if not isinstance(error, RETRIABLE):
        return Decision(Action.FAIL, policy)
    if failure.stopping:
        return Decision(Action.STOP, policy)
    if failure.from_mirror and not is_transient(error):
        return Decision(Action.DROP_MIRROR, policy)
    if failure.renewable and _expired(error):
        return Decision(Action.RENEW, policy)
    # A trickle is a stall, whatever few bytes it brought (#19): it must not earn the range
    # all its attempts back, or a server sending 1 KiB per timeout keeps it going forever.
    progressed = failure.progressed and not isinstance(error, SlowBody)
    policy = policy.after(error, progressed=progressed)
    if failure.others_working and is_overload(error):
        return Decision(Action.SHED, policy)
    if policy.may_retry(error, failure.now_epoch_s):
        return Decision(Action.RETRY, policy, policy.wait_s(error, failure.now_epoch_s, rand))
    if failure.others_working and is_transient(error):
        return Decision(Action.LEAVE, policy)
    return Decision(Action.FAIL, policy)


def decide_whole(
    error: BaseException,
    policy: RetryPolicy,
    *,
    stopping: bool,
    now_epoch_s: float,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """What to do after ``error`` on a request that cannot resume part-way (a first
    contact, a plain stream): retry it whole after a wait, or fail."""
    if not isinstance(error, RETRIABLE):
        return Decision(Action.FAIL, policy)
    if stopping:
        return Decision(Action.STOP, policy)
    policy = policy.after(error, progressed=False)
    if policy.may_retry(error, now_epoch_s):
        return Decision(Action.RETRY, policy, policy.wait_s(error, now_epoch_s, rand))
    return Decision(Action.FAIL, policy)


def decide_piece(
    error: BaseException,
    policy: RetryPolicy,
    *,
    stopping: bool,
    taken: bool,
    progressed: bool,
    now_epoch_s: float,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """What a connection of a stream (``-o -``) does after ``error`` on its piece. Bytes
    already written out cannot be taken back, so only a broken or slow body is asked again,
    from where it stopped; an answer that cannot be believed, or a status, fails the stream.
    :attr:`Action.LEAVE`: another connection took the piece over (and aborted this answer)."""
    if not isinstance(error, (NetworkError, ShortBody)):
        return Decision(Action.FAIL, policy)
    if stopping:
        return Decision(Action.STOP, policy)
    if taken:
        return Decision(Action.LEAVE, policy)
    policy = policy.after(error, progressed=progressed)
    if not policy.may_retry(error, now_epoch_s):
        return Decision(Action.FAIL, policy)
    wait_s = min(policy.wait_s(error, now_epoch_s, rand), PIECE_MAX_WAIT_S)
    return Decision(Action.RETRY, policy, wait_s)


def _expired(error: BaseException) -> bool:
    return isinstance(error, HTTPStatusError) and error.status in EXPIRED_STATUSES


@dataclass(frozen=True, slots=True)
class RangeBreaks:
    """Ranged answers that broke before their first byte, in a row, and how many
    connections may still take ranges because of them. Immutable: each break or delivery
    gives a new value, which the transfer swaps under its lock."""

    connections: int
    """Workers with an index at or above this stop taking ranges."""
    in_a_row: int = 0

    def delivered(self) -> RangeBreaks:
        """A range delivered a byte: the breaks are no longer in a row."""
        return replace(self, in_a_row=0) if self.in_a_row else self

    def broke(self) -> RangeBreaks:
        in_a_row = self.in_a_row + 1
        connections = self.connections
        if in_a_row < SINGLE_AFTER and in_a_row % FEWER_AFTER == 0:
            connections = max(1, connections // 2)
        return RangeBreaks(connections, in_a_row)


def count_break(
    breaks: RangeBreaks,
    error: BaseException,
    index: int,
    *,
    answered: bool,
    delivered: bool,
    stopping: bool,
) -> tuple[RangeBreaks, Action | None]:
    """Whether ``error`` on worker ``index``'s range is a break before the first byte (a
    believed answer, no byte of it, not our own stop), counted into ``breaks``; and what
    then: :attr:`Action.STREAM_THE_REST` once they came too often in a row, :attr:`Action.FEWER`
    when this worker is one too many now (its range stays in the plan for the others), None
    for :func:`decide` to judge as any failure."""
    if not answered or delivered or stopping:
        return breaks, None
    if not isinstance(error, (ShortBody, ConnectionBroken)):
        return breaks, None
    breaks = breaks.broke()
    if breaks.in_a_row >= SINGLE_AFTER:
        return breaks, Action.STREAM_THE_REST
    if index >= breaks.connections:
        return breaks, Action.FEWER
    return breaks, None


def decide_restart(error: BaseException, restarts: int) -> Action:
    """After an attempt at the whole file ended with ``error``, ``restarts`` restarts in:
    start over (the remote file changed, and it has not done so too often), or fail."""
    if isinstance(error, RemoteChanged) and restarts < MAX_RESTARTS:
        return Action.RESTART
    return Action.FAIL
