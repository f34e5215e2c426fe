"""``segdl.cluster.run``: a batch's shards as Ray tasks, one report that is their exact sum.

The driver streams the input into shards, skips those whose completion marker says they are
done (no task, no request), and keeps a bounded number of shard tasks in flight, so a list
of millions of lines never sits whole in memory or in Ray's queue. A task lost with its
node is retried by Ray elsewhere (``max_retries``); the retry finds the files its
predecessor finished and skips them, resumes the partial ones, and its report replaces the
lost attempt's figures, so nothing is counted twice. A shard whose every attempt was lost
is counted failed (kind ``lost``), never silently dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import ray

from segdl.cluster.actor import Counts, RayLeases, start_book
from segdl.cluster.gate import LeasedGate
from segdl.cluster.locks import dead_hosts, directories_of, take_over
from segdl.cluster.report import RunProgress, RunReport
from segdl.cluster.shardplan import run_batch, shard_batch
from segdl.core.errors import UsageError
from segdl.core.options import DownloadOptions, with_overrides
from segdl.core.progress import DownloadProgress, Event
from segdl.run.batch import ItemReport, Outcome
from segdl.run.shards import (
    Failure,
    Shard,
    ShardReport,
    Totals,
    count_files,
    download_shard,
    iter_shards,
    read_marker,
)

log = logging.getLogger(__name__)

_TICK_S = 0.5
# A worker's heartbeat (its gate's long poll, carrying its shard's figures): a call a second
# per worker to the one actor, which bounds the cluster's size (see bench/README.md).
_BEAT_S = 1.0
_NODES_EVERY_S = 2.0


def run(
    source: str | os.PathLike[str] | Iterable[str],
    dest: str | os.PathLike[str],
    *,
    address: str | None = None,
    shard_size: int = 1000,
    parallel: int = 4,
    options: DownloadOptions | None = None,
    pipelining: bool = True,
    rate_per_host: float | None = None,
    lease_ttl_s: float = 30.0,
    max_retries: int = 3,
    task_cpus: float = 1.0,
    in_flight: int | None = None,
    on_progress: Callable[[RunProgress], None] | None = None,
    cancel: threading.Event | None = None,
    **overrides: object,
) -> RunReport:
    """Download every file of ``source`` into ``dest`` on a Ray cluster.

    ``address``: ``"auto"`` (or ``host:port``, ``ray://...``) joins an existing cluster;
    None starts a local Ray for the run (or uses the one this process already started).
    ``max_connections_per_host`` (an option) is the cap over the whole cluster; with
    ``rate_per_host`` requests per second per host are capped too. Each shard of
    ``shard_size`` files runs as a task taking ``task_cpus`` CPUs, ``parallel`` files at a
    time; at most ``in_flight`` tasks are queued at once (default: twice the cluster's
    CPUs over ``task_cpus``). ``on_progress`` is called from this thread twice a second.
    """
    settings = with_overrides(options, overrides)
    started = time.monotonic()
    files = _count(source)
    with _ray_session(address):
        book = start_book(
            settings.max_connections_per_host,
            ttl_s=lease_ttl_s,
            max_pause_s=settings.max_retry_after_s,
            rate_per_s=rate_per_host,
        )
        context = _Context(
            task=ray.remote(_run_shard).options(
                num_cpus=task_cpus, max_retries=max_retries, retry_exceptions=False
            ),
            dest=os.fspath(dest),
            batch=run_batch(dest, parallel, pipelining),
            options=_fields(settings),
            book=book,
            rate_limited=rate_per_host is not None,
            window=in_flight or _window(task_cpus),
            files=files,
            started=started,
            on_progress=on_progress,
            cancel=cancel or threading.Event(),
        )
        reports, from_markers, lost = context.drive(iter_shards(source, shard_size))
        last = ray.get(book.snapshot.remote())
        ray.kill(book)
    totals, wall_s = Totals.of(reports), time.monotonic() - started
    return RunReport(totals, wall_s, from_markers, lost, last["granted"], tuple(last["nodes"]))


def _count(source: str | os.PathLike[str] | Iterable[str]) -> int | None:
    """The files of a list on disk (read once more, streamed); None for other sources."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    files = count_files(source)
    if files == 0:
        raise UsageError(f"no URL in {os.fspath(source)}")
    return files


def _window(task_cpus: float) -> int:
    """Shard tasks queued at once: two per task the cluster can run now."""
    resources = cast(Callable[[], dict[str, float]], ray.cluster_resources)()
    cpus = resources.get("CPU", 1)
    return max(2, int(2 * cpus / task_cpus))


def _ray_nodes() -> list[dict[str, Any]]:
    """Ray's table of nodes (ray.nodes is untyped)."""
    return cast(Callable[[], list[dict[str, Any]]], ray.nodes)()


@contextlib.contextmanager
def _ray_session(address: str | None) -> Iterator[None]:
    """Ray for the run: the session this process has, else one joined or started now (and
    shut down after)."""
    if ray.is_initialized():
        yield
        return
    ray.init(
        address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
    )
    try:
        yield
    finally:
        ray.shutdown()


def _fields(options: DownloadOptions) -> dict[str, object]:
    """The options as plain values a task can carry (the options object holds a read-only
    mapping, which does not pickle)."""
    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    values["headers"] = dict(options.headers)
    return values


@dataclass
class _Context:
    task: Any
    dest: str
    batch: Mapping[str, object]
    options: Mapping[str, object]
    book: Any
    rate_limited: bool
    window: int
    files: int | None
    started: float
    on_progress: Callable[[RunProgress], None] | None
    cancel: threading.Event

    def drive(self, shards: Iterator[Shard]) -> tuple[list[ShardReport], int, int]:
        """Submit every shard not yet complete, collect every report."""
        pending: dict[Any, Shard] = {}
        finished: dict[str, ShardReport] = {}
        from_markers = lost = 0
        self._nodes, self._nodes_at = 0, 0.0
        for shard in shards:
            earlier = read_marker(self.dest, shard)
            if earlier is not None and earlier.complete:
                items = len(shard.jobs)
                finished[shard.id] = ShardReport(shard.id, items, skipped=items, from_marker=True)
                from_markers += 1
                continue
            while len(pending) >= self.window and not self.cancel.is_set():
                lost += self._collect(pending, finished)
            if self.cancel.is_set():
                break
            ref = self.task.remote(
                shard, self.dest, self.batch, self.options, self.book, self.rate_limited
            )
            pending[ref] = shard
        while pending:
            if self.cancel.is_set():
                for ref in pending:
                    ray.cancel(ref, force=True)
                break
            lost += self._collect(pending, finished)
        self._show(finished)
        return list(finished.values()), from_markers, lost

    def _collect(self, pending: dict[Any, Shard], finished: dict[str, ShardReport]) -> int:
        """Wait up to a tick for a shard to end; show progress. How many were lost."""
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=_TICK_S)
        lost = 0
        for ref in ready:
            shard = pending.pop(ref)
            try:
                finished[shard.id] = ray.get(ref)
            except Exception as exc:  # every attempt lost (node gone, worker killed)
                log.warning("shard %s lost: %s", shard.id, exc)
                finished[shard.id] = _lost(shard, exc)
                lost += 1
        self._show(finished)
        return lost

    def _show(self, finished: Mapping[str, ShardReport]) -> None:
        if self.on_progress is None:
            return
        snapshot = ray.get(self.book.snapshot.remote())
        done = skipped = failed = size = 0
        for report in finished.values():
            done, skipped = done + report.done, skipped + report.skipped
            failed, size = failed + report.failed_count, size + report.bytes
        workers: set[str] = set()
        for shard_id, (counts, worker, age_s) in snapshot["shards"].items():
            if shard_id not in finished:  # a running shard's latest attempt
                more_done, more_skipped, more_failed, more_bytes = counts
                done, skipped = done + more_done, skipped + more_skipped
                failed, size = failed + more_failed, size + more_bytes
                if age_s < 3 * _BEAT_S:
                    workers.add(worker)
        now = time.monotonic()
        if now - self._nodes_at > _NODES_EVERY_S:
            nodes = _ray_nodes()
            self._nodes = sum(1 for node in nodes if node.get("Alive"))
            self._nodes_at = now
        self.on_progress(
            RunProgress(
                self.files,
                done,
                skipped,
                failed,
                size,
                len(finished),
                len(workers),
                self._nodes,
                now - self.started,
            )
        )


def _lost(shard: Shard, error: BaseException) -> ShardReport:
    items = len(shard.jobs)
    failures = tuple(Failure(job.url, "lost", str(error).splitlines()[0]) for job in shard.jobs[:1])
    return ShardReport(shard.id, items, failed={"lost": items}, failures=failures)


class _Tally:
    """A shard attempt's figures so far, from its batch's events (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done = self.skipped = self.failed = self.bytes = 0
        self._receiving: dict[str, int] = {}

    def event(self, event: Event) -> None:
        if isinstance(event, DownloadProgress):
            with self._lock:
                self._receiving[event.url] = event.done_bytes

    def item(self, item: ItemReport) -> None:
        with self._lock:
            self._receiving.pop(item.job.url, None)
            if item.outcome is Outcome.FAILED:
                self.failed += 1
            elif item.outcome is Outcome.SKIPPED:
                self.skipped += 1
            else:
                self.done += 1
                self.bytes += item.result.size_bytes if item.result is not None else 0

    def counts(self) -> Counts:
        with self._lock:
            return self.done, self.skipped, self.failed, self.bytes + sum(self._receiving.values())


def _run_shard(
    shard: Shard,
    dest: str,
    batch: Mapping[str, object],
    options: Mapping[str, object],
    book: Any,
    rate_limited: bool,
) -> ShardReport:
    """One attempt at a shard, on a worker: its batch behind the cluster's gate."""
    attempt = secrets.token_hex(4)
    node = ray.get_runtime_context().get_node_id()
    retry = ray.get(book.begin.remote(shard.id))
    if retry:  # its node may have died with locks
        nodes = _ray_nodes()
        take_over(directories_of(shard.jobs, Path(dest)), dead_hosts(nodes))
    tally = _Tally()
    batch = shard_batch(batch, shard, retry)
    # The shard's figures ride on the gate's heartbeat (at once: the node took part; then
    # every beat): one call a second per worker to the actor for both.
    gate = LeasedGate(
        RayLeases(book),
        rate_limited=rate_limited,
        tick_s=_BEAT_S,
        note=lambda: (shard.id, attempt, tally.counts(), node),
    )
    try:
        settings = {
            **batch,
            "options": with_overrides(None, options),
            "host_gate": gate,
            "progress": tally.event,
        }
        return download_shard(shard, dest, settings, on_item=tally.item)
    finally:
        gate.close()
