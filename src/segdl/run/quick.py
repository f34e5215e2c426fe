"""One small file for the command line, finished before the engine is imported.

The command line sends a fresh download's first request as soon as it knows the URL
(:func:`segdl.net.dial.first_request`). When the head of that answer promises the whole file
in at most :data:`~segdl.run.leanplan.SMALL_BYTES` (a ``200`` or ``206`` with its length,
:func:`segdl.core.wholebody.promised_whole`), the answer is read here and checked as the lean
batch path checks one (:func:`~segdl.core.wholebody.judge`, a digest given or sent,
``--max-size``); the file is written unnamed, synced and linked to its name, never over
anything (:mod:`segdl.disk.commit`), so nothing incomplete is ever at the name. Without
``-o``, the file is named as the engine names it (:func:`segdl.core.names.choose_filename`:
the answer's ``Content-Disposition``, else the URL), in ``-d``'s directory or the current one,
and only when nothing is at that name or beside it: whatever ``--if-exists`` would decide, an
existing file is the engine's to decide about.

Everything else is the engine's, exactly as before: an answer not wanted here is left on the
socket unread (:func:`segdl.net.early.peek_head`) and the socket given back for the transport
to take (over TLS, where nothing can be peeked, with the bytes read of its head, which the
transport reads first: :func:`segdl.net.early.take_head`); an answer that breaks, or fails
a check, while read here is asked for again by the engine on a new connection (nothing was
written: there is no ``.part`` to resume). So this path only ever finishes a download; it
never fails one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from segdl.core.errors import Cancelled, shown
from segdl.core.models import Result
from segdl.core.options import DownloadOptions
from segdl.core.progress import (
    DownloadFinished,
    DownloadProgress,
    DownloadStarted,
    Notice,
    NoticeKind,
    ProgressListener,
)
from segdl.net import dial
from segdl.net.origins import DEFAULT_PORTS

if TYPE_CHECKING:
    from segdl.net.early import Head
    from segdl.net.leanconn import Answer

log = logging.getLogger(__name__)

HEAD_WAIT_S = 0.005
"""How long the head may still take to arrive: it is there already from a near server (the
request left while the command line was starting). Waiting longer for a far one would cost
more than it saves: the engine's import overlaps that wait instead, as it always did."""
BODY_WITHIN_S = 1.0
"""How long the body may take once its head is in: a slower one is the engine's (asked
again), which watches rates, stalls and ``--lowest-speed-limit``."""


def quick_download(
    url: str,
    final: Path | None,
    options: DownloadOptions,
    listener: ProgressListener,
    cancel: threading.Event,
    clock: Callable[[], float] = time.monotonic,
    *,
    directory: Path | None = None,
) -> Result | None:
    """``url`` downloaded to ``final`` (which does not exist; None: named as the engine names
    it, in ``directory``, by default the current one) from the answer to the early request,
    or None: the engine's to download (see the module's docstring)."""
    started_s = clock()
    taken = _dialled(url)
    if taken is None:
        return None
    named_in = None if final is not None else (directory or Path("."))
    wanted = _wanted(taken, url, final, named_in, options, started_s + HEAD_WAIT_S, clock)
    if wanted is None:
        return None
    host, port, dialled = taken
    final, size, ranged, first = wanted
    assert dialled.sent is not None
    from segdl.net.early import Broken, read_answer
    from segdl.net.leanconn import LeanRequest
    from segdl.run.leanplan import SMALL_BYTES

    shown_url = shown(url)
    listener(DownloadStarted(shown_url, final, size, ranged, 1))

    def watch(request: LeanRequest, status: int, values: object, done: int) -> None:
        if done:
            elapsed_s = max(1e-6, clock() - started_s)
            listener(DownloadProgress(shown_url, done, size, elapsed_s, done / elapsed_s, 1))

    request = LeanRequest(host, port, dialled.sent, None)
    try:
        within_s = min(BODY_WITHIN_S, options.timeout_s)
        answer = read_answer(dialled.sock, request, SMALL_BYTES, within_s=within_s,
                             watch=watch, stop=cancel, first=first)  # fmt: skip
    except Broken as exc:
        log.debug("%s: to the engine (%s)", shown_url, exc)
        return None
    finally:
        dialled.sock.close()
    if answer is None:
        raise Cancelled("interrupted")
    if not _commit(answer, final, options, listener, shown_url):
        return None
    elapsed_s = clock() - started_s
    listener(DownloadFinished(shown_url, final, len(answer.body), elapsed_s))
    return Result(url, final, len(answer.body), elapsed_s, 1, answer.status == 206)


def _dialled(url: str) -> tuple[str, int, dial.Dialled] | None:
    """The socket the command line dialled to ``url``'s server, and its host and port."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 80)
        host = (parts.hostname or "").rstrip(".")
    except ValueError:  # the engine says what is wrong with it
        return None
    dialled = dial.take(host, port)
    return None if dialled is None else (host, port, dialled)


def _wanted(
    taken: tuple[str, int, dial.Dialled],
    url: str,
    final: Path | None,
    named_in: Path | None,
    options: DownloadOptions,
    deadline_s: float,
    clock: Callable[[], float],
) -> tuple[Path, int, bool, bytes] | None:
    """Where the file goes, its size, whether it answers a range, and what was read of it
    already, when the answer waiting on the dialled socket is one for this path (see
    :func:`_promised`); None otherwise: the socket is given back for the transport, as it
    was (what was read of the answer, read first), or closed if it broke."""
    host, port, dialled = taken
    # A far server's answer is not there yet: the engine's, and nothing that would judge or
    # read it is loaded (the lean path's rules and readers take a while to import).
    if not dial.answered(dialled, max(0.0, deadline_s - clock())):
        dial.give_back(host, port, dialled)
        return None
    from segdl.net.early import Broken

    try:
        seen = _head(dialled, url, options, deadline_s, clock)
    except Broken as exc:  # the connection failed: of no use to the transport either
        log.debug("%s: to the engine (%s)", shown(url), exc)
        dialled.sock.close()
        return None
    head, read = (None, b"") if seen is None else seen
    promised = None if head is None else _promised(head, url, final, named_in, options)
    if promised is None:
        dial.give_back(host, port, dialled, read)
        return None
    return (*promised, read)


def _head(
    dialled: dial.Dialled,
    url: str,
    options: DownloadOptions,
    deadline_s: float,
    clock: Callable[[], float],
) -> tuple[Head | None, bytes] | None:
    """The head of the answer waiting on ``dialled`` if all of it is there by
    ``deadline_s`` (None: not, or not one for this path), and the bytes read off the socket
    for it (over TLS; a peek reads none); None if the lean path's rules refuse the download
    or nothing of the answer is there. :class:`~segdl.net.early.Broken` if the connection
    failed or was closed."""
    from segdl.net.early import peek_head, take_head
    from segdl.run.leanplan import why_not_lean

    if why_not_lean(options, url, [url]) is not None:
        return None
    within_s = max(0.0, deadline_s - clock())
    if dialled.tls:  # nothing can be peeked: read (given back with the socket if not wanted)
        return take_head(dialled.sock, within_s, HEAD_WAIT_S)
    head = peek_head(dialled.sock, within_s)
    return None if head is None else (head, b"")


def _promised(
    head: Head, url: str, final: Path | None, named_in: Path | None, options: DownloadOptions
) -> tuple[Path, int, bool] | None:
    """Where the file goes (``final``, else the engine's name for it in ``named_in``), the
    size ``head`` promises the whole file in, and whether it answers a range; None if it
    promises no whole file within 1 MiB and ``--max-size``, names a file already there, or
    its directory takes no unnamed file."""
    from segdl.core.wholebody import promised_whole
    from segdl.disk.commit import unnamed_files_work
    from segdl.run.leanplan import SMALL_BYTES

    most = options.max_size_bytes
    limit = SMALL_BYTES if most is None else min(SMALL_BYTES, most)
    size = promised_whole(head.status, head.values, limit).size_bytes  # None: over --max-size too
    if size is None:
        return None
    if named_in is not None:
        final = _named(url, named_in, head.values)
    # A directory that takes no unnamed file is asked about only now, before anything is
    # read (a large file, the usual case, never pays for the test file it makes).
    if final is None or not unnamed_files_work(final.parent):
        return None
    return final, size, head.status == 206


def _named(url: str, directory: Path, values: Callable[[str], list[str]]) -> Path | None:
    """The file's path in ``directory`` as the engine names it, from the answer's header
    fields; None if anything is at it or beside it (a file, a partial download, a lock)."""
    from segdl.core.names import choose_filename
    from segdl.disk.paths import OutputPaths, name_limit_bytes, path_inside

    dispositions = values("content-disposition")
    disposition = dispositions[0] if len(dispositions) == 1 else None  # as the engine reads it
    try:
        name = choose_filename(url, disposition, limit_bytes=name_limit_bytes(directory))
        paths = OutputPaths.of(path_inside(directory, name))
    except OSError:  # LocalFileError included: a name that cannot be made here
        return None
    if any(os.path.lexists(path) for path in (paths.final, paths.part, paths.state, paths.lock)):
        return None
    return paths.final


def _commit(
    answer: Answer, final: Path, options: DownloadOptions, listener: ProgressListener, url: str
) -> bool:
    """Check ``answer`` and make it the file at ``final``; False: the engine's to do again
    (and to report what stopped this)."""
    from segdl.disk.commit import GroupCommit, Staged
    from segdl.run.leanplan import expected_digest, refusal

    refused = refusal(options, answer)  # as the lean batch path judges an answer
    if refused is not None:
        log.debug("%s: to the engine (%s)", url, refused.why)
        return False
    expected = expected_digest(options, answer)  # verified: named in the notice
    errors: list[OSError | None] = []

    def done(staged: Staged, error: OSError | None) -> None:
        errors.append(error)

    committer = GroupCommit(done, group_files=1, group_wait_s=0.0, sync_threads=1)
    try:
        committer.stage(final.parent, answer.body, final, overwrite=False, token=None)
    except OSError as exc:
        errors.append(exc)
    finally:
        committer.close()
    if errors != [None]:  # the engine meets the same error, or the name taken meanwhile
        log.debug("%s: to the engine (%s)", url, errors)
        return False
    if expected is not None:
        said = f"{expected.source} {expected.algorithm} verified"
        listener(Notice(url, NoticeKind.VERIFIED, said))
    return True
