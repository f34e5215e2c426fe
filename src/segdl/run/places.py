"""A batch's places on the network, and the lanes its files ride (HTTP/1.1 pipelining).

``parallel`` files receive at once; each may have the next file's request queued behind its
last response (:mod:`segdl.net.pipelining`). A file's :class:`Ticket` says which: a place
held, or a lane to ride and a place to inherit. :class:`FileTransport` is the batch's shared
transport as one file sees it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from segdl.core.progress import DownloadReceived, Event, ProgressListener
from segdl.net.interfaces import FollowOn, Preconnection, Response, Transport


class Places:
    """A batch's ``parallel`` places on the network, and the lanes files offer behind their
    last responses (HTTP/1.1 pipelining: see :mod:`segdl.net.pipelining`).

    A file enters with a free place, or by taking a lane a file on the network offered for
    its own origin; then its first request rides behind that file's response and it inherits
    that file's place when the file gives it back. Until it holds a place, nothing else of it
    goes on the network, so files receiving at once stay at ``parallel``, each with at most
    the next one's request queued behind it.

    Every hand-over goes straight to one waiter, first come first served, and wakes only it:
    with dozens of files waiting, waking them all to compete would cost more than the files.
    """

    def __init__(self, parallel: int) -> None:
        self._lock = threading.Lock()
        self._free = parallel
        self._offers: deque[_Offer] = deque()
        self._waiting: deque[_Waiter] = deque()  # files not yet admitted
        self._inheriting: deque[Ticket] = deque()  # admitted files that want a place again

    def enter(self, url: str) -> Ticket:
        """A free place or a lane that ``url`` may take, waiting for one."""
        with self._lock:
            if self._free > 0:
                self._free -= 1
                return Ticket(self, held=True)
            offer = self._take_offer(url)
            if offer is not None:
                return self._behind(offer)
            waiter = _Waiter(url)
            self._waiting.append(waiter)
        waiter.admitted.wait()
        assert waiter.ticket is not None
        return waiter.ticket

    def _behind(self, offer: _Offer) -> Ticket:
        ticket = Ticket(self, held=False, lane=offer.lane, ahead=offer.ticket)
        offer.ticket.successor = ticket
        return ticket

    def _take_offer(self, url: str) -> _Offer | None:
        for offer in list(self._offers):
            if not offer.lane.open or offer.ticket.successor is not None:
                self._offers.remove(offer)  # stale: its response ended, or it was taken
            elif offer.lane.accepts(url):
                self._offers.remove(offer)
                return offer
        return None

    def _offer(self, offer: _Offer) -> None:
        """With the lock held: to the first waiter for that origin, else kept for one."""
        for waiter in self._waiting:
            if offer.lane.accepts(waiter.url):
                self._waiting.remove(waiter)
                waiter.ticket = self._behind(offer)
                waiter.admitted.set()
                return
        self._offers.append(offer)

    def _place_freed(self) -> None:
        """With the lock held: a place to the first file wanting one, else back to the pool."""
        if self._inheriting:
            ticket = self._inheriting.popleft()
            ticket.held = True
            ticket.holding.set()
        elif self._waiting:
            waiter = self._waiting.popleft()
            waiter.ticket = Ticket(self, held=True)
            waiter.admitted.set()
        else:
            self._free += 1


@dataclass(eq=False, slots=True)
class _Waiter:
    url: str
    admitted: threading.Event = field(default_factory=threading.Event)
    ticket: Ticket | None = None


@dataclass(eq=False, slots=True)
class _Offer:
    ticket: Ticket
    lane: FollowOn


class Ticket:
    """One file's admission: a place held, or a lane to ride and a place to inherit."""

    def __init__(
        self,
        places: Places,
        *,
        held: bool,
        lane: FollowOn | None = None,
        ahead: Ticket | None = None,
    ) -> None:
        self._places = places
        self.held = held
        self.holding = threading.Event()  # set when held becomes True by a hand-over
        self.lane = lane  # for the first request only
        self.ahead = ahead  # whose place this ticket inherits
        self.successor: Ticket | None = None

    def take(self) -> None:
        """Hold a place before going on the network on one's own: inherit it from the file
        ahead (it gives it back when its bytes are in), or wait for a free one."""
        places = self._places
        with places._lock:
            if self.held:
                return
            self.holding.clear()
            if self.ahead is None:
                if places._free > 0:
                    places._free -= 1
                    self.held = True
                    return
                places._inheriting.append(self)
        self.holding.wait()

    def offer(self, lane: FollowOn) -> None:
        """Let a waiting file ride behind this file's response (one at a time)."""
        places = self._places
        with places._lock:
            if (self.held or self.ahead is not None) and self.successor is None:
                places._offer(_Offer(self, lane))
                return
        lane.give_up()

    def give_back(self) -> None:
        """Done with the network: the place goes to the successor, or back to the batch."""
        places = self._places
        with places._lock:
            if self.lane is not None:
                self.lane.give_up()
                self.lane = None
            places._offers = deque(o for o in places._offers if o.ticket is not self)
            if self in places._inheriting:
                places._inheriting.remove(self)
            if self.ahead is not None:  # never got the place: the one ahead keeps it
                ahead, successor = self.ahead, self.successor
                if ahead.successor is self:  # whoever queued behind us now waits on it
                    ahead.successor = successor
                if successor is not None:
                    successor.ahead = ahead
                self.ahead = self.successor = None
            elif self.held:
                self.held = False
                successor, self.successor = self.successor, None
                if successor is not None:
                    successor.ahead = None
                    successor.held = True
                    successor.holding.set()
                else:
                    places._place_freed()

    def listener(self, inner: ProgressListener) -> ProgressListener:
        def listen(event: Event) -> None:
            if isinstance(event, DownloadReceived):
                self.give_back()
            inner(event)

        return listen


class FileTransport:
    """The batch's transport as one file sees it: its first request may ride a lane, and
    its responses offer lanes to the files waiting."""

    def __init__(self, shared: Transport, ticket: Ticket) -> None:
        self._shared = shared
        self._ticket = ticket

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response:
        lane, self._ticket.lane = self._ticket.lane, None
        response = lane.request(method, url, headers) if lane is not None else None
        if response is None:
            self._ticket.take()
            response = self._shared.request(method, url, headers)
        follow = self._shared.follow(response)
        if follow is not None:
            self._ticket.offer(follow)
        return response

    def preconnect(self, url: str, count: int) -> Preconnection:
        self._ticket.take()
        return self._shared.preconnect(url, count)

    def follow(self, response: Response) -> FollowOn | None:
        """Lanes are offered by :meth:`request` itself, to the batch's waiting files."""
        return None

    def close(self) -> None:
        """The shared transport outlives every file."""
