"""Planner properties: every byte is written exactly once, whatever the connections do."""

from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segdl.core.models import ByteRange
from segdl.core.planning import Claim, Planner


def _merged(ranges: list[ByteRange]) -> list[ByteRange]:
    out: list[ByteRange] = []
    for r in sorted(ranges, key=lambda r: r.start):
        if out and r.start <= out[-1].end:
            out[-1] = ByteRange(out[-1].start, max(out[-1].end, r.end))
        else:
            out.append(r)
    return out


class Simulation:
    """Drives a planner the way the engine does, with streams of arbitrary speed."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self.writes = bytearray(planner.size_bytes)
        self.delivered_bytes = 0
        self.now_s = 0.0

    def deliver(self, claim: Claim, n_bytes: int) -> bool:
        """Feed ``n_bytes`` of the claim's stream; return True while it should go on."""
        n_bytes = min(n_bytes, claim.request.end - claim.stream_pos)
        assert n_bytes > 0, "a claim that reached its request end must have been stopped"
        self.delivered_bytes += n_bytes
        advance = self.planner.advance(claim, n_bytes, self.now_s)
        assert 0 <= advance.skip_bytes <= n_bytes
        assert advance.skip_bytes + advance.write.length <= n_bytes
        for offset in range(advance.write.start, advance.write.end):
            self.writes[offset] += 1
        if advance.write.length:
            self.planner.mark_written(claim.segment, advance.write)
        return not advance.stop

    def check_complete(self, already_done: int = 0) -> None:
        assert self.planner.finished
        assert self.planner.done_bytes == self.planner.size_bytes
        assert self.writes.count(1) == self.planner.size_bytes - already_done
        assert set(self.writes) <= {0, 1}, "some byte was written twice"
        size = self.planner.size_bytes
        assert _merged(self.planner.written_ranges()) == ([ByteRange(0, size)] if size else [])


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(0, 4000),
    connections=st.integers(1, 10),
    min_split=st.integers(1, 700),
    cuts=st.lists(st.integers(0, 4000), max_size=8),
    data=st.data(),
)
def test_every_byte_written_exactly_once(
    size: int, connections: int, min_split: int, cuts: list[int], data: st.DataObject
) -> None:
    """Under any interleaving of reads, failures, steals and races, each missing byte lands
    once and bytes already done (a resume) are never fetched."""
    bounds = sorted({0, size, *(c for c in cuts if c < size)})
    pieces = [ByteRange(a, b) for a, b in itertools.pairwise(bounds)]
    missing = pieces[::2] if cuts else None
    planner = Planner(size, connections, min_split, missing, lock=threading.Lock())
    sim = Simulation(planner)
    already_done = size - sum(r.length for r in missing) if missing is not None else 0
    active: list[Claim] = []
    for _ in range(planner.initial_connections):
        claim = planner.next_claim(sim.now_s)
        if claim is not None:
            active.append(claim)
    for _ in range(400):
        if planner.finished and not active:
            break
        sim.now_s += data.draw(st.floats(0.0, 0.2))
        action = data.draw(st.sampled_from(["read", "read", "read", "fail", "claim"]))
        if action == "claim" or not active:
            claim = planner.next_claim(sim.now_s)
            if claim is not None:
                active.append(claim)
            continue
        claim = data.draw(st.sampled_from(active))
        if action == "fail":
            planner.release(claim, sim.now_s)
            active.remove(claim)
            continue
        if not sim.deliver(claim, data.draw(st.integers(1, 300))):
            active.remove(claim)
    # Let everything finish without faults: idle connections take whatever is left.
    for claim in active:
        while sim.deliver(claim, 97):
            pass
    while (claim := planner.next_claim(sim.now_s)) is not None:
        while sim.deliver(claim, 131):
            pass
    sim.check_complete(already_done)
    if missing is not None:
        for r in missing:
            assert sim.writes[r.start : r.end] == b"\x01" * r.length


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 200_000),
    min_split=st.integers(1, 400_000),
    speeds=st.lists(st.integers(100, 5_000), min_size=1, max_size=8),
)
def test_connections_of_any_speeds_finish_the_file(
    size: int, min_split: int, speeds: list[int]
) -> None:
    """Connections of fixed, unequal speeds (bytes per 50 ms tick), each taking new work as
    soon as it is idle: splits, end-game tails, races and replacements still write each byte
    once, and the file is finished in bounded time."""
    planner = Planner(size, len(speeds), min_split, lock=threading.Lock())
    sim = Simulation(planner)
    active: list[Claim | None] = [None] * len(speeds)
    for _ in range(2 * size // min(speeds) + 100):
        if planner.finished:
            break
        sim.now_s += 0.05
        for i, speed in enumerate(speeds):
            claim = active[i] or planner.next_claim(sim.now_s)
            active[i] = claim if claim is not None and sim.deliver(claim, speed) else None
    sim.check_complete()


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 50_000), connections=st.integers(1, 16), min_split=st.integers(1, 5000))
def test_initial_plan_tiles_the_file(size: int, connections: int, min_split: int) -> None:
    """The initial segments cover [0, size) with no gap or overlap, none below min split."""
    planner = Planner(size, connections, min_split, lock=threading.Lock())
    segments = planner.segments
    assert segments[0].start == 0 and segments[-1].end == size
    for left, right in itertools.pairwise(segments):
        assert left.end == right.start
    assert 1 <= len(segments) <= connections
    if len(segments) > 1:
        assert all(s.end - s.start >= min_split for s in segments)


def test_idle_connection_steals_half_of_the_largest_range() -> None:
    """A finished connection takes the second half of the largest remaining range."""
    mib = 1024 * 1024
    planner = Planner(16 * mib, 2, mib, lock=threading.Lock())
    first = planner.next_claim(0.0)
    second = planner.next_claim(0.0)
    assert first is not None and second is not None
    sim = Simulation(planner)
    while sim.deliver(second, 256 * 1024):
        pass
    thief = planner.next_claim(1.0)
    assert thief is not None
    assert thief.request.start == 4 * mib and thief.request.end == 8 * mib
    assert first.segment.end == 4 * mib


def test_never_splits_below_min_split() -> None:
    """A range smaller than twice the minimum split is not split."""
    planner = Planner(3000, 1, 1000, lock=threading.Lock())
    claim = planner.next_claim(0.0)
    assert claim is not None
    planner.advance(claim, 1500, 0.0)
    assert planner.next_claim(0.01) is None  # 1500 left < 2 * 1000, and no rate yet


def test_end_game_races_a_slow_connection_and_the_first_to_arrive_wins() -> None:
    """An idle connection races a much slower one's tail; bytes are written once."""
    planner = Planner(2000, 2, 600, lock=threading.Lock())
    sim = Simulation(planner)
    slow = planner.next_claim(0.0)
    fast = planner.next_claim(0.0)
    assert slow is not None and fast is not None
    sim.now_s = 0.1  # first bytes: rates count from here
    assert sim.deliver(slow, 10)
    assert sim.deliver(fast, 100)
    sim.now_s = 1.0
    assert sim.deliver(slow, 10)  # about 10 bytes/s: minutes to go
    assert not sim.deliver(fast, 900)  # 1000 bytes/s, and done
    racer = planner.next_claim(1.0)
    assert racer is not None and racer.segment is slow.segment
    assert racer.request.start == 20
    sim.now_s = 1.1
    while sim.deliver(racer, 100):
        pass
    assert not sim.deliver(slow, 10), "the overtaken connection must be stopped"
    sim.check_complete()
    assert planner.races == 1


def test_no_race_among_equally_fast_connections() -> None:
    """Connections of similar speed are never raced: that would only waste bandwidth."""
    planner = Planner(2000, 2, 1000, lock=threading.Lock())
    a = planner.next_claim(0.0)
    b = planner.next_claim(0.0)
    assert a is not None and b is not None
    planner.advance(a, 500, 1.0)
    planner.advance(b, 400, 1.0)
    assert planner.next_claim(1.0) is None


def test_a_connection_that_was_fast_alone_splits_rather_than_races() -> None:
    """On a shared line the first connection is fast only while alone; once it is idle it
    must split the others' work, not race them (a race sends the same bytes twice)."""
    mib = 1024 * 1024
    planner = Planner(64 * mib, 4, mib, lock=threading.Lock())
    claims = [planner.next_claim(0.0) for _ in range(4)]
    assert all(c is not None for c in claims)
    first, others = claims[0], claims[1:]
    assert first is not None
    while not planner.advance(first, mib, 0.5).stop:  # 16 MiB in 0.5 s, alone on the line
        pass
    for claim in others:
        assert claim is not None
        planner.advance(claim, 2 * mib, 1.0)  # then the line is shared: 2 MiB/s each
    thief = planner.next_claim(1.0)
    assert thief is not None
    assert planner.races == 0 and planner.splits == 1
    assert len(thief.segment.claims) == 1


def test_end_game_shares_the_last_tail_below_min_split() -> None:
    """With nothing left to split at min split, an idle connection takes the tail of the range
    that would finish last, cut so that both finish together though it starts a latency late;
    a tail not worth a request is left alone."""
    mib = 1024 * 1024
    planner = Planner(12 * mib, 2, 4 * mib, lock=threading.Lock())
    sim = Simulation(planner)
    fast, slow = planner.next_claim(0.0), planner.next_claim(0.0)
    assert fast is not None and slow is not None
    step = 64 * 1024
    while True:  # 2 MiB/s and 1.5 MiB/s (too close to race), first bytes after 1/16 s
        sim.now_s += 1 / 16
        if not sim.deliver(fast, 2 * step):
            break
        sim.deliver(slow, 3 * step // 2)
    assert sim.now_s == 3.0 and mib < slow.segment.remaining_bytes < 2 * mib
    thief = planner.next_claim(3.0)
    assert thief is not None and planner.races == 0
    cut = slow.segment.end
    assert thief.request == ByteRange(cut, 12 * mib) and thief.segment.start == cut
    assert 64 * 1024 <= 12 * mib - cut < 4 * mib, "a tail below min split"
    slow_rate = slow.rate_bytes_per_s(3.0)
    typical = (2 * mib + 1.5 * mib) / 2
    assert slow_rate is not None
    slow_done_s = (cut - slow.segment.pos) / slow_rate
    thief_done_s = 1 / 16 + (12 * mib - cut) / typical
    assert abs(slow_done_s - thief_done_s) < 0.01
    while sim.deliver(slow, step):
        pass
    while sim.deliver(thief, step):
        pass
    sim.check_complete()


def test_end_game_leaves_a_tail_shorter_than_a_request_latency() -> None:
    """A tail that one request latency's worth of bytes would cover is not split."""
    planner = Planner(1_000_000, 2, 400_000, lock=threading.Lock())
    sim = Simulation(planner)
    a, b = planner.next_claim(0.0), planner.next_claim(0.0)
    assert a is not None and b is not None
    sim.now_s = 0.1  # latency 0.1 s
    sim.deliver(a, 100_000)
    sim.deliver(b, 100_000)
    sim.now_s = 0.5
    while sim.deliver(a, 100_000):
        pass
    sim.deliver(b, 350_000)  # 50 kB left at ~1 MB/s: 0.05 s, less than a latency
    assert planner.next_claim(0.5) is None


@pytest.mark.parametrize("connections", [1, 4, 16])
def test_zero_size_is_finished_from_the_start(connections: int) -> None:
    """An empty file needs no request at all."""
    planner = Planner(0, connections, 1024, lock=threading.Lock())
    assert planner.finished
    assert planner.next_claim(0.0) is None


def test_a_much_slower_connection_gives_its_range_back() -> None:
    """A connection at 1/20 of its peers' median rate is stopped; its remainder is retaken."""
    mib = 1024 * 1024
    planner = Planner(64 * mib, 4, mib, lock=threading.Lock())
    claims = [planner.next_claim(0.0) for _ in range(4)]
    assert all(c is not None for c in claims)
    fast, slow = claims[:3], claims[3]
    assert slow is not None
    for t in (0.1, 0.2, 0.3):
        for claim in fast:
            assert claim is not None
            assert not planner.advance(claim, 500_000, t).stop
        advance = planner.advance(slow, 25_000, t)
    assert advance.stop and planner.replacements == 1
    retaken = planner.next_claim(0.3)
    assert retaken is not None and retaken.segment is slow.segment
    assert retaken.request.start == slow.segment.pos


def test_connections_of_similar_speed_are_never_replaced() -> None:
    """Rates within a factor of 4 of the median do not trigger replacement."""
    mib = 1024 * 1024
    planner = Planner(64 * mib, 4, mib, lock=threading.Lock())
    claims = [planner.next_claim(0.0) for _ in range(4)]
    for step in range(1, 30):
        for i, claim in enumerate(claims):
            assert claim is not None
            assert not planner.advance(claim, 100_000 * (i + 1), step * 0.1).stop
    assert planner.replacements == 0


def test_lowest_speed_limit_replaces_a_slow_connection_without_peers() -> None:
    """Under --lowest-speed-limit for its grace period, even a lone connection is replaced."""
    planner = Planner(
        64 * 1024 * 1024, 1, 1024 * 1024, lowest_speed_bytes_per_s=100_000, lock=threading.Lock()
    )
    claim = planner.next_claim(0.0)
    assert claim is not None
    assert not planner.advance(claim, 10_000, 1.0).stop  # slow, but within the grace
    assert planner.advance(claim, 10_000, 3.5).stop
    assert planner.replacements == 1


@given(st.lists(st.floats(min_value=0, max_value=1e12, allow_nan=False), min_size=1, max_size=40))
def test_median_is_the_statistics_median(values: list[float]) -> None:
    """The planner's own median (statistics is not imported at start-up) agrees with it."""
    import statistics

    from segdl.core.stealing import median

    assert median(values) == pytest.approx(statistics.median(values))
