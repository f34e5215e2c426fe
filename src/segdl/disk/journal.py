"""The journal of finished files: how a rerun of a batch knows what is already complete.

Each directory a batch writes into gets ``.segdl-journal``, one JSON line appended per file
segdl finished there: a SHA-256 of the URL (as the resume state keeps it), the file's name,
its size and its modification time in nanoseconds as they were just after the rename (and
after ``--remote-time`` set it). A rerun looks the URL up before any request:

- the entry's file is there with that size and mtime: **complete**, nothing is asked of any
  server (segdl renames a file into place only when it is complete and verified);
- the file is there but differs (replaced, edited, truncated): **changed**, left alone and
  reported, never overwritten unless asked (``--if-exists overwrite``);
- no entry, or no file: fetched as usual (a ``.part`` left behind resumes).

Size and mtime, not a digest: checking must cost a ``stat``, not a read of every file. A file
copied with its times (``cp -p``, ``rsync -a``) stays complete; one written anew does not.
The journal is not synced on every line: a power cut may lose the last lines, and those
files then count as not segdl's (reported, not clobbered). A line that does not parse (a
torn write) is ignored; the last line for a URL and name wins.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from enum import Enum
from json.encoder import encode_basestring_ascii
from pathlib import Path

from segdl.core.errors import LocalFileError, disk_refuses
from segdl.disk.paths import url_digest

JOURNAL_NAME = ".segdl-journal"
_VERSION = 1


@dataclass(frozen=True, slots=True)
class Entry:
    """One file segdl finished: where, how large, and when it was last written."""

    url_digest: str
    name: str
    size_bytes: int
    mtime_ns: int


class Completion(Enum):
    ABSENT = "absent"
    """No record, or the recorded file is gone: fetch it."""
    COMPLETE = "complete"
    """The file segdl finished is there, unchanged: nothing to do."""
    CHANGED = "changed"
    """A file is at the recorded name but is not the one segdl finished: leave it alone."""


@dataclass(frozen=True, slots=True)
class Found:
    completion: Completion
    path: Path | None = None


class Journals:
    """The journals of the directories of one batch, read once each; thread-safe."""

    def __init__(self, *, read: bool = True) -> None:
        """Without ``read`` the journals are only appended to: :meth:`check` finds nothing
        (for a caller that knows none of its files can be in them yet)."""
        self._read = read
        self._lock = threading.Lock()
        self._entries: dict[Path, dict[str, dict[str, Entry]]] = {}
        self._cwd: Path | None = None  # read once: Path.absolute() is a getcwd per call
        self._keys: dict[Path, Path] = {}  # each directory as given, made absolute once

    def check(self, url: str, directory: Path, name: str | None = None) -> Found:
        """Is the file of ``url`` in ``directory`` (as ``name``, if the job names it) one
        this tool finished? Costs a read of the journal the first time, then a ``stat``."""
        entries = self._load(directory)
        if not entries:  # a directory new to the batch: no digest of the URL to compute
            return Found(Completion.ABSENT)
        by_name = entries.get(url_digest(url), {})
        # One URL may be saved under several names (aria2's out=): the name decides; a job
        # named by the server takes the URL's latest file.
        entry = by_name.get(name) if name is not None else _latest(by_name)
        if entry is None:
            return Found(Completion.ABSENT)
        path = directory / entry.name
        try:
            info = path.lstat()
        except FileNotFoundError:
            return Found(Completion.ABSENT, path)
        if info.st_size == entry.size_bytes and info.st_mtime_ns == entry.mtime_ns:
            return Found(Completion.COMPLETE, path)
        return Found(Completion.CHANGED, path)

    def record(self, url: str, path: Path, info: os.stat_result | None = None) -> None:
        """``path`` was just finished for ``url``: append its line to its directory's journal.
        ``info``: the file's stat, when it is known before the file has its name (a batch's
        lean path records a file just before linking it, so that a crash between the two
        leaves an entry for a missing file, which counts as absent, never a file without one)."""
        self.record_many([(url, path, info or path.lstat())])

    def record_named(self, url: str, path: Path) -> None:
        """As :meth:`record`, for a file that has its name already (the full path's). If its
        line cannot be written because the disk refuses it (full, read-only), the file is
        removed and a LocalFileError raised: at its name without a line, a rerun would take
        it for a file that is not segdl's and refuse to touch it; removed, a rerun fetches
        it. Any other OSError is raised as it is (the file stays)."""
        try:
            self.record(url, path)
        except OSError as exc:
            if not disk_refuses(exc):
                raise
            with contextlib.suppress(OSError):
                path.unlink()
            why = os.strerror(exc.errno or 0)
            raise LocalFileError(exc.errno or 0, f"cannot record {path} in its journal: {why}",
                                 str(path)) from exc  # fmt: skip

    def record_many(
        self, files: list[tuple[str, Path, os.stat_result]], *, remember: bool = True
    ) -> None:
        """Append the lines of several files (url, path, stat) at once: one write per
        directory (a batch's lean path records its files a group at a time). Without
        ``remember`` the lines are only written, not kept for :meth:`check`: a batch that
        never asks about its own files again (the lean path: it knows the names it took)
        then holds nothing per file."""
        # Split as strings, not Paths: a batch of small files records every file here, on
        # the thread whose work is the serial part of it (segdl.disk.commit).
        by_directory: dict[str, list[Entry]] = {}
        for url, path, info in files:
            where, name = os.path.split(path)
            entry = Entry(url_digest(url), name, info.st_size, info.st_mtime_ns)
            by_directory.setdefault(where, []).append(entry)
        with self._lock:
            for where, entries in by_directory.items():
                lines = "".join([_line(entry) for entry in entries]).encode()
                # One write with O_APPEND: other writers' lines never interleave with these.
                flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(os.path.join(where, JOURNAL_NAME), flags, 0o666)
                try:
                    _append(fd, lines)
                finally:
                    os.close(fd)
                if remember:
                    known = self._load_locked(Path(where))
                    for entry in entries:
                        _add(known, entry)

    def _load(self, directory: Path) -> dict[str, dict[str, Entry]]:
        with self._lock:
            return self._load_locked(directory)

    def _load_locked(self, directory: Path) -> dict[str, dict[str, Entry]]:
        key = self._keys.get(directory)
        if key is None:
            if directory.is_absolute():
                key = directory
            else:
                if self._cwd is None:
                    self._cwd = Path.cwd()
                key = self._cwd / directory
            self._keys[directory] = key
        if key not in self._entries:
            self._entries[key] = read_journal(directory / JOURNAL_NAME) if self._read else {}
        return self._entries[key]


def _append(fd: int, lines: bytes) -> None:
    """``lines`` at the journal's end, on a line of their own: a line torn before them (a
    crash, a full disk) would otherwise swallow the first. A full disk takes part of them
    and refuses the rest: that raises (the torn part is skipped when read)."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        lines = b"\n" + lines
    view = memoryview(lines)
    while view:
        view = view[os.write(fd, view) :]


def _line(entry: Entry) -> str:
    """The entry's line, as ``json.dumps`` writes its record (a test holds them equal),
    with its end: only the name needs JSON's escaping (the digest is hex, the rest numbers)."""
    name = encode_basestring_ascii(entry.name)
    return (f'{{"v": {_VERSION}, "url_sha256": "{entry.url_digest}", "name": {name}, '
            f'"size": {entry.size_bytes}, "mtime_ns": {entry.mtime_ns}}}\n')  # fmt: skip


def _add(entries: dict[str, dict[str, Entry]], entry: Entry) -> None:
    by_name = entries.setdefault(entry.url_digest, {})
    by_name.pop(entry.name, None)  # re-inserted last: the latest file of its URL
    by_name[entry.name] = entry


def _latest(by_name: dict[str, Entry]) -> Entry | None:
    return next(reversed(by_name.values()), None)


def read_journal(path: Path) -> dict[str, dict[str, Entry]]:
    """The entries of one journal by URL digest, then name (the last line for a URL and a
    name wins); a missing journal is empty, a line that does not parse is skipped."""
    entries: dict[str, dict[str, Entry]] = {}
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            for raw in handle:
                entry = _parse(raw)
                if entry is not None:
                    _add(entries, entry)
    return entries


def _parse(raw: bytes) -> Entry | None:
    try:
        record = json.loads(raw)
        entry = Entry(
            str(record["url_sha256"]),
            str(record["name"]),
            int(record["size"]),
            int(record["mtime_ns"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
    if record.get("v") != _VERSION or "/" in entry.name or entry.name in ("", ".", ".."):
        return None  # a name is a plain name inside its directory, never a path
    return entry
