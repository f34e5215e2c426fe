"""Send one response body in slices, applying the body faults: throttle, stall, truncate, reset."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

UNTHROTTLED_SLICE_BYTES = 256 * 1024
# Throttled bodies go in ~20 slices a second, so a one-second measurement is within ~5%.
_MIN_THROTTLED_SLICE_BYTES = 256
_MAX_THROTTLED_SLICE_BYTES = 16 * 1024
_SLICES_PER_S = 20


class Ending(Enum):
    """How a response ended; the connection acts on it."""

    COMPLETE = "complete"
    TRUNCATED = "truncated"  # close cleanly (FIN) after a short body
    RESET = "reset"  # close with SO_LINGER 0 (RST)
    ABORTED = "aborted"  # the client went away or the server is stopping


@dataclass(frozen=True, slots=True)
class BodyPlan:
    """Which bytes to send and how."""

    view: memoryview
    chunked: bool = False
    rate_bytes_per_s: float | None = None
    truncate_after: int | None = None
    reset_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 0.0

    def cut(self) -> tuple[int, Ending]:
        """Where the body stops, and why; a threshold at or past the end has no effect."""
        size = len(self.view)
        end, ending = size, Ending.COMPLETE
        if self.truncate_after is not None and self.truncate_after < end:
            end, ending = self.truncate_after, Ending.TRUNCATED
        if self.reset_after is not None and self.reset_after < size and self.reset_after <= end:
            end, ending = self.reset_after, Ending.RESET
        return end, ending

    def slice_bytes(self) -> int:
        if self.rate_bytes_per_s is None:
            return UNTHROTTLED_SLICE_BYTES
        wanted = int(self.rate_bytes_per_s / _SLICES_PER_S)
        return max(_MIN_THROTTLED_SLICE_BYTES, min(_MAX_THROTTLED_SLICE_BYTES, wanted))


@dataclass
class BodySender:
    """Writes one response to a socket.

    ``on_sent`` is told every count of body bytes written. ``on_final`` is called once, just
    before the last write that lets the client see the response complete, so the server can
    make its request log wait for that response instead of racing the client.
    """

    sock: socket.socket
    stop: threading.Event
    on_sent: Callable[[int], None]
    on_final: Callable[[], None]
    sent: int = 0

    def send(self, head: bytes, plan: BodyPlan | None) -> Ending:
        """Send head and body; never raises for a broken connection (that is ``ABORTED``)."""
        try:
            return self._send(head, plan)
        except OSError:  # includes timeouts, resets, broken pipes, and stop()'s shutdown
            return Ending.ABORTED

    def _send(self, head: bytes, plan: BodyPlan | None) -> Ending:
        if plan is None:
            self.on_final()
            self.sock.sendall(head)
            return Ending.COMPLETE
        end, ending = plan.cut()
        size = len(plan.view)
        stall_at = plan.stall_after
        if stall_at is not None and (stall_at >= size or stall_at > end):
            stall_at = None
        if end == 0 and stall_at is None:
            self.on_final()
        self.sock.sendall(head)
        slice_bytes = plan.slice_bytes()
        paced_from = time.monotonic()
        position = 0
        while position < end or position == stall_at:
            if self.stop.is_set():
                return Ending.ABORTED
            if position == stall_at:
                stalled_from = time.monotonic()
                if self.stop.wait(plan.stall_s):
                    return Ending.ABORTED
                paced_from += time.monotonic() - stalled_from
                stall_at = None
                continue
            limit = end if stall_at is None else min(end, stall_at)
            count = min(slice_bytes, limit - position)
            if plan.rate_bytes_per_s is not None:
                # Absolute schedule: the bytes before this slice are due at their rate.
                delay = paced_from + position / plan.rate_bytes_per_s - time.monotonic()
                if delay > 0 and self.stop.wait(delay):
                    return Ending.ABORTED
            if position + count == end and stall_at is None:
                self.on_final()
            self._write(plan.view[position : position + count], plan.chunked)
            position += count
        if ending is Ending.COMPLETE and plan.chunked:
            self.sock.sendall(b"0\r\n\r\n")
        return ending

    def _write(self, piece: memoryview, chunked: bool) -> None:
        if chunked:
            self.sock.sendall(b"%x\r\n" % len(piece) + piece.tobytes() + b"\r\n")
            self._count(len(piece))
            return
        offset = 0
        while offset < len(piece):
            written = self.sock.send(piece[offset:])
            offset += written
            self._count(written)

    def _count(self, count: int) -> None:
        self.sent += count
        self.on_sent(count)
