"""Frozen value types shared by the modules: byte ranges, what the first contact learned,
and the outcome of a download."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes [start, end) of the resource: half-open, like Python slices."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"invalid byte range [{self.start}, {self.end})")

    @property
    def length(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"[{self.start}, {self.end})"


@dataclass(frozen=True, slots=True)
class Validator:
    """What identifies one version of the remote file (RFC 9110 §8.8)."""

    etag: str | None = None
    last_modified: str | None = None

    @property
    def strong_etag(self) -> str | None:
        """The ETag if it is strong; weak ones (``W/"..."``) cannot guard byte ranges."""
        if self.etag is None or self.etag.startswith("W/"):
            return None
        return self.etag


@dataclass(frozen=True, slots=True)
class Resource:
    """What the first contact learned about the remote file."""

    url: str
    final_url: str
    size_bytes: int | None
    accepts_ranges: bool
    validator: Validator
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """A finished download."""

    url: str
    path: Path
    size_bytes: int
    elapsed_s: float
    connections_used: int
    ranged: bool
    """True when the file came over byte ranges; False for one plain stream."""
    skipped: bool = False
    """True when the file already existed and ``if_exists="skip"`` left it as it was."""
