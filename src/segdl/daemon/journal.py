"""What changed since the last commit, and the notifications that are sent once it is."""

from __future__ import annotations

from segdl.daemon.model import Item
from segdl.daemon.store import Batch, row_of


class Journal:
    """Collected on the event loop's thread; :meth:`take` hands one commit's worth over."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._dirty: dict[str, Item] = {}
        self._deleted: set[str] = set()
        self._notes: list[tuple[str, float, str, str]] = []
        self._settings: dict[str, str] = {}
        self._notifications: list[tuple[str, str]] = []

    def changed(self, item: Item) -> None:
        self._dirty[item.gid] = item

    def deleted(self, gid: str) -> None:
        self._dirty.pop(gid, None)
        self._deleted.add(gid)

    def note(self, gid: str, at_s: float, kind: str, message: str) -> None:
        self._notes.append((gid, at_s, kind, message))

    def setting(self, key: str, value: str) -> None:
        self._settings[key] = value

    def notify(self, method: str, gid: str) -> None:
        self._notifications.append((method, gid))

    def take(self) -> tuple[Batch, list[tuple[str, str]]]:
        """The rows as they are now (taken on the loop's thread, written on another)."""
        batch = Batch(
            puts=[row_of(item) for item in self._dirty.values()],
            deletes=list(self._deleted),
            notes=self._notes,
            settings=self._settings,
        )
        notifications = self._notifications
        self._reset()
        return batch, notifications
