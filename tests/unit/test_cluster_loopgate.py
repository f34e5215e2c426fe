"""A host gate as the one-thread lean loop consults it (segdl.net.gate.LoopGate): it never
waits long, remembers refusals and pauses, and reports a server's Retry-After."""

from __future__ import annotations

from segdl.cluster.gate import LeasedGate, LocalLeases
from segdl.cluster.leases import LeaseBook
from segdl.net.gate import ALONE_WAIT_S, LoopGate


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Gate:
    """A HostGate that records what it is asked and answers as told."""

    def __init__(self) -> None:
        self.slots = 0
        self.wait_s = 0.0
        self.keep = True
        self.connects: list[float | None] = []
        self.waits = 0
        self.pauses: list[tuple[str, float]] = []
        self.freed = 0

    def connect(self, host: str, timeout_s: float | None = None) -> bool:
        self.connects.append(timeout_s)
        if self.slots:
            self.slots -= 1
            return True
        return False

    def disconnected(self, host: str) -> None:
        self.freed += 1

    def keep_idle(self, host: str) -> bool:
        return self.keep

    def before_request(self, host: str) -> None:
        raise AssertionError("a loop never waits at the gate for a request")

    def request_wait_s(self, host: str) -> float:
        self.waits += 1
        return self.wait_s

    def retry_after(self, host: str, delay_s: float) -> None:
        self.pauses.append((host, delay_s))


def test_admit_waits_only_when_alone_and_remembers_a_refusal() -> None:
    """A loop with connections asks without waiting; one with none may wait a little; after a
    refusal it does not ask again for a tenth of a second."""
    gate, clock = _Gate(), _Clock()
    loop = LoopGate(gate, clock=clock)
    assert not loop.admit("h:80", alone=False)
    assert not loop.admit("h:80", alone=False)
    assert gate.connects == [0.0]
    clock.now += 0.11
    gate.slots = 1
    assert loop.admit("h:80", alone=True)
    assert gate.connects == [0.0, ALONE_WAIT_S]


def test_a_pause_is_kept_without_asking_the_gate_again() -> None:
    """Once the gate says wait, no request is allowed until then, and the gate is not asked
    on every turn of the loop meanwhile."""
    gate, clock = _Gate(), _Clock()
    loop = LoopGate(gate, clock=clock)
    assert loop.take("h:80") and gate.waits == 1
    gate.wait_s = 2.0
    assert not loop.take("h:80")
    gate.wait_s = 0.0
    clock.now += 1.0
    assert not loop.take("h:80") and gate.waits == 2
    assert 0.9 < loop.wake_in_s(5.0) <= 1.0  # the loop wakes when the pause ends
    clock.now += 1.01
    assert loop.take("h:80") and gate.waits == 3


def test_retry_after_of_a_429_or_503_pauses_everyone() -> None:
    """A 429/503 with one Retry-After goes to the gate and holds the loop too; other statuses,
    and a Retry-After given twice, do not."""
    gate, clock = _Gate(), _Clock()
    loop = LoopGate(gate, clock=clock)
    loop.answered("h:80", 200, ["5"])
    loop.answered("h:80", 429, ["5", "6"])
    loop.answered("h:80", 503, ["soon"])
    assert gate.pauses == [] and loop.take("h:80")
    loop.answered("h:80", 429, ["2"])
    assert gate.pauses == [("h:80", 2.0)]
    assert not loop.take("h:80") and loop.take("other:80")
    clock.now += 2.01
    assert loop.take("h:80")


def test_over_share_is_asked_at_most_every_quarter_second() -> None:
    """The share check is cheap for a loop turning thousands of times a second."""
    gate, clock = _Gate(), _Clock()
    loop = LoopGate(gate, clock=clock)
    gate.keep = False
    assert loop.over_share("h:80")
    assert not loop.over_share("h:80")  # asked again too soon: no
    clock.now += 0.3
    assert loop.over_share("h:80")


def test_leased_gate_with_no_timeout_still_asks_the_book_once() -> None:
    """connect(host, 0) takes a free slot from the book without waiting there, and says no
    at once when there is none."""
    service = LocalLeases(LeaseBook(1))
    with LeasedGate(service, tick_s=0.05) as first, LeasedGate(service, tick_s=0.05) as second:
        assert first.connect("h:80", 0.0)
        assert not second.connect("h:80", 0.0)
        first.disconnected("h:80")


def test_leased_gate_request_wait_reports_pauses_and_the_rate() -> None:
    """request_wait_s is before_request without waiting: a pause's time left, a rate's wait."""
    service = LocalLeases(LeaseBook(4, rate_per_s=10.0, burst=2.0))
    with LeasedGate(service, tick_s=0.05, lease_batch=2, rate_limited=True) as gate:
        assert gate.request_wait_s("h:80") == 0.0
        assert gate.request_wait_s("h:80") == 0.0
        assert 0.0 < gate.request_wait_s("h:80") <= 0.1  # the burst of 2 is spent
        gate.retry_after("h:80", 3.0)
        assert 2.5 < gate.request_wait_s("h:80") <= 3.0
