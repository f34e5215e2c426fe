"""Retry decisions: transient vs permanent, Retry-After, backoff bounds, immutability."""

from __future__ import annotations

import pytest

from segdl.core.errors import (
    ConnectError,
    ConnectionBroken,
    HTTPStatusError,
    InvalidHeader,
    ShortBody,
    TimeoutError_,
    TLSError,
)
from segdl.core.retry import RetryPolicy, is_overload, is_transient, parse_retry_after

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    "error",
    [
        ConnectError("u", "connection refused"),
        ConnectionBroken("u", "reset"),
        TimeoutError_("u", "timed out"),
        ShortBody("u", 10, 5),
        *(HTTPStatusError("u", s) for s in (408, 425, 429, 500, 502, 503, 504)),
    ],
)
def test_transient_errors(error: Exception) -> None:
    """Network trouble and 'try later' statuses are worth another attempt."""
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        TLSError("u", "certificate verify failed"),
        InvalidHeader("Content-Length", "+5", "not digits"),
        *(HTTPStatusError("u", s) for s in (400, 401, 403, 404, 410, 416, 501)),
    ],
)
def test_permanent_errors(error: Exception) -> None:
    """A 404, a bad certificate or an unbelievable answer is not fixed by asking again."""
    assert not is_transient(error)


def test_overload_means_turned_away() -> None:
    """429/503 and refused/reset connections may mean 'fewer connections, please'."""
    assert is_overload(HTTPStatusError("u", 503))
    assert is_overload(ConnectError("u", "connection refused"))
    assert not is_overload(HTTPStatusError("u", 500))
    assert not is_overload(TimeoutError_("u", "timed out"))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("120", 120.0),
        ("Tue, 14 Nov 2023 22:13:50 GMT", 30.0),
        ("Tue, 14 Nov 2023 22:13:00 GMT", 0.0),  # in the past: now
        (None, None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("\u0661\u0662", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    """Delay-seconds or an HTTP-date; anything else is ignored."""
    assert parse_retry_after(value, NOW) == seconds


def test_policy_is_immutable_and_counts_failures_in_a_row() -> None:
    """Each failure returns a new policy; progress gives the attempts back."""
    policy = RetryPolicy(attempts=2)
    error = ConnectionBroken("u", "reset")
    first = policy.after(error, progressed=False)
    assert policy.failures == 0 and first.failures == 1
    second = first.after(error, progressed=False)
    assert second.may_retry(error, NOW)
    third = second.after(error, progressed=False)
    assert not third.may_retry(error, NOW)
    assert third.after(error, progressed=True).may_retry(error, NOW)


def test_backoff_grows_with_full_jitter_and_a_ceiling() -> None:
    """Waits are uniform in [0, base * 2^(n-1)], never above the maximum."""
    policy = RetryPolicy(base_wait_s=0.5, max_wait_s=4.0)
    error = ConnectionBroken("u", "reset")
    for n in range(1, 8):
        policy = policy.after(error, progressed=False)
        ceiling = min(4.0, 0.5 * 2 ** (n - 1))
        assert policy.wait_s(error, NOW, rand=lambda: 1.0) == ceiling
        assert policy.wait_s(error, NOW, rand=lambda: 0.0) == 0.0


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    """A server's Retry-After replaces the backoff; beyond the cap the attempt fails."""
    policy = RetryPolicy(max_retry_after_s=60).after(HTTPStatusError("u", 503), progressed=False)
    asked = HTTPStatusError("u", 503, retry_after="7")
    assert policy.wait_s(asked, NOW) == 7.0
    assert policy.may_retry(asked, NOW)
    assert not policy.may_retry(HTTPStatusError("u", 503, retry_after="3600"), NOW)
