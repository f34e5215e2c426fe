"""Resume decisions and checkpoints: what on disk may be trusted, and keeping it that way.

A partial download is trusted only when its state file is intact, was written for the same
URL, and the server still has the same file (same size, same strong validator). Anything else
is dropped whole: two versions of a file are never spliced. While bytes flow, a
:class:`Checkpointer` syncs the data (``fdatasync``) and *then* records in the state which
ranges that sync covered, so the state never claims a byte the disk may not have.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from segdl.core.errors import LocalFileError, OutputLocked, StateInvalid
from segdl.core.models import ByteRange, Resource
from segdl.disk.lock import OwnerLock
from segdl.disk.paths import OutputPaths
from segdl.disk.state import (
    DownloadState,
    load_state,
    merge_ranges,
    redact_url,
    remove_state,
    save_state,
    url_digest,
)
from segdl.disk.storage import PartFile

log = logging.getLogger(__name__)

# Save at most this often while bytes flow, and at least this often...
_MIN_INTERVAL_S = 0.1
_MAX_INTERVAL_S = 1.0
# ...and in between as soon as this share of the file is newly written (so a crash loses
# little of a small file, and a large file is not synced 10 times a second for nothing).
_SHARE_PER_SAVE = 1 / 128
_MIN_BYTES_PER_SAVE = 256 * 1024
_POLL_S = 0.05
# A file this large does not stay in the page cache (unless the caller asks: keep_cache).
# Each save drops the pages it has synced, except those the digest still has to read, so the
# file's pages in memory stay near what is written between two syncs (about 100 MiB at
# 1 GiB/s), which the next writes reuse, instead of growing with the file. Gigabytes kept
# cached would evict everything else; and fresh memory is slow on virtual machines whose
# balloon hands free pages back to the host (each first touch is then a fault on the host;
# measured: bench/README.md). The cost: such a file, read right after its download, comes
# from disk. Smaller files stay cached, as with other tools.
DROP_CACHE_FROM_BYTES = 256 << 20


def state_for(url: str, resource: Resource, done: list[ByteRange], owner: str) -> DownloadState:
    """A state describing ``done`` of ``resource``; only a strong ETag is kept."""
    assert resource.size_bytes is not None
    return DownloadState(
        url_digest=url_digest(url),
        url_display=redact_url(url),
        final_url_display=redact_url(resource.final_url),
        size_bytes=resource.size_bytes,
        etag=resource.validator.strong_etag,
        last_modified=resource.validator.last_modified,
        done=merge_ranges(done),
        owner=owner,
    )


def load_resumable(paths: OutputPaths, url: str) -> tuple[DownloadState | None, str | None]:
    """The state of a resumable partial download of ``url`` at ``paths``, if any.

    Returns ``(state, why_not)``: ``why_not`` explains a partial download that exists but
    cannot be trusted; the caller discards it (keeping nothing of it) and says so.
    """
    part = paths.part
    try:
        state = load_state(paths.state)
    except StateInvalid as exc:
        return None, exc.why
    if state is None:
        if part.exists() or part.is_symlink():
            return None, "a .part file without resume state"
        return None, None
    if state.url_digest != url_digest(url):
        return None, f"resume state is for another URL ({state.url_display})"
    if not state.complete:
        try:
            size = part.lstat().st_size
        except FileNotFoundError:
            return None, "resume state without its .part file"
        if not part.is_file() or size != state.size_bytes:
            return None, f".part file has {size} bytes, expected {state.size_bytes}"
    return state, None


def free_for(candidate: OutputPaths, url: str) -> bool:
    """May a download of ``url`` use ``candidate`` (for ``--if-exists rename``)? Yes if nothing
    is there, or only a partial download of this same URL (which will be resumed). Another
    URL's partial download is left alone."""
    if os.path.lexists(candidate.final):
        return False
    try:
        state = load_state(candidate.state)
    except StateInvalid:
        return False
    if state is None:
        return not os.path.lexists(candidate.part)
    return state.url_digest == url_digest(url)


def discard(paths: OutputPaths) -> None:
    """Remove a partial download: its ``.part`` and its state (nothing else)."""
    for path in (paths.part, paths.state):
        if path.is_symlink() or (path.exists() and not path.is_file()):
            # Planted, not ours: refuse rather than follow it or delete it.
            raise LocalFileError(
                errno.ELOOP, f"refusing to use {path}: not a regular file", str(path)
            )
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LocalFileError(exc.errno or 0, f"cannot remove {path}: {exc}", str(path)) from exc


class Checkpointer:
    """Keeps the state file in step with what is durable, from a background thread (started
    by :meth:`tick` when the first save is due).

    ``written`` returns the ranges whose ``pwrite`` has returned; a save snapshots it, syncs
    the data, and only then records the snapshot. Also saves once more on exit (an orderly
    stop, successful or not) unless told the download is being discarded.
    """

    def __init__(
        self,
        paths: OutputPaths,
        part: PartFile,
        template: DownloadState,
        written: Callable[[], list[ByteRange]],
        lock: OwnerLock,
        clock: Callable[[], float] = time.monotonic,
        hashed: Callable[[], int] | None = None,
        keep_cache: bool = False,
    ) -> None:
        """``hashed``: how far a digest running behind the writers has read, so that pages
        it still needs are not dropped (see DROP_CACHE_FROM_BYTES); ``keep_cache``: drop
        none."""
        self._state_path = paths.state
        self._hashed = hashed
        self._drop_cache = not keep_cache and template.size_bytes >= DROP_CACHE_FROM_BYTES
        self._part = part
        self._template = template
        self._written = written
        self._lock = lock
        self._clock = clock
        self._stop = threading.Event()
        self._save_lock = threading.Lock()
        self._saved_bytes = template.done_bytes
        self._saved_s = clock()
        self._started_s = self._saved_s
        self._saves = 0
        self._threshold_bytes = max(_MIN_BYTES_PER_SAVE, int(template.size_bytes * _SHARE_PER_SAVE))
        self.error: BaseException | None = None
        self._abandoned = False
        self._completed = False
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Checkpointer:
        # No save yet: a .part without a state is never trusted, so a crash before the first
        # save only costs what was fetched so far, and a small file never pays for a state.
        return self

    def tick(self) -> None:
        """Called a few times a second by the thread supervising the transfer. The saving
        thread starts the first time a save is due: a file done before that (most files of
        a batch of small ones) never pays for a thread."""
        if self._thread is None and not self._stop.is_set() and self._due():
            self._thread = threading.Thread(target=self._run, name="segdl-checkpoint", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        """Has the saving thread started (it then checks every _POLL_S by itself)?"""
        return self._thread is not None

    @property
    def saved(self) -> bool:
        """Has a state file been written (so one may need removing)?"""
        return self._saves > 0

    def __exit__(self, *exc_info: object) -> None:
        self._stop_thread()
        if self._abandoned or self._completed:
            return
        try:
            self.save()  # an orderly stop: what is on disk stays resumable
        except (LocalFileError, OSError) as exc:
            if exc_info[0] is None:
                raise
            log.debug("final checkpoint failed: %s", exc)  # the original error matters more

    def abandon(self) -> None:
        """The bytes are wrong (a digest mismatch): not worth resuming, so no save on exit."""
        self._abandoned = True

    def complete(self) -> None:
        """Every byte is written: sync and say so, before the rename. A download that never
        needed a checkpoint (it took under a second) skips it: redoing it is cheaper than
        the syncs that would make it recoverable."""
        self._stop_thread()
        if self.saved or self._clock() - self._started_s >= _MAX_INTERVAL_S:
            self.save(complete=True)
        self._completed = True

    def save(self, *, complete: bool = False) -> None:
        """Sync the data, then record what that sync covered."""
        with self._save_lock:
            if not self._lock.still_held():
                raise OutputLocked(str(self._state_path), "the lock was taken by another process")
            done = self._written()
            self._part.sync_data()
            if self._drop_cache:
                self._part.drop_cached(self._hashed() if self._hashed is not None else None)
            state = replace(self._template, done=merge_ranges(done), complete=complete)
            save_state(self._state_path, state)
            self._saves += 1
            self._saved_bytes = state.done_bytes
            self._saved_s = self._clock()

    def _stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _due(self) -> bool:
        elapsed_s = self._clock() - self._saved_s
        if elapsed_s < _MIN_INTERVAL_S:
            return False
        new_bytes = sum(r.length for r in self._written()) - self._saved_bytes
        # The first save comes as early as the others (#19: after a MiB or a second, ten
        # kill -9 early in runs of 16 MiB had the server send 1.3-1.7x the file): a file
        # done within _MIN_INTERVAL_S, most of a batch of small ones, still never pays for one.
        return new_bytes > 0 and (
            new_bytes >= self._threshold_bytes or elapsed_s >= _MAX_INTERVAL_S
        )

    def _run(self) -> None:
        while True:
            if self._due():
                try:
                    self.save()
                except (LocalFileError, OSError) as exc:
                    self.error = exc  # the engine stops the download with it
                    log.debug("checkpoint failed: %s", exc)
                    return
            # What was written meanwhile starts on its way to the disk now, not at the next
            # sync: the sync before the rename then waits for the last moments' bytes only.
            self._part.start_writeback()
            if self._stop.wait(_POLL_S):
                return


def finish(paths: OutputPaths) -> None:
    """After the rename: the state has served its purpose."""
    remove_state(paths.state)
