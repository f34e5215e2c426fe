"""Whole requests tried again under a :class:`~segdl.core.retry.RetryPolicy`, waiting between
attempts (:func:`segdl.core.failures.decide_whole` decides; this loop sleeps)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from segdl.core.errors import Cancelled
from segdl.core.failures import Action, decide_whole
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
        except BaseException as exc:
            decision = decide_whole(exc, policy, stopping=cancel.is_set(), now_epoch_s=time.time())
            if decision.action is Action.STOP:
                raise Cancelled("download cancelled") from exc
            if decision.action is not Action.RETRY:
                raise
            policy = decision.policy
            on_retry(decision.wait_s, exc)
            if cancel.wait(decision.wait_s):
                raise Cancelled("download cancelled") from exc
