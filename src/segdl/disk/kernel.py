"""What the kernel can do better than plain writes, asked through the C library where
Python's os module has no call for it (Linux): reserving a file's blocks (``fallocate``) on the
file systems where that is cheap, starting the write-back of dirty pages without waiting
(``sync_file_range``), and syncing a whole file system at once (``syncfs``) where that is
known to make every file on it durable. Everything here is best effort: where the kernel or C
library cannot, nothing happens, except that a reservation finding no room says so and
:func:`sync_file_system` says it could not."""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# Errors that mean "not enough room": the only ones a reservation reports.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_SYNC_FILE_RANGE_WRITE = 2  # start writing dirty pages back; do not wait for them

# File systems whose fallocate reserves blocks without writing them (unwritten extents):
# ext2/3/4 (one magic number; a file without extents refuses) and XFS. Elsewhere it may cost
# more than it saves: tmpfs, for one, zeroes every page up front (0.23 s for 1 GiB here, all
# before the first byte is fetched), and btrfs and ZFS were not measured.
_RESERVING_FILE_SYSTEMS = frozenset({0xEF53, 0x58465342})
# File systems whose syncfs writes back every dirty file's data and inode and then flushes the
# device's cache: ext2/3/4, XFS, btrfs, and tmpfs (nothing to write). Not FUSE or network file
# systems, where syncfs need not reach the server the way a file's own fdatasync does.
_SYNCFS_FILE_SYSTEMS = frozenset({0xEF53, 0x58465342, 0x9123683E, 0x01021994})
# From 5.8 on, syncfs reports a write-back error of any file on the file system since the
# descriptor it is given was opened; before, it returned 0 even when a file's data was lost.
_SYNCFS_REPORTS_ERRORS = (5, 8)
# Below this, reserving saves nothing worth its fstatfs, fallocate and ctypes import (the
# start-up of a one-file run).
_RESERVE_FROM_BYTES = 1 << 20

# Linux calls Python's os module lacks, with their argument types (ctypes names).
_LIBC_SIGNATURES = {
    "fallocate": ("c_int", "c_int", "c_int64", "c_int64"),
    "fstatfs": ("c_int", "c_void_p"),
    "sync_file_range": ("c_int", "c_int64", "c_int64", "c_uint"),
    "syncfs": ("c_int",),
}
# Looked up on first use: None where the C library has no such function (or is not Linux).
_libc_functions: dict[str, Callable[..., int] | None] = {}


def _libc_call(name: str, *args: object) -> int | None:
    """Call the C library's ``name``: 0, or the errno it failed with; None where there is
    no such function. Loads ctypes on first use only (it is not needed to start)."""
    if name not in _libc_functions:
        _libc_functions[name] = _libc_function(name)
    function = _libc_functions[name]
    if function is None:
        return None
    import ctypes

    return 0 if function(*args) == 0 else ctypes.get_errno()


def _libc_function(name: str) -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        loaded: Any = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (ImportError, OSError, AttributeError):
        return None
    loaded.argtypes = [getattr(ctypes, t) for t in _LIBC_SIGNATURES[name]]
    loaded.restype = ctypes.c_int
    function: Callable[..., int] = loaded  # ctypes functions are untyped: declared here
    return function


def reserve(fd: int, size_bytes: int) -> None:
    """Allocate blocks for the first ``size_bytes`` of ``fd`` (fallocate mode 0, which keeps
    what is written) on the file systems where that is cheap. Raises OSError only when there
    is no room; elsewhere, or where the kernel or C library cannot, the file stays sparse.
    Never ``os.posix_fallocate``: where the file system cannot, glibc's emulation writes
    zeros over the whole file instead."""
    if size_bytes < _RESERVE_FROM_BYTES or _file_system_type(fd) not in _RESERVING_FILE_SYSTEMS:
        return
    code = _libc_call("fallocate", fd, 0, 0, size_bytes)
    if code in _NO_ROOM:
        raise OSError(code, os.strerror(code))
    if code:
        log.debug("not reserving space (%s): the file stays sparse", os.strerror(code))


def _file_system_type(fd: int) -> int | None:
    """The magic number of the file system holding ``fd`` (``statfs.f_type``), or None."""
    import ctypes

    buffer = ctypes.create_string_buffer(256)  # a struct statfs, f_type first, with room
    if _libc_call("fstatfs", fd, buffer) != 0:
        return None
    return ctypes.c_long.from_buffer(buffer).value


def start_writeback(fd: int) -> None:
    """Have the kernel start writing ``fd``'s dirty pages to disk now, without waiting."""
    _libc_call("sync_file_range", fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def syncs_whole_file_system(fd: int) -> bool:
    """Whether :func:`sync_file_system` on ``fd`` (a file or directory) makes every file
    written on its file system durable, and reports it when one could not be written."""
    if not sys.platform.startswith("linux") or _kernel_version() < _SYNCFS_REPORTS_ERRORS:
        return False
    return _file_system_type(fd) in _SYNCFS_FILE_SYSTEMS


def sync_file_system(fd: int) -> None:
    """``syncfs``: every file written on the file system holding ``fd`` is on disk when it
    returns (see :func:`syncs_whole_file_system` for where that holds). An OSError when it
    fails, or where there is no such call."""
    code = _libc_call("syncfs", fd)
    if code is None:
        raise OSError(errno.ENOSYS, "syncfs is not available")
    if code:
        raise OSError(code, os.strerror(code))


def _kernel_version() -> tuple[int, int]:
    """The running kernel's major and minor version; (0, 0) if it cannot be read."""
    numbers = os.uname().release.split(".")[:2]
    try:
        return int(numbers[0]), int("".join(c for c in numbers[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)
