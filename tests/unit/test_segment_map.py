"""The segment map: done ranges and connection positions, as the planner reports them."""

from __future__ import annotations

import itertools
import threading

from hypothesis import given
from hypothesis import strategies as st

from segdl.core.models import ByteRange
from segdl.core.planning import Planner
from segdl.core.progress import SegmentMap, merged


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), max_size=12))
def test_merged_ranges_are_sorted_disjoint_and_cover_the_same_bytes(
    pairs: list[tuple[int, int]],
) -> None:
    """merged() keeps exactly the bytes given, as sorted ranges that neither touch nor overlap."""
    ranges = [ByteRange(min(a, b), max(a, b)) for a, b in pairs]
    out = merged(ranges)
    covered = {i for r in ranges for i in range(r.start, r.end)}
    assert {i for r in out for i in range(r.start, r.end)} == covered
    assert all(r.length for r in out)
    assert all(a.end < b.start for a, b in itertools.pairwise(out))


def test_map_shows_each_connection_at_its_next_byte_and_done_bytes_behind_it() -> None:
    """Each streaming connection appears at the offset of its next byte; received bytes are done."""
    planner = Planner(1000, 4, 100, lock=threading.Lock())
    claims = [planner.next_claim(0.0) for _ in range(4)]
    assert all(c is not None for c in claims)
    first = claims[0]
    assert first is not None
    planner.advance(first, 50, 0.1)
    seen = planner.segment_map()
    assert seen.size_bytes == 1000
    assert seen.done == (ByteRange(first.request.start, first.request.start + 50),)
    assert len(seen.connections) == 4
    assert ByteRange(first.request.start + 50, first.request.end) in seen.connections
    assert [r.start for r in seen.connections] == sorted(r.start for r in seen.connections)


def test_map_of_a_resumed_download_counts_what_was_there_before() -> None:
    """Bytes a resumed download already had are done before any connection streams."""
    planner = Planner(1000, 2, 100, missing=[ByteRange(200, 1000)], lock=threading.Lock())
    seen = planner.segment_map()
    assert seen.done == (ByteRange(0, 200),)
    assert seen.connections == ()


def test_map_as_json_is_plain_lists() -> None:
    """as_json() gives the daemon and --progress json plain [start, end] pairs."""
    seen = SegmentMap(10, (ByteRange(0, 4),), (ByteRange(4, 10),))
    assert seen.as_json() == {"size_bytes": 10, "done": [[0, 4]], "connections": [[4, 10]]}
