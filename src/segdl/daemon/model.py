"""One download of the daemon's queue: its state, what it asked for, what it has done."""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from segdl.core.errors import UsageError
from segdl.daemon.ariaopts import Options
from segdl.run.probe import check_url


class Status(Enum):
    """aria2's statuses, with its names (tellStatus's ``status``)."""

    ACTIVE = "active"
    WAITING = "waiting"
    PAUSED = "paused"
    ERROR = "error"
    COMPLETE = "complete"
    REMOVED = "removed"

    @property
    def stopped(self) -> bool:
        return self in (Status.ERROR, Status.COMPLETE, Status.REMOVED)

    @property
    def queued(self) -> bool:
        """In the waiting queue, where ``position`` orders it (aria2 lists paused ones there)."""
        return self in (Status.WAITING, Status.PAUSED)


# aria2's exit codes, as tellStatus reports them in errorCode (aria2c.rst "EXIT STATUS").
ERROR_UNKNOWN = 1
ERROR_TIMEOUT = 2
ERROR_NOT_FOUND = 3
ERROR_NETWORK = 6
ERROR_FILE_EXISTS = 13
ERROR_FILE_IO = 15
ERROR_CHECKSUM = 32
ERROR_HTTP_PROTOCOL = 29


def new_gid(taken: set[str] | dict[str, Any]) -> str:
    """16 hex digits, as aria2 represents its 64-bit GIDs; never one already in use."""
    while True:
        gid = secrets.token_hex(8)
        if gid not in taken:
            return gid


def web_uri(uri: object) -> bool:
    """An http:// or https:// URI that parses, the only kind a download may have (the check
    :func:`segdl.download` makes)."""
    if not isinstance(uri, str):
        return False
    try:
        check_url(uri)
    except UsageError:
        return False
    return True


def is_gid(text: object) -> bool:
    return isinstance(text, str) and len(text) == 16 and all(c in "0123456789abcdef" for c in text)


@dataclass(slots=True)
class Live:
    """What a running download last reported (from its progress events); never persisted
    except ``done_bytes`` and ``size_bytes``, which the store keeps as a hint."""

    done_bytes: int = 0
    size_bytes: int | None = None
    rate_bytes_per_s: float = 0.0
    connections: int = 0
    segments: tuple[tuple[int, int], ...] = ()
    """Done byte ranges, half-open, when the engine reports them."""
    positions: tuple[tuple[int, int], ...] = ()
    """Each streaming connection: the offset of its next byte, and where its range stops."""
    current_url: str | None = None


@dataclass(slots=True)
class Item:
    """A download: its URLs and options (aria2 names, string values), status and result."""

    gid: str
    uris: list[str]
    options: Options
    status: Status
    position: float
    """Sort key in the waiting queue (and the order active ones restart in after a crash)."""
    directory: str
    """The resolved directory inside the root."""
    path: str | None = None
    """The output file once known (the ``out`` given, or the name the server gave)."""
    error_code: int = 0
    error_message: str = ""
    added_s: float = 0.0
    stopped_seq: int = 0
    live: Live = field(default_factory=Live)
    notices: deque[tuple[float, str, str]] = field(default_factory=lambda: deque(maxlen=50))
