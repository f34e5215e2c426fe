"""``-o -``: one file to a stream (stdout) in order, while it is fetched over many connections.

aria2c and axel cannot write to a pipe; curl can, over one connection. Here the file is cut
into pieces handed out in order; each connection fetches the next piece into a buffer of its
own, and the calling thread writes the pieces out as soon as every byte before them is out.
A piece is handed out only when it ends within ``stream_buffer_bytes`` of the last byte
written, so the memory held stays within that bound: a connection that runs ahead waits
for the slowest instead of growing the buffer. There is no ``.part`` and no state, so
nothing resumes: an interrupted stream is fetched again from its first byte.

Every answer is checked as for a file (:func:`segdl.run.fetch.open_range`); a server that
stops honouring ranges after bytes have gone out cannot be taken back, so the stream ends
with that error rather than ever write a byte it cannot vouch for.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from segdl.core.answers import Mode
from segdl.core.errors import Cancelled, NetworkError, ShortBody, shown
from segdl.core.failures import Action, decide_piece
from segdl.core.models import ByteRange, Resource, Result
from segdl.core.options import DownloadOptions
from segdl.core.progress import (
    DownloadFailed,
    DownloadFinished,
    DownloadProgress,
    DownloadStarted,
    Notice,
    NoticeKind,
    ProgressListener,
    SegmentMap,
    silent,
)
from segdl.net.auth import Identity
from segdl.net.interfaces import OpenResponses, Response, Transport
from segdl.run.fetch import open_range
from segdl.run.prepare import own_transport, prepare, rate_limits
from segdl.run.probe import FirstContact, first_contact
from segdl.run.ratelimit import Pace, TokenBucket
from segdl.run.reorder import Piece, ReorderWindow, piece_bytes
from segdl.run.retries import call_with_retries

STDOUT_PATH = Path("-")
_TICK_S = 0.25


class Streamer:
    """One file to ``out_fd`` in order; used once."""

    def __init__(
        self,
        url: str,
        out_fd: int,
        options: DownloadOptions,
        transport: Transport,
        identity: Identity,
        listener: ProgressListener,
        cancel: threading.Event,
        rate_limiters: list[TokenBucket],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.clock = clock
        self.out_fd = out_fd
        self.options = options
        self.transport = transport
        self.identity = identity
        self.listener = listener
        self.cancel = cancel
        self.pace = Pace(rate_limiters, cancel)
        self._open = OpenResponses()
        self.started_s = clock()

    def run(self, contact: FirstContact) -> Result:
        resource = contact.resource
        size = resource.size_bytes
        if contact.mode is Mode.EMPTY or size == 0:
            self.listener(DownloadStarted(self.url, STDOUT_PATH, 0, False, 0))
            return self._finished(0, 0, ranged=False)
        if contact.mode is not Mode.RANGED or size is None:
            return self._one_stream(contact)
        return self._ranged(contact, size)

    def _one_stream(self, contact: FirstContact) -> Result:
        """No ranges (or no size): the body as it comes, on one connection."""
        response = contact.response
        assert response is not None
        self.listener(DownloadStarted(self.url, STDOUT_PATH, contact.resource.size_bytes, False, 1))
        buffer = memoryview(bytearray(self.options.buffer_bytes))
        written = 0
        last_s = 0.0
        try:
            self._open.add(response)
            while n := response.readinto(buffer):
                self.pace.take(n)
                self._write(buffer[:n])
                written += n
                if (now := self.clock()) - last_s >= _TICK_S:
                    last_s = now
                    self._progress(written, contact.resource.size_bytes, 1, None)
                if self.cancel.is_set():
                    raise Cancelled("download cancelled")
        finally:
            self._open.discard(response)
            response.close()
        expected = contact.resource.size_bytes
        if expected is not None and written != expected:
            raise ShortBody(contact.resource.final_url, expected, written)
        return self._finished(written, 1, ranged=False)

    def _ranged(self, contact: FirstContact, size: int) -> Result:
        options = self.options
        connections = max(1, min(options.connections, options.max_connections_per_host))
        window = ReorderWindow(size, piece_bytes(size, connections, options.stream_buffer_bytes),
                               options.stream_buffer_bytes)  # fmt: skip
        connections = min(connections, -(-size // window.piece))
        self.listener(DownloadStarted(self.url, STDOUT_PATH, size, True, connections))
        # Piece 0 is handed out here, so the first answer (from byte 0) serves it.
        work = window.take()
        assert work is not None
        first_piece, _ = work
        del work
        first_work: tuple[Piece | None, Response | None] = (first_piece, contact.response)
        threads = [
            threading.Thread(
                target=self._worker,
                args=(window, contact.resource, *(first_work if i == 0 else (None, None))),
                name=f"segdl-stream-{i}",
                daemon=True,
            )
            for i in range(connections)
        ]
        del first_work
        for thread in threads:
            thread.start()
        del first_piece  # its worker holds it now, and lets go of it when it is written
        try:
            self._write_in_order(window, threads)
        except BaseException as exc:
            window.fail(exc)
            self._open.abort_all()
            raise
        finally:
            for thread in threads:
                thread.join()
        return self._finished(size, connections, ranged=True)

    def _write_in_order(self, window: ReorderWindow, threads: list[threading.Thread]) -> None:
        """The calling thread: write each piece once its turn comes; report a few times a
        second; the first error of any connection, or a cancel, ends it."""
        last_s = 0.0
        while window.flushed < window.size_bytes:
            with window.changed:
                while window.flushed not in window.ready and window.error is None:
                    if self.cancel.is_set() or not window.changed.wait(_TICK_S):
                        break
                if window.error is not None:
                    raise window.error
                data = window.ready.pop(window.flushed, None)
            if self.cancel.is_set():
                raise Cancelled("download cancelled")
            if data is not None:
                with memoryview(data) as view:
                    self._write(view)
                with window.changed:
                    window.flushed += len(data)
                    window.changed.notify_all()
                with contextlib.suppress(BufferError):  # a former owner's view, just leaving
                    data.close()  # its pages go back now, before the next piece goes out
            if (now := self.clock()) - last_s >= _TICK_S:
                last_s = now
                active = sum(1 for t in threads if t.is_alive())
                self._progress(window.flushed, window.size_bytes, active, window.segment_map())

    def _worker(
        self,
        window: ReorderWindow,
        resource: Resource,
        piece: Piece | None = None,
        first: Response | None = None,
    ) -> None:
        """Fetch pieces until none is left; ``first``, the first contact's answer (from
        byte 0), serves ``piece``, the first piece."""
        try:
            while True:
                if piece is None:
                    work = window.take()
                    if work is None:
                        return
                    piece, takeover = work
                    if takeover:
                        slow = window.owners_answer(piece)
                        if slow is not None:
                            slow.abort()  # its owner's read returns at once and lets go
                        if not window.adopt(piece):
                            piece = None
                            continue
                if self._fetch(window, resource, piece, first):
                    window.done(piece)
                piece, first = None, None
        except BaseException as exc:
            window.fail(exc)
        finally:
            if first is not None:  # the first answer, never used: the window stopped
                first.close()

    def _fetch(
        self, window: ReorderWindow, resource: Resource, piece: Piece, first: Response | None
    ) -> bool:
        """The rest of ``piece`` into its buffer, resuming a broken answer where it stopped;
        False if another connection took it over meanwhile (it goes on from ``piece.got``)."""
        with memoryview(piece.data) as view:
            return self._fetch_into(window, resource, piece, first, view)

    def _fetch_into(
        self,
        window: ReorderWindow,
        resource: Resource,
        piece: Piece,
        first: Response | None,
        view: memoryview,
    ) -> bool:
        length = piece.range.length
        policy = self.options.retry_policy()
        headers = {
            **self.options.request_headers(),
            **self.identity.headers_for(resource.final_url),
        }
        for answer_or_none in self._answers(first):
            before = piece.got
            try:
                asked = ByteRange(piece.range.start + piece.got, piece.range.end)
                answer = answer_or_none or open_range(self.transport, resource, asked, headers)
                self._open.add(answer)
                try:
                    if not window.received(piece, piece.got, answer):  # taken while we asked
                        window.release(piece)
                        return False
                    got = piece.got
                    while got < length:
                        n = answer.readinto(view[got:])
                        if n == 0:
                            raise ShortBody(resource.final_url, length, got)
                        self.pace.take(n)
                        got += n
                        if not window.received(piece, got):
                            window.release(piece)
                            return False
                finally:
                    self._open.discard(answer)
                    answer.close()
                return True
            except (NetworkError, ShortBody) as exc:
                decision = decide_piece(
                    exc,
                    policy,
                    stopping=window.stopped,
                    taken=piece.taken,  # our answer was aborted: the piece has a new owner
                    progressed=piece.got > before,
                    now_epoch_s=time.time(),
                )
                if decision.action is Action.STOP:
                    raise Cancelled("download stopped") from exc
                if decision.action is Action.LEAVE:
                    window.release(piece)
                    return False
                if decision.action is not Action.RETRY:
                    raise
                policy = decision.policy
                time.sleep(decision.wait_s)
        raise AssertionError("unreachable")

    @staticmethod
    def _answers(first: Response | None) -> Iterator[Response | None]:
        """The first answer (if any), then None: ask again, for as long as retries allow."""
        yield first
        while True:
            yield None

    def _write(self, data: memoryview) -> None:
        while data:
            n = os.write(self.out_fd, data)
            data = data[n:]

    def _progress(
        self, done: int, size: int | None, connections: int, segments: SegmentMap | None
    ) -> None:
        elapsed_s = self.clock() - self.started_s
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        self.listener(
            DownloadProgress(self.url, done, size, elapsed_s, rate, connections, segments)
        )

    def _finished(self, size: int, connections: int, *, ranged: bool) -> Result:
        elapsed_s = self.clock() - self.started_s
        self.listener(DownloadFinished(self.url, STDOUT_PATH, size, elapsed_s))
        return Result(self.url, STDOUT_PATH, size, elapsed_s, connections, ranged)


def stream_to(
    url: str,
    out_fd: int,
    *,
    options: DownloadOptions | None = None,
    progress: ProgressListener | None = None,
    transport: Transport | None = None,
    cancel: threading.Event | None = None,
    **overrides: object,
) -> Result:
    """Write the file at ``url`` to the file descriptor ``out_fd`` (a pipe, stdout) in order,
    fetched over ``connections`` connections with at most ``stream_buffer_bytes`` held to
    put their pieces in order. No ``.part``, no state: nothing resumes. Options and errors
    are :func:`segdl.download`'s; ``Result.path`` is ``Path("-")``."""
    job = prepare(url, options, overrides)
    settings, clean_url, identity = job.options, job.url, job.identity
    stop = cancel or threading.Event()
    listener = progress or silent
    active = transport or own_transport(settings)
    limiters = rate_limits(settings)
    shown_url = shown(clean_url)
    try:
        if settings.insecure:
            message = "TLS certificates are NOT verified for this download"
            listener(Notice(shown_url, NoticeKind.INSECURE, message))

        def on_retry(wait_s: float, error: BaseException) -> None:
            message = f"retrying in {wait_s:.1f} s: {error}"
            listener(Notice(shown_url, NoticeKind.CONNECTION_RETRY, message))

        contact = call_with_retries(
            lambda: first_contact(active, clean_url, settings, identity=identity),
            settings.retry_policy(),
            stop,
            on_retry,
        )
        streamer = Streamer(shown_url, out_fd, settings, active, identity, listener, stop, limiters)
        try:
            return streamer.run(contact)
        except BaseException as exc:
            elapsed_s = streamer.clock() - streamer.started_s
            listener(DownloadFailed(shown_url, exc, elapsed_s))
            raise
    finally:
        if transport is None:
            active.close()
