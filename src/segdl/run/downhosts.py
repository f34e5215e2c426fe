"""Servers a batch found down, so that their other files do not each spend the whole retry
budget on them.

A file tries a server that refuses connections (or cannot be reached, or whose name does
not resolve, or drops the attempts) ``--retries`` times with backoff: about 8 s with the
defaults, or three minutes where each attempt waits out ``--timeout``. A list of 2000 files
on a server that is down spent that once per file, ``-j`` at a time: 8 minutes at ``-j 32``
for a refusing server, hours for one that drops the attempts, before the batch said what
one file had said. Once one file has failed so (a :class:`~segdl.core.errors.ConnectError`
or :class:`~segdl.core.errors.ConnectTimeout` after its retries), each other file of that
server tries it once, without retries, for :data:`DOWN_FOR_S`. It still gets its chance (a
server back up is used, and the mark is gone with the first file it answers); the batch
ends in seconds (a refusing server) or one timeout a file (one that drops attempts). The
cost: until then, a file of that server that does connect has no retries either (a
connection broken mid-file fails it; the same command run again resumes it). wget does not
retry a refused connection unless asked to; curl retries nothing unless asked to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from segdl.core.errors import Cancelled, ConnectError, ConnectTimeout, SegdlError, TimeoutError_
from segdl.core.options import DownloadOptions
from segdl.net.origins import gate_key_of
from segdl.run.reports import ItemReport

DOWN_FOR_S = 60.0
"""How long a mark holds: a long-lived :class:`~segdl.run.batch.Downloader` (a program adding
files over hours) gives a server its retries again after that, and marks it anew if it is
still down."""


class DownHosts:
    """The servers (``host:port``) a batch found down, and when; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._down: dict[str, float] = {}

    def options_for(self, url: str, options: DownloadOptions) -> DownloadOptions:
        """``options`` for a file asked from ``url``: without retries if its server is down."""
        if not options.retries or not self._down:
            return options
        with self._lock:
            since = self._down.get(_server(url))
        down = since is not None and self._clock() - since < DOWN_FOR_S
        return replace(options, retries=0) if down else options

    def ended(self, report: ItemReport) -> None:
        """A file ended: a server that refused it is down; one that answered it is not (a
        file done, or failed by what the server said or sent)."""
        error = report.error
        if isinstance(error, (ConnectError, ConnectTimeout)):
            with self._lock:
                self._down[_server(error.url)] = self._clock()
            return
        if not self._down or isinstance(error, (Cancelled, TimeoutError_)):
            return
        url = report.result.url if report.result is not None else getattr(error, "url", None)
        if isinstance(url, str):
            with self._lock:
                self._down.pop(_server(url), None)


def _server(url: str) -> str:
    try:
        return gate_key_of(url)
    except SegdlError:  # nothing to mark: the engine reported the URL itself
        return ""
