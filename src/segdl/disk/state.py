"""Resume state: which bytes of ``<output>.part`` are durable, and of which remote file.

``<output>.segdl-state`` is JSON with a SHA-256 of its payload, written to a temporary file,
synced and renamed into place, and decoded strictly: anything doubtful is
:class:`StateInvalid`, and the caller starts over rather than trust it. URLs are kept as a
digest (to match) and with userinfo, query and fragment removed (to show), so a signed URL's
token or a password never reaches the disk.

The owner lock is :mod:`segdl.disk.lock`'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segdl.core.errors import StateInvalid, shown
from segdl.core.models import ByteRange
from segdl.disk.lock import (
    CREATE_FLAGS,
    NotRegularFile,
    read_regular_file,
    write_all,
)
from segdl.disk.paths import url_digest
from segdl.disk.storage import local_error, sync_directory, temp_sibling

__all__ = [
    "MAX_STATE_BYTES",
    "DownloadState",
    "decode_state",
    "encode_state",
    "load_state",
    "merge_ranges",
    "redact_url",
    "remove_state",
    "save_state",
    "url_digest",
]

FORMAT = "segdl-state"
VERSION = 1
MAX_STATE_BYTES = 1024 * 1024
_MAX_OFFSET = 2**63 - 1  # off_t
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PAYLOAD_KEYS = frozenset(
    {
        "url_digest",
        "url_display",
        "final_url_display",
        "size_bytes",
        "etag",
        "last_modified",
        "done",
        "checksum",
        "complete",
        "owner",
    }
)


def redact_url(url: str) -> str:
    """The URL without userinfo, query and fragment (idempotent); for display only."""
    return shown(url, query=False)


def merge_ranges(ranges: Iterable[ByteRange]) -> tuple[ByteRange, ...]:
    """Sorted, disjoint, non-empty ranges covering the same bytes; adjacent ones joined."""
    merged: list[ByteRange] = []
    for r in sorted((r for r in ranges if r.length), key=lambda r: (r.start, r.end)):
        if merged and r.start <= merged[-1].end:
            if r.end > merged[-1].end:
                merged[-1] = ByteRange(merged[-1].start, r.end)
        else:
            merged.append(r)
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class DownloadState:
    """What is durable in the ``.part`` file, and which remote file it came from.

    Construction checks every invariant (ValueError), so no invalid state can be encoded."""

    url_digest: str
    url_display: str
    final_url_display: str
    size_bytes: int
    etag: str | None
    """Strong ETag only: a weak one cannot guard byte ranges (RFC 9110 §13.1.5)."""
    last_modified: str | None
    done: tuple[ByteRange, ...]
    """Durable ranges: sorted, disjoint, non-empty, never adjacent, within [0, size)."""
    checksum: str | None = None
    complete: bool = False
    """Every byte is durable; the next step was the rename to the final name."""
    owner: str = ""

    def __post_init__(self) -> None:
        if not _HEX64.fullmatch(self.url_digest):
            raise ValueError("url_digest is not a SHA-256 hex digest")
        for url in (self.url_display, self.final_url_display):
            if redact_url(url) != url:
                raise ValueError("display URL is not redacted")
        if not 0 <= self.size_bytes <= _MAX_OFFSET:
            raise ValueError(f"size {self.size_bytes} out of range")
        if self.etag is not None and self.etag.startswith("W/"):
            raise ValueError("weak ETag")
        previous_end = -1
        for r in self.done:
            if not r.length:
                raise ValueError(f"empty done range {r}")
            if r.start <= previous_end:  # equal: adjacent ranges must have been merged
                raise ValueError(f"done range {r} overlaps, touches or precedes the one before")
            if r.end > self.size_bytes:
                raise ValueError(f"done range {r} beyond size {self.size_bytes}")
            previous_end = r.end
        if self.complete and self.missing():
            raise ValueError("marked complete with bytes missing")

    @property
    def done_bytes(self) -> int:
        return sum(r.length for r in self.done)

    def missing(self) -> list[ByteRange]:
        """The exact complement of ``done`` within [0, size)."""
        gaps: list[ByteRange] = []
        cursor = 0
        for r in self.done:
            if r.start > cursor:
                gaps.append(ByteRange(cursor, r.start))
            cursor = r.end
        if cursor < self.size_bytes:
            gaps.append(ByteRange(cursor, self.size_bytes))
        return gaps


def _canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _payload_sha256(payload: object) -> str:
    return hashlib.sha256(_canonical(payload).encode("ascii")).hexdigest()


def encode_state(state: DownloadState) -> bytes:
    """The state file's bytes: deterministic, ASCII, one line."""
    payload = {
        "url_digest": state.url_digest,
        "url_display": state.url_display,
        "final_url_display": state.final_url_display,
        "size_bytes": state.size_bytes,
        "etag": state.etag,
        "last_modified": state.last_modified,
        "done": [[r.start, r.end] for r in state.done],
        "checksum": state.checksum,
        "complete": state.complete,
        "owner": state.owner,
    }
    doc = {"format": FORMAT, "version": VERSION, "payload": payload}
    doc["sha256"] = _payload_sha256(payload)
    return (_canonical(doc) + "\n").encode("ascii")


def decode_state(data: bytes, path: str = "<state>") -> DownloadState:
    """Parse a state file strictly; anything but an exact encoding raises StateInvalid."""
    try:
        return _decode(data)
    except RecursionError:
        raise StateInvalid(path, "nested too deeply") from None
    except ValueError as exc:
        raise StateInvalid(path, str(exc)) from None


def _decode(data: bytes) -> DownloadState:
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("not a segdl state file")
    if not _is_int(doc.get("version")) or doc["version"] != VERSION:
        raise ValueError(f"unsupported version {doc.get('version')!r}")
    if set(doc) != {"format", "version", "payload", "sha256"}:
        raise ValueError("unexpected top-level fields")
    payload = doc["payload"]
    if not isinstance(payload, dict):
        raise ValueError("payload is not an object")
    if doc["sha256"] != _payload_sha256(payload):
        raise ValueError("checksum mismatch")
    if set(payload) != _PAYLOAD_KEYS:
        raise ValueError(f"fields {sorted(set(payload) ^ _PAYLOAD_KEYS)} missing or unexpected")
    done = payload["done"]
    if not isinstance(done, list) or not all(_is_pair(r) for r in done):
        raise ValueError("done is not a list of [start, end] integer pairs")
    state = DownloadState(
        url_digest=_typed(payload, "url_digest", str),
        url_display=_typed(payload, "url_display", str),
        final_url_display=_typed(payload, "final_url_display", str),
        size_bytes=_typed(payload, "size_bytes", int),
        etag=_typed(payload, "etag", str, optional=True),
        last_modified=_typed(payload, "last_modified", str, optional=True),
        done=tuple(ByteRange(start, end) for start, end in done),
        checksum=_typed(payload, "checksum", str, optional=True),
        complete=_typed(payload, "complete", bool),
        owner=_typed(payload, "owner", str),
    )
    # Only our own exact bytes are accepted, so every edit is caught, even outside the payload.
    if encode_state(state) != data:
        raise ValueError("not in canonical form")
    return state


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({key for key, _ in pairs}) != len(pairs):
        raise ValueError("duplicate key")
    return dict(pairs)


def _is_int(value: object) -> bool:
    return type(value) is int  # not isinstance: True and False are ints too


def _is_pair(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)


def _typed(payload: dict[str, Any], name: str, kind: type, *, optional: bool = False) -> Any:
    value = payload[name]
    if (value is None and optional) or type(value) is kind:
        return value
    raise ValueError(f"{name} is not {kind.__name__}{' or null' if optional else ''}")


def save_state(
    path: Path, state: DownloadState, *, replace: Callable[[Path, Path], None] = os.replace
) -> None:
    """Write the state atomically and durably: temp file, fsync, rename, fsync directory.

    ``replace`` is the rename step, injectable so tests can make it fail."""
    data = encode_state(state)
    temp = temp_sibling(path)
    try:
        fd = os.open(temp, CREATE_FLAGS, 0o600)
    except OSError as exc:
        raise local_error(exc, "cannot create", temp) from exc
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)  # durable before claimed: the rename must not expose unwritten bytes
        finally:
            os.close(fd)
        replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise local_error(exc, "cannot save state", path) from exc
        raise
    sync_directory(path.parent)


def load_state(path: Path) -> DownloadState | None:
    """The saved state, or None if there is none; StateInvalid if it cannot be trusted."""
    try:
        got = read_regular_file(path, MAX_STATE_BYTES)
    except NotRegularFile as exc:
        raise StateInvalid(str(path), str(exc)) from None
    except OSError as exc:
        raise local_error(exc, "cannot read", path) from exc
    if got is None:
        return None
    if len(got[0]) > MAX_STATE_BYTES:
        raise StateInvalid(str(path), "larger than 1 MiB")
    return decode_state(got[0], str(path))


def remove_state(path: Path) -> None:
    """Delete the state file, durably; a missing one is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise local_error(exc, "cannot remove", path) from exc
    sync_directory(path.parent)
