"""Group commits from a child process: a batch's small files written, synced and named by a
process of their own, so that the batch's loop never waits for the threads that do it.

A :class:`~segdl.disk.commit.GroupCommit` in the batch's own process has three threads
writing, syncing and naming; each of their system calls hands the interpreter's lock back
and forth with the loop's thread, which then waits for it. Measured on a batch of small
files from local nginx (bench/README.md, "Many small files"), the loop spent more time
waiting for that lock than fetching. Here the same GroupCommit runs in a child forked from
the batch's process (the child's own thread writing the files, one more syncing and naming
them), and the loop hands it each file's bytes through a pipe.

The child is forked only while the process has no other thread (a fork copies one thread:
a lock another one held would stay locked in the child); otherwise the caller commits in
its own process. The child ignores SIGINT and SIGTERM (the batch stops cleanly and closes
the pipe; the child commits what it was given, then exits) and ends when the pipe does:
also when the batch is killed, after committing what had reached it whole. Nothing changes
in the promise: the child makes each group durable, records it in the journal, and only
then names it; a file is reported done once its group's directory sync returned.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import itertools
import os
import select
import signal
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import cast

from segdl.disk.commit import QUEUED_BYTES, GroupCommit, Staged

# A file for the child: its number, the lengths of its directory, name, URL and bytes, and
# whether it may replace a file; then those four. An answer: the number and an errno (0: done).
_FILE = struct.Struct("<QIIIIB")
_DONE = struct.Struct("<Qi")
_PIPE_BYTES = 1 << 20
_READ_BYTES = 1 << 20
_WRITEV = 256  # buffers a writev takes at most (the system's limit is 1024)

Record = Callable[[list[tuple[str, Path, os.stat_result]]], None]
"""Writes journal lines for files (URL, final path, stat) just before they are named."""


def can_fork() -> bool:
    """Whether a child may be forked now: a POSIX system, and no other thread here."""
    posix = hasattr(os, "fork") and sys.platform.startswith("linux")
    return posix and threading.active_count() == 1


def new_committer(
    on_done: Callable[[Staged, OSError | None], None],
    *,
    url_of: Callable[[object], str],
    record: Record | None,
) -> GroupCommit | ForkedCommit:
    """A :class:`ForkedCommit` where a child may be forked, else a :class:`GroupCommit` in
    this process; either records its files with ``record`` just before naming them."""
    if can_fork():
        with contextlib.suppress(OSError):  # no process to be had: threads here
            return ForkedCommit(on_done, url_of=url_of, record=record)
    return GroupCommit(on_done, before_link=_recorder(record, url_of))


def _recorder(
    record: Record | None, url_of: Callable[[object], str]
) -> Callable[[list[tuple[Staged, os.stat_result]]], None] | None:
    """``record`` as a GroupCommit's ``before_link``: each file's URL (from its token), final
    path and stat. None without a record: the files then need no stat either."""
    if record is None:
        return None

    def before_link(files: list[tuple[Staged, os.stat_result]]) -> None:
        record([(url_of(staged.token), staged.final_path, info) for staged, info in files])

    return before_link


class ForkedCommit:
    """A :class:`GroupCommit` in a child process, with the same calls: :meth:`stage`,
    :meth:`hand_over` and :meth:`close`. ``on_done(staged, error)`` is called from the
    caller's thread, in :meth:`hand_over` and :meth:`close`, for the files the child has
    finished; ``staged.token`` is the token given to :meth:`stage`. ``record`` runs in the
    child (see :data:`Record`); ``url_of(token)`` gives the URL it records for a file."""

    def __init__(
        self,
        on_done: Callable[[Staged, OSError | None], None],
        *,
        url_of: Callable[[object], str],
        record: Record | None = None,
        queued_bytes: int = QUEUED_BYTES,
    ) -> None:
        self._on_done = on_done
        self._url_of = url_of
        self._queued_bytes = queued_bytes
        self._out: deque[bytes | memoryview] = deque()  # for the child, in order, unwritten
        self._out_bytes = 0
        self._answers = bytearray()
        self._waiting: dict[int, Staged] = {}  # given to the child, not yet answered
        self._numbers = 0
        to_child, self._to_child = os.pipe()
        self._from_child, from_here = os.pipe()
        for fd in (self._to_child, from_here):
            with contextlib.suppress(OSError):  # a larger pipe: fewer wake-ups; not needed
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        # Held back across the fork: a Ctrl-C at that moment must not end the child before
        # it ignores it (the parent gets it once unblocked, as it would have).
        stopping = {signal.SIGINT, signal.SIGTERM}
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
        try:
            self._pid = os.fork()
            if self._pid == 0:  # the child: never returns
                code = 1
                try:
                    # Only its two pipes (and the standard three) stay open: a connection
                    # or file of the batch's must close when the batch closes it.
                    low, high = sorted((to_child, from_here))
                    os.closerange(3, low)
                    os.closerange(low + 1, high)
                    os.closerange(high + 1, _open_max())
                    for number in stopping:
                        signal.signal(number, signal.SIG_IGN)
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                    _serve(to_child, from_here, record)
                    code = 0
                finally:
                    os._exit(code)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(to_child)
        os.close(from_here)
        os.set_blocking(self._to_child, False)
        os.set_blocking(self._from_child, False)

    def stage(self, directory: Path, body: bytes, final_path: Path, *, overwrite: bool,
              token: object, now: bool = True) -> None:  # fmt: skip
        """As :meth:`GroupCommit.stage` (an error opening ``directory`` comes through
        ``on_done``)."""
        self._numbers += 1
        number = self._numbers
        self._waiting[number] = Staged(-1, -1, final_path, overwrite, token)
        place = os.fsencode(directory)
        name = os.fsencode(final_path.name)
        url = self._url_of(token).encode("utf-8", "surrogateescape")
        head = _FILE.pack(number, len(place), len(name), len(url), len(body), overwrite)
        self._out.append(head + place + name + url)
        self._out.append(body)  # not copied here: writev copies it into the pipe
        self._out_bytes += len(head) + len(place) + len(name) + len(url) + len(body)
        if now:
            self.hand_over()

    def hand_over(self) -> None:
        """Write what the child can take now (waiting while more than ``queued_bytes``
        wait), and report the files it has finished."""
        self._exchange(wait=False)
        while self._out_bytes > self._queued_bytes:
            self._exchange(wait=True)

    def close(self) -> None:
        """Everything to the child, then wait until it has finished every file and exited."""
        while self._out:
            if not self._exchange(wait=True):
                break
        os.close(self._to_child)
        os.set_blocking(self._from_child, True)
        while self._read_answers():
            pass
        os.close(self._from_child)
        os.waitpid(self._pid, 0)
        lost = OSError(errno.EPIPE, "the committing process ended before this file")
        for staged in self._waiting.values():  # it died: none of these was named by it
            self._on_done(staged, lost)
        self._waiting.clear()

    def _exchange(self, *, wait: bool) -> bool:
        """One round: answers read, bytes written; False if the child is gone."""
        if wait:
            select.select([self._from_child], [self._to_child] if self._out else [], [])
        self._read_answers()
        if not self._out:
            return True
        try:
            written = os.writev(self._to_child, list(itertools.islice(self._out, _WRITEV)))
        except BlockingIOError:
            return True
        except BrokenPipeError:
            self._out.clear()  # nothing more reaches it; close() says so
            self._out_bytes = 0
            return False
        self._out_bytes -= written
        out = self._out
        while written and written >= len(out[0]):
            written -= len(out.popleft())
        if written:
            out[0] = memoryview(out[0])[written:]
        return True

    def _read_answers(self) -> bool:
        """The child's answers that have arrived, each to on_done; False at their end."""
        try:
            data = os.read(self._from_child, _READ_BYTES)
        except BlockingIOError:
            return True
        if not data:
            return False
        answers = self._answers
        answers += data
        whole = len(answers) - len(answers) % _DONE.size
        for number, code in _DONE.iter_unpack(bytes(answers[:whole])):
            staged = self._waiting.pop(number)
            self._on_done(staged, None if code == 0 else OSError(code, os.strerror(code)))
        del answers[:whole]
        return True


def _serve(incoming: int, answers: int, record: Record | None) -> None:
    """The child: files from ``incoming`` into a GroupCommit until the pipe ends."""
    gc.disable()  # the parent's objects are copies here: none of them is to be finalised

    said: list[bytes] = []  # answers not yet written: one write a group, not one a file
    saying = threading.Lock()

    def done(staged: Staged, error: OSError | None) -> None:
        number, _ = cast(tuple[int, str], staged.token)
        code = 0 if error is None else (error.errno or errno.EIO)
        with saying:
            said.append(_DONE.pack(number, code))

    def say() -> None:
        with saying:
            told = b"".join(said)
            said.clear()
            while told:  # a blocking pipe: the parent reads it every round
                told = told[os.write(answers, told) :]

    # The child's own thread writes the files: it has nothing else to do, and two more
    # threads would only take turns with it on the interpreter's lock.
    committer = GroupCommit(done, before_link=_recorder(record, _url_in_token),
                            after_group=say, write_threads=0)  # fmt: skip
    buffer = bytearray()
    places: dict[bytes, Path] = {}
    try:
        while chunk := os.read(incoming, _READ_BYTES):
            buffer += chunk
            used = _stage_all(committer, buffer, places, done)
            del buffer[:used]
    finally:
        committer.close()  # a file cut short by the parent's end is not among them
        say()
        os.close(answers)


def _url_in_token(token: object) -> str:
    """The URL a child's token carries: (the file's number, its URL)."""
    return cast(tuple[int, str], token)[1]


def _stage_all(committer: GroupCommit, buffer: bytearray, places: dict[bytes, Path],
               done: Callable[[Staged, OSError | None], None]) -> int:  # fmt: skip
    """Stage every whole file in ``buffer``; the bytes used. ``places``: the directories
    met so far, by their bytes."""
    at = 0
    view = memoryview(buffer)
    while len(buffer) - at >= _FILE.size:
        number, lengths, names, urls, size, overwrite = _FILE.unpack_from(buffer, at)
        end = at + _FILE.size + lengths + names + urls + size
        if end > len(buffer):
            break
        start = at + _FILE.size
        place = bytes(view[start : start + lengths])
        directory = places.get(place) or places.setdefault(place, Path(os.fsdecode(place)))
        start += lengths
        final = directory / os.fsdecode(bytes(view[start : start + names]))
        start += names
        url = bytes(view[start : start + urls]).decode("utf-8", "surrogateescape")
        body = bytes(view[start + urls : end])
        token = (number, url)
        try:
            committer.stage(directory, body, final, overwrite=bool(overwrite), token=token,
                            now=False)  # fmt: skip
        except OSError as exc:
            done(Staged(-1, -1, final, bool(overwrite), token), exc)
        at = end
    view.release()
    committer.hand_over()
    return at


def _open_max() -> int:
    """Past the highest descriptor this process may hold (a bound for closing them all)."""
    try:
        return max(os.sysconf("SC_OPEN_MAX"), 1024)
    except (OSError, ValueError):
        return 1 << 20
