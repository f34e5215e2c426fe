"""Where each item of the daemon stands: the waiting queue (in order), the active list and
the stopped list, and the lookup by GID.

In memory only, on the event loop's thread. A method that moves items returns the ones whose
stored fields it changed, so the manager records them; what the moves mean (runs started or
stopped, notifications) is the manager's.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from segdl.daemon import order
from segdl.daemon.errors import RpcError
from segdl.daemon.model import Item, Status, is_gid


class Lists:
    """Every item of one daemon, by GID, and the three lists they are in."""

    def __init__(self) -> None:
        self.items: dict[str, Item] = {}
        self.queue: list[str] = []  # waiting and paused, in order
        self.active: list[str] = []  # in the order they started
        self.stopped: list[str] = []  # in the order they stopped
        self._stop_seq = 0

    def restore(self, items: Iterable[Item]) -> list[Item]:
        """The items the store had (see :func:`segdl.daemon.order.restored`): stopped ones in
        the stopped list, the others waiting or paused in the queue."""
        listed = list(items)
        renumbered = []
        for item in listed:
            self.items[item.gid] = item
            if item.status.stopped:
                self.stopped.append(item.gid)
                self._stop_seq = max(self._stop_seq, item.stopped_seq)
        for number, item in enumerate(order.restored(listed)):
            item.status = Status.PAUSED if item.status is Status.PAUSED else Status.WAITING
            self.queue.append(item.gid)
            if item.position != number:
                item.position = float(number)
                renumbered.append(item)
        return renumbered

    def find(self, gid: object) -> Item:
        """By GID, or by a unique prefix of one (as aria2 allows)."""
        if not isinstance(gid, str) or not gid:
            raise RpcError("a GID is a string of 16 hex digits")
        item = self.items.get(gid)
        if item is not None:
            return item
        if not is_gid(gid.ljust(16, "0")):
            raise RpcError(f"Invalid GID {gid[:40]}")
        found = [item for key, item in self.items.items() if key.startswith(gid)]
        if len(found) != 1:
            raise RpcError(f"GID {gid} is not found" if not found else f"GID {gid} is ambiguous")
        return found[0]

    def add(self, item: Item, index: int) -> list[Item]:
        """A new item, into the queue at ``index``."""
        self.items[item.gid] = item
        return self.insert(item, index)

    def insert(self, item: Item, index: int) -> list[Item]:
        """Into the queue at ``index`` (clamped); positions renumbered only when needed."""
        queue = self.queue
        index = max(0, min(index, len(queue)))
        before = self.items[queue[index - 1]].position if index > 0 else None
        after = self.items[queue[index]].position if index < len(queue) else None
        queue.insert(index, item.gid)
        position = order.position_between(before, after)
        if position is None:
            return self.renumber(index)
        item.position = position
        return []

    def renumber(self, start: int = 0) -> list[Item]:
        changed = []
        for number in range(start, len(self.queue)):
            item = self.items[self.queue[number]]
            item.position = float(number)
            changed.append(item)
        for number in range(0, start):  # before start: keep them below
            item = self.items[self.queue[number]]
            if item.position >= start:
                item.position = float(number)
                changed.append(item)
        return changed

    def move(self, item: Item, pos: int, how: str) -> tuple[int, list[Item]]:
        """aria2's changePosition: the new index, and the items renumbered."""
        if not item.status.queued:
            raise RpcError(f"GID {item.gid} is not in the waiting queue")
        current = self.queue.index(item.gid)
        target = order.target_index(current, len(self.queue), pos, how)
        self.queue.pop(current)
        self.queue.insert(target, item.gid)
        return target, self.renumber()

    def next_waiting(self, running: Container[str]) -> Item | None:
        """The first waiting item of the queue with no thread still running for it."""
        for gid in self.queue:
            item = self.items[gid]
            if item.status is Status.WAITING and gid not in running:
                return item
        return None

    def activate(self, item: Item) -> None:
        """From the queue to the end of the active list."""
        self.queue.remove(item.gid)
        item.status = Status.ACTIVE
        self.active.append(item.gid)

    def stop(self, item: Item, status: Status) -> None:
        """From the active list or the queue to the end of the stopped list."""
        if item.gid in self.active:
            self.active.remove(item.gid)
        elif item.gid in self.queue:
            self.queue.remove(item.gid)
        item.status = status
        self._stop_seq += 1
        item.stopped_seq = self._stop_seq
        self.stopped.append(item.gid)

    def forget(self, item: Item) -> None:
        """A stopped item's result removed."""
        self.stopped.remove(item.gid)
        del self.items[item.gid]
