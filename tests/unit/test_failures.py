"""What now after a failure? segdl.core.failures.decide tested as a table, without threads;
with it the counting of ranges that break before their first byte, and the restart bound."""

from __future__ import annotations

from dataclasses import replace

import pytest

from segdl.core.errors import (
    ConnectError,
    ConnectionBroken,
    ContentRangeMismatch,
    HTTPStatusError,
    IntegrityError,
    RangeNotHonoured,
    RemoteChanged,
    ShortBody,
    TimeoutError_,
    TLSError,
    UnexpectedEncoding,
)
from segdl.core.failures import (
    MAX_RESTARTS,
    PIECE_MAX_WAIT_S,
    SINGLE_AFTER,
    Action,
    RangeBreaks,
    RangeFailure,
    count_break,
    decide,
    decide_piece,
    decide_restart,
    decide_whole,
)
from segdl.core.models import ByteRange
from segdl.core.retry import RetryPolicy

URL = "http://h/f"
R = ByteRange(0, 10)
CALM = RangeFailure(
    policy=RetryPolicy(attempts=2),
    progressed=False,
    from_mirror=False,
    others_working=False,
    stopping=False,
    renewable=False,
    now_epoch_s=0.0,
)
MIRROR = replace(CALM, from_mirror=True)
OTHERS = replace(CALM, others_working=True)
SIGNED = replace(CALM, renewable=True)
STOPPING = replace(CALM, stopping=True)
SPENT = replace(CALM, policy=RetryPolicy(attempts=2, failures=2))  # this failure is the 3rd
SPENT_OTHERS = replace(SPENT, others_working=True)

S503 = HTTPStatusError(URL, 503, "Busy")
S403 = HTTPStatusError(URL, 403, "Forbidden")
S404 = HTTPStatusError(URL, 404, "Not Found")
RESET = ConnectionBroken(URL, "reset")
REFUSED = ConnectError(URL, "refused")
SHORT = ShortBody(URL, 10, 5)

TABLE = [
    # answers that cannot be believed are never retried as they are
    (RangeNotHonoured(URL, R, 200), CALM, Action.SINGLE_STREAM),
    (ContentRangeMismatch(URL, R, "bytes 1-9/10", "x"), CALM, Action.SINGLE_STREAM),
    (UnexpectedEncoding(URL, "gzip"), CALM, Action.SINGLE_STREAM),
    (RemoteChanged(URL, "ETag"), CALM, Action.RESTART),
    (RangeNotHonoured(URL, R, 200), MIRROR, Action.DROP_MIRROR),
    (RemoteChanged(URL, "ETag"), MIRROR, Action.DROP_MIRROR),  # a mirror's file is not ours
    (RemoteChanged(URL, "ETag"), STOPPING, Action.RESTART),
    # our own stop is not the server's fault
    (RESET, STOPPING, Action.STOP),
    (S503, STOPPING, Action.STOP),
    # mirrors: dropped for good failures, retried for passing ones
    (S404, MIRROR, Action.DROP_MIRROR),
    (TLSError(URL, "bad cert"), MIRROR, Action.DROP_MIRROR),
    (RESET, MIRROR, Action.RETRY),
    # an expired signed URL is renewed before the policy counts it
    (S403, SIGNED, Action.RENEW),
    (S404, SIGNED, Action.RENEW),
    (HTTPStatusError(URL, 410, "Gone"), SIGNED, Action.RENEW),
    (S503, SIGNED, Action.RETRY),
    (S403, CALM, Action.FAIL),
    # a connection turned away while others get on costs that connection only
    (S503, OTHERS, Action.SHED),
    (HTTPStatusError(URL, 429, "Slow down"), OTHERS, Action.SHED),
    (REFUSED, OTHERS, Action.SHED),
    (TimeoutError_(URL, "idle"), OTHERS, Action.RETRY),  # slow is not a refusal
    # the policy: transient failures retried while attempts last
    (S503, CALM, Action.RETRY),
    (RESET, CALM, Action.RETRY),
    (SHORT, CALM, Action.RETRY),
    (S404, CALM, Action.FAIL),
    (TLSError(URL, "bad cert"), CALM, Action.FAIL),
    (RESET, SPENT, Action.FAIL),
    (RESET, replace(SPENT, progressed=True), Action.RETRY),  # bytes came: attempts back
    (SHORT, SPENT_OTHERS, Action.LEAVE),  # out of attempts, the others finish the file
    (RESET, OTHERS, Action.SHED),  # a reset while others get on: turned away
    (S404, OTHERS, Action.FAIL),
    # anything else is not this module's to forgive
    (IntegrityError("digest"), CALM, Action.FAIL),
    (ValueError("a bug"), OTHERS, Action.FAIL),
]


@pytest.mark.parametrize(("error", "failure", "action"), TABLE)
def test_range_failure_table(error: BaseException, failure: RangeFailure, action: Action) -> None:
    """Each failure of a range, in each situation, gets the action the table says."""
    assert decide(error, failure).action is action


def test_a_retry_counts_the_failure_and_waits_with_jitter() -> None:
    """RETRY carries the policy with the failure counted and the jittered backoff; a
    Retry-After within the cap is the wait instead."""
    decision = decide(RESET, CALM, rand=lambda: 0.5)
    assert decision.policy.failures == 1
    assert decision.wait_s == pytest.approx(0.25)  # base 0.5 s * 2**0, half the jitter range
    asked = decide(HTTPStatusError(URL, 503, "Busy", "7"), CALM, rand=lambda: 0.5)
    assert asked.action is Action.RETRY and asked.wait_s == 7.0


def test_a_retry_after_beyond_the_cap_fails_the_attempt() -> None:
    """A server asking for a longer pause than max_retry_after_s is not waited for."""
    capped = replace(CALM, policy=RetryPolicy(max_retry_after_s=60))
    assert decide(HTTPStatusError(URL, 503, "Busy", "3600"), capped).action is Action.FAIL


def test_decisions_that_do_not_retry_leave_the_policy_alone() -> None:
    """Only a counted failure changes the range's policy (a renewal or a fallback is not
    an attempt used up)."""
    for error, failure in [(S403, SIGNED), (RangeNotHonoured(URL, R, 200), CALM), (S404, MIRROR)]:
        assert decide(error, failure).policy is failure.policy


@pytest.mark.parametrize(
    ("error", "policy", "stopping", "action"),
    [
        (S503, RetryPolicy(attempts=1), False, Action.RETRY),
        (S503, RetryPolicy(attempts=1, failures=1), False, Action.FAIL),
        (RESET, RetryPolicy(), True, Action.STOP),
        (S404, RetryPolicy(), False, Action.FAIL),
        (RangeNotHonoured(URL, R, 200), RetryPolicy(), False, Action.FAIL),
    ],
)
def test_whole_request_table(
    error: BaseException, policy: RetryPolicy, stopping: bool, action: Action
) -> None:
    """A first contact or a plain stream is retried whole while the policy allows."""
    assert decide_whole(error, policy, stopping=stopping, now_epoch_s=0.0).action is action


def test_a_trickle_is_never_progress() -> None:
    """A SlowBody that brought a few bytes still uses up an attempt (#19): a range whose body
    trickles fails when its attempts run out, where a real break with bytes gets them back."""
    from segdl.core.errors import SlowBody

    trickle = SlowBody(URL, "body trickled: 768 bytes in 2 s")
    spent_but_progressed = replace(SPENT, progressed=True)
    assert decide(trickle, spent_but_progressed).action is Action.FAIL
    assert decide(RESET, spent_but_progressed).action is Action.RETRY


def breaks_in_a_row(connections: int, count: int, index: int = 0) -> list[Action | None]:
    """The actions of ``count`` breaks in a row, each on worker ``index``."""
    breaks, actions = RangeBreaks(connections), []
    for _ in range(count):
        breaks, action = count_break(
            breaks, RESET, index, answered=True, delivered=False, stopping=False
        )
        actions.append(action)
    return actions


def test_every_second_break_in_a_row_halves_the_connections() -> None:
    """#19: after 2, 4 breaks in a row the connections halve (8 -> 4 -> 2); the 6th break
    switches to one plain stream that keeps what came; the cap never goes below one."""
    breaks = RangeBreaks(8)
    caps = []
    for _ in range(5):
        breaks, _action = count_break(
            breaks, SHORT, 0, answered=True, delivered=False, stopping=False
        )
        caps.append(breaks.connections)
    assert caps == [8, 4, 4, 2, 2]
    assert breaks_in_a_row(8, SINGLE_AFTER)[-1] is Action.STREAM_THE_REST
    assert breaks_in_a_row(8, SINGLE_AFTER - 1) == [None] * (SINGLE_AFTER - 1)
    one = RangeBreaks(1)
    for _ in range(4):
        one = one.broke()
    assert one.connections == 1


@pytest.mark.parametrize(
    ("index", "expected"),
    [(0, [None, None, None, None]), (3, [None, Action.FEWER, Action.FEWER, Action.FEWER])],
)
def test_a_worker_past_the_halved_cap_leaves(index: int, expected: list[Action | None]) -> None:
    """Once halved (4 -> 2 after the 2nd break), a worker whose index is at or above the cap
    stops taking ranges; the first workers go on to decide() like any failure."""
    assert breaks_in_a_row(4, 4, index) == expected


@pytest.mark.parametrize(
    ("error", "answered", "delivered", "stopping"),
    [
        (RESET, False, False, False),  # no believed answer: a connect failure, not a break
        (RESET, True, True, False),  # bytes came: not before the first byte
        (RESET, True, False, True),  # our own stop broke it
        (S503, True, False, False),  # a status is not a broken body
        (RangeNotHonoured(URL, R, 200), True, False, False),
    ],
)
def test_what_is_not_a_break_is_not_counted(
    error: BaseException, answered: bool, delivered: bool, stopping: bool
) -> None:
    """Only a believed answer whose body ended before its first byte counts."""
    breaks = RangeBreaks(4, in_a_row=5)
    after, action = count_break(
        breaks, error, 3, answered=answered, delivered=delivered, stopping=stopping
    )
    assert after is breaks and action is None


def test_a_delivered_byte_ends_the_run_of_breaks() -> None:
    """A range delivering a byte resets the count (the cap stays where it went)."""
    breaks = RangeBreaks(4).broke().broke().delivered()
    assert breaks == RangeBreaks(2, 0)
    assert breaks.delivered() is breaks


def test_the_restart_loop_is_bounded() -> None:
    """A changed remote file restarts the download MAX_RESTARTS times, then fails; no other
    error restarts it."""
    changed = RemoteChanged(URL, "ETag")
    assert [decide_restart(changed, n) for n in range(MAX_RESTARTS + 1)] == [
        *[Action.RESTART] * MAX_RESTARTS,
        Action.FAIL,
    ]
    assert decide_restart(RESET, 0) is Action.FAIL


@pytest.mark.parametrize(
    ("error", "stopping", "taken", "policy", "action"),
    [
        (RESET, False, False, RetryPolicy(attempts=1), Action.RETRY),
        (SHORT, False, False, RetryPolicy(attempts=1), Action.RETRY),
        (RESET, False, False, RetryPolicy(attempts=1, failures=1), Action.FAIL),
        (RESET, True, False, RetryPolicy(), Action.STOP),
        (RESET, True, True, RetryPolicy(), Action.STOP),  # our stop first
        (RESET, False, True, RetryPolicy(), Action.LEAVE),  # the piece has a new owner
        (S503, False, False, RetryPolicy(), Action.FAIL),  # a status fails the stream
        (RangeNotHonoured(URL, R, 200), False, False, RetryPolicy(), Action.FAIL),
        (TLSError(URL, "bad cert"), False, False, RetryPolicy(), Action.FAIL),
    ],
)
def test_stream_piece_table(
    error: BaseException, stopping: bool, taken: bool, policy: RetryPolicy, action: Action
) -> None:
    """A piece of a stream to stdout is asked again only for a broken body, while attempts
    last; our own stop and another connection's takeover come first."""
    decision = decide_piece(
        error, policy, stopping=stopping, taken=taken, progressed=False, now_epoch_s=0.0
    )
    assert decision.action is action


def test_a_stream_piece_waits_at_most_a_few_seconds() -> None:
    """A long backoff is cut to a few seconds for a piece the pieces behind it wait for."""
    error = TimeoutError_(URL, "idle")
    policy = RetryPolicy(attempts=9, failures=8, base_wait_s=10.0, max_wait_s=600.0)
    decision = decide_piece(
        error,
        policy,
        stopping=False,
        taken=False,
        progressed=False,
        now_epoch_s=0.0,
        rand=lambda: 1.0,
    )
    assert decision.action is Action.RETRY and decision.wait_s == PIECE_MAX_WAIT_S
