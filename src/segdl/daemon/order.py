"""The waiting queue's order: pure decisions over positions (aria2's changePosition)."""

from __future__ import annotations

from collections.abc import Iterable

from segdl.daemon.errors import RpcError
from segdl.daemon.model import Item, Status


def target_index(current: int, length: int, pos: int, how: str) -> int:
    """Where changePosition puts an item now at ``current`` in a queue of ``length``:
    relative to the start (POS_SET), to itself (POS_CUR) or to the end (POS_END), clamped."""
    if how == "POS_SET":
        target = pos
    elif how == "POS_CUR":
        target = current + pos
    elif how == "POS_END":
        target = length - 1 + pos
    else:
        raise RpcError(f"how must be POS_SET, POS_CUR or POS_END, not {how!r}")
    return max(0, min(target, length - 1))


def position_between(before: float | None, after: float | None) -> float | None:
    """A sort key for an item inserted between two neighbours' keys (None for no
    neighbour on that side); None when the whole queue must be renumbered instead."""
    if before is None and after is None:
        return 0.0
    if after is None:
        assert before is not None
        return before + 1
    if before is None:
        return after - 1
    return None


def restored(items: Iterable[Item]) -> list[Item]:
    """After a restart, the queue: the downloads that were running first (they continue
    from their durable bytes), then the waiting and paused ones, each in their saved order."""
    listed = list(items)
    running = sorted((i for i in listed if i.status is Status.ACTIVE), key=_position)
    queued = sorted((i for i in listed if i.status.queued), key=_position)
    return [*running, *queued]


def _position(item: Item) -> float:
    return item.position
