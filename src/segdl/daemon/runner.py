"""One download of the daemon, in a thread of its own, through :func:`segdl.download`.

The thread reports to the manager only through two callbacks, both scheduled onto the event
loop (``call_soon_threadsafe``): ``on_started`` with the output path, and ``on_end`` with the
outcome. Progress events update the item's :class:`~segdl.daemon.model.Live` in place (plain
attribute stores, read by the loop for tellStatus); the engine calls the listener a few times
a second from this thread, so nothing here can slow the transfer down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import segdl
from segdl.core.errors import shown
from segdl.daemon.model import (
    ERROR_CHECKSUM,
    ERROR_FILE_EXISTS,
    ERROR_FILE_IO,
    ERROR_HTTP_PROTOCOL,
    ERROR_NETWORK,
    ERROR_NOT_FOUND,
    ERROR_TIMEOUT,
    ERROR_UNKNOWN,
    Live,
)

if TYPE_CHECKING:
    from segdl.core.options import DownloadOptions
    from segdl.net.interfaces import Transport
    from segdl.run.ratelimit import TokenBucket

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ended:
    """How a run ended: ``result`` on success, else ``error`` (``cancelled`` when asked)."""

    result: segdl.Result | None = None
    error: BaseException | None = None
    cancelled: bool = False


def error_code(error: BaseException) -> int:
    """aria2's exit code for an error (aria2c.rst "EXIT STATUS")."""
    if isinstance(error, segdl.TimeoutError_):
        return ERROR_TIMEOUT
    if isinstance(error, segdl.HTTPStatusError):
        return ERROR_NOT_FOUND if getattr(error, "status", 0) == 404 else ERROR_HTTP_PROTOCOL
    if isinstance(error, segdl.NetworkError):
        return ERROR_NETWORK
    if isinstance(error, segdl.OutputExists):
        return ERROR_FILE_EXISTS
    if isinstance(error, segdl.LocalFileError):
        return ERROR_FILE_IO
    if isinstance(error, segdl.IntegrityError):
        return ERROR_CHECKSUM
    return ERROR_UNKNOWN


class Runner:
    """A running download; ``stop()`` makes it end (resumably) within a fraction of a second."""

    def __init__(
        self,
        gid: str,
        uris: list[str],
        target: dict[str, Path],
        options: DownloadOptions,
        live: Live,
        on_notice: Callable[[str, str, str], None],
        on_started: Callable[[str, Path], None],
        on_end: Callable[[str, Runner, Ended], None],
        *,
        transport: Transport,
        rate_limiter: TokenBucket | None,
    ) -> None:
        self.gid = gid
        self.cancel = threading.Event()
        self.restart = False
        """Set when the run is stopped only to start again with new options."""
        self._uris = uris
        self._target = target  # dest= or directory=
        self._options = options
        self._transport = transport
        self._rate_limiter = rate_limiter
        self._live = live
        self._on_notice = on_notice
        self._on_started = on_started
        self._on_end = on_end
        self._thread = threading.Thread(target=self._run, name=f"segdl-daemon-{gid}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.cancel.set()

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _listen(self, event: segdl.Event) -> None:
        live = self._live
        if isinstance(event, segdl.DownloadProgress):
            live.done_bytes = event.done_bytes
            live.size_bytes = event.size_bytes
            live.rate_bytes_per_s = event.rate_bytes_per_s
            live.connections = event.connections
            _segments_of(event, live)
        elif isinstance(event, segdl.DownloadStarted):
            live.size_bytes = event.size_bytes
            live.connections = event.connections
            live.current_url = event.url
            self._on_started(self.gid, event.path)
        elif isinstance(event, segdl.Notice):
            self._on_notice(self.gid, event.kind.value, event.message)
        elif isinstance(event, segdl.DownloadReceived):
            live.done_bytes = event.size_bytes
            live.size_bytes = event.size_bytes
            live.rate_bytes_per_s = 0.0
            live.connections = 0

    def _run(self) -> None:
        try:
            result = segdl.download(
                self._uris[0],
                self._target.get("dest"),
                directory=self._target.get("directory"),
                options=self._options,
                mirrors=self._uris[1:],
                cancel=self.cancel,
                progress=self._listen,
                transport=self._transport,
                rate_limiter=self._rate_limiter,
            )
            ended = Ended(result=result)
        except segdl.Cancelled as exc:
            ended = Ended(error=exc, cancelled=True)
        except segdl.SegdlError as exc:
            ended = Ended(error=exc)
        except Exception as exc:  # a bug: the item fails, the daemon goes on
            log.exception("download %s of %s failed unexpectedly", self.gid, shown(self._uris[0]))
            ended = Ended(error=exc)
        self._live.rate_bytes_per_s = 0.0
        self._live.connections = 0
        self._on_end(self.gid, self, ended)


def _segments_of(event: segdl.DownloadProgress, live: Live) -> None:
    """The done ranges and each connection's place (issue 20's SegmentMap on the event)."""
    segments = event.segments
    if segments is not None:
        live.segments = tuple((r.start, r.end) for r in segments.done)
        live.positions = tuple((r.start, r.end) for r in segments.connections)
