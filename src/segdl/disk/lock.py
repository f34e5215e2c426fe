"""The owner lock: one process at a time writes an output, also across hosts on NFS.

``<output>.segdl-lock`` holds the owner's host, boot id, pid and a random token. It is created
with ``link()`` from a complete temporary file, which is atomic-if-absent even on network
filesystems where ``flock`` may do nothing, and judged stale only when that is certain: same
host and boot but a dead pid, or same host after a reboot. Another host's lock is never taken
over: the user is told which host and pid hold it. Removing a stale lock goes through a
hard-linked claim, so of several processes taking over at once exactly one succeeds.

Also here, shared with :mod:`segdl.disk.state`: reading a small file without following a symlink.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import math
import os
import secrets
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from segdl.core.errors import OutputLocked
from segdl.disk.paths import OutputPaths
from segdl.disk.storage import local_error, temp_sibling

log = logging.getLogger(__name__)

CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LOCK_BYTES = 64 * 1024
# An unparseable lock or a removal claim this old was left by a crash, not being written.
_ABANDONED_S = 10.0
_TAKEOVER_ROUNDS = 5
# Filesystems without hard links (some FUSE and SMB mounts) refuse link() with these.
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK)


class NotRegularFile(Exception):
    """The path is a symlink or not a regular file."""


def read_regular_file(path: Path, max_bytes: int) -> tuple[bytes, os.stat_result] | None:
    """Up to ``max_bytes + 1`` bytes of the regular file at ``path`` and its stat; None if
    absent. A symlink is never followed, and a FIFO planted there never blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile("is a symlink") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile("is not a regular file")
        chunks: list[bytes] = []
        left = max_bytes + 1
        got = 0
        # Done once fstat's size is in: no further read only to meet the end of the file.
        while left > 0 and (got < info.st_size or not chunks) and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
            got += len(chunk)
        return b"".join(chunks), info
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@dataclass(frozen=True, slots=True)
class _LockRecord:
    host: str
    boot_id: str
    pid: int
    token: str
    created: float


@dataclass(frozen=True, slots=True)
class _Seen:
    """What the lock path held when read."""

    raw: bytes
    record: _LockRecord | None  # None: no parseable owner record
    age_s: float
    problem: str | None = None  # set when it is no lock of ours to judge (symlink, unreadable)


class OwnerLock:
    """Exclusive ownership of one output path, across processes and hosts.

    Use as a context manager, or :meth:`acquire` / :meth:`release`. The engine should check
    :meth:`still_held` before it claims progress, since a lock can be removed by hand."""

    def __init__(self, paths: OutputPaths) -> None:
        self.final_path = paths.final
        self.path = paths.lock
        self.host = socket.gethostname()
        self.boot_id = _read_boot_id()
        self.pid = os.getpid()
        self.token = f"{self.host}:{self.boot_id}:{self.pid}:{secrets.token_hex(8)}"
        self._held: bytes | None = None  # the lock file's bytes, while we hold it

    def acquire(
        self,
        *,
        wait_s: float = 0.0,
        poll_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Take the lock, waiting up to ``wait_s`` for a live owner to let go.

        Raises OutputLocked describing the owner when it is still held after that."""
        deadline = clock() + wait_s
        while True:
            try:
                owner = self._attempt()
            except OSError as exc:
                raise local_error(exc, "cannot lock", self.path) from exc
            if owner is None:
                return
            remaining_s = deadline - clock()
            if remaining_s <= 0:
                raise OutputLocked(str(self.final_path), owner, same_process=self._ours())
            sleep(min(poll_s, remaining_s))

    def still_held(self) -> bool:
        """Whether the lock file still holds our token."""
        seen = _read_lock(self.path)
        return seen is not None and seen.record is not None and seen.record.token == self.token

    def release(self) -> None:
        """Remove the lock file if it still holds what we put there (so our token); never
        raises, idempotent."""
        held, self._held = self._held, None
        if held is None:
            return
        try:
            self._remove_if_unchanged(held)
        except OSError as exc:  # a leftover lock of a dead pid is taken over next time
            log.warning("cannot remove lock %s: %s", self.path, exc)

    def __enter__(self) -> OwnerLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _attempt(self) -> str | None:
        """One try: None once the lock file holds our token, else who holds it."""
        for _ in range(_TAKEOVER_ROUNDS):
            linked = self._create()
            if linked is not None:  # link() said the name was free and is now ours
                self._held = linked
                return None
            # Otherwise the file, not our belief, says who owns the output: something was
            # there, or link() failed where it may have worked (NFS), or the file system has
            # no hard links and racing removers may move it aside.
            seen = _read_lock(self.path)
            if seen is None:
                continue
            if seen.record is not None and seen.record.token == self.token:
                self._held = seen.raw
                return None
            if not self._is_stale(seen):
                return self._describe(seen)
            log.warning("taking over stale lock %s (%s)", self.path, self._describe(seen))
            self._remove_if_unchanged(seen.raw)
        return f"{self.path} kept changing while segdl tried to take it over"

    def _ours(self) -> bool:
        """Whether the lock file names this very process as its owner (with another token)."""
        seen = _read_lock(self.path)
        record = None if seen is None else seen.record
        return (
            record is not None
            and (record.host, record.boot_id, record.pid) == (self.host, self.boot_id, self.pid)
            and record.token != self.token
        )

    def _create(self) -> bytes | None:
        """Create the lock file holding our record, unless something is at the path; the
        record if our ``link()`` put it there (it returned success: that is certain, also on
        NFS, where only a failure may be wrong), else None, and the caller reads the path."""
        record = {"host": self.host, "boot_id": self.boot_id, "pid": self.pid}
        record |= {"token": self.token, "created": time.time()}
        data = json.dumps(record).encode("utf-8")
        # Readable by all: another user's segdl may then say who holds the output.
        temp = temp_sibling(self.path)
        fd = os.open(temp, CREATE_FLAGS, 0o644)
        try:
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
            # No fsync: after a crash the lock is stale anyway (another boot id), and an
            # empty leftover is taken over once older than _ABANDONED_S.
            os.link(temp, self.path)  # atomic if absent, also on NFS; never follows the name
        except FileExistsError:
            return None
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            self._create_exclusive(data)
            return None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        return data

    def _create_exclusive(self, data: bytes) -> None:
        """O_EXCL creation, for filesystems without hard links (a reader may briefly see
        the file empty, which is judged as an unparseable record)."""
        try:
            fd = os.open(self.path, CREATE_FLAGS, 0o644)
        except FileExistsError:
            return
        try:
            write_all(fd, data)
        finally:
            os.close(fd)

    def _is_stale(self, seen: _Seen) -> bool:
        """Only certain deaths count: another host's lock is never judged from here."""
        record = seen.record
        if seen.problem is not None:
            return False
        if record is None:
            return seen.age_s > _ABANDONED_S
        if record.host != self.host:
            return False
        if record.boot_id != self.boot_id:
            return bool(record.boot_id and self.boot_id)  # a reboot ended that process
        return not _pid_alive(record.pid)

    def _describe(self, seen: _Seen) -> str:
        record = seen.record
        if seen.problem is not None:
            return seen.problem
        if record is None:
            return f"{self.path} holds no owner record yet"
        where = "this host" if record.host == self.host else f"host {record.host}"
        text = f"pid {record.pid} on {where}, since {_format_time(record.created)}"
        if record.host != self.host or record.boot_id != self.boot_id:
            text += f"; if that process is gone, remove {self.path} by hand"
        return text

    def _remove_if_unchanged(self, expected: bytes) -> None:
        """Remove the lock file only if it still holds ``expected``; of several processes
        racing to remove the same stale lock, only one does.

        Read-then-unlink could remove a lock that a faster taker created in between. So a
        remover first hard-links the lock to a claim named after ``expected``: link() is
        atomic-if-absent, one remover wins the claim, and while it exists no one else can
        remove that file. A remover whose judgment is out of date finds other content in
        its claim and leaves the lock alone."""
        # Named by the lock and its content, not after the output: a long name must not
        # give a claim name over NAME_MAX (#19).
        digest = hashlib.sha256(self.path.name.encode() + b"\0" + expected).hexdigest()[:16]
        claim = self.path.with_name(f".segdl-{digest}.claim")
        try:
            os.link(self.path, claim, follow_symlinks=False)
        except FileNotFoundError:
            return
        except FileExistsError:
            _drop_abandoned(claim)
            return
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            self._remove_by_rename(expected)
            return
        try:
            claimed = _read_lock(claim)
            if claimed is not None and claimed.problem is None and claimed.raw == expected:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(claim)

    def _remove_by_rename(self, expected: bytes) -> None:
        """Without hard links: move the lock aside, check it, put it back if it changed.
        Racing removers can then, rarely, both win; still_held() tells the loser."""
        aside = temp_sibling(self.path, "old")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = _read_lock(aside)
            if moved is not None and (moved.problem is not None or moved.raw != expected):
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.path, follow_symlinks=False)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(aside)


def _drop_abandoned(claim: Path) -> None:
    """Remove a claim left by a remover that died holding it (its ctime: when linked)."""
    with contextlib.suppress(OSError):
        if time.time() - os.lstat(claim).st_ctime > _ABANDONED_S:
            os.unlink(claim)


def _read_lock(path: Path) -> _Seen | None:
    try:
        got = read_regular_file(path, _MAX_LOCK_BYTES)
    except NotRegularFile as exc:
        return _Seen(b"", None, 0.0, f"{path} {exc}, not a segdl lock: remove it by hand")
    except OSError as exc:
        return _Seen(b"", None, 0.0, f"{path} cannot be read: {exc.strerror or exc}")
    if got is None:
        return None
    raw, info = got
    return _Seen(raw, _parse_lock_record(raw), time.time() - info.st_mtime)


def _parse_lock_record(raw: bytes) -> _LockRecord | None:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    host, boot_id, pid, token = (doc.get(k) for k in ("host", "boot_id", "pid", "token"))
    created = doc.get("created")
    if not (isinstance(host, str) and isinstance(boot_id, str) and isinstance(token, str)):
        return None
    # type(), not isinstance: True is an int. pid <= 0 would make os.kill signal a group.
    if type(pid) is not int or not 0 < pid < 2**31:
        return None
    if not isinstance(created, int | float) or not math.isfinite(created):
        return None
    return _LockRecord(host, boot_id, pid, token, float(created))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, owned by another user; anything else: assume alive
        return True
    return True


@functools.cache
def _read_boot_id() -> str:
    """This boot's id (Linux); "" where unknown, and then a reboot is never assumed. Read
    once: a process does not outlive its boot, and a batch takes a lock per file."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return ""


def _format_time(unix_s: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix_s))
    except (OverflowError, OSError, ValueError):
        return "an unknown time"
