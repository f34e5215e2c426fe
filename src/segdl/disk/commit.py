"""Small files made durable in groups, and given their names only then.

Syncing and renaming each small file on its own costs more than fetching it: an ``fsync``
before every rename, a directory sync after it. Here each file is written whole into an
unnamed file in its directory (Linux ``O_TMPFILE``: it has no name until it is linked, so a
crash or ``kill -9`` leaves nothing behind, not even a temporary), and files are committed in
groups: the group is made durable at once (one ``syncfs`` of its file system, where that is
known to write back every file and report a failure: :mod:`segdl.disk.kernel`; elsewhere, and
for a group of a few files, an ``fdatasync`` per file from a small pool), then each file is
linked to its final name, then each directory is synced once.

The files are written by threads of their own, not by the caller: creating a file is the
file system's work (an inode to find, on ext4 without a journal a scan past every inode
deleted in the last minute, which made creating 5000 files cost more than fetching them), and
on a thread it overlaps the caller's network loop on another core. At most
:data:`QUEUED_BYTES` of bodies wait for them, and at most :data:`OPEN_FILES` files are written
and not yet named (each holds a descriptor); past either, the stage before waits. A caller
with nothing else to do (the child of :mod:`segdl.disk.forked`) asks for no writing thread
and writes in :meth:`GroupCommit.hand_over` itself.

The promise is the one of the single-file path (README, "Resume and crash safety"): nothing is
ever at a final name that is not complete and on disk. The window is the group: a power cut or
``kill -9`` loses at most the files received since the last commit (at most
:data:`GROUP_FILES` files or :data:`GROUP_WAIT_S` seconds of them) and those in flight; a
lost file is simply fetched again by the next run. A file is reported done only once its
group's directory sync returned.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from segdl.disk import kernel

GROUP_FILES = 64
GROUP_WAIT_S = 0.25
SYNC_THREADS = 4
WRITE_THREADS = 2
QUEUED_BYTES = 8 << 20
OPEN_FILES = 4 * GROUP_FILES
"""Files written and not yet named, at most (a descriptor each: with a slow disk they would
pile up past the process's limit of open files)."""
SYNCFS_FROM_FILES = 8
"""A group this large is made durable by one ``syncfs`` where that suffices (a few files'
``fdatasync`` cost less than writing back whatever else the file system holds)."""
_WRITE_AT_ONCE = 16  # files a writer takes at a time, so that both writers have work
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
# What open(O_TMPFILE) says where the file system (or kernel) cannot make unnamed files.
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT})


def unnamed_files_work(directory: Path) -> bool:
    """Whether ``directory`` takes unnamed files that can be linked in later (Linux, a
    local file system, ``/proc`` mounted)."""
    if not _O_TMPFILE or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        fd = os.open(directory, _O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    os.close(fd)
    return True


@dataclass(eq=False, slots=True)
class Staged:
    """A file written whole, unnamed, waiting for its group's commit."""

    fd: int
    directory_fd: int
    final_path: Path
    overwrite: bool
    token: object
    info: os.stat_result | None = None
    """Its stat once written, for the journal (taken by the writing thread, not the
    committing one, whose work is the serial part of a batch of small files)."""


@dataclass(eq=False, slots=True)
class _Body:
    """A file's bytes, waiting for the writing thread."""

    directory: Path
    body: bytes
    final_path: Path
    overwrite: bool
    token: object


class GroupCommit:
    """Stages files from one thread, writes them from :data:`WRITE_THREADS` threads and
    commits them in groups from another.

    ``on_done(staged, error)`` is called from the committing thread (a writing thread for a
    file that could not be written) once a file is at its
    final name and durable (``error`` None), or could not be committed (``error`` says why;
    nothing is at the final name then, unless it was there before). ``before_link(files)``
    is called with the group's synced files and their stat, just before they are linked (an
    OSError from it: none of them is). ``after_group()`` is called once a group's files
    have all been given to ``on_done``."""

    def __init__(
        self,
        on_done: Callable[[Staged, OSError | None], None],
        *,
        before_link: Callable[[list[tuple[Staged, os.stat_result]]], None] | None = None,
        after_group: Callable[[], None] | None = None,
        group_files: int = GROUP_FILES,
        group_wait_s: float = GROUP_WAIT_S,
        sync_threads: int = SYNC_THREADS,
        write_threads: int = WRITE_THREADS,
        queued_bytes: int = QUEUED_BYTES,
        open_files: int = OPEN_FILES,
    ) -> None:
        self._on_done = on_done
        self._before_link = before_link
        self._after_group = after_group
        self._group_files = group_files
        self._group_wait_s = group_wait_s
        self._sync_threads = sync_threads
        self._queued_bytes = queued_bytes
        self._open_files = open_files
        # The committing thread's state: one lock, the committer waits on _cond for files,
        # the writers on _room for descriptors to be given back.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._pending: list[Staged] = []
        self._opened = 0  # files being written, written, or in the group being committed
        self._starved = False  # a writer waits for descriptors: commit what is there now
        self._closing = False
        self._bodies = threading.Condition()
        self._incoming: list[_Body] = []
        self._incoming_bytes = 0
        self._bodies_closing = False
        self._held: list[_Body] = []  # staged, not yet handed over (the caller's thread's)
        self._held_bytes = 0
        self._directories: dict[Path, int] = {}  # opened once each: names resolve from them
        self._devices: dict[int, int | None] = {}  # directory fd: its device, if syncfs does
        self._syncs: cf.ThreadPoolExecutor | None = None
        self._thread = threading.Thread(target=self._run, name="segdl-commit", daemon=True)
        self._thread.start()
        self._writers = [threading.Thread(target=self._write_all, name="segdl-write", daemon=True)
                         for _ in range(write_threads)]  # fmt: skip
        for writer in self._writers:
            writer.start()

    def stage(self, directory: Path, body: bytes, final_path: Path, *, overwrite: bool,
              token: object, now: bool = True) -> None:  # fmt: skip
        """Have ``body`` written into a new unnamed file in ``directory`` (which holds
        ``final_path``), to be committed as ``final_path``. Returns at once unless more than
        ``queued_bytes`` wait already; a file that cannot be written reaches ``on_done``
        with its error (nothing is left behind). An OSError if ``directory`` cannot be
        opened. ``now=False``: the body waits in the caller's hands until :meth:`hand_over`
        (or :meth:`close`), so that a loop staging many files at once wakes the writers once
        for all of them, not once a file."""
        if directory not in self._directories:  # opened here: the writers only read them
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            self._directories[directory] = os.open(directory, flags)
        self._held.append(_Body(directory, body, final_path, overwrite, token))
        self._held_bytes += len(body)
        if now:
            self.hand_over()

    def hand_over(self) -> None:
        """The bodies :meth:`stage` held, to the writers (waiting while more than
        ``queued_bytes`` wait for them)."""
        if not self._held:
            return
        held, size = self._held, self._held_bytes
        self._held, self._held_bytes = [], 0
        if not self._writers:  # written here, by the caller's thread
            self._write_some(held)
            return
        with self._bodies:
            while self._incoming_bytes > self._queued_bytes and not self._bodies_closing:
                self._bodies.wait()
            if self._bodies_closing:
                raise OSError("closed")
            was = len(self._incoming)
            self._incoming.extend(held)
            self._incoming_bytes += size
            if not was:
                self._bodies.notify()

    def _write_all(self) -> None:
        """A writing thread: waiting bodies into their unnamed files, then to the group."""
        while True:
            with self._bodies:
                while not self._incoming and not self._bodies_closing:
                    self._bodies.wait()
                if not self._incoming:
                    return
                bodies = self._incoming[:_WRITE_AT_ONCE]
                del self._incoming[:_WRITE_AT_ONCE]
                if self._incoming:
                    self._bodies.notify()  # the other writer takes the next ones
            self._write_some(bodies)
            with self._bodies:
                self._incoming_bytes -= sum(len(waiting.body) for waiting in bodies)
                self._bodies.notify_all()  # a stage() waiting for room

    def _write_some(self, bodies: list[_Body]) -> None:
        """Bodies into their unnamed files (from a writing thread, or the caller's with no
        writing thread), then to the group."""
        for at in range(0, len(bodies), _WRITE_AT_ONCE):
            batch = bodies[at : at + _WRITE_AT_ONCE]  # descriptors asked for a few at a time
            self._reserve(len(batch))
            written: list[Staged] = []
            for waiting in batch:
                try:
                    written.append(self._write(waiting))
                except OSError as exc:
                    self._on_done(Staged(-1, -1, waiting.final_path, waiting.overwrite,
                                         waiting.token), exc)  # fmt: skip
            with self._lock:
                self._opened -= len(batch) - len(written)
                was = len(self._pending)
                self._pending.extend(written)
                # The first file starts the group's clock (GROUP_WAIT_S), a full group ends it.
                if written and (was == 0 or was < self._group_files <= len(self._pending)):
                    self._cond.notify()

    def _reserve(self, files: int) -> None:
        """Wait until ``files`` more may be open (unless none is: then they go anyway)."""
        with self._lock:
            while self._opened and self._opened + files > self._open_files:
                self._starved = True
                self._cond.notify()
                self._room.wait()
            self._opened += files

    def _write(self, waiting: _Body) -> Staged:
        directory_fd = self._directories[waiting.directory]
        flags = _O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC
        fd = os.open(".", flags, 0o666, dir_fd=directory_fd)  # the umask applies
        try:
            view = memoryview(waiting.body)
            while view:
                view = view[os.write(fd, view) :]
            info = os.fstat(fd) if self._before_link is not None else None
        except BaseException:
            os.close(fd)
            raise
        return Staged(fd, directory_fd, waiting.final_path, waiting.overwrite, waiting.token,
                      info)  # fmt: skip

    def close(self) -> None:
        """Commit what is staged and wait for it."""
        self.hand_over()
        with self._bodies:
            self._bodies_closing = True
            self._bodies.notify_all()
        for writer in self._writers:
            writer.join()
        with self._lock:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        if self._syncs is not None:
            self._syncs.shutdown(wait=True)
        for fd in self._directories.values():
            os.close(fd)
        self._directories.clear()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                filling = len(self._pending) < self._group_files and not self._starved
                if filling and not self._closing:
                    self._cond.wait(self._group_wait_s)  # let the group fill a little
                group, self._pending = self._pending, []
            self._commit(group)
            with self._lock:
                self._opened -= len(group)
                self._starved = False
                self._room.notify_all()

    def _commit(self, group: list[Staged]) -> None:
        synced = self._make_durable(group)
        if self._before_link is not None:
            ok = [(s, s.info or os.fstat(s.fd)) for s, e in zip(group, synced, strict=True)
                  if e is None]  # fmt: skip
            try:
                self._before_link(ok)
            except Exception as exc:  # no file of the group is named; the thread goes on
                failed = exc if isinstance(exc, OSError) else OSError(f"cannot record: {exc}")
                synced = [failed] * len(group)
        results: list[OSError | None] = []
        directories: dict[int, None] = {}
        for staged, error in zip(group, synced, strict=True):
            if error is None:
                error = _link(staged)
            with contextlib.suppress(OSError):
                os.close(staged.fd)
            if error is None:
                directories[staged.directory_fd] = None
            results.append(error)
        for directory_fd in directories:
            with contextlib.suppress(OSError):  # some file systems refuse it; nothing to do
                os.fsync(directory_fd)  # the names are durable from here on
        for staged, error in zip(group, results, strict=True):
            self._on_done(staged, error)
        if self._after_group is not None:
            self._after_group()

    def _make_durable(self, group: list[Staged]) -> list[OSError | None]:
        """Every file of the group on disk: each one's error, None where it is."""
        if len(group) >= SYNCFS_FROM_FILES:
            devices = {self._device(staged.directory_fd): staged.directory_fd for staged in group}
            if None not in devices:
                try:
                    for directory_fd in devices.values():
                        kernel.sync_file_system(directory_fd)
                except OSError as exc:
                    return [exc] * len(group)
                return [None] * len(group)
        if self._syncs is None:
            self._syncs = cf.ThreadPoolExecutor(self._sync_threads, "segdl-sync")
        # A slice of the group per sync thread, not a task per file: handing each file to a
        # thread and back cost more futex calls than the files' own system calls.
        slices = [group[n :: self._sync_threads] for n in range(self._sync_threads)]
        errors: dict[int, OSError] = {}
        for found in self._syncs.map(_sync_all, slices):
            errors.update(found)
        return [errors.get(id(staged)) for staged in group]

    def _device(self, directory_fd: int) -> int | None:
        """The device of a directory whose file system one ``syncfs`` makes durable."""
        if directory_fd not in self._devices:
            whole = kernel.syncs_whole_file_system(directory_fd)
            self._devices[directory_fd] = os.fstat(directory_fd).st_dev if whole else None
        return self._devices[directory_fd]


def _sync_all(group: list[Staged]) -> dict[int, OSError]:
    """``fdatasync`` each file; the failures, by ``id`` of their :class:`Staged`."""
    errors = {}
    for staged in group:
        try:
            os.fdatasync(staged.fd)
        except OSError as exc:
            errors[id(staged)] = exc
    return errors


def _link(staged: Staged) -> OSError | None:
    """Give the unnamed file its final name: never over an existing file unless
    ``overwrite`` (then the old one is removed first: for a moment neither is there, which
    a crash can make last, but nothing incomplete is ever at the name)."""
    # A dir_fd makes os.link call linkat(AT_SYMLINK_FOLLOW), which links the file that
    # /proc/self/fd/N stands for; plain link() would try to link that magic link itself.
    source = f"/proc/self/fd/{staged.fd}"
    name = staged.final_path.name
    for _ in range(3):
        try:
            os.link(source, name, dst_dir_fd=staged.directory_fd, follow_symlinks=True)
            return None
        except FileExistsError as exc:
            if not staged.overwrite:
                return exc
            try:
                os.unlink(name, dir_fd=staged.directory_fd)
            except FileNotFoundError:
                continue
            except OSError as unlink_error:
                return unlink_error
        except OSError as exc:
            return exc
    return OSError(errno.EEXIST, "the output kept reappearing", str(staged.final_path))
