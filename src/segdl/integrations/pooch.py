"""A pooch downloader that fetches with segdl: many connections, resume, verification.

>>> import pooch
>>> from segdl.integrations.pooch import SegdlDownloader
>>> path = pooch.retrieve(url, known_hash="sha256:...", downloader=SegdlDownloader())

pooch calls a downloader as ``downloader(url, output_file, pooch, check_only=False)``, with a
fresh temporary file in the destination directory as ``output_file``; it checks the hash of
what was written and moves it to the final name (``pooch.core.stream_download``). A
temporary name differs on every call, so a partial download kept under it could never be
resumed. segdl therefore downloads to a name of its own in that directory, derived from the
URL (``.segdl-<hash of the URL>``, with segdl's ``.part`` and state beside it while it is
partial), and renames the finished file onto pooch's temporary one. An interrupted fetch
leaves that partial download in the cache directory, and the next call for the same URL
into the same directory resumes it. pooch does not tell a downloader the final name, but
the directory and the URL are what that name is made of; two names for one URL in one
directory share the partial download, which holds the same bytes.

Failures are raised as what pooch's retry loop (``retry_if_failed``) catches: requests'
exceptions for network, server and protocol failures, ``ValueError`` for a file that is not
what the server promised; only after segdl's own retries. Local failures (disk full,
permissions) stay ``OSError``s, as with pooch's own downloader.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

from segdl.integrations._versions import require

POOCH_VERSION = require("pooch", "1.6", "2", extra="pooch")

import requests.exceptions  # noqa: E402  (pooch's own dependency, after the version check)

import segdl  # noqa: E402
from segdl.core.names import filename_from_url  # noqa: E402
from segdl.core.options import with_overrides  # noqa: E402
from segdl.integrations._http import Requester, check_url, split_given  # noqa: E402

# Keywords the downloader sets itself: where the file goes and what happens to an old one.
_OWN_KEYWORDS = frozenset({"dest", "directory", "overwrite", "if_exists"})
# Long enough for another process fetching the same URL into the same cache to finish
# (pytest-xdist workers, say); then this one downloads it again, as pooch would.
_LOCK_WAIT_S = 600.0


class ProgressBar(Protocol):
    """pooch's custom progress bar: a tqdm-like object (``total``, ``update``, ``reset``,
    ``close``), see pooch's docs, "Using a custom progress bar"."""

    total: int

    def update(self, n: int) -> object: ...

    def reset(self) -> object: ...

    def close(self) -> object: ...


class SegdlDownloader:
    """A pooch downloader: ``pooch.retrieve(url, known_hash, downloader=SegdlDownloader())``.

    ``options`` are :func:`segdl.download`'s keywords (``connections=16``, ``timeout_s``,
    ``headers``, ``user``, ``limit_rate``, ``checksum``...), given to every download.
    ``progressbar``: ``True`` draws segdl's progress display on stderr (a bar on a terminal,
    a line every few seconds elsewhere); a tqdm-like object is updated instead, as pooch's
    ``HTTPDownloader`` does; ``False`` (the default) shows nothing.
    """

    def __init__(self, progressbar: bool | ProgressBar = False, **options: Any) -> None:
        own = sorted(_OWN_KEYWORDS & options.keys())
        if own:
            raise TypeError(f"SegdlDownloader chooses {', '.join(own)} itself")
        self.progressbar = progressbar
        given = split_given({"lock_wait_s": _LOCK_WAIT_S, **options})
        # The partial download under segdl's own name is replaced by a fresh one if stale.
        self.options = with_overrides(given.options, {"if_exists": "overwrite"})
        self._keywords = dict(given.keywords)
        self._user_progress: segdl.ProgressListener | None = self._keywords.pop("progress", None)
        self._requester = Requester(given.options)

    def __call__(
        self, url: str, output_file: str | os.PathLike[str] | IO[bytes] | None, pooch: Any,
        check_only: bool = False,
    ) -> bool | None:  # fmt: skip
        """Download ``url`` to ``output_file`` (a path or a binary file object); with
        ``check_only``, only say whether the server has it, downloading nothing."""
        check_url(url)
        if check_only:
            return self._available(url)
        if output_file is None:
            raise ValueError("SegdlDownloader needs an output file unless check_only=True")
        if isinstance(output_file, (str, os.PathLike)):
            self._into_path(url, Path(os.fspath(output_file)))
        else:
            self._into_file_object(url, output_file)
        return None

    def _available(self, url: str) -> bool:
        """Like pooch's HTTPDownloader (a HEAD answered 200), but asking for byte 0 only: a
        missing file (4xx, 5xx) is False; a server that cannot be reached raises."""
        try:
            self._requester.head(url)
        except segdl.HTTPStatusError:
            return False
        except segdl.SegdlError as exc:
            raise as_pooch_error(exc) from exc
        return True

    def _into_path(self, url: str, output: Path) -> None:
        stable = resume_path(output.parent, url)
        self._download(url, stable)
        os.replace(stable, output)  # same directory: pooch's temporary file gets the bytes

    def _into_file_object(self, url: str, output: IO[bytes]) -> None:
        # No directory to keep a partial download in: this one is not resumable.
        with tempfile.TemporaryDirectory(prefix="segdl-pooch-") as scratch:
            path = Path(scratch) / "download"
            self._download(url, path)
            with path.open("rb") as source:
                shutil.copyfileobj(source, output, 1 << 20)
            output.flush()

    def _download(self, url: str, path: Path) -> None:
        listener, done = self._listener(filename_from_url(url))
        try:
            segdl.download(url, path, options=self.options, progress=listener, **self._keywords)
        except segdl.SegdlError as exc:
            raise as_pooch_error(exc) from exc
        finally:
            done()

    def _listener(self, name: str) -> tuple[segdl.ProgressListener, Callable[[], None]]:
        """The progress listener for one download, and what to call when it is over; a
        display shows ``name``, not the name of the partial download."""
        shown: list[segdl.ProgressListener] = []
        closers: list[Callable[[], None]] = []
        if self._user_progress is not None:
            shown.append(self._user_progress)
        if self.progressbar is True:
            from segdl.cli.display import stderr_display  # only a caller who asked

            display = stderr_display()
            shown.append(_named(display, name))
            closers.append(display.close)
        elif self.progressbar:
            bar = TqdmAdapter(self.progressbar)
            shown.append(bar)
            closers.append(bar.close)

        def listener(event: segdl.Event) -> None:
            for each in shown:
                each(event)

        def done() -> None:
            for close in closers:
                close()

        return listener, done


def _named(listener: segdl.ProgressListener, name: str) -> segdl.ProgressListener:
    def renamed(event: segdl.Event) -> None:
        if isinstance(event, (segdl.DownloadStarted, segdl.DownloadFinished)):
            event = dataclasses.replace(event, path=event.path.with_name(name))
        listener(event)

    return renamed


def resume_path(directory: Path, url: str) -> Path:
    """Where the download of ``url`` into ``directory`` is kept until it is complete: the
    same for every call, so an interrupted one is resumed."""
    digest = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return directory / f".segdl-{digest}"


def as_pooch_error(error: segdl.SegdlError) -> Exception:
    """The exception pooch expects for ``error``: one its retry loop catches when another
    attempt may help (requests' exceptions, ``ValueError``); local failures unchanged."""
    for segdl_type, pooch_type in _POOCH_ERRORS:
        if isinstance(error, segdl_type):
            return pooch_type(str(error))
    return error  # UsageError is a ValueError already; local errors and Cancelled stay


# The first match wins: subclasses before their bases.
_POOCH_ERRORS: tuple[tuple[type[segdl.SegdlError], type[Exception]], ...] = (
    (segdl.HTTPStatusError, requests.exceptions.HTTPError),
    (segdl.TLSError, requests.exceptions.SSLError),
    (segdl.TimeoutError_, requests.exceptions.Timeout),
    (segdl.NetworkError, requests.exceptions.ConnectionError),
    (segdl.TooManyRedirects, requests.exceptions.TooManyRedirects),
    (segdl.ProtocolError, requests.exceptions.RequestException),
    (segdl.ServerError, requests.exceptions.RequestException),
    (segdl.IntegrityError, ValueError),
)


class TqdmAdapter:
    """Drives a tqdm-like bar from segdl's events, the way pooch's HTTPDownloader does: the
    total once known, updates as bytes arrive, and a full bar at the end."""

    def __init__(self, bar: ProgressBar) -> None:
        self.bar = bar
        self._done = 0
        self._total: int | None = None

    def __call__(self, event: segdl.Event) -> None:
        if isinstance(event, segdl.DownloadStarted):
            self._total = event.size_bytes
            self.bar.total = event.size_bytes or 0
        elif isinstance(event, segdl.DownloadProgress) and event.done_bytes > self._done:
            self.bar.update(event.done_bytes - self._done)
            self._done = event.done_bytes
        elif isinstance(event, segdl.DownloadFinished):
            self.bar.reset()
            self.bar.update(event.size_bytes)
            self._done = event.size_bytes

    def close(self) -> None:
        self.bar.close()
