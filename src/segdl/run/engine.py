"""One download, start to finish: lock → resume or first contact → transfer → final name.

:func:`download` is the public entry point. :class:`Download` chooses the output (the name
the server gives, ``if_exists``), takes the owner lock, decides what on disk can be trusted
(:mod:`segdl.disk.resume`) and starts over when the remote file changed, a bounded number of
times (:func:`segdl.core.failures.decide_restart`); each go at the file is an
:class:`~segdl.run.attempt.Attempt`.

What a download does with its options, in short. Without ``dest`` the name comes from the
server's ``Content-Disposition``, else from the URL's path (never from a redirect target),
sanitised and kept inside ``directory``. ``if_exists`` says what to do with an existing file:
``"error"`` (default), ``"skip"``, ``"overwrite"`` (also ``overwrite=True``) or ``"rename"``.
Credentials (``user``, URL userinfo, netrc, an ``Authorization`` or ``Cookie`` header) go
only to the URL's origin unless ``location_trusted``; cookies from ``cookies_file`` follow the
cookie rules. ``limit_rate`` (bytes/s, or "500K", "10M") caps this download; ``checksum``
("sha256=HEX") or a server digest (Repr-Digest, Digest, Content-MD5 on a 200) is verified
before the file gets its name (``IntegrityError`` otherwise). ``keep_cache``: leave a file of
256 MiB or more in the page cache, for a caller about to read it (by default its pages are
dropped as they are synced, see :data:`segdl.disk.resume.DROP_CACHE_FROM_BYTES`).
``preconnect``: open the other connections while the first request is in flight (their
handshakes overlap its round trip; they stay idle if the file turns out to be small).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from segdl.core.errors import Cancelled, RemoteChanged, UsageError, shown
from segdl.core.failures import Action, decide_restart
from segdl.core.models import Result
from segdl.core.names import candidate_names, choose_filename
from segdl.core.options import DownloadOptions, IfExists
from segdl.core.progress import (
    DownloadFailed,
    DownloadFinished,
    Notice,
    NoticeKind,
    ProgressListener,
    silent,
)
from segdl.disk import resume as resuming
from segdl.disk.lock import OwnerLock
from segdl.disk.paths import OutputPaths, check_name_fits, name_limit_bytes, path_inside
from segdl.disk.state import DownloadState
from segdl.disk.storage import PartFile, check_output_free, check_parent_exists, make_directory
from segdl.net.auth import Identity, split_userinfo
from segdl.net.interfaces import Transport
from segdl.net.origins import origin
from segdl.run.attempt import Attempt, Target
from segdl.run.prepare import own_transport, prepare, rate_limits
from segdl.run.probe import Contacts, FirstContact, close
from segdl.run.ratelimit import TokenBucket

log = logging.getLogger(__name__)


def download(
    url: str,
    dest: str | Path | None = None,
    *,
    options: DownloadOptions | None = None,
    directory: str | Path | None = None,
    progress: ProgressListener | None = None,
    transport: Transport | None = None,
    cancel: threading.Event | None = None,
    mirrors: Sequence[str] = (),
    rate_limiter: TokenBucket | None = None,
    workers: cf.Executor | None = None,
    **overrides: object,
) -> Result:
    """Download ``url`` to ``dest`` (or ``directory``/name-from-URL) over many connections.

    ``options`` (a :class:`~segdl.core.options.DownloadOptions`, default: every default; see
    this module's docstring) says how; any of its fields may also be a keyword, which wins
    (``connections=16``, ``limit_rate="10M"``: :func:`~segdl.core.options.with_overrides`);
    an unknown or bad one raises :class:`~segdl.core.errors.UsageError` before anything is sent.

    ``progress`` receives :mod:`segdl.core.progress` events from the calling thread a few times a
    second (default: none). Returns a :class:`~segdl.core.models.Result`; raises a
    :class:`~segdl.core.errors.SegdlError` subclass on failure. Setting ``cancel`` stops the
    download and raises :class:`~segdl.core.errors.Cancelled`. A partial download left at the
    same place by an earlier run is resumed when it can be trusted (``resume=False``: start
    over); another process writing the same output raises
    :class:`~segdl.core.errors.OutputLocked` unless it finishes within ``lock_wait_s``.
    Transient failures are retried (``retries`` in a row per range without progress,
    exponential backoff from ``retry_wait_s``, ``Retry-After`` honoured up to
    ``max_retry_after_s``); a server turning extra connections away gets fewer of them.
    ``mirrors``: other URLs of the same file, ranges spread over all of them, one that
    differs or fails dropped. ``transport``: any :class:`~segdl.net.interfaces.Transport`.
    ``rate_limiter``: a bucket shared with other downloads (a batch's ``limit_rate``).
    ``workers``: threads lent by a caller downloading many files, so threads are reused.
    """
    job = prepare(url, options, overrides)  # a bad mirror is dropped like a failing one
    if dest is not None and directory is not None:
        raise UsageError("give an output path or a directory, not both")
    if dest is not None and Path(dest).is_dir():
        raise UsageError(f"output path {dest} is a directory (use -d/--dir for that)")
    active = transport or own_transport(job.options)
    try:
        runner = Download(
            job.url,
            Path(dest) if dest is not None else None,
            Path(directory or "."),
            job.options,
            active,
            progress or silent,
            cancel or threading.Event(),
            job.identity,
            mirrors=[_without_userinfo(m) for m in mirrors],
            rate_limiters=rate_limits(job.options, rate_limiter),
            workers=workers,
        )
        return runner.run()
    finally:
        if transport is None:
            active.close()


def _without_userinfo(url: str) -> str:
    try:
        return split_userinfo(url)[0]
    except ValueError:  # unparsable: usable_mirrors drops it, with a notice
        return url


class Download:
    """One download: its output chosen and locked, resumed or restarted; used once."""

    def __init__(
        self,
        url: str,
        dest: Path | None,
        directory: Path,
        options: DownloadOptions,
        transport: Transport,
        listener: ProgressListener,
        cancel: threading.Event,
        identity: Identity | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        mirrors: Sequence[str] = (),
        rate_limiters: Sequence[TokenBucket] = (),
        workers: cf.Executor | None = None,
    ) -> None:
        self.url = url
        self.shown_url = shown(url)  # what events, logs and messages may show
        self.dest = dest
        self.directory = directory
        self.identity = identity or Identity(home=origin(url))
        self.options = options
        self.transport = transport
        self.listener = listener
        self.clock = clock
        self.cancel = cancel
        self.rate_limiters = list(rate_limiters)
        self.mirror_urls = list(mirrors)
        self.workers = workers
        self.contacts = Contacts(transport, url, options, self.identity, cancel, self._notice)
        self._started_s = clock()

    def run(self) -> Result:
        early: FirstContact | None = None
        try:
            if self.options.insecure:
                self._notice(
                    NoticeKind.INSECURE, "TLS certificates are NOT verified for this download"
                )
            if self.dest is None:  # the server may name the file: ask it first
                make_directory(self.directory)
                early = self.contacts.first()
                limit = name_limit_bytes(self.directory)
                name = choose_filename(self.url, early.content_disposition, limit_bytes=limit)
                path = path_inside(self.directory, name)
            else:
                check_parent_exists(self.dest)
                check_name_fits(self.dest)
                path = self.dest
            chosen = self._apply_if_exists(OutputPaths.of(path))
            if chosen is None:
                close(early)
                return self._skipped(path)
            lock = OwnerLock(chosen)
            lock.acquire(wait_s=self.options.lock_wait_s)
            try:
                return self._run_locked(self._target(chosen), lock, early)
            finally:
                lock.release()
        except BaseException as exc:
            close(early)
            error = Cancelled("interrupted") if isinstance(exc, KeyboardInterrupt) else exc
            self.listener(DownloadFailed(self.shown_url, error, self.clock() - self._started_s))
            if error is exc:
                raise
            raise error from exc

    def _target(self, paths: OutputPaths) -> Target:
        return Target(
            self.url,
            self.shown_url,
            paths,
            self.options,
            self.transport,
            self.identity,
            self.listener,
            self.cancel,
            self.clock,
            self._started_s,
            self._notice,
            self.mirror_urls,
            self.rate_limiters,
            self.workers,
        )

    def _apply_if_exists(self, paths: OutputPaths) -> OutputPaths | None:
        """The output to write, None to skip; ERROR and OVERWRITE are enforced later, at the
        very moments the file could be clobbered."""
        policy = self.options.if_exists
        occupied = os.path.lexists(paths.final) and not os.path.lexists(paths.state)
        if policy is IfExists.SKIP:
            return None if occupied else paths
        if policy is not IfExists.RENAME:
            return paths
        final = paths.final
        for name in candidate_names(final.name, limit_bytes=name_limit_bytes(final.parent)):
            candidate = OutputPaths.of(final.with_name(name))
            if resuming.free_for(candidate, self.url):
                return candidate
        raise AssertionError("unreachable: candidate names are endless")

    def _skipped(self, path: Path) -> Result:
        size = path.stat().st_size
        self._notice(NoticeKind.SKIPPED, f"{path} exists: skipped")
        elapsed_s = self.clock() - self._started_s
        return Result(self.url, path, size, elapsed_s, 0, False, skipped=True)

    def _run_locked(self, target: Target, lock: OwnerLock, early: FirstContact | None) -> Result:
        """Resume what can be trusted, else start afresh; start over while the remote file
        changes under us, as often as :func:`~segdl.core.failures.decide_restart` allows."""
        paths = target.paths
        state = self._resumable(paths)
        if state is not None and state.complete:
            recovered = self._recover_finished(paths, state)
            if recovered is not None:
                return recovered
        check_output_free(paths.final, overwrite=self.options.overwrite)
        if state is not None:
            close(early)  # resuming asks for the missing bytes instead
            early = None
        restarts = 0
        while True:
            try:
                return Attempt(target, self.contacts, lock, state, early).run()
            except RemoteChanged as exc:
                resuming.discard(paths)  # bytes of another version are not resumable
                if decide_restart(exc, restarts) is not Action.RESTART:
                    why = f"changed {restarts + 1} times while downloading"
                    raise RemoteChanged(self.url, why) from exc
                self._notice(NoticeKind.REMOTE_CHANGED, f"{exc}; starting over")
                restarts += 1
                state, early = None, None

    def _resumable(self, paths: OutputPaths) -> DownloadState | None:
        """The state of a partial download worth resuming; any other partial is removed."""
        if not self.options.resume:
            resuming.discard(paths)
            return None
        state, why_not = resuming.load_resumable(paths, self.url)
        if why_not is not None:
            self._notice(NoticeKind.RESUME_DISCARDED, f"not resuming: {why_not}")
            resuming.discard(paths)
        return state

    def _recover_finished(self, paths: OutputPaths, state: DownloadState) -> Result | None:
        """A previous run synced every byte but stopped around the rename: finish its job."""
        if paths.part.exists():
            part = PartFile(paths, overwrite=self.options.overwrite, resume=True)
            part.finalize(state.size_bytes)
        elif not (paths.final.is_file() and paths.final.stat().st_size == state.size_bytes):
            resuming.discard(paths)  # the state is all that is left: drop it
            return None
        resuming.finish(paths)
        self._notice(NoticeKind.RESUMED, "completed the rename an earlier run had begun")
        elapsed_s = self.clock() - self._started_s
        self.listener(DownloadFinished(self.shown_url, paths.final, state.size_bytes, elapsed_s))
        return Result(self.url, paths.final, state.size_bytes, elapsed_s, 0, True)

    def _notice(self, kind: NoticeKind, message: str) -> None:
        log.info("%s: %s", self.shown_url, message)
        self.listener(Notice(self.shown_url, kind, message))
