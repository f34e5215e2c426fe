"""Shards: a long input list cut into pieces of N files, each downloaded idempotently.

For runs too large for one process (millions of URLs over many machines, as img2dataset and
datatrove do on Spark, Ray or Slurm), the input is streamed, never loaded whole, into
:class:`Shard` values whose ids are stable: the same input cut the same way gives the same
ids, and an id also carries a digest of the shard's lines, so an edited input never passes
for a finished one.

:func:`download_shard` can be run again after any crash, on any machine that sees ``dest``:
files already at their final name are skipped (segdl renames a file into place only once it
is complete and verified), partial ones resume from their state file, and at the end a
completion marker ``dest/.segdl-shards/<id>.json`` with the shard's figures is written
atomically (temporary file, fsync, rename). A shard whose marker says every file is in is
not touched again: not one request.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segdl.core.errors import Cancelled, HTTPStatusError, LocalFileError, UsageError, shown
from segdl.run.batch import download_many
from segdl.run.inputs import Job, open_list, parse_input_file, starts_file
from segdl.run.reports import ItemReport, Outcome

MARKER_DIR = ".segdl-shards"
_MARKER_VERSION = 1
# Failures kept in a marker, one line each: enough to say what went wrong without letting
# a shard of a dead host grow a marker of thousands of lines.
_FAILURES_KEPT = 100


@dataclass(frozen=True, slots=True)
class Shard:
    """Files ``index * size`` onwards of an input list, with an id stable across runs."""

    index: int
    id: str
    jobs: tuple[Job, ...]


@dataclass(frozen=True, slots=True)
class Failure:
    url: str
    """Shown without credentials or query values."""
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class ShardReport:
    """What one run of a shard did: files done (fetched now), skipped (already complete),
    failed by kind of error, body bytes fetched and seconds taken."""

    shard_id: str
    items: int
    done: int = 0
    skipped: int = 0
    failed: Mapping[str, int] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0
    failures: tuple[Failure, ...] = ()
    from_marker: bool = False
    """The marker said the shard was complete: nothing was asked of any server."""

    @property
    def failed_count(self) -> int:
        return sum(self.failed.values())

    @property
    def complete(self) -> bool:
        return self.failed_count == 0 and self.done + self.skipped == self.items

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _MARKER_VERSION,
            "shard": self.shard_id,
            "items": self.items,
            "done": self.done,
            "skipped": self.skipped,
            "failed": dict(self.failed),
            "bytes": self.bytes,
            "seconds": self.seconds,
            "failures": [[f.url, f.kind, f.message] for f in self.failures],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ShardReport:
        """The report a marker holds; ValueError if it is not one of ours."""
        if not isinstance(doc, Mapping) or doc.get("version") != _MARKER_VERSION:
            raise ValueError("unknown marker version")
        failed = doc["failed"]
        counts = [doc[k] for k in ("items", "done", "skipped", "bytes")]
        if not (isinstance(failed, dict) and all(_count(v) for v in [*counts, *failed.values()])):
            raise ValueError("marker counts are not counts")
        return cls(
            shard_id=str(doc["shard"]),
            items=doc["items"],
            done=doc["done"],
            skipped=doc["skipped"],
            failed={str(k): v for k, v in failed.items()},
            bytes=doc["bytes"],
            seconds=float(doc["seconds"]),
            failures=tuple(Failure(*map(str, f)) for f in doc.get("failures", [])),
        )


def _count(value: object) -> bool:
    return type(value) is int and value >= 0


@dataclass(frozen=True, slots=True)
class Totals:
    """The sum of shard reports: what a whole run did."""

    shards: int = 0
    items: int = 0
    done: int = 0
    skipped: int = 0
    failed: Mapping[str, int] = field(default_factory=dict)
    bytes: int = 0
    failures: tuple[Failure, ...] = ()

    @property
    def failed_count(self) -> int:
        return sum(self.failed.values())

    @classmethod
    def of(cls, reports: Iterable[ShardReport]) -> Totals:
        failed: Counter[str] = Counter()
        shards = items = done = skipped = size = 0
        failures: list[Failure] = []
        for report in reports:
            shards += 1
            items += report.items
            done += report.done
            skipped += report.skipped
            size += report.bytes
            failed.update(report.failed)
            failures.extend(report.failures)
        return cls(shards, items, done, skipped, dict(failed), size, tuple(failures))


def iter_shards(
    source: str | os.PathLike[str] | Iterable[str], size: int = 1000
) -> Iterator[Shard]:
    """Cut an input list into shards of ``size`` files, streaming it.

    ``source``: a path (aria2's input format or a URL per line; gzip-compressed or not;
    read by :func:`segdl.run.inputs.open_list`) or lines already open (``sys.stdin``). A
    file's indented option lines stay with it.
    """
    if size < 1:
        raise UsageError("a shard holds at least one file")
    if isinstance(source, (str, os.PathLike)):
        with open_list(source) as handle:
            yield from _cut(handle, size)
    else:
        yield from _cut(source, size)


def count_files(source: str | os.PathLike[str]) -> int:
    """How many files an input list names (one pass, nothing kept): for progress and ETA."""
    with open_list(source) as handle:
        return sum(1 for line in handle if starts_file(line.rstrip("\r\n")))


def _cut(lines: Iterable[str], size: int) -> Iterator[Shard]:
    index = 0
    pending: list[str] = []  # this shard's lines, comments and options included
    first_line = 1  # the input line number of pending[0], for error messages
    files = 0
    number = 0
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        starts = starts_file(line)
        if starts and files == size:
            yield _shard(index, pending, first_line)
            index += 1
            pending, first_line, files = [], number, 0
        pending.append(line)
        files += starts
    if files:
        yield _shard(index, pending, first_line)


def _shard(index: int, lines: list[str], first_line: int) -> Shard:
    text = "\n".join(lines)
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    jobs = tuple(parse_input_file(text, first_line=first_line))
    return Shard(index, f"{index:06d}-{digest}", jobs)


def marker_path(dest: str | os.PathLike[str], shard_id: str) -> Path:
    return Path(dest) / MARKER_DIR / f"{shard_id}.json"


def read_marker(dest: str | os.PathLike[str], shard: Shard) -> ShardReport | None:
    """The report a finished earlier run left for ``shard``; None if there is none (or it is
    damaged, or for another cut of the input)."""
    try:
        doc = json.loads(marker_path(dest, shard.id).read_bytes())
        report = ShardReport.from_json(doc)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if report.shard_id != shard.id or report.items != len(shard.jobs):
        return None
    return report


def write_marker(dest: str | os.PathLike[str], report: ShardReport) -> Path:
    """Write the marker atomically: readers see the old one or the whole new one, never a
    part, even after a crash (temporary file, fsync, rename, directory fsync)."""
    path = marker_path(dest, report.shard_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    data = json.dumps(report.to_json(), indent=1).encode() + b"\n"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def failure_kind(error: BaseException | None) -> str:
    """A short class for counting failures: ``http 404``, ``ConnectError``, ..."""
    if isinstance(error, HTTPStatusError):
        return f"http {error.status}"
    return type(error).__name__ if error is not None else "unknown"


def download_shard(
    shard: Shard,
    dest: str | os.PathLike[str],
    options: Mapping[str, Any] | None = None,
    *,
    on_item: Callable[[ItemReport], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ShardReport:
    """Download the files of ``shard`` into ``dest``; safe to run again, anywhere, any time.

    ``options``: keywords of :func:`segdl.download_many` (``parallel``,
    ``max_connections_per_host``, ``timeout_s``, ...). Never raises for a failed file: the
    report counts it by kind, and the shard stays incomplete, so a rerun tries it again.
    """
    earlier = read_marker(dest, shard)
    if earlier is not None and earlier.complete:
        return ShardReport(shard.id, len(shard.jobs), skipped=len(shard.jobs), from_marker=True)
    started = clock()
    base = Path(dest)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalFileError(str(base), f"cannot create {base}: {exc.strerror or exc}") from exc
    settings = {**(options or {}), "directory": base, "if_exists": "skip"}
    batch = download_many([_inside(job, base) for job in shard.jobs], on_item=on_item, **settings)
    report = _report(shard, batch.items, clock() - started, batch.stopped_by)
    write_marker(dest, report)
    return report


def _inside(job: Job, base: Path) -> Job:
    """A relative ``dir`` in the input is relative to ``dest``, not to a worker's cwd (and
    created, as ``dest`` is: a worker on another machine cannot be asked to)."""
    directory = job.options.get("directory")
    if directory is None or Path(directory).is_absolute():
        return job
    inside = base / directory
    with contextlib.suppress(OSError):  # if it cannot be made, that file fails and says why
        inside.mkdir(parents=True, exist_ok=True)
    return Job(job.urls, {**job.options, "directory": inside})


def _report(shard: Shard, items: Iterable[ItemReport], seconds: float,
            stopped_by: BaseException | None = None) -> ShardReport:  # fmt: skip
    """The shard's counts; the files a full (or read-only) disk stopped count as its kind of
    failure, not as interrupted (which a cluster would report as a Ctrl-C)."""
    failed: Counter[str] = Counter()
    failures: list[Failure] = []
    done = skipped = size = 0
    for item in items:
        if item.outcome is Outcome.FAILED:
            error = item.error
            message = str(error)
            if stopped_by is not None and isinstance(error, Cancelled):
                error, message = stopped_by, f"not fetched: {stopped_by}"
            kind = failure_kind(error)
            failed[kind] += 1
            if len(failures) < _FAILURES_KEPT:
                failures.append(Failure(shown(item.job.url), kind, message))
        elif item.outcome is Outcome.SKIPPED:
            skipped += 1
        else:
            done += 1
            size += item.result.size_bytes if item.result is not None else 0
    return ShardReport(
        shard.id, len(shard.jobs), done, skipped, dict(failed), size, seconds, tuple(failures)
    )
