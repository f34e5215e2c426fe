"""Stopping a download part-way at a known point: after so many bytes, not after a time."""

from __future__ import annotations

import threading

import segdl


class StopAfter(threading.Event):
    """Set once a download has received ``limit`` bytes: pass it as ``cancel`` and its
    ``listener`` as ``progress``. A byte count holds on a loaded machine, a timer does not."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def listener(self, event: segdl.Event) -> None:
        if isinstance(event, segdl.DownloadProgress) and event.done_bytes >= self.limit:
            self.set()


def stop_after(limit: int) -> StopAfter:
    return StopAfter(limit)
