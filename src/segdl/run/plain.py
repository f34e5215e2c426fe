"""One plain stream: the whole body from byte 0, for a server whose ranges cannot be used.

Without ranges there is nothing to resume from, so a broken stream starts again, up to the
retry limit. Bytes of ranged answers that could not be believed are never mixed with this
body; bytes of ranges that were believed but kept breaking (``kept``) are the same file's, by
the same validator: they stay, and the stream writes the same bytes over them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from segdl.core.answers import Mode
from segdl.core.errors import ProtocolError, ShortBody
from segdl.core.models import ByteRange, Resource
from segdl.core.options import DownloadOptions
from segdl.core.progress import NoticeKind, SegmentMap, merged
from segdl.disk.hashing import DigestCheck
from segdl.disk.resume import Checkpointer
from segdl.disk.storage import PartFile
from segdl.net.auth import Identity
from segdl.net.interfaces import Response, Transport
from segdl.run.fetch import stream_to_end
from segdl.run.probe import first_contact
from segdl.run.ratelimit import Pace
from segdl.run.retries import call_with_retries
from segdl.run.sources import check_same_file
from segdl.run.supervise import Supervisor, Watch


class PlainStream:
    """The one-stream phase of a transfer; used once."""

    def __init__(
        self,
        url: str,
        options: DownloadOptions,
        transport: Transport,
        identity: Identity,
        supervisor: Supervisor,
        pace: Pace,
        part: PartFile,
        *,
        checkpointer: Checkpointer | None,
        digest: DigestCheck | None,
        kept: list[ByteRange],
        written_before: Callable[[], list[ByteRange]],
        advance_digest: Callable[[], None],
    ) -> None:
        """``kept``: ranges written by believed ranged answers, which stay;
        ``written_before``: what the ranged phase wrote, claimed until this stream begins."""
        self.url = url
        self.options = options
        self.transport = transport
        self.identity = identity
        self.supervisor = supervisor
        self.pace = pace
        self.part = part
        self.checkpointer = checkpointer
        self.digest = digest
        self.kept = kept
        self._advance_digest = advance_digest
        self._written_before: Callable[[], list[ByteRange]] | None = written_before
        self._done_bytes = 0

    def written_ranges(self) -> list[ByteRange]:
        """What is written so far (for the checkpointer): the kept ranges and the prefix."""
        if self._written_before is not None:
            return self._written_before()
        streamed = ByteRange(0, self._done_bytes)
        return list(merged([*self.kept, streamed])) if self.kept else [streamed]

    def fetch(self, response: Response | None, known: Resource) -> Resource:
        """Fetch the whole body; ``response``, if given, is an answer already streaming it."""
        first = [response]  # used once: a retry asks again

        def attempt() -> Resource:
            return self._attempt(first.pop() if first else None, known)

        def on_retry(wait_s: float, error: BaseException) -> None:
            message = f"restarting in {wait_s:.1f} s: {error}"
            self.supervisor.notice(NoticeKind.CONNECTION_RETRY, message)

        policy = self.options.retry_policy()
        return call_with_retries(attempt, policy, self.supervisor.cancel, on_retry)

    def _attempt(self, response: Response | None, known: Resource) -> Resource:
        resource = known
        if response is None:
            contact = first_contact(
                self.transport, self.url, self.options, ranged=False, identity=self.identity
            )
            if contact.mode is Mode.EMPTY:
                self.part.allocate(0)
                return contact.resource
            if contact.response is None or contact.mode is not Mode.SINGLE_STREAM:
                raise ProtocolError(
                    f"server answered a plain GET with a partial body ({self.supervisor.shown_url})"
                )
            response, resource = contact.response, contact.resource
            check_same_file(known, resource)
        self._forget_unbelieved(resource.size_bytes)
        self.supervisor.started(resource, ranged=False, connections=1)
        received = self._stream(response, resource.size_bytes)
        expected = resource.size_bytes
        if expected is not None and received != expected:
            raise ShortBody(resource.final_url, expected, received)
        return Resource(
            resource.url,
            resource.final_url,
            received,
            resource.accepts_ranges,
            resource.validator,
            resource.content_type,
        )

    def _forget_unbelieved(self, size_bytes: int | None) -> None:
        """Unless ranges were believed (``kept``), nothing written so far is this body's:
        first the state stops claiming it, then the file forgets it."""
        self._done_bytes = 0
        self._written_before = None
        if not self.kept:
            if self.checkpointer is not None:
                self.checkpointer.save()
            if self.digest is not None:  # what it hashed is about to be overwritten
                self.digest.restart()
            self.part.allocate(0)
        if size_bytes is not None:
            self.part.allocate(size_bytes)

    def _stream(self, response: Response, size_bytes: int | None) -> int:
        """The body into the file on one worker thread; the bytes received."""
        supervisor = self.supervisor
        supervisor.open.add(response)

        def on_bytes(done_bytes: int) -> None:
            self._done_bytes = done_bytes

        buffer = memoryview(bytearray(self.pace.buffer_bytes(self.options.buffer_bytes)))
        call = functools.partial(
            stream_to_end, response, self.part, buffer, supervisor.halt, on_bytes, self.pace.take
        )
        watch = Watch(
            size_bytes,
            lambda: self._done_bytes,
            functools.partial(self._map, size_bytes),
            self.checkpointer,
            self._advance_digest,
        )
        try:
            (future,) = supervisor.run([call], watch)
        finally:
            supervisor.open.discard(response)
            response.close()
        received: int = future.result()
        return received

    def _map(self, size_bytes: int | None) -> SegmentMap | None:
        """One stream from byte 0: what is in is a prefix, and the connection is at its end."""
        if size_bytes is None:
            return None
        done = min(self._done_bytes, size_bytes)
        streams = (ByteRange(done, size_bytes),) if done < size_bytes else ()
        return SegmentMap(size_bytes, merged([ByteRange(0, done)]), streams)
