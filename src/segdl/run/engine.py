"""One download, start to finish: lock → resume or first contact → transfer → final name.

:func:`download` is the public entry point. :class:`Download` decides what on disk can be
trusted (:mod:`segdl.disk.resume`), starts over when the remote file changed, and hands the moving
of bytes to :class:`~segdl.run.transfer.Transfer` with a checkpointer keeping the state durable.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from segdl.core.answers import Mode, Witness, changed, if_range
from segdl.core.digests import Expected, parse_checksum_option
from segdl.core.errors import (
    Cancelled,
    IntegrityError,
    NoSpace,
    RemoteChanged,
    UsageError,
    shown,
)
from segdl.core.failures import Action, decide_restart
from segdl.core.models import Resource, Result, Validator
from segdl.core.names import candidate_names, choose_filename, filename_from_url
from segdl.core.options import DownloadOptions, IfExists, with_overrides
from segdl.core.progress import (
    DownloadFailed,
    DownloadFinished,
    DownloadReceived,
    Notice,
    NoticeKind,
    ProgressListener,
    silent,
)
from segdl.disk import resume as resuming
from segdl.disk.hashing import DigestCheck
from segdl.disk.lock import OwnerLock
from segdl.disk.paths import check_name_fits, name_limit_bytes, path_inside
from segdl.disk.state import DownloadState, state_path
from segdl.disk.storage import (
    PartFile,
    check_free_space,
    check_output_free,
    check_parent_exists,
    make_directory,
    part_path,
    room_needed,
)
from segdl.net.auth import Identity, identity_for, origin, split_userinfo
from segdl.net.interfaces import NoPreconnection, Preconnection, Transport
from segdl.net.transport import Urllib3Transport
from segdl.run.probe import FirstContact, check_url, first_contact
from segdl.run.ratelimit import TokenBucket
from segdl.run.retries import call_with_retries
from segdl.run.sources import usable_mirrors
from segdl.run.transfer import Transfer

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

    ``options`` (a :class:`~segdl.core.options.DownloadOptions`, default: every default) says
    how; any of its fields may also be given as a keyword, which wins (``connections=16``,
    ``limit_rate="10M"``, ``overwrite=True``: see :func:`~segdl.core.options.with_overrides`).
    An unknown keyword or a bad value raises :class:`~segdl.core.errors.UsageError` before
    anything is sent.

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

    Without ``dest`` the name comes from the server's ``Content-Disposition``, else from the
    URL's path (never from a redirect target), sanitised and kept inside ``directory``.
    ``if_exists`` says what to do with an existing file: ``"error"`` (default), ``"skip"``,
    ``"overwrite"`` (also ``overwrite=True``) or ``"rename"``. Credentials (``user``, URL
    userinfo, netrc, an ``Authorization`` or ``Cookie`` header) go only to the URL's origin
    unless ``location_trusted``; cookies from ``cookies_file`` follow the cookie rules.
    ``limit_rate`` (bytes/s, or "500K", "10M") caps this download; ``checksum`` ("sha256=HEX")
    or a server digest (Repr-Digest, Digest, Content-MD5 on a 200) is verified before the
    file gets its name (``IntegrityError`` otherwise). ``mirrors``: other URLs of the same
    file; ranges are spread over all of them, and one that differs or fails is dropped.
    ``keep_cache``: leave a file of 256 MiB or more in the page cache, for a caller about to
    read it (by default its pages are dropped as they are synced, see
    :data:`segdl.disk.resume.DROP_CACHE_FROM_BYTES`).
    ``preconnect``: open the other connections while the first request is in flight (their
    handshakes overlap its round trip; they stay idle if the file turns out to be small).
    ``transport``: any object with the :class:`~segdl.net.transport.Transport` interface.
    ``rate_limiter``: a bucket shared with other downloads (a batch's ``limit_rate``).
    ``workers``: threads to run the connections on, lent by a caller that downloads many
    files (a batch), so that threads are reused; default, the download starts its own.
    """
    settings = with_overrides(options, overrides)
    check_url(url)  # a bad mirror is dropped like a failing one
    clean_url, plain_headers, identity = identity_for(
        url,
        dict(settings.headers),
        user=settings.user,
        use_netrc=settings.use_netrc,
        netrc_file=_path(settings.netrc_file),
        cookies_file=_path(settings.cookies_file),
        location_trusted=settings.location_trusted,
    )
    settings = replace(settings, headers=plain_headers)
    if dest is not None and directory is not None:
        raise UsageError("give an output path or a directory, not both")
    if dest is not None and Path(dest).is_dir():
        raise UsageError(f"output path {dest} is a directory (use -d/--dir for that)")
    owned = transport is None
    active = transport or Urllib3Transport.for_options(
        settings,
        max_connections_per_host=min(settings.connections, settings.max_connections_per_host) + 1,
    )
    limiters = [] if rate_limiter is None else [rate_limiter]
    if settings.limit_rate_bytes_per_s is not None:
        limiters.append(TokenBucket(settings.limit_rate_bytes_per_s))
    try:
        runner = Download(
            clean_url,
            Path(dest) if dest is not None else None,
            Path(directory or "."),
            settings,
            active,
            progress or silent,
            cancel or threading.Event(),
            identity,
            mirrors=[_without_userinfo(m) for m in mirrors],
            rate_limiters=limiters,
            workers=workers,
        )
        return runner.run()
    finally:
        if owned:
            active.close()


def _path(text: str | None) -> Path | None:
    return Path(text) if text is not None else None


def _without_userinfo(url: str) -> str:
    try:
        return split_userinfo(url)[0]
    except ValueError:  # unparsable: _usable_mirrors drops it, with a notice
        return url


class Download:
    """The state of one running download; used once."""

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
        self.path = dest or directory / filename_from_url(url)
        self.identity = identity or Identity(home=origin(url))
        self.options = options
        self.transport = transport
        self.listener = listener
        self.clock = clock
        self.cancel = cancel
        self.rate_limiters = list(rate_limiters)
        self.mirror_urls = list(mirrors)
        self.workers = workers
        self._started_s = 0.0
        self._preconnected = False

    def run(self) -> Result:
        self._started_s = self.clock()
        early: FirstContact | None = None
        try:
            if self.options.insecure:
                self._notice(
                    NoticeKind.INSECURE, "TLS certificates are NOT verified for this download"
                )
            if self.dest is None:  # the server may name the file: ask it first
                make_directory(self.directory)
                early = self._first_contact()
                limit = name_limit_bytes(self.directory)
                name = choose_filename(self.url, early.content_disposition, limit_bytes=limit)
                self.path = path_inside(self.directory, name)
            else:
                check_parent_exists(self.dest)
                check_name_fits(self.dest)
            chosen = self._apply_if_exists(self.path)
            if chosen is None:
                _close(early)
                return self._skipped()
            self.path = chosen
            lock = OwnerLock(self.path)
            lock.acquire(wait_s=self.options.lock_wait_s)
            try:
                return self._run_locked(lock, early)
            finally:
                lock.release()
        except BaseException as exc:
            _close(early)
            error = Cancelled("interrupted") if isinstance(exc, KeyboardInterrupt) else exc
            self.listener(DownloadFailed(self.shown_url, error, self.clock() - self._started_s))
            if error is exc:
                raise
            raise error from exc

    def _apply_if_exists(self, path: Path) -> Path | None:
        """The path to write, None to skip; ERROR and OVERWRITE are enforced later, at the
        very moments the file could be clobbered."""
        policy = self.options.if_exists
        occupied = os.path.lexists(path) and not os.path.lexists(state_path(path))
        if policy is IfExists.SKIP:
            return None if occupied else path
        if policy is not IfExists.RENAME:
            return path
        for name in candidate_names(path.name, limit_bytes=name_limit_bytes(path.parent)):
            candidate = path.with_name(name)
            if resuming.free_for(candidate, self.url):
                return candidate
        raise AssertionError("unreachable: candidate names are endless")

    def _skipped(self) -> Result:
        size = self.path.stat().st_size
        self._notice(NoticeKind.SKIPPED, f"{self.path} exists: skipped")
        elapsed_s = self.clock() - self._started_s
        return Result(self.url, self.path, size, elapsed_s, 0, False, skipped=True)

    def _run_locked(self, lock: OwnerLock, early: FirstContact | None) -> Result:
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
        if state is not None:
            _close(early)  # resuming asks for the missing bytes instead
            early = None
        restarts = 0
        while True:
            try:
                return self._attempt(state, lock, early)
            except RemoteChanged as exc:
                resuming.discard(self.path)  # bytes of another version are not resumable
                if decide_restart(exc, restarts) is not Action.RESTART:
                    why = f"changed {restarts + 1} times while downloading"
                    raise RemoteChanged(self.url, why) from exc
                self._notice(NoticeKind.REMOTE_CHANGED, f"{exc}; starting over")
                restarts += 1
                state, early = None, None

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
        self.listener(DownloadFinished(self.shown_url, self.path, state.size_bytes, elapsed_s))
        return Result(self.url, self.path, state.size_bytes, elapsed_s, 0, True)

    def _attempt(
        self, state: DownloadState | None, lock: OwnerLock, early: FirstContact | None = None
    ) -> Result:
        """One go at the file: resume ``state`` if given, else from scratch."""
        missing = state.missing() if state is not None else None
        if state is not None and missing:
            guard = if_range(_validator_of(state))
            # Bounded: an open-ended range would make the server push bytes we already have.
            first_missing = missing[0]
            contact = self._first_contact(
                start=first_missing.start, end=first_missing.end, if_range=guard
            )
            self._check_resumable(state, contact)
        elif state is not None:  # every byte is there; only the final steps are missing
            contact = FirstContact(_resource_of(self.url, state), Mode.RANGED, None)
        else:
            contact = early or self._first_contact()
        try:
            self._check_size(contact.resource.size_bytes, state)
        except BaseException:
            if contact.response is not None:
                contact.response.close()
            raise
        mirrors: tuple[Resource, ...] = ()
        if contact.mode is Mode.RANGED and self.mirror_urls:
            mirrors = tuple(
                usable_mirrors(
                    self.mirror_urls,
                    contact.resource,
                    self.transport,
                    self.options,
                    self.identity,
                    self._notice,
                )
            )
        part = PartFile(self.path, overwrite=self.options.overwrite, resume=state is not None)
        expected = self._expected_digest(contact)
        digest = DigestCheck(expected, part.fileno) if expected is not None else None
        transfer = Transfer(
            self.url,
            self.path,
            self.options,
            self.transport,
            self.listener,
            self.cancel,
            self.clock,
            self._started_s,
            self.identity,
            mirrors=mirrors,
            rate_limiters=self.rate_limiters,
            workers=self.workers,
            digest=digest,
        )
        try:
            size = contact.resource.size_bytes
            checkpointer_saved = False
            if size is None or contact.mode is Mode.EMPTY:
                resource, ranged, connections = transfer.fetch(contact, part, missing)
                self._received(resource)
                self._verify(digest, resource)
            else:
                template = resuming.state_for(self.url, contact.resource, [], lock.token)
                if state is not None:
                    template = replace(template, done=state.done)
                with resuming.Checkpointer(
                    self.path,
                    part,
                    template,
                    transfer.written_ranges,
                    lock,
                    self.clock,
                    hashed=(lambda: digest.hashed_bytes) if digest is not None else None,
                    keep_cache=self.options.keep_cache,
                ) as checkpointer:
                    resource, ranged, connections = transfer.fetch(
                        contact, part, missing, checkpointer
                    )
                    self._received(resource)
                    try:
                        self._verify(digest, resource)
                    except IntegrityError:
                        checkpointer.discarded = True  # wrong bytes are not worth resuming
                        raise
                    checkpointer.complete()
                    checkpointer_saved = checkpointer.saved
            stateful = state is not None or checkpointer_saved
            # A sub-second download with no state skips the directory sync: losing its
            # rename to a power cut only means fetching it again.
            part.finalize(resource.size_bytes, sync_directory_too=stateful)
            if stateful:
                resuming.finish(self.path)
            if self.options.remote_time:
                _set_remote_time(self.path, resource.validator.last_modified)
        except IntegrityError:
            part.close()
            resuming.discard(self.path)
            raise
        finally:
            part.close()
            if digest is not None:
                digest.close()
        elapsed_s = self.clock() - self._started_s
        log.debug("finalized after %.3f s", elapsed_s)
        size_bytes = resource.size_bytes or 0
        self.listener(DownloadFinished(self.shown_url, self.path, size_bytes, elapsed_s))
        return Result(self.url, self.path, size_bytes, elapsed_s, connections, ranged)

    def _received(self, resource: Resource) -> None:
        elapsed_s = self.clock() - self._started_s
        self.listener(DownloadReceived(self.shown_url, resource.size_bytes or 0, elapsed_s))

    def _first_contact(
        self, *, start: int = 0, end: int | None = None, if_range: str | None = None
    ) -> FirstContact:
        """The first request, retried while the failure is transient (503, resets...)."""
        warm = self._preconnect()

        def attempt() -> FirstContact:
            return first_contact(
                self.transport,
                self.url,
                self.options,
                start=start,
                end=end,
                if_range=if_range,
                identity=self.identity,
            )

        def on_retry(wait_s: float, error: BaseException) -> None:
            warm.discard()
            self._notice(NoticeKind.CONNECTION_RETRY, f"retrying in {wait_s:.1f} s: {error}")

        try:
            contact = call_with_retries(attempt, self.options.retry_policy(), self.cancel, on_retry)
        except BaseException:
            warm.discard()
            raise
        warm.release()
        return contact

    def _preconnect(self) -> Preconnection:
        """Once per download, the other connections start their handshakes now, beside the
        first request; they are used only once it has been answered."""
        options = self.options
        wanted = min(options.connections, options.max_connections_per_host) - 1
        if self._preconnected or not options.preconnect or wanted < 1:
            return NoPreconnection()
        self._preconnected = True
        return self.transport.preconnect(self.url, wanted)

    def _expected_digest(self, contact: FirstContact) -> Expected | None:
        """--checksum wins; else a digest of the whole file the server sent, if any."""
        if self.options.checksum is not None:
            return parse_checksum_option(self.options.checksum)
        return contact.expected_digest

    def _verify(self, digest: DigestCheck | None, resource: Resource) -> None:
        """The finished file against the expected digest: a mismatch is never finalized."""
        if digest is None:
            return
        digest.verify(resource.size_bytes or 0)
        expected = digest.expected
        self._notice(NoticeKind.VERIFIED, f"{expected.source} {expected.algorithm} verified")

    def _check_size(self, size_bytes: int | None, state: DownloadState | None) -> None:
        """Refuse, before any byte is written, a file over --max-size or over the free space."""
        if size_bytes is None:
            return
        limit = self.options.max_size_bytes
        if limit is not None and size_bytes > limit:
            raise NoSpace(
                str(self.path), f"file is {size_bytes} bytes, more than the maximum of {limit}"
            )
        done_bytes = state.done_bytes if state is not None else 0
        check_free_space(self.path, room_needed(self.path, size_bytes, done_bytes))

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
        log.info("%s: %s", self.shown_url, message)
        self.listener(Notice(self.shown_url, kind, message))


def mismatch_reason(state: DownloadState, contact: FirstContact) -> str | None:
    """Why a fresh first contact shows the partial data is not of the current file."""
    if contact.mode is not Mode.RANGED:
        return f"the server sent the whole file, not the missing part ({contact.reason})"
    fresh = contact.resource
    return changed(
        state.size_bytes, _validator_of(state), fresh.size_bytes, fresh.validator, Witness.STATE
    )


def _validator_of(state: DownloadState) -> Validator:
    return Validator(etag=state.etag, last_modified=state.last_modified)


def _resource_of(url: str, state: DownloadState) -> Resource:
    """The resource as a state file remembers it (for finishing without the network)."""
    return Resource(url, url, state.size_bytes, True, _validator_of(state))


def _close(contact: FirstContact | None) -> None:
    """Drop a first contact that will not be used (its connection is not reusable)."""
    if contact is not None and contact.response is not None:
        contact.response.close()


def _set_remote_time(path: Path, last_modified: str | None) -> None:
    """--remote-time: the file's mtime becomes the server's Last-Modified (when it has one)."""
    from email.utils import parsedate_to_datetime

    if last_modified is None:
        return
    try:
        mtime = parsedate_to_datetime(last_modified).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):  # OverflowError: a huge year
        log.debug("unusable Last-Modified %r", last_modified)
        return
    os.utime(path, (time.time(), mtime))
