"""Moving the bytes of one attempt: which phases, in what order, and what came of them.

A file of known size comes over many connections (:mod:`segdl.run.workers`, one thread per
connection taking ranges from the :class:`~segdl.core.planning.Planner`); a server whose
ranges cannot be believed, or keep breaking, gets one plain stream instead
(:mod:`segdl.run.plain`). The calling thread only coordinates (:mod:`segdl.run.supervise`);
where bytes are asked for is :mod:`segdl.run.sources`'s.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from segdl.core.answers import Mode
from segdl.core.errors import ProtocolError, shown
from segdl.core.models import ByteRange, Resource
from segdl.core.options import DownloadOptions
from segdl.core.planning import Claim, Planner
from segdl.core.progress import NoticeKind, ProgressListener
from segdl.disk.hashing import DigestCheck
from segdl.disk.resume import Checkpointer
from segdl.disk.storage import PartFile
from segdl.net.auth import Identity
from segdl.net.interfaces import Transport
from segdl.run.plain import PlainStream
from segdl.run.probe import FirstContact
from segdl.run.ratelimit import Pace, TokenBucket
from segdl.run.sources import Sources
from segdl.run.supervise import Supervisor, Watch
from segdl.run.workers import RangedPhase, SwitchToSingleStream

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a transfer brought in."""

    resource: Resource
    """The resource as finally known (a plain stream learns its size at the end)."""
    ranged: bool
    """The bytes came over ranges (not one plain stream)."""
    connections: int
    """The connections a byte came over."""


class Transfer:
    """One attempt at getting every byte of a file into its ``.part``; used once."""

    def __init__(
        self,
        url: str,
        path: Path,
        options: DownloadOptions,
        transport: Transport,
        listener: ProgressListener,
        cancel: threading.Event,
        clock: Callable[[], float],
        started_s: float,
        identity: Identity,
        *,
        mirrors: Sequence[Resource] = (),
        rate_limiters: Sequence[TokenBucket] = (),
        workers: cf.Executor | None = None,
        digest: DigestCheck | None = None,
    ) -> None:
        """``mirrors``: other sources of the same file (checked already); ``workers``:
        threads lent by a batch; ``digest``: the check the written prefix is fed to."""
        self.url = url
        self.shown_url = shown(url)  # what events, logs and messages may show
        self.options = options
        self.transport = transport
        self.clock = clock
        self.identity = identity
        self.digest = digest
        self.mirrors = list(mirrors)
        self._supervisor = Supervisor(
            self.shown_url, path, listener, clock, cancel, started_s, workers
        )
        self._halt = self._supervisor.halt
        self._pace = Pace(rate_limiters, self._halt)
        self._written_source: Callable[[], list[ByteRange]] = list

    def written_ranges(self) -> list[ByteRange]:
        """What is written so far (pwrite returned), for the checkpointer."""
        return self._written_source()

    def fetch(
        self,
        contact: FirstContact,
        part: PartFile,
        missing: list[ByteRange] | None,
        checkpointer: Checkpointer | None = None,
    ) -> Fetched:
        """Get every byte into ``part``. ``checkpointer`` keeps the state file of this
        fetch durable (none: no state)."""
        if contact.mode is Mode.EMPTY:
            self._supervisor.started(contact.resource, ranged=False, connections=0)
            part.allocate(0)
            return Fetched(contact.resource, False, 0)
        if contact.mode is not Mode.RANGED:
            self._supervisor.notice(NoticeKind.FALLBACK_SINGLE_STREAM, contact.reason)
            plain = self._plain(part, checkpointer, [])
            return Fetched(plain.fetch(contact.response, contact.resource), False, 1)
        try:
            connections = self._fetch_ranged(contact, part, missing, checkpointer)
            return Fetched(contact.resource, True, connections)
        except SwitchToSingleStream as switch:
            self._supervisor.notice(NoticeKind.FALLBACK_SINGLE_STREAM, switch.reason)
            plain = self._plain(part, checkpointer, self.written_ranges() if switch.keep else [])
            return Fetched(plain.fetch(None, contact.resource), False, 1)

    def _plain(
        self, part: PartFile, checkpointer: Checkpointer | None, kept: list[ByteRange]
    ) -> PlainStream:
        plain = PlainStream(
            self.url,
            self.options,
            self.transport,
            self.identity,
            self._supervisor,
            self._pace,
            part,
            checkpointer=checkpointer,
            digest=self.digest,
            kept=kept,
            written_before=self._written_source,
            advance_digest=self._advance_digest,
        )
        self._written_source = plain.written_ranges
        return plain

    # -- many connections -------------------------------------------------------------------

    def _fetch_ranged(
        self,
        contact: FirstContact,
        part: PartFile,
        missing: list[ByteRange] | None,
        checkpointer: Checkpointer | None,
    ) -> int:
        resource = contact.resource
        assert resource.size_bytes is not None
        options = self.options
        planner = Planner(
            resource.size_bytes,
            options.connections,
            options.min_split_bytes,
            missing,
            options.lowest_speed_bytes_per_s,
            lock=threading.Lock(),
        )
        self._written_source = planner.written_ranges
        part.allocate(resource.size_bytes)
        first: Claim | None = None
        if contact.response is not None and contact.first_range is not None:
            first = planner.claim_first(
                contact.first_range.start, contact.first_range.end, self.clock()
            )
            self._supervisor.open.add(contact.response)
        workers = min(planner.initial_connections, options.connections)
        workers = min(workers, options.max_connections_per_host)
        self._supervisor.started(resource, ranged=True, connections=workers)
        if workers == 0:
            return 0
        phase = RangedPhase(
            self.url,
            options,
            self.transport,
            self.identity,
            self._supervisor,
            self._pace,
            planner,
            part,
            self._sources(resource),
            workers=workers,
        )
        watch = Watch(
            resource.size_bytes,
            lambda: planner.done_bytes,
            planner.segment_map,
            checkpointer,
            self._advance_digest,
        )
        self._supervisor.run(phase.calls(first, contact.response), watch)
        log.debug("plan: %d splits, %d races", planner.splits, planner.races)
        if not planner.finished:  # every worker gave up; each already raised if fatal
            raise ProtocolError(f"download of {self.shown_url} stopped with bytes missing")
        return phase.streamed_workers

    def _sources(self, resource: Resource) -> Sources:
        supervisor = self._supervisor
        return Sources(
            resource,
            self.mirrors,
            self.transport,
            self.options,
            self.identity,
            supervisor.notice,
            supervisor.wait_for,
        )

    def _advance_digest(self) -> None:
        """Let the background hasher read the contiguous prefix written so far."""
        if self.digest is None:
            return
        written = self._written_source()
        if written and written[0].start == 0:
            self.digest.advance_to(written[0].end)
