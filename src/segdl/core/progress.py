"""Progress events and the listener protocol. The library reports; the CLI draws.

The engine calls its listener from one thread (the one running the download), a few times a
second, with snapshots; listeners never see per-chunk calls from worker threads, so a slow
listener cannot slow the transfer down, and listeners need no locking of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from segdl.core.models import ByteRange


@dataclass(frozen=True, slots=True)
class DownloadStarted:
    url: str
    path: Path
    size_bytes: int | None
    """None when the server did not say how large the file is."""
    ranged: bool
    connections: int


@dataclass(frozen=True, slots=True)
class SegmentMap:
    """Which bytes of a file of known size are in, and where each connection is: what a
    download manager draws as its map. Offsets are bytes of the file; every range is
    half-open, and each tuple is sorted by start."""

    size_bytes: int
    done: tuple[ByteRange, ...]
    """Bytes received, merged: no two touch or overlap."""
    connections: tuple[ByteRange, ...]
    """One per connection streaming now: ``start`` is the offset of the next byte it
    delivers, ``end`` where its range stops. Two may share bytes while one races another."""

    def as_json(self) -> dict[str, object]:
        """Plain lists, for JSON: ``{"size_bytes": N, "done": [[start, end], ...],
        "connections": [[pos, end], ...]}``."""
        return {
            "size_bytes": self.size_bytes,
            "done": [[r.start, r.end] for r in self.done],
            "connections": [[r.start, r.end] for r in self.connections],
        }


def merged(ranges: list[ByteRange]) -> tuple[ByteRange, ...]:
    """``ranges`` sorted, with touching or overlapping ones joined, empty ones dropped."""
    out: list[ByteRange] = []
    for r in sorted(ranges, key=lambda r: r.start):
        if not r.length:
            continue
        if out and r.start <= out[-1].end:
            if r.end > out[-1].end:
                out[-1] = ByteRange(out[-1].start, r.end)
        else:
            out.append(r)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    url: str
    done_bytes: int
    size_bytes: int | None
    elapsed_s: float
    rate_bytes_per_s: float
    """Over the last few seconds, not since the start."""
    connections: int
    """Connections streaming right now."""
    segments: SegmentMap | None = None
    """Done ranges and connection positions; None while the size is unknown."""


@dataclass(frozen=True, slots=True)
class DownloadReceived:
    """Every byte is in the ``.part`` file and the network is done with it; what is left is
    local (the digest check, the sync, the rename), then DownloadFinished or DownloadFailed."""

    url: str
    size_bytes: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class DownloadFinished:
    url: str
    path: Path
    size_bytes: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class DownloadFailed:
    url: str
    error: BaseException
    elapsed_s: float


class NoticeKind(Enum):
    FALLBACK_SINGLE_STREAM = "fallback-single-stream"
    CONNECTION_RETRY = "connection-retry"
    RESUMED = "resumed"
    RESUME_DISCARDED = "resume-discarded"
    REMOTE_CHANGED = "remote-changed"
    URL_RENEWED = "url-renewed"
    CONNECTIONS_LOWERED = "connections-lowered"
    INSECURE = "insecure"
    SKIPPED = "skipped"
    VERIFIED = "verified"
    MIRROR_DROPPED = "mirror-dropped"
    HANDED_OVER = "handed-over"
    """A batch's lean path gave the file to the full path, which starts it again (with a
    DownloadStarted of its own): what a display showed of it so far is over."""


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a user may want to know that is not an error (a fallback, a retry)."""

    url: str
    kind: NoticeKind
    message: str


Event = (
    DownloadStarted
    | DownloadProgress
    | DownloadReceived
    | DownloadFinished
    | DownloadFailed
    | Notice
)


class ProgressListener(Protocol):
    def __call__(self, event: Event) -> None: ...


def silent(event: Event) -> None:
    """The default listener: the library says nothing unless asked."""
