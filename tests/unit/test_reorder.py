"""The reorder window of -o -: bounded, in order, and a slow head piece is taken over."""

from __future__ import annotations

from typing import cast

from segdl.net.interfaces import Response
from segdl.run.reorder import ReorderWindow, piece_bytes

KIB = 1024


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def test_pieces_fit_two_per_connection_in_the_window() -> None:
    """With 8 connections and 64 MiB the pieces are 4 MiB; small files get smaller pieces."""
    assert piece_bytes(1 << 30, 8, 64 << 20) == 4 << 20
    assert piece_bytes(1 << 20, 8, 64 << 20) == 128 * KIB
    assert piece_bytes(10, 8, 64 << 20) == 64 * KIB  # never below 64 KiB


def test_pieces_are_handed_out_only_within_the_window_and_a_slow_head_is_taken_over() -> None:
    """Pieces held never exceed the window; when it is full and the piece the stream waits
    for is overdue, the next taker gets that piece to take over, once, in its buffer."""
    clock = Clock()
    window = ReorderWindow(10 * 64 * KIB, 64 * KIB, 4 * 64 * KIB, clock)
    taken = [window.take() for _ in range(4)]
    assert [w[0].range.start for w in taken if w] == [0, 64 * KIB, 128 * KIB, 192 * KIB]
    assert all(w is not None and not w[1] for w in taken)
    head = taken[0][0] if taken[0] else None
    owners = cast(Response, object())  # the owner's answer: what a takeover aborts
    assert head is not None and window.received(head, 1000, owners)
    for work in taken[1:]:
        assert work is not None
        window.done(work[0])
    clock.now_s = 10.0  # the head is long overdue; the window is full
    takeover = window.take()
    assert takeover is not None and takeover == (head, True)
    assert window.owners_answer(head) is owners
    assert not window.received(head, 2000)  # the owner learns at its next read, and stops
    window.release(head)
    assert window.owners_answer(head) is None  # let go: nothing left to abort
    assert window.adopt(head) and head.got == 2000 and not head.taken
    held = sum(len(d) for d in window.ready.values())
    held += sum(len(p.data) for p in window.receiving.values())
    assert held <= window.window_bytes
    window.done(head)
    window.flushed = 4 * 64 * KIB  # the writer wrote pieces 0-3
    nxt = window.take()
    assert nxt is not None and nxt[0].range.start == 4 * 64 * KIB and not nxt[1]
