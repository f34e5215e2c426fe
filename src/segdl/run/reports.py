"""What a batch says about its files: one report per item, and the batch's in the end.

A batch of a list (a sequence) keeps every item's report, in the list's order. A batch fed
lazily (an input file of a million lines, a generator) keeps counts of all and the reports of
at most :data:`FAILURES_KEPT` failed items, as aria2 keeps at most
``--max-download-result`` results: what it holds does not grow with the list.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from segdl.core.errors import Cancelled, disk_refuses
from segdl.core.models import Result
from segdl.run.inputs import BadEntry, Job

FAILURES_KEPT = 1000


class Outcome(Enum):
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ItemReport:
    job: Job | BadEntry
    outcome: Outcome
    result: Result | None = None
    error: BaseException | None = None
    complete_before: bool = False
    """SKIPPED because an earlier run finished this very file (see :mod:`segdl.disk.journal`):
    nothing was asked of any server."""


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts over every item of a batch, kept or not."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    already_complete: int = 0
    bytes_done: int = 0
    interrupted: int = 0
    """FAILED items a stop (Ctrl-C, ``cancel``) left unfinished: counted in :attr:`failed` too."""

    def count(self, outcome: Outcome) -> int:
        return {Outcome.DONE: self.done, Outcome.SKIPPED: self.skipped}.get(outcome, self.failed)


@dataclass(frozen=True, slots=True)
class BatchReport:
    items: tuple[ItemReport, ...]
    """Every item's report in order; for a batch fed lazily, only failed ones (at most
    :data:`FAILURES_KEPT`; :attr:`tally` counts them all)."""
    elapsed_s: float
    tally: Tally | None = None
    """The counts of every item (None: computed from :attr:`items`, which holds all)."""
    stopped_by: BaseException | None = None
    """The error that stopped the batch early: a disk that takes no more files (see
    :class:`Collector`)."""

    def _tally(self) -> Tally:
        return self.tally if self.tally is not None else _count(self.items)

    def count(self, outcome: Outcome) -> int:
        return self._tally().count(outcome)

    @property
    def already_complete(self) -> int:
        """Items an earlier run had finished (counted in SKIPPED too)."""
        return self._tally().already_complete

    @property
    def interrupted(self) -> int:
        """Items a stop left unfinished (counted in FAILED too): the same batch run again
        fetches them."""
        return self._tally().interrupted

    @property
    def ok(self) -> bool:
        return self.count(Outcome.FAILED) == 0

    @property
    def bytes_done(self) -> int:
        return self._tally().bytes_done

    @property
    def failures(self) -> list[ItemReport]:
        """The failed items' reports (for a batch fed lazily: the first kept)."""
        return [item for item in self.items if item.outcome is Outcome.FAILED]


def _count(items: tuple[ItemReport, ...]) -> Tally:
    collector = Collector(keep_all=False)
    for item in items:
        collector.add_counts(item)
    return collector.tally()


@dataclass(eq=False)
class Collector:
    """Reports arriving from several threads, by the item's number in the batch.
    ``on_disk_refused()`` runs once, at the first item that failed because its file system
    takes no more files (full, or read-only: :func:`~segdl.core.errors.disk_refuses`): a
    batch stops there, as wget does, rather than try every file left only to fail each
    alike."""

    keep_all: bool
    on_item: Callable[[ItemReport], None] | None = None
    on_disk_refused: Callable[[], None] | None = None
    stopped_by: BaseException | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _kept: dict[int, ItemReport] = field(default_factory=dict)
    _counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0, 0])

    def add(self, index: int, report: ItemReport) -> None:
        refused = report.outcome is Outcome.FAILED and disk_refuses(report.error)
        with self._lock:
            refused = refused and self.stopped_by is None  # the first one stops the batch
            if refused:
                self.stopped_by = report.error
            self.add_counts(report)
            # A stop leaves a window's worth unfinished: in a batch fed lazily they are
            # counted, not kept, so they cannot crowd out the failures that say something.
            failed = report.outcome is Outcome.FAILED and not isinstance(report.error, Cancelled)
            if self.keep_all or (failed and len(self._kept) < FAILURES_KEPT):
                self._kept[index] = report
        if refused and self.on_disk_refused is not None:
            self.on_disk_refused()
        if self.on_item is not None:
            self.on_item(report)

    def add_counts(self, report: ItemReport) -> None:
        counts = self._counts
        counts[("done", "skipped", "failed").index(report.outcome.value)] += 1
        counts[3] += report.complete_before
        counts[5] += isinstance(report.error, Cancelled) and report.outcome is Outcome.FAILED
        result = report.result
        if result is not None and not result.skipped:
            counts[4] += result.size_bytes

    def unfinished(self, jobs: Iterable[tuple[int, Job | BadEntry]]) -> None:
        """The items a stop left unstarted, each by its number, failed as interrupted (unless
        it has a report: a batch of a list keeps all of them)."""
        for index, job in jobs:
            with self._lock:
                if index in self._kept:
                    continue
            self.add(index, ItemReport(job, Outcome.FAILED, error=Cancelled("interrupted")))

    def tally(self) -> Tally:
        return Tally(*self._counts)

    def report(self, elapsed_s: float) -> BatchReport:
        with self._lock:
            items = tuple(self._kept[index] for index in sorted(self._kept))
            tally = None if self.keep_all else self.tally()
            return BatchReport(items, elapsed_s, tally, self.stopped_by)
