"""Whole requests tried again under a :class:`~segdl.core.retry.RetryPolicy`, waiting between
attempts (the policy decides; this loop sleeps)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from segdl.core.errors import Cancelled, HTTPStatusError, NetworkError, ShortBody
from segdl.core.retry import RetryPolicy

T = TypeVar("T")


def call_with_retries(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    cancel: threading.Event,
    on_retry: Callable[[float, BaseException], None],
) -> T:
    """``attempt()`` until it succeeds, the failure is permanent, the attempts run out, or
    ``cancel`` is set (then :class:`~segdl.core.errors.Cancelled`). ``on_retry(wait_s, error)``
    is told before each wait. For whole requests that cannot resume part-way (a first
    contact, a plain stream); ranges keep their own policy and resume where they broke."""
    while True:
        try:
            return attempt()
        except (NetworkError, ShortBody, HTTPStatusError) as exc:
            if cancel.is_set():
                raise Cancelled("download cancelled") from exc
            policy = policy.after(exc, progressed=False)
            if not policy.may_retry(exc, time.time()):
                raise
            wait_s = policy.wait_s(exc, time.time())
            on_retry(wait_s, exc)
            if cancel.wait(wait_s):
                raise Cancelled("download cancelled") from exc
