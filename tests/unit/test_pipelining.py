"""The pipelining hand-over (segdl.net.pipelining.Lane) and a batch's places (segdl.run.places)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from segdl.net.pipelining import Handover, Lane, QueuedRequest
from segdl.run.places import Places, Ticket

REQUEST = QueuedRequest("GET", "http://h/f", {})
ORIGIN = ("http", "h", 80)


def _ride_in_thread(
    lane: Lane, send: Callable[[QueuedRequest], None] | None = None
) -> tuple[threading.Thread, list[bool]]:
    outcome: list[bool] = []
    thread = threading.Thread(target=lambda: outcome.append(lane.ride(REQUEST, send)))
    thread.start()
    deadline = time.monotonic() + 5
    while lane.open and time.monotonic() < deadline:
        time.sleep(0.001)
    return thread, outcome


def test_a_request_sent_behind_a_complete_body_gets_the_connection() -> None:
    lane = Lane(ORIGIN)
    sent: list[QueuedRequest] = []
    thread, outcome = _ride_in_thread(lane)
    assert lane.queued
    lane.send_queued(sent.append)  # the reader of the response ahead writes it
    assert sent == [REQUEST]
    assert lane.ahead_closed(body_complete=True) is Handover.KEEP
    thread.join(5)
    assert outcome == [True]


def test_a_plain_socket_request_is_written_by_the_follower_at_once() -> None:
    lane = Lane(ORIGIN)
    sent: list[QueuedRequest] = []
    thread, outcome = _ride_in_thread(lane, sent.append)
    assert sent == [REQUEST] and not lane.queued
    assert lane.ahead_closed(body_complete=True) is Handover.KEEP
    thread.join(5)
    assert outcome == [True]


def test_a_body_cut_short_sends_the_follower_elsewhere_and_closes() -> None:
    lane = Lane(ORIGIN)
    thread, outcome = _ride_in_thread(lane, lambda request: None)
    assert lane.ahead_closed(body_complete=False) is Handover.CLOSE  # its answer would follow
    thread.join(5)
    assert outcome == [False]


def test_a_request_never_written_leaves_the_connection_as_it_was() -> None:
    lane = Lane(ORIGIN)
    thread, outcome = _ride_in_thread(lane)
    assert lane.ahead_closed(body_complete=True) is Handover.RELEASE
    thread.join(5)
    assert outcome == [False]


def test_a_half_written_request_spoils_the_connection() -> None:
    def broken(request: QueuedRequest) -> None:
        raise BrokenPipeError

    lane = Lane(ORIGIN)
    thread, outcome = _ride_in_thread(lane, broken)
    thread.join(5)
    assert outcome == [False]
    assert lane.ahead_closed(body_complete=True) is Handover.CLOSE


def test_a_lane_is_for_one_ride_while_the_response_ahead_is_open() -> None:
    lane = Lane(ORIGIN)
    assert lane.ahead_closed(body_complete=True) is Handover.RELEASE
    assert not lane.open
    assert lane.ride(REQUEST) is False  # nothing to wait for
    unused = Lane(ORIGIN)
    unused.give_up()
    assert not unused.open and unused.ride(REQUEST) is False


class _FakeLane:
    """A FollowOn for the places' bookkeeping: open until given up, any URL accepted."""

    def __init__(self, origin: str = "http://h") -> None:
        self.origin = origin
        self.open = True

    def accepts(self, url: str) -> bool:
        return url.startswith(self.origin)

    def request(self, method: str, url: str, headers: object) -> None:
        return None

    def give_up(self) -> None:
        self.open = False


def _enter_in_thread(places: Places, url: str) -> tuple[threading.Thread, list[Ticket]]:
    got: list[Ticket] = []
    thread = threading.Thread(target=lambda: got.append(places.enter(url)))
    thread.start()
    return thread, got


def test_places_admit_parallel_files_then_hand_each_freed_place_to_one_waiter() -> None:
    places = Places(2)
    first, second = places.enter("http://h/1"), places.enter("http://h/2")
    assert first.held and second.held
    thread, got = _enter_in_thread(places, "http://h/3")
    thread.join(0.1)
    assert not got  # no place, no lane: it waits
    first.give_back()
    thread.join(5)
    assert got and got[0].held and got[0].lane is None


def test_a_waiting_file_rides_an_offered_lane_and_inherits_the_place() -> None:
    places = Places(1)
    ahead = places.enter("http://h/1")
    thread, got = _enter_in_thread(places, "http://h/2")
    thread.join(0.1)
    lane = _FakeLane()
    ahead.offer(lane)
    thread.join(5)
    follower = got[0]
    assert follower.lane is lane and not follower.held and follower.ahead is ahead
    inherited = threading.Thread(target=follower.take)  # its own requests wait for the place
    inherited.start()
    inherited.join(0.1)
    assert inherited.is_alive()
    ahead.give_back()
    inherited.join(5)
    assert follower.held and not inherited.is_alive()
    follower.give_back()
    assert places.enter("http://h/3").held  # the place came back to the batch


def test_a_lane_goes_only_to_a_file_of_its_origin() -> None:
    places = Places(1)
    ahead = places.enter("http://h/1")
    thread, got = _enter_in_thread(places, "http://other/2")
    ahead.offer(_FakeLane())
    thread.join(0.1)
    assert not got
    ahead.give_back()  # its place, not the lane, lets the other file in
    thread.join(5)
    assert got and got[0].held


def test_one_offer_at_a_time_and_none_after_the_place_is_given_back() -> None:
    places = Places(1)
    ahead = places.enter("http://h/1")
    first, second = _FakeLane(), _FakeLane()
    thread, _ = _enter_in_thread(places, "http://h/2")
    ahead.offer(first)
    thread.join(5)
    ahead.offer(second)  # already has a successor
    assert not second.open
    ahead.give_back()
    late = _FakeLane()
    ahead.offer(late)
    assert not late.open


def test_a_follower_that_ends_early_passes_its_place_claim_on() -> None:
    """A -> B -> C: B ends before inheriting; C then inherits A's place directly."""
    places = Places(1)
    a = places.enter("http://h/a")
    b_thread, b_got = _enter_in_thread(places, "http://h/b")
    a.offer(_FakeLane())
    b_thread.join(5)
    b = b_got[0]
    c_thread, c_got = _enter_in_thread(places, "http://h/c")
    b.offer(_FakeLane())
    c_thread.join(5)
    c = c_got[0]
    assert c.ahead is b
    b.give_back()
    assert c.ahead is a and a.successor is c
    a.give_back()
    assert c.held


@pytest.mark.parametrize("parallel", [1, 3])
def test_never_more_places_held_than_parallel(parallel: int) -> None:
    places = Places(parallel)
    held_now = 0
    peak = 0
    lock = threading.Lock()

    def one(n: int) -> None:
        nonlocal held_now, peak
        ticket = places.enter(f"http://h/{n}")
        ticket.take()
        with lock:
            held_now += 1
            peak = max(peak, held_now)
        time.sleep(0.002)
        with lock:
            held_now -= 1
        ticket.give_back()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert 1 <= peak <= parallel
