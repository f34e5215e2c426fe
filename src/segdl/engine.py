"""One download, start to finish: lock → resume or first contact → transfer → final name.

:func:`download` is the public entry point. :class:`Download` decides what on disk can be
trusted (:mod:`segdl.resume`), starts over when the remote file changed, and hands the moving
of bytes to :class:`~segdl.transfer.Transfer` with a checkpointer keeping the state durable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from segdl import resume as resuming
from segdl.errors import (
    Cancelled,
    HTTPStatusError,
    NetworkError,
    NoSpace,
    RemoteChanged,
    ShortBody,
    UsageError,
)
from segdl.models import Resource, Result, Validator
from segdl.options import MIB, DownloadOptions
from segdl.probe import FirstContact, Mode, first_contact
from segdl.progress import (
    DownloadFailed,
    DownloadFinished,
    Notice,
    NoticeKind,
    ProgressListener,
    silent,
)
from segdl.ranges import filename_from_url
from segdl.retry import RetryPolicy
from segdl.state import DownloadState, OwnerLock
from segdl.storage import PartFile, check_free_space, check_output_free, part_path
from segdl.transfer import Transfer
from segdl.transport import Transport, Urllib3Transport

log = logging.getLogger(__name__)

# A file that keeps changing under us is not downloaded forever.
_MAX_RESTARTS = 2


def download(
    url: str,
    dest: str | Path | None = None,
    *,
    directory: str | Path | None = None,
    connections: int = 8,
    min_split_bytes: int = MIB,
    overwrite: bool = False,
    timeout_s: float = 30.0,
    headers: Mapping[str, str] | None = None,
    user_agent: str | None = None,
    progress: ProgressListener | None = None,
    transport: Transport | None = None,
    cancel: threading.Event | None = None,
    resume: bool = True,
    lock_wait_s: float = 0.0,
    retries: int = 5,
    retry_wait_s: float = 0.5,
    max_retry_after_s: float = 300.0,
    max_redirects: int = 10,
    max_connections_per_host: int = 16,
    lowest_speed_bytes_per_s: int | None = None,
    max_size_bytes: int | None = None,
) -> Result:
    """Download ``url`` to ``dest`` (or ``directory``/name-from-URL) over many connections.

    ``progress`` receives :mod:`segdl.progress` events from the calling thread a few times a
    second (default: none). Returns a :class:`~segdl.models.Result`; raises a
    :class:`~segdl.errors.SegdlError` subclass on failure. Setting ``cancel`` stops the
    download and raises :class:`~segdl.errors.Cancelled`. A partial download left at the
    same place by an earlier run is resumed when it can be trusted (``resume=False``: start
    over); another process writing the same output raises
    :class:`~segdl.errors.OutputLocked` unless it finishes within ``lock_wait_s``.
    Transient failures are retried (``retries`` in a row per range without progress,
    exponential backoff from ``retry_wait_s``, ``Retry-After`` honoured up to
    ``max_retry_after_s``); a server turning extra connections away gets fewer of them.
    """
    extra: dict[str, object] = {}
    if user_agent is not None:
        extra["user_agent"] = user_agent
    options = DownloadOptions(
        connections=connections,
        min_split_bytes=min_split_bytes,
        overwrite=overwrite,
        timeout_s=timeout_s,
        headers=dict(headers or {}),
        resume=resume,
        lock_wait_s=lock_wait_s,
        retries=retries,
        retry_wait_s=retry_wait_s,
        max_retry_after_s=max_retry_after_s,
        max_redirects=max_redirects,
        max_connections_per_host=max_connections_per_host,
        lowest_speed_bytes_per_s=lowest_speed_bytes_per_s,
        max_size_bytes=max_size_bytes,
        **extra,  # type: ignore[arg-type]
    )
    path = output_path(url, dest, directory)
    owned = transport is None
    active = transport or Urllib3Transport(
        max_connections_per_host=min(options.connections, options.max_connections_per_host) + 1,
        timeout_s=timeout_s,
    )
    try:
        listener = progress or silent
        return Download(url, path, options, active, listener, cancel or threading.Event()).run()
    finally:
        if owned:
            active.close()


def output_path(url: str, output: str | Path | None, directory: str | Path | None) -> Path:
    """``output`` as given, else ``directory`` (default: current) / name from the URL path."""
    if output is not None:
        if directory is not None:
            raise UsageError("give an output path or a directory, not both")
        path = Path(output)
        if path.is_dir():
            raise UsageError(f"output path {path} is a directory (use -d/--dir for that)")
        return path
    return Path(directory or ".") / filename_from_url(url)


class Download:
    """The state of one running download; used once."""

    def __init__(
        self,
        url: str,
        path: Path,
        options: DownloadOptions,
        transport: Transport,
        listener: ProgressListener,
        cancel: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.path = path
        self.options = options
        self.transport = transport
        self.listener = listener
        self.clock = clock
        self.cancel = cancel
        self._started_s = 0.0

    def run(self) -> Result:
        self._started_s = self.clock()
        lock = OwnerLock(self.path)
        try:
            lock.acquire(wait_s=self.options.lock_wait_s)
            try:
                return self._run_locked(lock)
            finally:
                lock.release()
        except BaseException as exc:
            error = Cancelled("interrupted") if isinstance(exc, KeyboardInterrupt) else exc
            self.listener(DownloadFailed(self.url, error, self.clock() - self._started_s))
            if error is exc:
                raise
            raise error from exc

    def _run_locked(self, lock: OwnerLock) -> Result:
        state: DownloadState | None = None
        if self.options.resume:
            state, why_not = resuming.load_resumable(self.path, self.url)
            if why_not is not None:
                self._notice(NoticeKind.RESUME_DISCARDED, f"not resuming: {why_not}")
                resuming.discard(self.path)
        else:
            resuming.discard(self.path)
        if state is not None and state.complete:
            recovered = self._recover_finished(state)
            if recovered is not None:
                return recovered
        check_output_free(self.path, overwrite=self.options.overwrite)
        for _ in range(_MAX_RESTARTS + 1):
            try:
                return self._attempt(state, lock)
            except RemoteChanged as exc:
                self._notice(NoticeKind.REMOTE_CHANGED, f"{exc}; starting over")
                resuming.discard(self.path)
                state = None
        raise RemoteChanged(self.url, f"changed {_MAX_RESTARTS + 1} times while downloading")

    def _recover_finished(self, state: DownloadState) -> Result | None:
        """A previous run synced every byte but stopped around the rename: finish its job."""
        if part_path(self.path).exists():
            part = PartFile(self.path, overwrite=self.options.overwrite, resume=True)
            part.finalize(state.size_bytes)
        elif not (self.path.is_file() and self.path.stat().st_size == state.size_bytes):
            resuming.discard(self.path)  # the state is all that is left: drop it
            return None
        resuming.finish(self.path)
        self._notice(NoticeKind.RESUMED, "completed the rename an earlier run had begun")
        elapsed_s = self.clock() - self._started_s
        self.listener(DownloadFinished(self.url, self.path, state.size_bytes, elapsed_s))
        return Result(self.url, self.path, state.size_bytes, elapsed_s, 0, True)

    def _attempt(self, state: DownloadState | None, lock: OwnerLock) -> Result:
        """One go at the file: resume ``state`` if given, else from scratch."""
        missing = state.missing() if state is not None else None
        if state is not None and missing:
            if_range = resuming.if_range_value(state.etag, state.last_modified)
            # Bounded: an open-ended range would make the server push bytes we already have.
            first_missing = missing[0]
            contact = self._first_contact(
                start=first_missing.start, end=first_missing.end, if_range=if_range
            )
            self._check_resumable(state, contact)
        elif state is not None:  # every byte is there; only the final steps are missing
            contact = FirstContact(_resource_of(self.url, state), Mode.RANGED, None)
        else:
            contact = self._first_contact()
        try:
            self._check_size(contact.resource.size_bytes, state)
        except BaseException:
            if contact.response is not None:
                contact.response.close()
            raise
        transfer = Transfer(
            self.url,
            self.path,
            self.options,
            self.transport,
            self.listener,
            self.cancel,
            self.clock,
            self._started_s,
        )
        part = PartFile(self.path, overwrite=self.options.overwrite, resume=state is not None)
        try:
            size = contact.resource.size_bytes
            if size is None or contact.mode is Mode.EMPTY:
                resource, ranged, connections = transfer.fetch(contact, part, missing)
            else:
                template = resuming.state_for(self.url, contact.resource, [], lock.token)
                if state is not None:
                    template = replace(template, done=state.done)
                with resuming.Checkpointer(
                    self.path, part, template, transfer.written_ranges, lock, self.clock
                ) as checkpointer:
                    transfer.checkpointer = checkpointer
                    resource, ranged, connections = transfer.fetch(contact, part, missing)
                    checkpointer.complete()
            part.finalize(resource.size_bytes)
            resuming.finish(self.path)
        finally:
            part.close()
        elapsed_s = self.clock() - self._started_s
        log.debug("finalized after %.3f s", elapsed_s)
        size_bytes = resource.size_bytes or 0
        self.listener(DownloadFinished(self.url, self.path, size_bytes, elapsed_s))
        return Result(self.url, self.path, size_bytes, elapsed_s, connections, ranged)

    def _first_contact(
        self, *, start: int = 0, end: int | None = None, if_range: str | None = None
    ) -> FirstContact:
        """The first request, retried while the failure is transient (503, resets...)."""
        policy = RetryPolicy(
            attempts=self.options.retries,
            base_wait_s=self.options.retry_wait_s,
            max_retry_after_s=self.options.max_retry_after_s,
        )
        while True:
            try:
                return first_contact(
                    self.transport, self.url, self.options, start=start, end=end, if_range=if_range
                )
            except (NetworkError, ShortBody, HTTPStatusError) as exc:
                policy = policy.after(exc, progressed=False)
                if not policy.may_retry(exc, time.time()):
                    raise
                wait_s = policy.wait_s(exc, time.time())
                self._notice(NoticeKind.CONNECTION_RETRY, f"retrying in {wait_s:.1f} s: {exc}")
                if self.cancel.wait(wait_s):
                    raise Cancelled("download cancelled") from exc

    def _check_size(self, size_bytes: int | None, state: DownloadState | None) -> None:
        """Refuse, before any byte is written, a file over --max-size or over the free space."""
        if size_bytes is None:
            return
        limit = self.options.max_size_bytes
        if limit is not None and size_bytes > limit:
            raise NoSpace(
                str(self.path), f"file is {size_bytes} bytes, more than the maximum of {limit}"
            )
        needed = size_bytes - (state.done_bytes if state is not None else 0)
        check_free_space(self.path, needed)

    def _check_resumable(self, state: DownloadState, contact: FirstContact) -> None:
        why = mismatch_reason(state, contact)
        if why is not None:
            if contact.response is not None:
                contact.response.close()
            raise RemoteChanged(contact.resource.final_url, why)
        if state.etag is None and state.last_modified is None:
            self._notice(
                NoticeKind.RESUMED,
                "the server gives no validator: resuming because the size is unchanged",
            )
        done, size = state.done_bytes, state.size_bytes
        self._notice(NoticeKind.RESUMED, f"resuming with {done} of {size} bytes already here")

    def _notice(self, kind: NoticeKind, message: str) -> None:
        log.info("%s: %s", self.url, message)
        self.listener(Notice(self.url, kind, message))


def mismatch_reason(state: DownloadState, contact: FirstContact) -> str | None:
    """Why a fresh first contact shows the partial data is not of the current file."""
    if contact.mode is not Mode.RANGED:
        return f"the server sent the whole file, not the missing part ({contact.reason})"
    return resuming.mismatch(state, contact.resource)


def _resource_of(url: str, state: DownloadState) -> Resource:
    """The resource as a state file remembers it (for finishing without the network)."""
    validator = Validator(etag=state.etag, last_modified=state.last_modified)
    return Resource(url, url, state.size_bytes, True, validator)
