"""Pure planning: the segments of a file, who holds which, and the frontier of each.

The file is a list of :class:`Segment` s; each is written front to back from its frontier
``pos``. A connection holds a :class:`Claim` on one segment and streams bytes from
``stream_pos``. When a connection has nothing left, the :class:`Planner` gives it, in order,
a segment nobody holds (its connection failed or gave it back), else what
:mod:`segdl.core.stealing` picks: a race against a much slower connection, the second half
of the largest range, or an end-game tail. A connection far slower than its peers is told to
stop (:func:`~segdl.core.stealing.should_replace`) and its remainder becomes free work.

The invariant that keeps the file correct: a byte is written only at the segment frontier and
the frontier moves only forward, under one lock, so no byte is ever written twice and none is
skipped. No I/O happens here; the engine calls in with byte counts and the time.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from segdl.core.models import ByteRange
from segdl.core.progress import SegmentMap, merged
from segdl.core.stealing import endgame_cut, half_split, median, race_victim, should_replace

# Split points are aligned so writes stay page-aligned; a detail, not a correctness matter.
_ALIGN = 64 * 1024
# A connection's rate is measured from its first bytes (the request's latency is not speed);
# before it has streamed this long, its rate is noise and it is neither raced nor replaced.
_RATE_MIN_ELAPSED_S = 0.1
# A connection that has not delivered a byte this long after its request counts as stalled.
_STALL_S = 0.2
# How often a connection's pace is compared with its peers' (stealing.should_replace).
_REPLACE_CHECK_INTERVAL_S = 0.1
# The request latency assumed until one has been measured.
_DEFAULT_LATENCY_S = 0.1


@dataclass(slots=True, eq=False)
class Segment:
    """Bytes [start, end) of the file; [start, pos) are written. ``end`` shrinks on a split."""

    start: int
    pos: int
    end: int
    claims: list[Claim] = field(default_factory=list)
    written_pos: int = 0
    """[start, written_pos) is on disk (pwrite returned); trails ``pos`` while writes run."""
    written_ahead: dict[int, int] = field(default_factory=dict)
    """Writes that completed beyond ``written_pos`` (start -> end), waiting for the gap."""

    @property
    def remaining_bytes(self) -> int:
        return self.end - self.pos


@dataclass(slots=True, eq=False)
class Claim:
    """One connection streaming part of one segment.

    The connection asks for ``request`` and delivers bytes starting at ``stream_pos``.
    """

    segment: Segment
    request: ByteRange
    stream_pos: int
    started_s: float
    received_bytes: int = 0
    has_led: bool = False
    active: bool = True
    next_check_s: float = 0.0
    requested: bool = True
    """The request went out when the claim was made (its first byte measures latency)."""
    first_byte_s: float | None = None
    first_chunk_bytes: int = 0

    def rate_bytes_per_s(self, now_s: float) -> float | None:
        """Bytes per second since the first chunk (0 when stalled before it); None while
        too early to tell."""
        if self.first_byte_s is None:
            return 0.0 if now_s - self.started_s >= _STALL_S else None
        elapsed_s = now_s - self.first_byte_s
        if elapsed_s < _RATE_MIN_ELAPSED_S:
            return None
        return (self.received_bytes - self.first_chunk_bytes) / elapsed_s


@dataclass(frozen=True, slots=True)
class Advance:
    """What to do with a chunk just received: write ``[write.start, write.end)`` (it starts
    ``skip_bytes`` into the chunk; may be empty), then go on reading unless ``stop``."""

    write: ByteRange
    skip_bytes: int
    stop: bool


class Planner:
    """Shared, lock-protected plan for one file of known size."""

    def __init__(
        self,
        size_bytes: int,
        connections: int,
        min_split_bytes: int,
        missing: Sequence[ByteRange] | None = None,
        lowest_speed_bytes_per_s: int | None = None,
        *,
        lock: AbstractContextManager[object],
    ) -> None:
        """Plan ``missing`` (default: the whole file; on resume, what is not yet durable).
        ``lock`` (a ``threading.Lock`` from whoever starts the connections' threads) guards
        every decision: the frontier of a segment moves only under it."""
        if size_bytes < 0 or connections < 1 or min_split_bytes < 1:
            raise ValueError("size must be >= 0, connections and min split >= 1")
        self.size_bytes = size_bytes
        self.min_split_bytes = min_split_bytes
        self._lock = lock
        self._finished_rates: collections.deque[float] = collections.deque(maxlen=connections)
        self._latencies: collections.deque[float] = collections.deque(maxlen=connections)
        self.splits = 0
        self.races = 0
        self.replacements = 0
        self._max_replacements = 2 * connections
        self._lowest_speed = lowest_speed_bytes_per_s
        # Aligning split points only makes sense when ranges are much larger than the alignment.
        self._align = _ALIGN if min_split_bytes >= 2 * _ALIGN else 1
        todo = [r for r in (missing or [ByteRange(0, size_bytes)]) if r.length]
        if any(r.end > size_bytes for r in todo):
            raise ValueError("a missing range lies beyond the end of the file")
        self._done_before = _complement(todo, size_bytes)
        self.segments = self._initial_segments(todo, connections)

    def _initial_segments(self, todo: list[ByteRange], connections: int) -> list[Segment]:
        """Share ``connections`` among the ranges to fetch, longest first, each piece at
        least ``min_split_bytes``; every range gets at least one segment."""
        pieces = [1] * len(todo)
        total = sum(r.length for r in todo)
        budget = max(len(todo), min(connections, total // self.min_split_bytes))
        for _ in range(budget - len(todo)):
            best = max(range(len(todo)), key=lambda i: todo[i].length / pieces[i], default=None)
            if best is None or todo[best].length // (pieces[best] + 1) < self.min_split_bytes:
                break
            pieces[best] += 1
        segments = []
        for r, count in zip(todo, pieces, strict=True):
            bounds = [r.start]
            bounds += [self._aligned(r.start + r.length * i // count) for i in range(1, count)]
            bounds.append(r.end)
            segments += [Segment(a, a, b, written_pos=a) for a, b in itertools.pairwise(bounds)]
        return segments

    @property
    def initial_connections(self) -> int:
        return len(self.segments)

    @property
    def finished(self) -> bool:
        with self._lock:
            return all(s.pos >= s.end for s in self.segments)

    @property
    def done_bytes(self) -> int:
        with self._lock:
            before = sum(r.length for r in self._done_before)
            return before + sum(s.pos - s.start for s in self.segments)

    def mark_written(self, segment: Segment, window: ByteRange) -> None:
        """``window`` (from :meth:`advance`) is now written to the file."""
        with self._lock:
            if window.start != segment.written_pos:
                segment.written_ahead[window.start] = window.end  # a race wrote out of order
                return
            end = window.end
            while end in segment.written_ahead:
                end = segment.written_ahead.pop(end)
            segment.written_pos = end

    def written_ranges(self) -> list[ByteRange]:
        """Every byte range known to be written (not necessarily synced yet)."""
        with self._lock:
            ranges = list(self._done_before)
            ranges += [ByteRange(s.start, s.written_pos) for s in self.segments]
        return sorted((r for r in ranges if r.length), key=lambda r: r.start)

    def segment_map(self) -> SegmentMap:
        """What is in and where each connection is, for progress displays."""
        with self._lock:
            done = list(self._done_before)
            done += [ByteRange(s.start, s.pos) for s in self.segments]
            streams = [
                ByteRange(c.stream_pos, max(c.stream_pos, min(s.end, c.request.end)))
                for s in self.segments
                for c in s.claims
                if c.active and c.stream_pos <= s.end
            ]
        streams.sort(key=lambda r: r.start)
        return SegmentMap(self.size_bytes, merged(done), tuple(streams))

    def next_claim(self, now_s: float) -> Claim | None:
        """Work for an idle connection, or None when there is none worth taking right now."""
        with self._lock:
            segment = self._unowned() or self._stolen(now_s)
            if segment is None:
                return None
            request = ByteRange(segment.pos, segment.end)
            claim = Claim(segment, request, segment.pos, now_s)
            segment.claims.append(claim)
            return claim

    def claim_first(self, start: int, request_end: int, now_s: float) -> Claim:
        """Claim the segment starting at ``start`` for the first-contact stream, under way."""
        with self._lock:
            segment = next((s for s in self.segments if s.start == start), None)
            if segment is None or segment.claims or segment.pos != start:
                raise ValueError(f"no free segment starts at {start}")
            claim = Claim(segment, ByteRange(start, request_end), start, now_s, requested=False)
            segment.claims.append(claim)
            return claim

    @property
    def active_claims(self) -> int:
        with self._lock:
            return sum(len(s.claims) for s in self.segments)

    def advance(self, claim: Claim, n_bytes: int, now_s: float) -> Advance:
        """Account for ``n_bytes`` just read on ``claim``'s stream; say which to write."""
        with self._lock:
            segment = claim.segment
            chunk_start = claim.stream_pos
            if claim.first_byte_s is None and n_bytes:
                claim.first_byte_s, claim.first_chunk_bytes = now_s, n_bytes
                if claim.requested:
                    self._latencies.append(now_s - claim.started_s)
            claim.stream_pos += n_bytes
            claim.received_bytes += n_bytes
            lo = max(chunk_start, segment.pos)
            hi = min(claim.stream_pos, segment.end)
            if hi > lo:
                if lo != segment.pos:  # would leave a hole; cannot happen by construction
                    raise AssertionError(f"stream at {lo} ahead of frontier {segment.pos}")
                segment.pos = hi
                claim.has_led = True
                write = ByteRange(lo, hi)
            else:
                write = ByteRange(segment.pos, segment.pos)
            overtaken = hi <= lo and claim.has_led
            stop = (
                not claim.active
                or segment.pos >= segment.end
                or claim.stream_pos >= min(segment.end, claim.request.end)
                or overtaken
            )
            if not stop and now_s >= claim.next_check_s:
                claim.next_check_s = now_s + _REPLACE_CHECK_INTERVAL_S
                stop = self.replacements < self._max_replacements and should_replace(
                    claim, self.segments, now_s, self._lowest_speed
                )
                if stop:
                    self.replacements += 1
            if stop:
                self._release_locked(claim, now_s)
            skip_bytes = write.start - chunk_start if write.length else n_bytes
            return Advance(write, skip_bytes, stop)

    def release(self, claim: Claim, now_s: float) -> None:
        """The claim's connection ended (done, failed or cancelled); its remainder is free."""
        with self._lock:
            self._release_locked(claim, now_s)

    def _release_locked(self, claim: Claim, now_s: float) -> None:
        if not claim.active:
            return
        claim.active = False
        claim.segment.claims.remove(claim)
        rate = claim.rate_bytes_per_s(now_s)
        if rate is not None:
            self._finished_rates.append(rate)

    def _unowned(self) -> Segment | None:
        free = [s for s in self.segments if s.remaining_bytes > 0 and not s.claims]
        return max(free, key=lambda s: s.remaining_bytes, default=None)

    def _stolen(self, now_s: float) -> Segment | None:
        """Work taken from a held segment: a race against its slow connection, or a cut-off
        tail (its half, or in the end game a piece that makes both finish together)."""
        rates = tuple(self._finished_rates)
        victim = race_victim(self.segments, rates, now_s)
        if victim is not None:
            self.races += 1
            return victim
        latency_s = self._latency_s()
        cut = half_split(self.segments, self.min_split_bytes, latency_s, self._aligned, now_s)
        if cut is None:
            cut = endgame_cut(self.segments, rates, latency_s, self.min_split_bytes, now_s)
        if cut is None:
            return None
        victim, at = cut
        tail = Segment(at, at, victim.end, written_pos=at)
        victim.end = at
        self.segments.append(tail)
        self.splits += 1
        return tail

    def _latency_s(self) -> float:
        """The typical time from a request to its first byte."""
        return median(self._latencies) if self._latencies else _DEFAULT_LATENCY_S

    def _aligned(self, offset: int) -> int:
        return offset - offset % self._align


def _complement(ranges: Sequence[ByteRange], size_bytes: int) -> list[ByteRange]:
    """The parts of [0, size) not covered by ``ranges``."""
    gaps, cursor = [], 0
    for r in sorted(ranges, key=lambda r: r.start):
        if r.start > cursor:
            gaps.append(ByteRange(cursor, r.start))
        cursor = max(cursor, r.end)
    if cursor < size_bytes:
        gaps.append(ByteRange(cursor, size_bytes))
    return gaps
