"""Many downloads: an input file in aria2's format, a bounded number at once, one report.

Every download of a batch shares one transport whose pools block at
``max_connections_per_host``, so the per-host cap holds across all of them (aria2#577), not
per file. A failed item never stops the others; the report says what happened to each.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from segdl.engine import download
from segdl.errors import SegdlError, UsageError, shown
from segdl.models import Result
from segdl.options import parse_size
from segdl.progress import DownloadReceived, Event, ProgressListener, silent
from segdl.ratelimit import TokenBucket
from segdl.transport import Urllib3Transport

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

    @property
    def url(self) -> str:
        return self.urls[0]


class Outcome(Enum):
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ItemReport:
    job: Job
    outcome: Outcome
    result: Result | None = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class BatchReport:
    items: tuple[ItemReport, ...]
    elapsed_s: float

    def count(self, outcome: Outcome) -> int:
        return sum(1 for item in self.items if item.outcome is outcome)

    @property
    def ok(self) -> bool:
        return self.count(Outcome.FAILED) == 0

    @property
    def bytes_done(self) -> int:
        return sum(i.result.size_bytes for i in self.items if i.result and not i.result.skipped)

    @property
    def failures(self) -> list[ItemReport]:
        return [item for item in self.items if item.outcome is Outcome.FAILED]


def parse_input_file(text: str) -> list[Job]:
    """aria2's input file: a line of TAB-separated URLs (mirrors of one file), then indented
    ``key=value`` lines for that file; ``#`` comments and blank lines are ignored."""
    jobs: list[Job] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t":
            if not jobs:
                raise UsageError(f"input line {number}: an option before any URL")
            key, sep, value = line.strip().partition("=")
            if not sep or key not in _ITEM_KEYS:
                known = ", ".join(sorted(_ITEM_KEYS))
                raise UsageError(f"input line {number}: unknown option {key!r} (known: {known})")
            options = dict(jobs[-1].options)
            _set_option(options, _ITEM_KEYS[key], value.strip(), number)
            jobs[-1] = Job(jobs[-1].urls, options)
            continue
        urls = tuple(u for u in line.strip().split("\t") if u)
        jobs.append(Job(urls))
    return jobs


def _set_option(options: dict[str, Any], name: str, value: str, number: int) -> None:
    if name == "headers":
        header, sep, content = value.partition(":")
        if not sep:
            raise UsageError(f"input line {number}: header {value!r} is not 'Name: value'")
        options["headers"] = {**options.get("headers", {}), header.strip(): content.strip()}
    elif name == "connections":
        if not (value.isascii() and value.isdigit()):
            raise UsageError(f"input line {number}: connections must be a number")
        options["connections"] = int(value)
    else:
        options[name] = value


class Downloader:
    """For programs that add work over time: ``submit()`` returns a future per file.

    All files share one transport (the per-host cap holds across them), one rate limit and
    ``parallel`` places on the network; a file gives its place to the next as soon as its
    bytes are in, while it is checked, synced and renamed. Use as a context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        *,
        parallel: int = 4,
        max_connections_per_host: int = 16,
        timeout_s: float = 30.0,
        cancel: threading.Event | None = None,
        **common: Any,
    ) -> None:
        if parallel < 1:
            raise UsageError("jobs must be at least 1")
        self.cancel = cancel or threading.Event()
        self._cap = max_connections_per_host
        self._timeout_s = timeout_s
        if common.get("limit_rate") is not None:  # one bucket for everything
            limit = common.pop("limit_rate")
            rate = parse_size(limit) if isinstance(limit, str) else limit
            common["rate_limiter"] = TokenBucket(rate)
        self._common = common
        self._transport = Urllib3Transport(
            max_connections_per_host=max_connections_per_host,
            timeout_s=timeout_s,
            block=True,  # the cap is shared by every download
            **_transport_options(common),
        )
        # `parallel` files on the network at once, and as many more finishing on disk (digest
        # check, sync, rename): the next file's request need not wait for the last one's sync.
        self._pool = cf.ThreadPoolExecutor(2 * parallel, thread_name_prefix="segdl-job")
        self._network = threading.BoundedSemaphore(parallel)

    def submit(
        self, job: Job | str, on_done: Callable[[ItemReport], None] | None = None
    ) -> cf.Future[ItemReport]:
        """Queue one file; ``on_done(ItemReport)`` runs (in a worker thread) when it ends."""
        item = job if isinstance(job, Job) else Job((job,))

        def run() -> ItemReport:
            slot = _NetworkSlot(self._network)
            try:
                report = _run_one(
                    item, self._common, self._transport, self._timeout_s, self._cap, self.cancel,
                    slot,
                )  # fmt: skip
            finally:
                slot.give_back()
            if on_done is not None:
                on_done(report)
            return report

        return self._pool.submit(run)

    def close(self, *, cancel: bool = False) -> None:
        """Wait for queued files (or stop them, resumably, with ``cancel``), then clean up."""
        if cancel:
            self.cancel.set()
        self._pool.shutdown(wait=True)
        self._transport.close()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(cancel=exc_info[0] is not None)


def download_many(
    jobs: Iterable[Job | str],
    *,
    parallel: int = 4,
    on_item: Callable[[ItemReport], None] | None = None,
    **options: Any,
) -> BatchReport:
    """Download every job, ``parallel`` at a time; never raises for a failed item.

    Other keywords are :class:`Downloader`'s (``max_connections_per_host``, ``timeout_s``,
    ``cancel``) and :func:`segdl.download`'s, which every file gets (its own options win).
    ``on_item(ItemReport)`` is called as each item ends, from a worker thread.
    """
    started = time.monotonic()
    with Downloader(parallel=parallel, **options) as downloader:
        futures = [downloader.submit(job, on_item) for job in jobs]
        reports = [future.result() for future in futures]
    return BatchReport(tuple(reports), time.monotonic() - started)


def _run_one(
    job: Job,
    common: Mapping[str, Any],
    transport: Urllib3Transport,
    timeout_s: float,
    cap: int,
    cancel: threading.Event,
    slot: _NetworkSlot,
) -> ItemReport:
    """Fetch the file from its first URL with the others as mirrors (ranges spread over all,
    a failing mirror dropped); if the first URL itself fails, the next one leads."""
    options = {**common, **job.options}
    options["progress"] = slot.listener(options.get("progress") or silent)
    if options.get("dest") is not None and options.get("directory") is not None:
        # aria2: `out` is relative to `dir`
        options["dest"] = Path(options.pop("directory")) / options["dest"]
    options.setdefault("preconnect", False)  # the batch's pool keeps connections warm
    error: BaseException | None = None
    for number, url in enumerate(job.urls):
        slot.take()
        if cancel.is_set():
            break
        try:
            result = download(
                url,
                mirrors=job.urls[number + 1 :],
                transport=transport,
                timeout_s=timeout_s,
                max_connections_per_host=cap,
                cancel=cancel,
                **options,
            )
        except SegdlError as exc:
            error = exc
            continue
        outcome = Outcome.SKIPPED if result.skipped else Outcome.DONE
        return ItemReport(job, outcome, result)
    return ItemReport(job, Outcome.FAILED, error=error or SegdlError("cancelled"))


class _NetworkSlot:
    """One of a batch's ``parallel`` places on the network, held by one file from its first
    request until its bytes are all in (DownloadReceived), not until its sync and rename are
    over. Taken and given back from the thread running that file."""

    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        self._slots = slots
        self._held = False

    def take(self) -> None:
        """Wait for a place (every holder gives its place back when its file ends, so a
        cancelled batch still gets through its queue)."""
        if not self._held:
            self._slots.acquire()
            self._held = True

    def give_back(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()

    def listener(self, inner: ProgressListener) -> ProgressListener:
        def listen(event: Event) -> None:
            if isinstance(event, DownloadReceived):
                self.give_back()
            inner(event)

        return listen


def _transport_options(common: Mapping[str, Any]) -> dict[str, Any]:
    names = ("ca_bundle", "insecure", "proxy", "use_proxy_env")
    return {name: common[name] for name in names if name in common}


def summary_lines(report: BatchReport) -> Sequence[str]:
    """The end-of-batch report: counts, bytes, time, then one line per failure."""
    lines = [
        f"{report.count(Outcome.DONE)} done, {report.count(Outcome.SKIPPED)} skipped, "
        f"{report.count(Outcome.FAILED)} failed; {report.bytes_done} bytes in "
        f"{report.elapsed_s:.2f} s"
    ]
    for item in report.failures:
        lines.append(f"failed: {shown(item.job.url)}: {item.error}")
    return lines
