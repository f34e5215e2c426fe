"""Faults: how the server misbehaves for one path, and the per-path counters that gate them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.server.records import RequestRecord


@dataclass(frozen=True, slots=True)
class Faults:
    """Misbehaviour for the requests of one path; ``Faults()`` is honest HTTP.

    Body faults (truncate, reset, stall) count body bytes of the response actually chosen
    (the range, the full body, or an error page); a threshold at or beyond the body's length
    has no effect. After a stall the rest of the body follows, if the client is still there.
    """

    ignore_range: bool = False
    content_range_start_delta: int = 0
    content_range_total: int | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    change_etag_after: int | None = None
    truncate_after: int | None = None
    reset_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 30.0
    no_content_length: bool = False
    chunked: bool = False
    status: int | None = None
    retry_after: str | None = None
    head_status: int | None = None
    throttle_bytes_per_s: float | None = None
    throttle_for_connection: Callable[[int], float | None] | None = None
    head_bytes_per_s: float | None = None
    """Send the response head at this rate (a few bytes at a time)."""
    endless_head: bool = False
    """After the status line, header lines that never end (at ``head_bytes_per_s``, if set)."""
    reason: str | None = None
    """The status line's reason phrase instead of the standard one, sent as UTF-8 bytes."""
    informational: int = 0
    """Send this many ``100 Continue`` interim responses before the real one."""
    times: int | None = None
    when: Callable[[RequestRecord], bool] | None = None

    def __post_init__(self) -> None:
        counts = {
            "change_etag_after": self.change_etag_after,
            "truncate_after": self.truncate_after,
            "reset_after": self.reset_after,
            "stall_after": self.stall_after,
            "times": self.times,
        }
        for name, value in counts.items():
            if value is not None and value < 0:
                raise ValueError(f"Faults.{name} must be >= 0, not {value}")
        if self.stall_s < 0:
            raise ValueError(f"Faults.stall_s must be >= 0, not {self.stall_s}")
        if self.throttle_bytes_per_s is not None and self.throttle_bytes_per_s <= 0:
            raise ValueError("Faults.throttle_bytes_per_s must be > 0")
        if self.chunked and self.no_content_length:
            raise ValueError("Faults.chunked and Faults.no_content_length exclude each other")

    def rate_for(self, connection_id: int) -> float | None:
        """Body rate in bytes/s for a connection: the per-connection rate if it gives one."""
        if self.throttle_for_connection is not None:
            rate = self.throttle_for_connection(connection_id)
            if rate is not None:
                return rate
        return self.throttle_bytes_per_s


HONEST = Faults()


@dataclass(frozen=True, slots=True)
class Selection:
    """The faults that apply to one request, and whether its validators must look changed."""

    faults: Faults
    validators_changed: bool = False


@dataclass(slots=True)
class _PathFaults:
    faults: Faults
    requests_seen: int = 0  # every request for the path: change_etag_after counts these
    matched: int = 0  # requests `when` accepted: `times` counts these


@dataclass
class FaultBook:
    """The faults set per path, with thread-safe counters (reset by each ``set``)."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _paths: dict[str, _PathFaults] = field(default_factory=dict)

    def set(self, path: str, faults: Faults) -> None:
        """Replace the faults of ``path``; counters for ``times`` and change_etag_after restart."""
        with self._lock:
            self._paths[path] = _PathFaults(faults)

    def select(self, request: RequestRecord) -> Selection:
        """The faults for ``request`` (counted as seen now, before its response is sent)."""
        with self._lock:
            entry = self._paths.get(request.path)
        if entry is None:
            return Selection(HONEST)
        faults = entry.faults
        # The predicate is user code: call it outside the lock.
        wanted = faults.when is None or faults.when(request)
        with self._lock:
            seen_before = entry.requests_seen
            entry.requests_seen += 1
            if not wanted:
                return Selection(HONEST)
            matched_before = entry.matched
            entry.matched += 1
        if faults.times is not None and matched_before >= faults.times:
            return Selection(HONEST)
        changed = faults.change_etag_after is not None and seen_before >= faults.change_etag_after
        return Selection(faults, validators_changed=changed)
