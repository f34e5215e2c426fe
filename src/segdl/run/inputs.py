"""Input lists in aria2's format, read as a stream: the jobs of a batch, one entry at a time.

A line of TAB-separated URLs (mirrors of one file), then indented ``key=value`` lines for that
file; ``#`` comments and blank lines are ignored. A list may be gzip-compressed (recognised
by its magic bytes) or come from stdin; it is never held whole: :func:`read_entries` yields
each entry as soon as the line after it (or the end) is read, so a batch of a million lines
starts at once and holds only what it has in flight.

Two ways to meet a bad entry: :func:`parse_input_file` (a list held in memory, a shard)
raises at the first one, naming its line; :func:`read_jobs` (a streamed batch) yields a
:class:`BadEntry` in its place, so the batch reports that line and goes on.
"""

from __future__ import annotations

import io
import itertools
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from segdl.core.errors import UsageError
from segdl.core.options import parse_headers

_GZIP_MAGIC = b"\x1f\x8b"

# Per-item options an input file may set (aria2's names), and the download() keyword for each.
_ITEM_KEYS = {
    "out": "dest",
    "dir": "directory",
    "checksum": "checksum",
    "header": "headers",
    "connections": "connections",
    "split": "connections",
    "limit-rate": "limit_rate",
}


@dataclass(frozen=True, slots=True)
class Job:
    """One file to fetch: its URLs (the first, then mirrors of the same file) and options."""

    urls: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    """``dest`` and ``directory`` (where the file goes), and any option of
    :func:`segdl.download` for this file only (``checksum``, ``connections``, ``headers``...)."""
    line: int | None = field(default=None, compare=False)
    """The input line it was read from, for messages (None: not from an input list)."""

    @property
    def url(self) -> str:
        return self.urls[0]


@dataclass(frozen=True, slots=True)
class BadEntry:
    """An entry of a streamed input list that cannot be a download: its URLs (if any) and
    the error naming its line. A batch reports it as a failed item and goes on."""

    urls: tuple[str, ...]
    error: UsageError

    @property
    def url(self) -> str:
        return self.urls[0] if self.urls else "-"


@dataclass(slots=True)
class _Entry:
    """The lines of one entry: its URL line (None: options before any URL) and option lines."""

    line: int
    urls: tuple[str, ...] | None
    options: list[tuple[int, str]] = field(default_factory=list)


def open_list(source: str | os.PathLike[str]) -> IO[str]:
    """An input list opened for streaming: ``-`` is stdin, a gzip file is decompressed as
    it is read; a list that cannot be opened is a :class:`UsageError` naming it. Bytes that
    are not UTF-8 are kept as surrogates, so such a line fails as a URL on its own instead of
    ending the batch half-way."""
    if str(source) == "-":
        return sys.stdin
    path = Path(source)
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the returned wrapper
    except OSError as exc:
        raise UsageError(f"cannot read input list {path}: {exc.strerror or exc}") from exc
    if raw.peek(2)[:2] == _GZIP_MAGIC:
        import gzip  # only for a compressed list (start-up)

        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), "utf-8", "surrogateescape")
    return io.TextIOWrapper(raw, "utf-8", "surrogateescape")


def starts_file(line: str) -> bool:
    """Whether ``line`` (without its end of line) is the URL line of a new entry."""
    return bool(line.strip()) and line[0] not in " \t" and not line.lstrip().startswith("#")


def _entries(lines: Iterable[str], first_line: int) -> Iterator[_Entry]:
    entry: _Entry | None = None
    for number, raw in enumerate(lines, first_line):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t":
            if entry is None:
                entry = _Entry(number, None)
            entry.options.append((number, line))
            continue
        if entry is not None:
            yield entry
        entry = _Entry(number, tuple(u for u in line.strip().split("\t") if u))
    if entry is not None:
        yield entry


def _job(entry: _Entry) -> Job:
    """The job of one entry; a :class:`UsageError` naming the line of a bad option."""
    if entry.urls is None:
        raise UsageError(f"input line {entry.line}: an option before any URL")
    options: dict[str, Any] = {}
    for number, line in entry.options:
        key, sep, value = line.strip().partition("=")
        if not sep or key not in _ITEM_KEYS:
            known = ", ".join(sorted(_ITEM_KEYS))
            raise UsageError(f"input line {number}: unknown option {key!r} (known: {known})")
        _set_option(options, _ITEM_KEYS[key], value.strip(), number)
    return Job(entry.urls, options, line=entry.line)


def _set_option(options: dict[str, Any], name: str, value: str, number: int) -> None:
    if name == "headers":
        header = parse_headers([value], where=f"input line {number}: ")
        options["headers"] = {**options.get("headers", {}), **header}
    elif name == "connections":
        if not (value.isascii() and value.isdigit()):
            raise UsageError(f"input line {number}: connections must be a number")
        options["connections"] = int(value)
    else:
        options[name] = value


def parse_input_file(text: str, *, first_line: int = 1) -> list[Job]:
    """Every job of an input list held in memory; a bad entry raises :class:`UsageError`
    naming its line. ``first_line``: the number of the text's first line in messages (a
    piece of a longer list, see :mod:`segdl.run.shards`)."""
    return [_job(entry) for entry in _entries(text.splitlines(), first_line)]


class JobStream:
    """The jobs of a streamed input list (see :func:`read_jobs`), iterated once. ``may_wait``:
    reading it may block for long (a pipe, a terminal), so a batch reads it in a thread of
    its own rather than hold up the answers already arriving. ``first``: jobs that come
    before the list's (a command line's URLs); ``on_read(n)``: called as the n-th job is
    read (a display's count of the files so far)."""

    def __init__(
        self,
        lines: Iterable[str],
        *,
        may_wait: bool = False,
        first: Iterable[Job] = (),
        on_read: Callable[[int], None] | None = None,
    ) -> None:
        self._lines = lines
        self.may_wait = may_wait
        self._first = first
        self._on_read = on_read

    def __iter__(self) -> Iterator[Job | BadEntry]:
        jobs = itertools.chain(self._first, self._parsed())
        if self._on_read is None:
            yield from jobs
            return
        for number, job in enumerate(jobs, 1):
            self._on_read(number)
            yield job

    def _parsed(self) -> Iterator[Job | BadEntry]:
        for entry in _entries(self._lines, 1):
            try:
                yield _job(entry)
            except UsageError as exc:
                yield BadEntry(entry.urls or (), exc)


def read_jobs(
    lines: Iterable[str],
    *,
    may_wait: bool | None = None,
    first: Iterable[Job] = (),
    on_read: Callable[[int], None] | None = None,
) -> JobStream:
    """The jobs of a streamed input list, each as soon as it is read; a bad entry comes as
    a :class:`BadEntry` in its place (the batch reports its line and goes on). ``may_wait``
    (None: found out for an open file, False for other lines), ``first`` and ``on_read``:
    see :class:`JobStream`."""
    if may_wait is None:
        may_wait = _may_wait(lines)
    return JobStream(lines, may_wait=may_wait, first=first, on_read=on_read)


def _may_wait(lines: Iterable[str]) -> bool:
    """Whether reading ``lines`` may block: an open file that is not a regular one (stdin
    from a pipe or a terminal), or a compressed stream over one."""
    fileno = getattr(lines, "fileno", None)
    if fileno is None:
        return False
    try:
        return not stat.S_ISREG(os.fstat(fileno()).st_mode)
    except (OSError, ValueError):
        return True
