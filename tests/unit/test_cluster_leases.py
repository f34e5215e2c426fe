"""The cluster's lease book and a worker's gate, without Ray: cap, shares, expiry, pauses."""

from __future__ import annotations

import random
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segdl.cluster.gate import LeasedGate, LocalLeases
from segdl.cluster.leases import HostView, LeaseBook


def test_cap_holds_over_workers() -> None:
    """Slots granted never exceed the cap, however many workers ask."""
    book = LeaseBook(8)
    grants = [book.acquire(f"w{n}", "h:80", 4, now=0.0).granted for n in range(5)]
    assert sum(grants) == 8 and book.held("h:80") == 8
    assert book.acquire("w9", "h:80", 1, now=0.0).granted == 0


def test_hosts_are_independent() -> None:
    """Each host has its own cap."""
    book = LeaseBook(2)
    assert book.acquire("w", "a:80", 5, 0.0).granted == 2
    assert book.acquire("w", "b:80", 5, 0.0).granted == 2


def test_shares_split_the_cap_between_wanting_workers() -> None:
    """While another worker waits, one at its share gets no more, and both learn the share."""
    book = LeaseBook(8)
    first = book.acquire("a", "h:80", 8, 0.0)
    assert first.granted == 8 and first.share == 8
    late = book.acquire("b", "h:80", 4, 0.1)
    assert late.granted == 0 and late.share == 4
    assert book.renew("a", 0.2)["h:80"].share == 4  # a should close idle ones above 4
    book.release("a", "h:80", 4, 0.3)
    assert book.acquire("b", "h:80", 8, 0.4).granted == 4
    assert book.acquire("a", "h:80", 1, 0.5).granted == 0  # at its share, b is not below


def test_remainder_goes_to_whoever_asks() -> None:
    """Shares round down; the slots they leave over are not wasted."""
    book = LeaseBook(8)
    for worker in "abc":
        assert book.acquire(worker, "h:80", 2, 0.0).granted == 2
    assert book.acquire("a", "h:80", 3, 0.1).granted == 2
    assert book.held("h:80") == 8


def test_dead_workers_lose_their_slots_after_the_ttl() -> None:
    """A worker not heard from for ttl_s is forgotten and its slots are free again."""
    book = LeaseBook(4, ttl_s=5.0)
    book.acquire("dead", "h:80", 4, 0.0)
    book.renew("alive", 4.0)
    assert book.expire(4.9) == []
    assert book.expire(5.1) == ["dead"]
    assert book.held("h:80") == 0 and book.expired_workers == 1
    assert book.acquire("alive", "h:80", 4, 5.2).granted == 4


def test_pause_is_shared_and_capped() -> None:
    """A pause reported by one worker is in every worker's view until it ends; a longer one
    wins over a shorter, and none lasts longer than max_pause_s."""
    book = LeaseBook(4, max_pause_s=10.0)
    epoch = book.pause_epoch
    book.pause("h:80", 2.0, now=100.0)
    assert book.pause_epoch != epoch
    assert book.renew("other", 101.0)["h:80"].pause_s == pytest.approx(1.0)
    book.pause("h:80", 0.5, now=101.0)  # shorter: changes nothing
    assert book.renew("other", 101.0)["h:80"].pause_s == pytest.approx(1.0)
    book.pause("h:80", 3600.0, now=101.0)
    assert book.renew("other", 101.0)["h:80"].pause_s == pytest.approx(10.0)
    assert "h:80" not in book.renew("other", 112.0)


def test_request_rate_in_batches() -> None:
    """Request tokens follow the rate over time, and none beyond the burst at once."""
    book = LeaseBook(4, rate_per_s=100.0, burst=10)
    assert book.take_requests("w", "h:80", 50, 0.0) == (10, 0.0)
    granted, wait_s = book.take_requests("w", "h:80", 5, 0.0)
    assert granted == 0 and wait_s == pytest.approx(0.01)
    total = sum(book.take_requests("w", "h:80", 50, t / 100)[0] for t in range(1, 101))
    assert total == 100  # one second at 100/s


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["acquire", "release", "leave", "tick"]),
            st.integers(0, 5),
            st.integers(1, 6),
        ),
        max_size=80,
    )
)
def test_cap_never_exceeded_under_any_sequence(ops: list[tuple[str, int, int]]) -> None:
    """Whatever workers ask, give back, leave or go silent, held slots stay within the cap
    and each worker's count is what it was granted minus what it gave back."""
    book = LeaseBook(5, ttl_s=3.0)
    mine: dict[str, int] = {}
    now = 0.0
    for op, who, count in ops:
        worker = f"w{who}"
        if op == "acquire":
            mine[worker] = mine.get(worker, 0) + book.acquire(worker, "h:80", count, now).granted
        elif op == "release":
            give = min(count, mine.get(worker, 0))
            book.release(worker, "h:80", give, now)
            mine[worker] = mine.get(worker, 0) - give
        elif op == "leave":
            book.leave(worker)
            mine.pop(worker, None)
        else:
            now += count
            for dead in book.expire(now):
                mine.pop(dead, None)
        assert book.held("h:80") <= 5
        assert book.held("h:80") == sum(mine.values())


def _gate(service: LocalLeases, **kwargs: float) -> LeasedGate:
    return LeasedGate(service, lease_batch=2, idle_s=0.2, tick_s=0.05, **kwargs)  # type: ignore[arg-type]


def test_gates_hold_the_cap_across_workers() -> None:
    """Many workers' threads opening and closing connections never have more open at once
    than the cap, and the cap is reached."""
    service = LocalLeases(LeaseBook(6))
    gates = [_gate(service) for _ in range(4)]
    lock = threading.Lock()
    open_now = peak = 0
    full = threading.Event()

    def hold(gate: LeasedGate, until_full: bool, pause_s: float) -> None:
        nonlocal open_now, peak
        gate.connect("h:80")
        with lock:
            open_now += 1
            peak = max(peak, open_now)
            if open_now == 6:
                full.set()
        if until_full:  # the last connection of each thread stays until the cap is reached
            full.wait(timeout=10)
        else:
            time.sleep(pause_s)
        with lock:
            open_now -= 1
        gate.disconnected("h:80")

    def worker(gate: LeasedGate, seed: int) -> None:
        rand = random.Random(seed)
        for n in range(30):
            hold(gate, until_full=n == 29, pause_s=rand.random() / 500)

    threads = [
        threading.Thread(target=worker, args=(g, n * 10 + t))
        for n, g in enumerate(gates)
        for t in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert peak == 6
    for gate in gates:
        gate.close()
    assert service.book.held("h:80") == 0


def test_slots_are_reused_without_asking_the_book() -> None:
    """A worker that closes and reopens connections keeps its slots: the book is asked once
    per batch of slots, not per connection."""
    service = LocalLeases(LeaseBook(4))
    with _gate(service) as gate:
        for _ in range(100):
            gate.connect("h:80")
            gate.disconnected("h:80")
        assert service.book.granted_total == 1


def test_idle_slots_go_back() -> None:
    """Slots unused for idle_s are given back to the book by the heartbeat."""
    service = LocalLeases(LeaseBook(4))
    with _gate(service) as gate:
        gate.connect("h:80")
        gate.disconnected("h:80")
        deadline = time.monotonic() + 5
        while service.book.held("h:80") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert service.book.held("h:80") == 0


def test_over_share_connections_are_not_kept_idle() -> None:
    """Once another worker waits, a worker above its share is told to close idle connections,
    and their slots reach the waiting worker."""
    service = LocalLeases(LeaseBook(4))
    greedy, late = _gate(service), _gate(service)
    for _ in range(4):
        greedy.connect("h:80")
    got = threading.Event()

    def wait_for_one() -> None:
        late.connect("h:80")
        got.set()

    threading.Thread(target=wait_for_one, daemon=True).start()
    deadline = time.monotonic() + 5
    while greedy.keep_idle("h:80") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not greedy.keep_idle("h:80")
    greedy.disconnected("h:80")  # the pool closes an idle one: its slot goes back
    greedy.disconnected("h:80")
    assert got.wait(5)
    greedy.close()
    late.close()


def test_a_pause_reaches_every_worker() -> None:
    """After one worker reports Retry-After, another worker's next request waits it out."""
    service = LocalLeases(LeaseBook(4))
    with _gate(service) as told, _gate(service) as other:
        told.retry_after("h:80", 0.4)
        time.sleep(0.1)  # the other's long poll returns at once; this is slack
        started = time.monotonic()
        other.before_request("h:80")
        assert 0.15 < time.monotonic() - started < 0.6
        other.before_request("elsewhere:80")  # other hosts are not paused


def test_request_rate_is_held_across_workers() -> None:
    """With a rate, requests of all workers together keep to it."""
    service = LocalLeases(LeaseBook(4, rate_per_s=50.0, burst=5))
    gates = [_gate(service, rate_limited=True) for _ in range(3)]  # type: ignore[arg-type]
    started = time.monotonic()
    count = 0
    while time.monotonic() - started < 1.0:
        for gate in gates:
            gate.before_request("h:80")
            count += 1
    for gate in gates:
        gate.close()
    assert count <= 5 + 50 * 1.2 + 3 * 2  # burst, rate over the second, tokens in hand


def test_free_slots_go_to_the_longest_waiting() -> None:
    """A slot given back goes to the worker waiting longest, not to whoever asks first."""
    book = LeaseBook(1)
    assert book.acquire("a", "h:80", 1, 0.0).granted == 1
    assert book.acquire("old", "h:80", 1, 0.1).granted == 0
    assert book.acquire("new", "h:80", 1, 0.2).granted == 0
    book.release("a", "h:80", 1, 0.3)
    assert book.acquire("a", "h:80", 1, 0.4).granted == 0  # back of the queue now
    assert book.acquire("new", "h:80", 1, 0.5).granted == 0
    assert book.acquire("old", "h:80", 1, 0.6).granted == 1


def test_slots_go_round_between_busy_workers() -> None:
    """A worker that keeps reusing its one slot gives it up after rotate_s when another
    waits, so the other is served too."""
    service = LocalLeases(LeaseBook(1))
    busy = LeasedGate(service, lease_batch=1, tick_s=0.05, rotate_s=0.2)
    other = LeasedGate(service, lease_batch=1, tick_s=0.05, rotate_s=0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            if busy.connect("h:80", 0.1):
                time.sleep(0.005)
                busy.disconnected("h:80")

    thread = threading.Thread(target=loop)
    thread.start()
    time.sleep(0.1)
    try:
        assert other.connect("h:80", 3.0)
        other.disconnected("h:80")
    finally:
        stop.set()
        thread.join()
        busy.close()
        other.close()


def test_closing_a_gate_does_not_wait_out_its_heartbeat() -> None:
    """A gate closes in one round trip to the book, not after its heartbeat's long poll (a
    shard ends in it: a tick lost per shard was seconds per run)."""
    service = LocalLeases(LeaseBook(2))
    gate = LeasedGate(service, tick_s=5.0)
    assert gate.connect("h:80", 1.0)
    time.sleep(0.1)  # the heartbeat is in its long poll
    gate.disconnected("h:80")
    started = time.monotonic()
    gate.close()
    assert time.monotonic() - started < 1.0
    assert service.book.held("h:80") == 0


def test_a_worker_asking_again_soon_asks_for_more_at_once() -> None:
    """Demand that outruns the batch (a connection opened after another) doubles what the
    gate asks the book for, so 100 connections cost a handful of calls, not 100."""

    class Counting(LocalLeases):
        acquires = 0

        def acquire(self, worker: str, host: str, want: int, wait_s: float) -> HostView:
            Counting.acquires += 1
            return super().acquire(worker, host, want, wait_s)

    service = Counting(LeaseBook(1000))
    with LeasedGate(service, lease_batch=4, tick_s=5.0) as gate:
        for _ in range(100):
            assert gate.connect("h:80", 0.0)
        assert Counting.acquires <= 6
        assert service.book.held("h:80") <= 100 + 128
