"""The reorder window of ``-o -``: pieces of a file handed out in order to connections, held
until every byte before them is written, never more than the window's bytes at once.

A piece's buffer is allocated when it is handed out, and a piece is handed out only when it
ends within ``window_bytes`` of the last byte written: connections that run ahead wait. The
piece the stream waits for may be slow (one slow connection); once it has taken clearly
longer than pieces usually take, a waiting connection takes it over: the slow answer is
aborted, and the rest of the piece is asked for again into the same buffer, from the byte
where the slow one stopped. The memory bound holds, and one slow connection does not hold
the whole stream to its pace.
"""

from __future__ import annotations

import mmap
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from segdl.core.models import ByteRange
from segdl.core.progress import SegmentMap, merged
from segdl.net.interfaces import Response

_MIN_PIECE_BYTES = 64 * 1024
_MAX_PIECE_BYTES = 16 << 20
_RECHECK_S = 0.1
# A piece the stream waits for is taken over once it has taken this many times the median
# time of a piece, and at least the floor: a takeover costs a request and a connection.
_TAKEOVER_RATIO = 3.0
_TAKEOVER_FLOOR_S = 0.5


def piece_bytes(size_bytes: int, connections: int, window_bytes: int) -> int:
    """Pieces small enough that every connection has two in the window (one to fetch, one
    waiting to be written), and no more pieces than a file that size needs."""
    piece = window_bytes // (2 * connections)
    piece = min(piece, -(-size_bytes // connections), _MAX_PIECE_BYTES)
    return max(_MIN_PIECE_BYTES, min(piece, window_bytes))


@dataclass(eq=False)
class Piece:
    """One piece being received: its buffer, the bytes in it, and who owns it now."""

    range: ByteRange
    data: mmap.mmap
    """Anonymous pages of its own: given back to the system the moment it is closed (a
    heap buffer's pages stay with the allocator, and the resident set outgrows the window)."""
    started_s: float
    got: int = 0
    response: Response | None = None
    """The owner's current answer: what a takeover aborts."""
    taken: bool = False
    """Another connection is taking it over: the owner stops at its next read."""
    released: threading.Event = field(default_factory=threading.Event)


class ReorderWindow:
    """Shared by the connections of one stream and the thread writing it out."""

    def __init__(
        self,
        size_bytes: int,
        piece: int,
        window_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size_bytes = size_bytes
        self.piece = piece
        self.window_bytes = window_bytes
        self.clock = clock
        self.changed = threading.Condition()
        self.next_start = 0
        self.flushed = 0
        self.ready: dict[int, mmap.mmap] = {}
        self.receiving: dict[int, Piece] = {}
        self.error: BaseException | None = None
        self.stopped = False
        self.takeovers = 0
        self._durations: deque[float] = deque(maxlen=32)

    def take(self) -> tuple[Piece, bool] | None:
        """Work for a connection: a new piece once it fits in the window (False), or the
        piece the stream waits for, to take over (True); None when nothing is left."""
        with self.changed:
            while not self.stopped:
                if self.next_start < self.size_bytes:
                    end = min(self.next_start + self.piece, self.size_bytes)
                    if end <= self.flushed + self.window_bytes:
                        start, self.next_start = self.next_start, end
                        buffer = mmap.mmap(-1, end - start)
                        piece = Piece(ByteRange(start, end), buffer, self.clock())
                        self.receiving[start] = piece
                        return piece, False
                elif not self.receiving:
                    return None
                head = self.receiving.get(self.flushed)
                if head is not None and self._overdue(head):
                    head.taken = True
                    self.takeovers += 1
                    return head, True
                self.changed.wait(_RECHECK_S)
        return None

    def _overdue(self, piece: Piece) -> bool:
        if piece.taken or piece.got >= piece.range.length:
            return False
        typical = sorted(self._durations)[len(self._durations) // 2] if self._durations else 0.0
        limit = max(_TAKEOVER_FLOOR_S, _TAKEOVER_RATIO * typical)
        return self.clock() - piece.started_s > limit

    def received(self, piece: Piece, got: int, answer: Response | None = None) -> bool:
        """The owner has ``got`` bytes of ``piece`` (and reads them from ``answer`` when
        given: its new answer, what a takeover aborts); False: it was taken over, stop."""
        with self.changed:
            piece.got = got
            if answer is not None:
                piece.response = answer
            return not piece.taken

    def owners_answer(self, piece: Piece) -> Response | None:
        """The answer the owner of ``piece`` reads now: a takeover aborts it (outside the
        lock: aborting closes a socket), so the owner's read returns at once and lets go."""
        with self.changed:
            return piece.response

    def release(self, piece: Piece) -> None:
        """The owner let go of a piece taken over: it writes no more into it."""
        with self.changed:
            piece.response = None
            piece.released.set()

    def adopt(self, piece: Piece) -> bool:
        """Once the previous owner let go: own ``piece`` (True), or False if it finished
        meanwhile or the stream stopped."""
        while not piece.released.wait(_RECHECK_S):
            if self.stopped:
                return False
        with self.changed:
            if self.receiving.get(piece.range.start) is not piece:
                return False
            piece.taken = False
            piece.released = threading.Event()
            piece.started_s = self.clock()
            return True

    def done(self, piece: Piece) -> None:
        with self.changed:
            del self.receiving[piece.range.start]
            self.ready[piece.range.start] = piece.data
            self._durations.append(self.clock() - piece.started_s)
            piece.response = None
            piece.released.set()
            self.changed.notify_all()

    def fail(self, error: BaseException) -> None:
        with self.changed:
            if self.error is None:
                self.error = error
            self.stopped = True
            self.changed.notify_all()

    def segment_map(self) -> SegmentMap:
        with self.changed:
            done = [ByteRange(0, self.flushed)]
            done += [ByteRange(s, s + len(d)) for s, d in self.ready.items()]
            pieces = sorted(self.receiving.values(), key=lambda p: p.range.start)
            done += [ByteRange(p.range.start, p.range.start + p.got) for p in pieces]
            streams = [ByteRange(p.range.start + p.got, p.range.end) for p in pieces]
        return SegmentMap(self.size_bytes, merged(done), tuple(streams))
