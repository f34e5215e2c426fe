"""One go at a download's file: resume or first contact, the transfer, the check, the name.

:class:`Attempt` asks for the first missing range of a resumable state (or takes the first
contact), refuses a file over ``--max-size`` or the free space before any byte is written,
checks the mirrors, hands the moving of bytes to a :class:`~segdl.run.transfer.Transfer` with
a checkpointer keeping the state durable, verifies the digest, and only then gives the file
its final name. A remote file that changed raises ``RemoteChanged``; whether to start over
is the engine's question (:func:`segdl.core.failures.decide_restart`).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from segdl.core.answers import Mode, Witness, changed, if_range
from segdl.core.digests import Expected, parse_checksum_option
from segdl.core.errors import IntegrityError, NoSpace, RemoteChanged
from segdl.core.models import ByteRange, Resource, Result, Validator
from segdl.core.options import DownloadOptions
from segdl.core.progress import DownloadFinished, DownloadReceived, NoticeKind, ProgressListener
from segdl.disk import resume as resuming
from segdl.disk.hashing import DigestCheck
from segdl.disk.lock import OwnerLock
from segdl.disk.paths import OutputPaths
from segdl.disk.state import DownloadState
from segdl.disk.storage import PartFile, check_free_space, room_needed
from segdl.net.auth import Identity
from segdl.net.interfaces import Transport
from segdl.run.probe import Contacts, FirstContact, close
from segdl.run.ratelimit import TokenBucket
from segdl.run.sources import usable_mirrors
from segdl.run.transfer import Fetched, Transfer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """One download once its output is chosen: what every attempt at it shares."""

    url: str
    shown_url: str
    paths: OutputPaths
    options: DownloadOptions
    transport: Transport
    identity: Identity
    listener: ProgressListener
    cancel: threading.Event
    clock: Callable[[], float]
    started_s: float
    notify: Callable[[NoticeKind, str], None]
    mirror_urls: Sequence[str] = ()
    rate_limiters: Sequence[TokenBucket] = ()
    workers: cf.Executor | None = None

    def elapsed_s(self) -> float:
        return self.clock() - self.started_s


class Attempt:
    """One go at the file: resume ``state`` if given, else from scratch; used once."""

    def __init__(
        self,
        target: Target,
        contacts: Contacts,
        lock: OwnerLock,
        state: DownloadState | None,
        early: FirstContact | None = None,
    ) -> None:
        """``early``: a first contact already made (to name the file), used if fresh."""
        self.target = target
        self.contacts = contacts
        self.lock = lock
        self.state = state
        self.early = early

    def run(self) -> Result:
        target, state = self.target, self.state
        missing = state.missing() if state is not None else None
        contact = self._contact(missing)
        try:
            self._check_size(contact.resource.size_bytes)
        except BaseException:
            close(contact)
            raise
        transfer_mirrors = self._mirrors(contact)
        part = PartFile(target.paths, overwrite=target.options.overwrite, resume=state is not None)
        expected = self._expected_digest(contact)
        digest = DigestCheck(expected, part.fileno) if expected is not None else None
        transfer = self._transfer(transfer_mirrors, digest)
        try:
            fetched, saved = self._fetch(transfer, contact, part, missing, digest)
            self._commit(part, fetched.resource, stateful=state is not None or saved)
        except IntegrityError:
            part.close()
            resuming.discard(target.paths)
            raise
        finally:
            part.close()
            if digest is not None:
                digest.close()
        elapsed_s = target.elapsed_s()
        log.debug("finalized after %.3f s", elapsed_s)
        size_bytes = fetched.resource.size_bytes or 0
        final = target.paths.final
        target.listener(DownloadFinished(target.shown_url, final, size_bytes, elapsed_s))
        return Result(target.url, final, size_bytes, elapsed_s, fetched.connections, fetched.ranged)

    def _contact(self, missing: list[ByteRange] | None) -> FirstContact:
        """A resume asks for its first missing range (bounded: an open-ended range would make
        the server push bytes we already have); else the first contact."""
        state = self.state
        if state is None:
            return self.early or self.contacts.first()
        if not missing:  # every byte is there; only the final steps are missing
            return FirstContact(_resource_of(self.target.url, state), Mode.RANGED, None)
        first_missing = missing[0]
        guard = if_range(_validator_of(state))
        contact = self.contacts.first(
            start=first_missing.start, end=first_missing.end, if_range=guard
        )
        self._check_resumable(state, contact)
        return contact

    def _mirrors(self, contact: FirstContact) -> tuple[Resource, ...]:
        target = self.target
        if contact.mode is not Mode.RANGED or not target.mirror_urls:
            return ()
        return tuple(
            usable_mirrors(
                target.mirror_urls,
                contact.resource,
                target.transport,
                target.options,
                target.identity,
                target.notify,
            )
        )

    def _transfer(self, mirrors: tuple[Resource, ...], digest: DigestCheck | None) -> Transfer:
        target = self.target
        return Transfer(
            target.url,
            target.paths.final,
            target.options,
            target.transport,
            target.listener,
            target.cancel,
            target.clock,
            target.started_s,
            target.identity,
            mirrors=mirrors,
            rate_limiters=target.rate_limiters,
            workers=target.workers,
            digest=digest,
        )

    def _fetch(
        self,
        transfer: Transfer,
        contact: FirstContact,
        part: PartFile,
        missing: list[ByteRange] | None,
        digest: DigestCheck | None,
    ) -> tuple[Fetched, bool]:
        """Every byte in and verified; and whether a state file was saved on the way."""
        if contact.resource.size_bytes is None or contact.mode is Mode.EMPTY:
            fetched = transfer.fetch(contact, part, missing)
            self._received(fetched.resource)
            self._verify(digest, fetched.resource)
            return fetched, False
        target = self.target
        template = resuming.state_for(target.url, contact.resource, [], self.lock.token)
        if self.state is not None:
            template = replace(template, done=self.state.done)
        with resuming.Checkpointer(
            target.paths,
            part,
            template,
            transfer.written_ranges,
            self.lock,
            target.clock,
            hashed=(lambda: digest.hashed_bytes) if digest is not None else None,
            keep_cache=target.options.keep_cache,
        ) as checkpointer:
            fetched = transfer.fetch(contact, part, missing, checkpointer)
            self._received(fetched.resource)
            try:
                self._verify(digest, fetched.resource)
            except IntegrityError:
                checkpointer.abandon()  # wrong bytes are not worth resuming
                raise
            checkpointer.complete()
            return fetched, checkpointer.saved

    def _commit(self, part: PartFile, resource: Resource, *, stateful: bool) -> None:
        """The final name, then the state goes. A sub-second download with no state skips
        the directory sync: losing its rename to a power cut only means fetching it again."""
        paths = self.target.paths
        part.finalize(resource.size_bytes, sync_directory_too=stateful)
        if stateful:
            resuming.finish(paths)
        if self.target.options.remote_time:
            _set_remote_time(paths, resource.validator.last_modified)

    def _received(self, resource: Resource) -> None:
        target = self.target
        event = DownloadReceived(target.shown_url, resource.size_bytes or 0, target.elapsed_s())
        target.listener(event)

    def _expected_digest(self, contact: FirstContact) -> Expected | None:
        """--checksum wins; else a digest of the whole file the server sent, if any."""
        if self.target.options.checksum is not None:
            return parse_checksum_option(self.target.options.checksum)
        return contact.expected_digest

    def _verify(self, digest: DigestCheck | None, resource: Resource) -> None:
        """The finished file against the expected digest: a mismatch is never finalized."""
        if digest is None:
            return
        digest.verify(resource.size_bytes or 0)
        expected = digest.expected
        self.target.notify(NoticeKind.VERIFIED, f"{expected.source} {expected.algorithm} verified")

    def _check_size(self, size_bytes: int | None) -> None:
        """Refuse, before any byte is written, a file over --max-size or over the free space."""
        if size_bytes is None:
            return
        paths = self.target.paths
        limit = self.target.options.max_size_bytes
        if limit is not None and size_bytes > limit:
            raise NoSpace(
                str(paths.final), f"file is {size_bytes} bytes, more than the maximum of {limit}"
            )
        done_bytes = self.state.done_bytes if self.state is not None else 0
        check_free_space(paths.final, room_needed(paths, size_bytes, done_bytes))

    def _check_resumable(self, state: DownloadState, contact: FirstContact) -> None:
        why = mismatch_reason(state, contact)
        if why is not None:
            close(contact)
            raise RemoteChanged(contact.resource.final_url, why)
        notify = self.target.notify
        if state.etag is None and state.last_modified is None:
            notify(
                NoticeKind.RESUMED,
                "the server gives no validator: resuming because the size is unchanged",
            )
        done, size = state.done_bytes, state.size_bytes
        notify(NoticeKind.RESUMED, f"resuming with {done} of {size} bytes already here")


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


def _set_remote_time(paths: OutputPaths, last_modified: str | None) -> None:
    """--remote-time: the file's mtime becomes the server's Last-Modified (when it has one)."""
    from email.utils import parsedate_to_datetime

    if last_modified is None:
        return
    try:
        mtime = parsedate_to_datetime(last_modified).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):  # OverflowError: a huge year
        log.debug("unusable Last-Modified %r", last_modified)
        return
    os.utime(paths.final, (time.time(), mtime))
