"""The ``.part`` file: created privately, written at offsets, moved to its name only when done.

A partial download never sits at the final name: bytes go to ``<output>.part`` (mode 0600,
opened with ``O_NOFOLLOW`` so a planted symlink is refused), each at its own offset with
``os.pwrite`` from any thread. :meth:`PartFile.finalize` checks the size, syncs, gives the file
the usual mode under the umask and renames it into place; without ``overwrite`` the rename is
``link`` + ``unlink``, which fails rather than replace a file that appeared meanwhile.

On Linux a connection's bytes can skip Python altogether: the transport splices them from the
socket into a :class:`Pipe` and :meth:`PartFile.write_from_pipe` splices them on into the file
at their offset, one copy in the kernel instead of two through a buffer.

Where the kernel can do better than plain writes, it is asked to: the blocks of the file are
reserved once its size is known (:meth:`PartFile.allocate`), and dirty pages are sent on their
way to the disk between the checkpointer's syncs (:meth:`PartFile.start_writeback`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from segdl.core.errors import IntegrityError, LocalFileError, NoSpace, OutputExists
from segdl.disk import kernel
from segdl.disk.paths import OutputPaths

log = logging.getLogger(__name__)

# Errors that mean "this file system (or kernel) cannot splice": copy instead.
_NO_SPLICE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF, errno.EXDEV})
_PIPE_BYTES = 1 << 20


def make_directory(directory: Path) -> None:
    """Create ``directory`` and its parents, as ``mkdir -p`` (and aria2c ``-d``, wget ``-P``)
    do, with the umask's permissions; an error names the directory and the cause."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # exist_ok still refuses a file in the way
        why = f"cannot create directory {directory}: a file of that name is in the way"
        raise LocalFileError(errno.ENOTDIR, why, str(directory)) from exc
    except OSError as exc:
        why = f"cannot create directory {directory}: {exc.strerror or exc}"
        raise LocalFileError(exc.errno or 0, why, str(directory)) from exc


def temp_sibling(path: Path, extension: str = "tmp") -> Path:
    """A fresh hidden name beside ``path`` for a file about to be renamed or linked into place:
    ``.segdl-<16 hex>.<extension>``, whatever ``path``'s length, so that a name that fits the
    file system's NAME_MAX never has a temporary sibling that does not (#19: the lock's
    ``.{name}.segdl-lock.{hex}.tmp`` was 33 bytes longer than the name)."""
    import secrets  # start-up: a batch of small files links unnamed files, never renames

    return path.with_name(f".segdl-{secrets.token_hex(8)}.{extension}")


def check_parent_exists(final_path: Path) -> None:
    """An output path (``-o``) in a missing directory: one clear line, not a lock error.
    Like curl without ``--create-dirs``, a path given whole is not invented."""
    parent = final_path.parent
    if not parent.is_dir():
        why = f"directory {parent} does not exist (-d DIR creates it; -o does not)"
        raise LocalFileError(errno.ENOENT, why, str(parent))


def check_output_free(final_path: Path, *, overwrite: bool) -> None:
    """Refuse early, before any byte is fetched, to clobber an existing file."""
    if overwrite:
        if final_path.is_dir():
            raise LocalFileError(errno.EISDIR, "output path is a directory", str(final_path))
        return
    if os.path.lexists(final_path):
        raise OutputExists(str(final_path))


def check_free_space(
    final_path: Path,
    needed_bytes: int,
    statvfs: Callable[[Path], os.statvfs_result] = os.statvfs,
) -> None:
    """Refuse a file that cannot fit: better a clear error now than ENOSPC at 97%."""
    directory = final_path.parent
    try:
        info = statvfs(directory)
    except OSError:
        return  # nothing to learn here; a real shortage will still surface as ENOSPC
    free_bytes = info.f_bavail * info.f_frsize
    if needed_bytes > free_bytes:
        raise NoSpace(
            str(final_path),
            f"no space left: {needed_bytes} bytes needed, {free_bytes} free in {directory}",
        )


def room_needed(paths: OutputPaths, size_bytes: int, done_bytes: int) -> int:
    """The disk space the rest of a download needs: its size, less what is done or what its
    ``.part`` holds already (blocks reserved by :meth:`PartFile.allocate` count as held, so
    resuming a reserved file on a full disk needs nothing more)."""
    try:
        held_bytes = os.lstat(paths.part).st_blocks * 512
    except OSError:
        held_bytes = 0
    return max(0, size_bytes - max(done_bytes, held_bytes))


class PartFile:
    """An open ``.part`` file for one download. Thread-safe for :meth:`write_at`.

    Writes take a lock of their own. The kernel serialises buffered writes to one file anyway
    (the inode lock), but its waiters spin while the holder copies: measured with ``perf`` on
    two cores, 16 connections spent a fifth of the machine spinning there when copies ran
    slowly, CPU the server on the other end needed. Waiting on this lock sleeps instead.
    """

    def __init__(self, paths: OutputPaths, *, overwrite: bool, resume: bool = False) -> None:
        """Create an empty ``.part``, or with ``resume`` open the existing one as it is."""
        self.final_path = paths.final
        self.path = paths.part
        self.overwrite = overwrite
        check_output_free(paths.final, overwrite=overwrite)
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
        if not resume:
            flags |= os.O_CREAT | os.O_EXCL  # a leftover was discarded first, under the lock
        try:
            self._fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise local_error(exc, "cannot create", self.path) from exc
        self._splice_ok = True
        self._write_lock = threading.Lock()
        try:
            os.fchmod(self._fd, 0o600)  # an older .part may have had another mode
        except OSError as exc:
            self.close()
            raise local_error(exc, "cannot set mode of", self.path) from exc

    @property
    def fileno(self) -> int:
        return self._fd

    def allocate(self, size_bytes: int) -> None:
        """Give the file its final size up front, so every offset is writable, and on ext4
        and XFS reserve its blocks (``fallocate``, as aria2c's ``falloc``).

        Writing into reserved blocks costs the kernel less than filling a sparse file
        (measured: bench/README.md). A disk that fills up meanwhile fails here, not at 97%.
        Blocks already written (a resume) are kept."""
        try:
            os.ftruncate(self._fd, size_bytes)
        except OSError as exc:
            raise local_error(exc, "cannot size", self.path) from exc
        try:
            kernel.reserve(self._fd, size_bytes)
        except OSError as exc:
            raise local_error(exc, "cannot reserve space for", self.path) from exc

    def write_at(self, offset: int, data: memoryview) -> None:
        """Write all of ``data`` at ``offset``; safe to call from many threads at once."""
        try:
            while data:
                with self._write_lock:
                    written = os.pwrite(self._fd, data, offset)
                data = data[written:]
                offset += written
        except OSError as exc:
            raise local_error(exc, "cannot write", self.path) from exc

    def write_from_pipe(self, pipe: Pipe, offset: int, length: int) -> None:
        """Move ``length`` bytes waiting in ``pipe`` to ``offset``, thread-safe like
        :meth:`write_at`; where the file system cannot splice, they are copied instead."""
        while length:
            moved = self._splice(pipe, offset, length)
            if moved is None:  # this file system cannot: copy the rest
                break
            if moved <= 0:
                raise local_error(OSError(errno.EIO, "pipe ran dry"), "cannot write", self.path)
            pipe.pending -= moved
            offset += moved
            length -= moved
        while length:
            try:
                data = pipe.read(min(length, _PIPE_BYTES))
            except OSError as exc:
                raise local_error(exc, "cannot write", self.path) from exc
            pipe.pending -= len(data)
            self.write_at(offset, memoryview(data))
            offset += len(data)
            length -= len(data)

    def _splice(self, pipe: Pipe, offset: int, length: int) -> int | None:
        """One splice from ``pipe`` to ``offset``; None once the file system refused one.
        Checked under the write lock, so that connections waiting for it do not each try
        (and fail) once more after the first refusal."""
        with self._write_lock:
            if not self._splice_ok:
                return None
            try:
                return os.splice(pipe.read_fd, self._fd, length, offset_dst=offset)
            except OSError as exc:
                if exc.errno not in _NO_SPLICE:
                    raise local_error(exc, "cannot write", self.path) from exc
                self._splice_ok = False
                return None

    def drop_cached(self, end: int | None = None) -> None:
        """Let the kernel drop this file's cached pages before ``end`` (all if None). Only
        pages already synced go; dirty ones stay. Best effort: a no-op where unsupported."""
        if not hasattr(os, "posix_fadvise") or (end is not None and end <= 0):
            return
        with contextlib.suppress(OSError):
            os.posix_fadvise(self._fd, 0, end or 0, os.POSIX_FADV_DONTNEED)

    def start_writeback(self) -> None:
        """Have the kernel start writing the dirty pages to disk now, without waiting (Linux
        ``sync_file_range``), so that a sync, and the last one before the rename above all,
        finds little left to write. Best effort: a no-op where unsupported."""
        if self._fd >= 0:
            kernel.start_writeback(self._fd)

    def sync_data(self) -> None:
        """Push written bytes to the disk now (``fdatasync``), so the final ``fsync`` before
        the rename has little left to do; thread-safe, may run while others write."""
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            raise local_error(exc, "cannot sync", self.path) from exc

    def finalize(self, expected_size_bytes: int | None, *, sync_directory_too: bool = True) -> Path:
        """Verify, sync and move the file to its final name; return that name.

        Without ``sync_directory_too`` the rename may be lost in a power cut (the file then
        shows as ``.part``, which an untrusted restart replaces); the data itself is synced
        either way, so the final name never shows incomplete bytes."""
        try:
            actual = os.fstat(self._fd).st_size
            if expected_size_bytes is not None and actual != expected_size_bytes:
                raise IntegrityError(
                    f"{self.path} has {actual} bytes, expected {expected_size_bytes}"
                )
            os.fsync(self._fd)
            os.fchmod(self._fd, 0o666 & ~_current_umask())
            self.close()
            if self.overwrite:
                os.replace(self.path, self.final_path)
            else:
                _rename_no_clobber(self.path, self.final_path)
            if sync_directory_too:
                sync_directory(self.final_path.parent)
        except OSError as exc:
            if isinstance(exc, OutputExists):
                raise
            raise local_error(exc, "cannot finalize", self.final_path) from exc
        return self.final_path

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Remove the ``.part`` file (only when nothing worth resuming was written)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _rename_no_clobber(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except FileExistsError as exc:
        raise OutputExists(str(target)) from exc
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # Filesystems without hard links: check-then-rename is the best left.
        if os.path.lexists(target):
            raise OutputExists(str(target)) from exc
        os.rename(source, target)
        return
    os.unlink(source)


def sync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX: a directory entry is only durable after fsync)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems refuse fsync on directories
        log.debug("fsync of directory %s failed: %s", directory, exc)
    finally:
        os.close(fd)


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:  # raw reads: a text file object here showed in a batch's profile (bench/README.md)
        fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
        try:
            status = os.read(fd, 1 << 16)
        finally:
            os.close(fd)
        _, found, rest = status.partition(b"\nUmask:")
        if found:
            return int(rest.split(None, 1)[0], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def local_error(exc: OSError, what: str, path: Path) -> LocalFileError:
    """``exc`` as a LocalFileError saying what failed on which path (ELOOP: a symlink)."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.errno == errno.ELOOP:
        reason = "refusing to follow a symlink"
    return LocalFileError(exc.errno or 0, f"{what} {path}: {reason}", str(path))


class Pipe:
    """A kernel pipe standing in for a read buffer, so body bytes can go socket → pipe → file
    without a copy through Python (Linux ``splice``). One per connection; not thread-safe.

    ``pending`` counts the bytes in it; whoever puts bytes in must take every one out (to the
    file or :meth:`discard`) before the next fill, or the next range would get them.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        self.pending = 0
        self.capacity = 64 * 1024  # Linux's default
        with contextlib.suppress(OSError):  # a bigger pipe means fewer system calls
            import fcntl

            self.capacity = fcntl.fcntl(self.write_fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)

    @staticmethod
    def supported() -> bool:
        return sys.platform == "linux" and hasattr(os, "splice")

    def read(self, max_bytes: int) -> bytes:
        data = os.read(self.read_fd, max_bytes)
        if not data:
            raise OSError(errno.EIO, "pipe ran dry")
        return data

    def discard(self, n_bytes: int) -> None:
        """Throw away the next ``n_bytes`` (a race's duplicate, bytes past a range's end)."""
        while n_bytes:
            taken = len(self.read(min(n_bytes, _PIPE_BYTES)))
            self.pending -= taken
            n_bytes -= taken

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
