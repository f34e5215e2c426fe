"""Work stealing: which held range an idle connection takes over, and where it is cut.

The :class:`~segdl.core.planning.Planner` asks these pure functions, under its lock, once no
segment is free; each looks at the segments, their connections' rates and the typical request
latency, and says what to take (the planner makes the cut). In order:

1. a *race*: the idle connection streams the same tail as a much slower one. Whoever delivers
   a byte first writes it; the loser stops. A connection far slower than its peers is raced
   before anything is split, and a raced range can still be split like any other;
2. the second half of the largest remaining range held by another connection, split at the
   midpoint, as long as both halves stay at least ``min_split_bytes`` and halving it brings
   its end measurably closer;
3. in the end game, when nothing is large enough to split, the tail of the range that would
   finish last, cut below ``min_split_bytes`` so that both connections finish together (the
   newcomer starts one request latency late); only when that tail is worth a request.

A connection running at under a quarter of its peers' median rate, with more than a second
still to go, is told to stop (:func:`should_replace`) and its remainder becomes free work for
a fresh connection: a slow path is usually a property of one connection, not of the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the planner's types; it imports this module
    from segdl.core.planning import Claim, Segment

# A connection is only raced when it is this much slower than the typical one (the median
# of the others now running and of the last few that finished: not the best ever seen, which
# on a shared line is the first connection, fast only while it was alone)...
_RACE_SPEED_RATIO = 0.5
# ...and would still need this long on its own; a race costs a new request and duplicate bytes.
_RACE_MIN_ETA_S = 0.3
# A connection this much slower than the median of its peers, with this long still to go on
# its own, gives its range back and is replaced by a fresh connection: a slow path or a slow
# server node is a property of the connection, so a new one is usually fast (aria2 offers the
# absolute form, --lowest-speed-limit; this relative form needs no tuning).
_REPLACE_RATIO = 0.25
_REPLACE_MIN_ETA_S = 1.0
_REPLACE_MIN_PEERS = 3
# Under --lowest-speed-limit for this long, a connection is replaced.
_LOWEST_SPEED_GRACE_S = 3.0
# End-game tails are never smaller than this (nor than min_split_bytes, nor than what a
# connection receives in one request latency: a smaller one would not repay its request).
_ENDGAME_MIN_PIECE_BYTES = 64 * 1024
# A range is only split (or a tail cut off) when that brings its end this much closer: on a
# fast link, cutting what ends in a few milliseconds anyway costs more (a new request, and the
# victim's connection closed mid-response with the bytes in flight wasted) than it saves.
_MIN_GAIN_S = 0.05

Cut = tuple["Segment", int]
"""A held segment and the offset its new tail starts at."""


def race_victim(
    segments: Sequence[Segment], finished_rates: Sequence[float], now_s: float
) -> Segment | None:
    """The segment whose lone connection would finish last, if it is much slower than
    the typical connection and a fresh one would clearly beat it."""
    candidates: list[tuple[float, float, Segment]] = []
    running: list[float] = []
    for segment in segments:
        rates = [r for c in segment.claims if (r := c.rate_bytes_per_s(now_s)) is not None]
        running += rates
        if len(segment.claims) != 1 or segment.remaining_bytes <= 0 or not rates:
            continue
        eta_s = segment.remaining_bytes / rates[0] if rates[0] > 0 else float("inf")
        candidates.append((eta_s, rates[0], segment))
    if not candidates:
        return None
    eta_s, rate, victim = max(candidates, key=lambda c: c[0])
    others = list(finished_rates) + running
    others.remove(rate)
    if not others:
        return None
    typical = median(others)
    if typical <= 0 or rate > typical * _RACE_SPEED_RATIO:
        return None
    if eta_s < max(_RACE_MIN_ETA_S, 2 * victim.remaining_bytes / typical):
        return None
    return victim


def half_split(
    segments: Sequence[Segment],
    min_split_bytes: int,
    latency_s: float,
    aligned: Callable[[int], int],
    now_s: float,
) -> Cut | None:
    """The midpoint of the largest held range, if both halves stay ``min_split_bytes`` and
    halving it saves time (its connection is cut, a new request made)."""
    held = [s for s in segments if s.claims]
    victim = max(held, key=lambda s: s.remaining_bytes, default=None)
    if victim is None or victim.remaining_bytes < 2 * min_split_bytes:
        return None
    rate = victim.claims[0].rate_bytes_per_s(now_s)
    if rate and victim.remaining_bytes / rate / 2 - latency_s < _MIN_GAIN_S:
        return None
    mid = aligned(victim.pos + victim.remaining_bytes // 2)
    if mid - victim.pos < min_split_bytes:  # alignment moved it too far back
        mid = victim.pos + victim.remaining_bytes // 2
    return victim, mid


def endgame_cut(
    segments: Sequence[Segment],
    finished_rates: Sequence[float],
    latency_s: float,
    min_split_bytes: int,
    now_s: float,
) -> Cut | None:
    """The tail of the range that would finish last, cut so that its connection and a
    new one (starting a request latency late, at the typical rate) finish together."""
    rates = list(finished_rates)
    for segment in segments:
        rates += [r for c in segment.claims if (r := c.rate_bytes_per_s(now_s)) is not None]
    if not rates or (typical := median(rates)) <= 0:
        return None
    candidates = _finishing(segments, typical, latency_s, now_s)
    if not candidates:
        return None
    eta_s, wait_s, rate, victim = max(candidates, key=lambda c: c[0])
    # victim: wait + (cut - pos) / rate == latency + (end - cut) / typical
    cut = int(
        (latency_s - wait_s + victim.pos / rate + victim.end / typical) / (1 / rate + 1 / typical)
    )
    piece = victim.end - cut
    least = max(min(_ENDGAME_MIN_PIECE_BYTES, min_split_bytes), typical * latency_s)
    gain_s = eta_s - (wait_s + (cut - victim.pos) / rate)
    if cut <= victim.pos or piece < least or gain_s < _MIN_GAIN_S:
        return None
    return victim, cut


def _finishing(
    segments: Sequence[Segment], typical: float, latency_s: float, now_s: float
) -> list[tuple[float, float, float, Segment]]:
    """(finish time, wait before the first byte, rate, segment) of each lone connection;
    one too young to have a rate is assumed typical, its first byte a latency away."""
    candidates = []
    for segment in segments:
        if len(segment.claims) != 1 or segment.remaining_bytes <= 0:
            continue
        claim = segment.claims[0]
        rate = claim.rate_bytes_per_s(now_s)
        if rate is None:
            rate = typical
        elif rate <= 0:
            continue  # stalled: replacement or a race takes it over
        wait_s = 0.0
        if not claim.received_bytes:
            wait_s = max(0.0, claim.started_s + latency_s - now_s)
        eta_s = wait_s + segment.remaining_bytes / rate
        candidates.append((eta_s, wait_s, rate, segment))
    return candidates


def should_replace(
    claim: Claim, segments: Sequence[Segment], now_s: float, lowest_speed: int | None
) -> bool:
    """Is this connection so much slower than its peers (or than ``--lowest-speed-limit``)
    that a new one should take over?"""
    if len(claim.segment.claims) > 1:  # already raced
        return False
    rate = claim.rate_bytes_per_s(now_s)
    if (
        lowest_speed is not None
        and rate is not None
        and rate < lowest_speed
        and now_s - claim.started_s >= _LOWEST_SPEED_GRACE_S
    ):
        return True  # an absolute floor, whatever the peers do
    peers = [
        peer_rate
        for segment in segments
        for peer in segment.claims
        if peer is not claim and (peer_rate := peer.rate_bytes_per_s(now_s)) is not None
    ]
    if rate is None or len(peers) < _REPLACE_MIN_PEERS:
        return False
    reference = median(peers)
    if rate >= _REPLACE_RATIO * reference:
        return False
    remaining = claim.segment.end - claim.segment.pos
    eta_s = remaining / rate if rate > 0 else float("inf")
    return eta_s > max(_REPLACE_MIN_ETA_S, 2 * remaining / reference)


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence (as statistics.median, whose import, with fractions
    and decimal behind it, cost 5 ms of every start-up)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
